"""The config shadow: desired documents are validated whole, applied atomically, kept across restarts,
and reported without secrets; anything wrong leaves the running config exactly as it was."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import pytest
from control_helpers import OPERATOR, guard, signed_config

from edge_sentry.codes import control
from edge_sentry.config import Config, from_mapping
from edge_sentry.link import desired as desired_rules
from edge_sentry.link.shadow import DEVICE, SITE, ConfigShadow
from edge_sentry.link.topics import Topics
from edge_sentry.state import STORE_FILE, StateStore

SECRET = "s3cret-password"


def local_config(state_dir: Path, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "device": {"id": "sentry-1", "site": "s1", "state_dir": str(state_dir)},
        "mqtt": {"host": "broker.example", "password": SECRET, "ca": "/etc/edge-sentry/fleet-ca.pem"},
    }
    for name, keys in sections.items():
        data.setdefault(name, {}).update(keys)
    return from_mapping(data)


TOPICS = Topics("s1", "sentry-1")


def desired(version: Any, config: Any, source: str = DEVICE, device: Config | None = None) -> bytes:
    """A desired document signed by the test operator for the topic of `source` (of the test
    device, or of the one `device` names)."""
    own = Topics(device.device.site, device.device.id) if device is not None else TOPICS
    return signed_config(own.site_config_desired if source == SITE else own.config_desired, version, config)


def signed_body(body: Any) -> bytes:
    """A signed control message for the device's desired topic whose body is `body`, whatever it is."""
    return control.sign(OPERATOR, TOPICS.config_desired, body, iat_ms=1_795_000_000_000)


class Recorder:
    def __init__(self) -> None:
        self.configs: list[Config] = []

    def __call__(self, config: Config) -> None:
        self.configs.append(config)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def make_shadow(open_store: Callable[..., StateStore]) -> Callable[..., ConfigShadow]:
    """A shadow over the state store its config names (a second one on a folder is a restart)."""

    def make(local: Config, **options: Any) -> ConfigShadow:
        store = open_store(local)
        options.setdefault("guard", guard(local, store))
        return ConfigShadow(local, store, **options)

    return make


@pytest.fixture
def shadow(state: Path, make_shadow) -> ConfigShadow:
    return make_shadow(local_config(state))


def error_paths(report: dict[str, Any]) -> set[str]:
    return {e["path"] for e in report["errors"]}


# -- applying -----------------------------------------------------------------------------------


def test_device_document_is_applied_swapped_in_and_reported(shadow: ConfigShadow):
    seen = Recorder()
    shadow.add_listener(seen)
    before = shadow.current
    report = shadow.handle(DEVICE, desired(3, {"gate": {"pulse_ms": 700}}))
    assert report is not None
    assert report["status"] == "applied" and report["errors"] == []
    assert report["version"] == 3 and report["site_version"] == 0
    assert report["effective"]["gate"]["pulse_ms"] == 700
    assert shadow.current.gate.pulse_ms == 700 and shadow.version == 3
    assert shadow.current.gate.passback_s == before.gate.passback_s
    assert seen.configs == [shadow.current]


def test_json_typed_by_hand_is_refused_as_unsigned(shadow: ConfigShadow):
    payload = json.dumps({"version": 1, "config": {"es1": {"max_age_s": 45}}}).encode()
    report = shadow.handle(DEVICE, b"  " + payload)
    assert report is not None and report["status"] == "rejected"
    assert report["errors"][0]["path"] == "signature"
    assert report["errors"][0]["message"].startswith("unsigned")
    assert shadow.current.es1.max_age_s == 60 and shadow.version == 0


def test_device_overrides_site_key_by_key(shadow: ConfigShadow):
    shadow.handle(SITE, desired(1, {"gate": {"pulse_ms": 500, "passback_s": 10}}, source=SITE))
    report = shadow.handle(DEVICE, desired(1, {"gate": {"pulse_ms": 700}}))
    assert report is not None and report["status"] == "applied"
    assert (shadow.current.gate.pulse_ms, shadow.current.gate.passback_s) == (700, 10)
    # a newer site document still loses to the device's pulse_ms
    report = shadow.handle(SITE, desired(2, {"gate": {"pulse_ms": 300, "passback_s": 20}}, source=SITE))
    assert report is not None and (report["site_version"], report["version"]) == (2, 1)
    assert (shadow.current.gate.pulse_ms, shadow.current.gate.passback_s) == (700, 20)


def test_a_new_document_replaces_the_previous_one_from_its_source(shadow: ConfigShadow):
    local_pulse = shadow.current.gate.pulse_ms
    shadow.handle(DEVICE, desired(1, {"gate": {"pulse_ms": 700}}))
    shadow.handle(DEVICE, desired(2, {"es1": {"max_age_s": 30}}))
    assert shadow.current.gate.pulse_ms == local_pulse
    assert shadow.current.es1.max_age_s == 30


def test_a_site_value_masked_by_the_device_document_must_still_be_plain_data(shadow: ConfigShadow):
    assert shadow.handle(DEVICE, desired(1, {"es1": {"skew_s": 20}}))["status"] == "applied"
    report = shadow.handle(SITE, desired(1, {"es1": {"skew_s": cbor2.CBORTag(61, 20)}}, source=SITE))
    assert report is not None and report["status"] == "rejected"
    assert "es1.skew_s" in error_paths(report)
    assert shadow.site_version == 0


@pytest.mark.parametrize("version", [3, 2, 0])
def test_a_version_at_or_below_the_applied_one_is_ignored(shadow: ConfigShadow, version: int):
    shadow.handle(DEVICE, desired(3, {"gate": {"pulse_ms": 700}}))
    seen = Recorder()
    shadow.add_listener(seen)
    applied = shadow.current
    assert shadow.handle(DEVICE, desired(version, {"gate": {"pulse_ms": 900}})) is None
    assert shadow.current is applied and seen.configs == []


def test_versions_are_counted_per_source(shadow: ConfigShadow):
    shadow.handle(DEVICE, desired(5, {"gate": {"pulse_ms": 700}}))
    report = shadow.handle(SITE, desired(1, {"es1": {"max_age_s": 30}}, source=SITE))
    assert report is not None and report["status"] == "applied"
    assert (shadow.site_version, shadow.version) == (1, 5)


def test_an_empty_message_is_a_cleared_retained_document_and_ignored(shadow: ConfigShadow):
    applied = shadow.current
    assert shadow.handle(DEVICE, b"") is None
    assert shadow.current is applied


def test_unknown_source_is_a_programming_error(shadow: ConfigShadow):
    with pytest.raises(ValueError):
        shadow.handle("elsewhere", desired(1, {}))


# -- rejecting ----------------------------------------------------------------------------------

BAD_DOCUMENTS = {
    "wrong type": (desired(2, {"gate": {"pulse_ms": "long"}}), "gate.pulse_ms"),
    "out of range": (desired(2, {"gate": {"pulse_ms": 5}}), "gate.pulse_ms"),
    "unknown key": (desired(2, {"gate": {"pulse_msec": 500}}), "gate.pulse_msec"),
    "unknown section": (desired(2, {"gates": {"pulse_ms": 500}}), "gates"),
    "section not a map": (desired(2, {"gate": 5}), "gate"),
    "config not a map": (desired(2, [1, 2]), "config"),
    "config missing": (signed_body({"version": 2}), "config"),
    "version missing": (signed_body({"config": {}}), "version"),
    "version a text": (desired("7", {}), "version"),
    "version a boolean": (desired(True, {}), "version"),
    "version negative": (desired(-1, {}), "signature"),
    "version 2^53": (desired(2**53, {}), "signature"),
    "version 2^63": (desired(2**63, {}), "signature"),
    "extra top-level key": (signed_body({"version": 2, "config": {}, "apply": "now"}), "apply"),
    "body not a map": (signed_body([1, {"gate": {}}]), ""),
    "unsigned CBOR": (cbor2.dumps({"version": 2, "config": {}}), "signature"),
    "payload a JSON text": (b'["version", 1]', "signature"),
    "malformed CBOR": (b"\xa2\x67version\x01", "signature"),
    "malformed JSON": (b'{"version": 2, "config": {', "signature"),
    "NaN in JSON": (b'{"version": 2, "config": {"gate": {"max_open_s": NaN}}}', "signature"),
    "duplicate JSON key": (b'{"version": 2, "version": 2, "config": {}}', "signature"),
    "NaN in CBOR": (desired(2, {"gate": {"max_open_s": float("nan")}}), "gate.max_open_s"),
    "huge integer": (desired(2, {"gate": {"max_open_s": 10**400}}), "gate.max_open_s"),
    "non-text key": (desired(2, {"gate": {1: 2}}), "gate.1"),
    # integers past Python's 4300-digit limit have no text: the paths name them by size
    "key past 4300 digits": (desired(2, {"gate": {10**5000: 2}}), "gate.<an integer of 16610 bits>"),
    "section past 4300 digits": (desired(2, {10**5000: {}}), "<an integer of 16610 bits>"),
    "top-level key past 4300 digits": (
        signed_body({"version": 2, "config": {}, 10**5000: 1}), "<an integer of 16610 bits>"
    ),
    "keys that disagree": (desired(2, {"gate": {"pulse_ms": 9000, "max_open_s": 2}}), "gate.pulse_ms"),
    "device id": (desired(2, {"device": {"id": "sentry-2"}}), "device.id"),
    "site": (desired(2, {"device": {"site": "elsewhere"}}), "device.site"),
    "state dir": (desired(2, {"device": {"state_dir": "/tmp/x"}}), "device.state_dir"),
    "venue": (desired(2, {"device": {"venue": "elsewhere"}}), "device.venue"),
    "entrance": (desired(2, {"device": {"entrance": "back-door"}}), "device.entrance"),
    "venue name": (desired(2, {"device": {"venue_name": "Not Here"}}), "device.venue_name"),
    "fail mode": (desired(2, {"gate": {"fail_mode": "safe"}}), "gate.fail_mode"),
    "skew over 300 s": (desired(2, {"es1": {"skew_s": 301}}), "es1.skew_s"),
    "max age over 600 s": (desired(2, {"es1": {"max_age_s": 601}}), "es1.max_age_s"),
    "passback under 5 s": (desired(2, {"gate": {"passback_s": 4}}), "gate.passback_s"),
    "passback off": (desired(2, {"gate": {"passback_s": 0}}), "gate.passback_s"),
    "a status the local file refuses": (desired(2, {"es1": {"accept_status": [0, 2]}}), "es1.accept_status"),
    "broker host": (desired(2, {"mqtt": {"host": "evil.example"}}), "mqtt.host"),
    "wiring": (desired(2, {"gpio": {"relay": 4}}), "gpio.relay"),
    "root key": (desired(2, {"trust": {"root_key": "/tmp/other.pem"}}), "trust.root_key"),
    "snapshot opt-in": (desired(2, {"privacy": {"allow_snapshot": True}}), "privacy.allow_snapshot"),
    "camera source": (desired(2, {"camera": {"source": "replay", "path": "/x"}}), "camera.source"),
    "secret, even the right one": (desired(2, {"mqtt": {"password": SECRET}}), "mqtt.password"),
    "control freshness": (desired(2, {"control": {"skew_s": 3600}}), "control.skew_s"),
    "operator key path": (desired(2, {"fleet": {"operator_key": "/tmp/k.pem"}}), "fleet.operator_key"),
}


@pytest.mark.parametrize("payload, path", BAD_DOCUMENTS.values(), ids=BAD_DOCUMENTS.keys())
def test_a_bad_document_is_rejected_by_key_path_and_changes_nothing(
    shadow: ConfigShadow, state: Path, payload: bytes, path: str
):
    shadow.handle(DEVICE, desired(1, {"gate": {"pulse_ms": 700}}))
    kept = (state / STORE_FILE).read_bytes()
    seen = Recorder()
    shadow.add_listener(seen)
    applied = shadow.current
    report = shadow.handle(DEVICE, payload)
    assert report is not None and report["status"] == "rejected"
    assert path in error_paths(report), report["errors"]
    assert all(isinstance(e["message"], str) and e["message"] for e in report["errors"])
    assert report["effective"]["gate"]["pulse_ms"] == 700  # what is still running
    assert shadow.current is applied and shadow.version == 1
    assert seen.configs == []
    assert (state / STORE_FILE).read_bytes() == kept  # not one byte written


def test_remote_values_at_the_bounds_are_applied(state: Path, make_shadow):
    shadow = make_shadow(local_config(state, es1={"accept_status": [0, 1]}))
    within = {"es1": {"skew_s": 300, "max_age_s": 600, "accept_status": [1]}, "gate": {"passback_s": 5}}
    report = shadow.handle(DEVICE, desired(2**32, within))  # the largest leap from nothing applied
    assert report is not None and report["status"] == "applied", report["errors"]
    es1 = shadow.current.es1
    assert (es1.skew_s, es1.max_age_s, es1.accept_status) == (300, 600, [1])
    assert shadow.current.gate.passback_s == 5


def test_a_version_that_leaps_to_the_top_of_the_range_is_refused_and_the_next_push_still_lands(
    shadow: ConfigShadow, state: Path
):
    """A version near 2^53 would leave no room for any later push: a leap of more than 2^32 above the
    applied version is refused like any other control refusal, and changes nothing."""
    shadow.handle(DEVICE, desired(5, {"gate": {"pulse_ms": 700}}))
    kept = (state / STORE_FILE).read_bytes()
    report = shadow.handle(DEVICE, desired(2**53 - 1, {"gate": {"pulse_ms": 900}}))
    assert report is not None and report["status"] == "rejected"
    assert error_paths(report) == {"signature"} and "version" in report["errors"][0]["message"]
    assert shadow.version == 5 and shadow.current.gate.pulse_ms == 700
    assert (state / STORE_FILE).read_bytes() == kept
    report = shadow.handle(DEVICE, desired(6, {"gate": {"pulse_ms": 800}}))
    assert report is not None and report["status"] == "applied" and shadow.current.gate.pulse_ms == 800


def test_a_local_value_beyond_the_remote_bounds_may_be_pushed_back_unchanged(state: Path, make_shadow):
    """The bounds limit what a push changes; a full config dump carries the installer's own values."""
    local = local_config(state, es1={"skew_s": 900}, gate={"passback_s": 0, "fail_mode": "safe"})
    shadow = make_shadow(local)
    dump = {"es1": {"skew_s": 900}, "gate": {"passback_s": 0, "fail_mode": "safe", "pulse_ms": 800}}
    report = shadow.handle(DEVICE, desired(1, dump))
    assert report is not None and report["status"] == "applied", report["errors"]
    assert shadow.handle(DEVICE, desired(2, {"es1": {"skew_s": 800}}))["status"] == "rejected"


def test_the_site_document_is_held_to_the_same_rules(shadow: ConfigShadow, state: Path):
    shadow.handle(SITE, desired(1, {"gate": {"pulse_ms": 700}}, SITE))
    kept = (state / STORE_FILE).read_bytes()
    applied = shadow.current
    for payload, path in [
        (desired(2**53, {"gate": {"pulse_ms": 600}}, SITE), "signature"),  # refused before it is read
        (desired(2, {"es1": {"skew_s": 3600}}, SITE), "es1.skew_s"),
        (desired(2, {"gate": {"fail_mode": "safe"}}, SITE), "gate.fail_mode"),
        (desired(2, {"device": {"venue": "elsewhere"}}, SITE), "device.venue"),
    ]:
        report = shadow.handle(SITE, payload)
        assert report is not None and report["status"] == "rejected"
        assert path in error_paths(report), report["errors"]
    assert shadow.current is applied and shadow.site_version == 1
    assert (state / STORE_FILE).read_bytes() == kept


def test_a_site_value_beyond_the_bounds_is_harmless_under_a_device_override(shadow: ConfigShadow):
    """The merged value is what runs: a device document that brings it back within bounds wins."""
    shadow.handle(DEVICE, desired(1, {"es1": {"skew_s": 60}}))
    report = shadow.handle(SITE, desired(1, {"es1": {"skew_s": 3000}}, SITE))
    assert report is not None and report["status"] == "applied"
    assert shadow.current.es1.skew_s == 60


def test_what_a_push_can_never_change_is_listed_as_local() -> None:
    for path in ("device.id", "device.site", "device.venue", "device.entrance", "gate.fail_mode",
                 "control.skew_s", "control.max_deadline_s", "trust.root_key", "trust.file",
                 "privacy.authority_key", "outbox.path", "mqtt.host", "mqtt.ca"):  # fmt: skip
        assert desired_rules.matches(path, desired_rules.LOCAL_ONLY), path
    for path in ("es1.skew_s", "gate.passback_s", "dcc.products", "trust.max_age_h"):
        assert not desired_rules.matches(path, desired_rules.LOCAL_ONLY), path


def test_an_oversized_document_is_rejected_before_it_is_read(state: Path, make_shadow):
    shadow = make_shadow(local_config(state), max_bytes=1024)
    report = shadow.handle(DEVICE, desired(1, {"device": {"venue_name": "x" * 2000}}))
    assert report is not None and report["status"] == "rejected"
    assert "over the 1024-byte limit" in report["errors"][0]["message"]
    assert shadow.version == 0


def test_every_problem_of_a_document_is_listed(shadow: ConfigShadow):
    report = shadow.handle(
        DEVICE, desired(1, {"gate": {"pulse_ms": "x", "fail_mode": "open"}, "device": {"id": "y"}})
    )
    assert report is not None
    assert error_paths(report) == {"gate.pulse_ms", "gate.fail_mode", "device.id"}


def test_the_rejected_report_names_the_candidate_versions(shadow: ConfigShadow):
    shadow.handle(SITE, desired(4, {}, source=SITE))
    report = shadow.handle(DEVICE, desired(9, {"gate": {"pulse_ms": "x"}}))
    assert report is not None and (report["site_version"], report["version"]) == (4, 9)
    unreadable = shadow.handle(DEVICE, b"\xff\xff")
    assert unreadable is not None and unreadable["version"] is None
    assert unreadable["site_version"] == 4


def test_a_rejected_version_may_be_retried_once_fixed(shadow: ConfigShadow):
    assert shadow.handle(DEVICE, desired(2, {"gate": {"pulse_ms": "x"}}))["status"] == "rejected"
    assert shadow.handle(DEVICE, desired(2, {"gate": {"pulse_ms": 600}}))["status"] == "applied"


def test_a_site_document_that_conflicts_with_the_device_one_is_rejected(shadow: ConfigShadow):
    shadow.handle(DEVICE, desired(1, {"gate": {"pulse_ms": 4000}}))
    report = shadow.handle(SITE, desired(1, {"gate": {"max_open_s": 2}}, source=SITE))
    assert report is not None and report["status"] == "rejected"
    assert "gate.pulse_ms" in error_paths(report)
    assert shadow.site_version == 0 and shadow.current.gate.max_open_s == 10.0


def test_local_only_keys_equal_to_the_local_values_are_accepted(shadow: ConfigShadow, state: Path):
    dump = {"device": {"id": "sentry-1", "site": "s1"}, "mqtt": {"host": "broker.example"},
            "gate": {"pulse_ms": 800}}  # fmt: skip
    report = shadow.handle(DEVICE, desired(1, dump))
    assert report is not None and report["status"] == "applied"
    kept = shadow.store.applied_config()
    assert kept is not None and kept["device"]["config"] == {"gate": {"pulse_ms": 800}}


def test_a_section_missing_locally_cannot_be_added(state: Path, make_shadow):
    no_broker = from_mapping({"device": {"state_dir": str(state)}})
    shadow = make_shadow(no_broker)
    report = shadow.handle(DEVICE, desired(1, {"mqtt": {"batch_size": 10}}, device=no_broker))
    assert report is not None and report["status"] == "rejected"
    assert "mqtt" in error_paths(report)


def test_broker_tuning_that_cannot_strand_the_device_is_allowed(shadow: ConfigShadow):
    report = shadow.handle(DEVICE, desired(1, {"mqtt": {"batch_size": 10, "backoff_max_s": 30}}))
    assert report is not None and report["status"] == "applied"
    assert shadow.current.mqtt is not None and shadow.current.mqtt.batch_size == 10
    assert shadow.current.mqtt.host == "broker.example"


# -- reporting ----------------------------------------------------------------------------------


def test_secrets_are_never_echoed(shadow: ConfigShadow):
    for report in (
        shadow.handle(DEVICE, desired(1, {"gate": {"pulse_ms": 700}})),
        shadow.handle(DEVICE, desired(2, {"mqtt": {"password": "guess"}})),
        shadow.report(),
    ):
        assert report is not None
        assert report["effective"]["mqtt"]["password"] == desired_rules.SECRET_MARK
        assert SECRET.encode() not in cbor2.dumps(report)
        assert b"guess" not in cbor2.dumps(report)


def test_keys_that_need_a_restart_are_reported_and_live_ones_are_not(shadow: ConfigShadow):
    report = shadow.handle(DEVICE, desired(1, {"gate": {"pulse_ms": 700}, "es1": {"max_age_s": 30}}))
    assert report is not None and report["restart"] == ["gate.pulse_ms"]
    # back to the started value: nothing waits for a restart any more
    report = shadow.handle(DEVICE, desired(2, {"es1": {"max_age_s": 30}}))
    assert report is not None and report["restart"] == []


def test_the_report_is_cbor_encodable_and_carries_the_contract_keys(shadow: ConfigShadow):
    report = shadow.handle(DEVICE, desired(1, {"gate": {"pulse_ms": 700}}))
    assert report is not None
    assert {"version", "status", "errors", "effective"} <= report.keys()
    assert cbor2.loads(cbor2.dumps(report)) == report


def test_a_failing_listener_does_not_undo_the_apply(shadow: ConfigShadow):
    def broken(_config: Config) -> None:
        raise RuntimeError("listener bug")

    seen = Recorder()
    shadow.add_listener(broken)
    shadow.add_listener(seen)
    report = shadow.handle(DEVICE, desired(1, {"gate": {"pulse_ms": 700}}))
    assert report is not None and report["status"] == "applied"
    assert len(seen.configs) == 1


# -- persistence --------------------------------------------------------------------------------


def test_a_restart_finds_the_applied_config(state: Path, make_shadow):
    first = make_shadow(local_config(state))
    first.handle(SITE, desired(2, {"gate": {"passback_s": 12}}, source=SITE))
    first.handle(DEVICE, desired(5, {"gate": {"pulse_ms": 700}}))
    again = make_shadow(local_config(state))
    assert again.current == first.current
    assert (again.site_version, again.version) == (2, 5)
    assert again.report()["status"] == "applied"
    # the retained documents redelivered at connect are already applied
    assert again.handle(DEVICE, desired(5, {"gate": {"pulse_ms": 700}})) is None
    assert again.pending_restart() == []


def test_the_state_store_never_holds_a_secret(state: Path, make_shadow):
    shadow = make_shadow(local_config(state))
    shadow.handle(DEVICE, desired(1, {"gate": {"pulse_ms": 700}}))
    data = (state / STORE_FILE).read_bytes()
    assert SECRET.encode() not in data
    assert not list(state.glob(".*.tmp"))


CORRUPT = {
    # as an older sentry may have left its config.json: warned about by name, never moved in
    "garbage": (b"{not json", "config.json"),
    "array": (b"[]", "config.json"),
    "not utf-8": (b"\xff\xfe", "config.json"),
    # readable, but not a kept config: moved in, then refused by the shadow, naming the store
    "other format": (b'{"format": 99}', STORE_FILE),
    "missing parts": (b'{"format": 1, "site": {"version": 1}}', STORE_FILE),
}


@pytest.mark.parametrize("content, named", CORRUPT.values(), ids=CORRUPT.keys())
def test_a_corrupt_kept_config_is_ignored_with_a_warning(
    state: Path, content: bytes, named: str, caplog, make_shadow: Callable[..., ConfigShadow]
):
    state.mkdir(parents=True)
    (state / "config.json").write_bytes(content)
    with caplog.at_level(logging.WARNING):
        shadow = make_shadow(local_config(state))
    assert shadow.current == local_config(state) and shadow.version == 0
    assert any(named in r.getMessage() for r in caplog.records)
    # and the retained document then applies again
    assert shadow.handle(DEVICE, desired(1, {"gate": {"pulse_ms": 700}}))["status"] == "applied"


def test_a_config_applied_for_one_identity_is_not_applied_to_another(
    state: Path, make_shadow: Callable[..., ConfigShadow]
):
    gate = local_config(state, device={"site": "site", "id": "gate-1"})
    demo = local_config(state, device={"site": "site", "id": "demo"})
    make_shadow(gate).handle(DEVICE, desired(3, {"gate": {"pulse_ms": 700}}, device=gate))
    as_demo = make_shadow(demo)
    assert as_demo.current == demo and as_demo.version == 0
    as_demo.handle(DEVICE, desired(1, {"gate": {"pulse_ms": 900}}, device=demo))
    back = make_shadow(gate)
    assert back.version == 3 and back.current.gate.pulse_ms == 700


def test_a_kept_config_that_no_longer_fits_the_local_one_is_ignored(state: Path, make_shadow):
    make_shadow(local_config(state)).handle(DEVICE, desired(1, {"gate": {"pulse_ms": 4000}}))
    tighter = local_config(state, gate={"max_open_s": 2.0, "pulse_ms": 500})
    shadow = make_shadow(tighter)
    assert shadow.current == tighter and shadow.version == 0


def test_a_kept_config_is_validated_over_the_local_config_of_today(state: Path, make_shadow):
    make_shadow(local_config(state)).handle(DEVICE, desired(1, {"gate": {"pulse_ms": 700}}))
    edited = local_config(state, gate={"passback_s": 99})
    shadow = make_shadow(edited)
    assert (shadow.current.gate.pulse_ms, shadow.current.gate.passback_s) == (700, 99)


def test_an_unwritable_state_folder_still_applies_and_says_so(
    tmp_path: Path, make_shadow: Callable[..., ConfigShadow]
):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the folder should be")
    shadow = make_shadow(local_config(blocker))
    report = shadow.handle(DEVICE, desired(1, {"gate": {"pulse_ms": 700}}))
    assert report is not None and report["status"] == "applied"
    assert report["warnings"] and shadow.current.gate.pulse_ms == 700


# -- helpers ------------------------------------------------------------------------------------


def test_merge_is_key_by_key_within_sections():
    merged = desired_rules.merge({"gate": {"a": 1, "b": 2}, "es1": {"c": [1]}}, {"gate": {"b": 3}, "x": {}})
    assert merged == {"gate": {"a": 1, "b": 3}, "es1": {"c": [1]}, "x": {}}
