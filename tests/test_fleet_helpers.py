"""The fleet tools' pure parts (no broker): topics and client ids, the retained snapshot and its
table, desired-config files and versions, the outcome watches and exit codes, command arguments,
the tail's lines; and the usage errors that stop a command before it connects."""

from __future__ import annotations

import argparse
import base64
import json
import unicodedata
from pathlib import Path
from typing import Any

import cbor2
import pytest
from broker import free_port

from edge_sentry.codes import control, keys
from edge_sentry.config import Config, from_mapping
from edge_sentry.errors import ArgError, FleetError, TopicError, UsageError
from edge_sentry.fleet import command_request as cmd
from edge_sentry.fleet import push, status, tail
from edge_sentry.fleet.client import (
    Message,
    check_device,
    device_topic,
    operator_client_id,
    site_filter,
    split_topic,
)

SITE = "arena"
NOW_MS = 1_795_000_000_000


def msg(device: str, kind: str, body: Any, *, raw: bytes | None = None) -> Message:
    payload = raw if raw is not None else cbor2.dumps(body)
    return Message(f"sentry/v1/{SITE}/{device}/{kind}", payload, retain=True, content_type="application/cbor")


# -- topics and ids ------------------------------------------------------------------------------


def test_operator_client_ids_are_fleet_prefixed_random_and_safe():
    first, second = operator_client_id("ops team/1"), operator_client_id("ops team/1")
    assert first.startswith("fleet-ops_team_1-") and first != second
    assert all(c.isalnum() or c in "-_." for c in first)
    assert operator_client_id(None).startswith("fleet-")


def test_site_topics_are_built_and_read_back():
    assert site_filter(SITE, "state") == "sentry/v1/arena/+/state"
    assert site_filter(SITE, "scan", "gate-1") == "sentry/v1/arena/gate-1/scan"
    assert device_topic(SITE, "all", "config/desired") == "sentry/v1/arena/all/config/desired"
    assert split_topic(SITE, "sentry/v1/arena/gate-1/config/reported") == ("gate-1", "config/reported")
    assert split_topic(SITE, "sentry/v1/other/gate-1/state") is None
    assert split_topic(SITE, "sentry/v1/arena/gate-1") is None


def test_wildcards_in_ids_and_the_site_wide_slot_are_refused():
    with pytest.raises(TopicError):
        site_filter("arena/#", "state")
    with pytest.raises(TopicError):
        check_device("gate+")
    with pytest.raises(FleetError):
        check_device("all")


# -- the snapshot and the table ------------------------------------------------------------------


def test_a_snapshot_keeps_the_latest_retained_documents_per_sentry():
    snap = status.Snapshot(SITE)
    snap.feed(msg("gate-1", "state", {"online": True, "firmware": "1.2", "config_version": 4,
                                      "site_config_version": 2, "trust_version": 9, "t": NOW_MS - 5000}))
    snap.feed(msg("gate-1", "health", {"t": NOW_MS - 1000, "outbox": {"depth": 3, "oldest_age_s": 75.0},
                                       "link": "connected", "gate": "fault"}))
    snap.feed(msg("gate-1", "config/reported", {"version": 5, "site_version": 2, "status": "rejected",
                                                "errors": [{"path": "gate.pulse_ms", "message": "too low"}]}))
    snap.feed(msg("all", "config/desired", {"version": 1, "config": {}}))
    (row,) = snap.rows()
    assert row["device"] == "gate-1" and row["online"] is True and row["last_seen"] == NOW_MS - 1000
    assert (row["config_version"], row["site_config_version"], row["trust_version"]) == (4, 2, 9)
    assert row["config_status"] == "rejected"
    assert row["config_errors"] == [{"path": "gate.pulse_ms", "message": "too low"}]
    assert (row["outbox_depth"], row["outbox_oldest_age_s"], row["alarms"]) == (3, 75.0, ["gate-fault"])
    assert row["cpu_temp_c"] is None and row["throttled"] is None  # not reported: not made up
    assert set(row) == set(status.ROW_KEYS)
    assert snap.devices["gate-1"].versions("device") == [4, 5]
    assert snap.devices["gate-1"].versions("site") == [2, 2]


def test_a_cleared_retained_message_forgets_it_and_an_unreadable_one_is_named_not_quoted():
    snap = status.Snapshot(SITE)
    snap.feed(msg("gate-1", "health", {"t": 1}))
    snap.feed(msg("gate-1", "health", None, raw=b""))
    snap.feed(msg("gate-2", "state", None, raw=b"\xa1\x63abc"))  # truncated CBOR
    assert snap.devices["gate-1"].health is None
    assert "gate-2" not in snap.devices
    (problem,) = snap.problems
    assert problem.startswith("sentry/v1/arena/gate-2/state: malformed CBOR")


def test_the_table_shows_dashes_for_what_a_sentry_did_not_say():
    snap = status.Snapshot(SITE)
    snap.feed(msg("gate-7", "state", {"online": False, "reason": "lost"}))
    text = status.table(snap.rows(), now=NOW_MS / 1000)
    header, line = text.splitlines()
    assert header.startswith("DEVICE  ONLINE")
    assert line.split() == ["gate-7", "NO", "(lost)", "-", "-", "-", "-", "-", "-", "-", "-", "-"]


@pytest.mark.parametrize(("seconds", "shown"), [(0, "0s"), (59.9, "59s"), (60, "1m"), (7200, "2h"),
                                                (172800, "2d"), (-3, "0s")])
def test_ages_are_shown_in_the_largest_whole_unit(seconds, shown):
    assert status.age(seconds) == shown


# -- desired-config files and versions -----------------------------------------------------------


def test_toml_and_json_files_give_sections(tmp_path: Path):
    toml = tmp_path / "c.toml"
    toml.write_text('[gate]\npulse_ms = 700\n[es1]\naccept_status = [0, 1]\n')
    assert push.load_desired(toml) == ({"gate": {"pulse_ms": 700}, "es1": {"accept_status": [0, 1]}}, None)
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps({"version": 12, "config": {"log": {"level": "debug"}}}))
    assert push.load_desired(doc) == ({"log": {"level": "debug"}}, 12)


@pytest.mark.parametrize(("text", "fragment"), [
    ("[gate\n", "not valid TOML"),
    ('{"gate": ', "not valid JSON"),
    ("", "at least one [section]"),
    ("pulse_ms = 700\n", "pulse_ms: must be a section of keys"),
    ("[trust]\nissued = 2026-11-26T00:00:00Z\n", "trust.issued: must be text, a number"),
    ("[gate.deeper]\nx = 1\n", "gate.deeper: must be text"),
    ('{"version": 9007199254740992, "config": {"gate": {"pulse_ms": 7}}}', "version must be a whole"),
])
def test_a_file_that_cannot_be_a_desired_config_is_refused_by_name(tmp_path: Path, text: str, fragment: str):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as err:
        push.load_desired(path)
    assert str(err.value).startswith(str(path)) and fragment in str(err.value)


def test_a_missing_file_is_named(tmp_path: Path):
    with pytest.raises(UsageError, match=r"nothing\.toml: cannot read"):
        push.load_desired(tmp_path / "nothing.toml")


def test_the_next_version_is_one_above_every_known_one():
    assert push.next_version([]) == 1
    assert push.next_version([3, 9, 4]) == 10


# -- watches and exit codes ----------------------------------------------------------------------


def test_a_config_watch_takes_only_reports_of_its_version_and_source():
    watch = push.ConfigWatch(["gate-1", "gate-2"], 4, push.SITE)
    watch.see("gate-1", "config/reported", {"version": 4, "site_version": 3, "status": "applied"})
    watch.see("gate-3", "config/reported", {"version": 0, "site_version": 4, "status": "applied"})
    assert watch.pending() == ["gate-1", "gate-2"]
    watch.see("gate-1", "config/reported", {"version": 0, "site_version": 4, "status": "applied",
                                            "restart": ["camera.fps"]})
    watch.see("gate-2", "config/reported", {"version": 2, "site_version": 4, "status": "rejected",
                                            "errors": [{"path": "gate.pulse_ms", "message": "too low"}]})
    one, two = watch.finish([], 5)
    assert (one.status, one.restart) == ("applied", ["camera.fps"])
    assert (two.status, two.errors) == ("rejected", [("gate.pulse_ms", "too low")])
    assert push.describe(two) == ["gate-2: rejected (version 4)", "  gate.pulse_ms: too low"]
    assert push.describe(one)[1] == "  takes effect after a restart: camera.fps"


def test_a_trust_watch_hears_the_state_or_the_events():
    watch = push.TrustWatch(["a", "b", "c", "d"], 8)
    watch.see("a", "state", {"online": True, "trust_version": 8})
    watch.see("b", "event", {"event": "trust-updated", "version": 8, "previous": 3})
    watch.see("c", "event", {"event": "trust-rejected", "reason": "bad-signature", "version": None,
                             "detail": "not signed by the trust-root key", "current": 3})
    watch.see("d", "state", {"online": True, "trust_version": 3})
    outcomes = watch.finish(["d"], 5)
    assert [o.status for o in outcomes] == ["accepted", "accepted", "rejected", "offline"]
    assert outcomes[2].detail == "bad-signature: not signed by the trust-root key; keeps version 3"


@pytest.mark.parametrize(("statuses", "code"), [
    (["applied", "accepted"], 0),
    (["applied", "rejected", "no-answer"], 1),
    (["applied", "offline"], 3),
    (["no-answer"], 3),
    ([], 0),
])
def test_exit_status_puts_a_rejection_before_a_missing_answer(statuses, code):
    assert push.exit_status([push.Outcome("d", s) for s in statuses]) == code


# -- commands ------------------------------------------------------------------------------------


def test_command_arguments_are_json_when_they_can_be_and_text_otherwise():
    parsed = cmd.parse_args(['parts=["camera","clock"]', "n=3", "on=true", "note=hi there", 'id="3"', "e="])
    assert parsed == {
        "parts": ["camera", "clock"], "n": 3, "on": True, "note": "hi there", "id": "3", "e": ""
    }


@pytest.mark.parametrize("bad", ["novalue", "=3", " =3"])
def test_an_argument_without_a_key_is_refused(bad):
    with pytest.raises(ArgError, match="must be KEY=VALUE"):
        cmd.parse_args([bad])


def test_an_argument_given_twice_is_refused():
    with pytest.raises(ArgError, match="given twice"):
        cmd.parse_args(["a=1", "a=2"])


def test_a_request_carries_its_deadline_in_ms_and_args_only_when_given():
    assert cmd.request(1234.9, {}) == {"deadline": 1234}
    assert cmd.request(5, {"parts": ["clock"]}) == {"deadline": 5, "args": {"parts": ["clock"]}}


def test_each_call_gets_its_own_response_topic_under_the_sentry():
    first, second = cmd.response_topic(SITE, "gate-1"), cmd.response_topic(SITE, "gate-1")
    assert first.startswith("sentry/v1/arena/gate-1/reply/") and first != second
    assert cmd.request_topic(SITE, "gate-1", "pulse-gate") == "sentry/v1/arena/gate-1/cmd/pulse-gate"
    with pytest.raises(TopicError):
        cmd.request_topic(SITE, "gate-1", "a/b")


def test_a_snapshot_answer_prints_its_image_as_base64():
    shown = cmd.printable({"status": "ok", "result": {"image": b"\xff\xd8", "parts": [b"\x00"]}})
    image = base64.b64encode(b"\xff\xd8").decode()
    assert shown == {"status": "ok", "result": {"image": image, "parts": ["AA=="]}}
    json.dumps(shown)


# -- tail ----------------------------------------------------------------------------------------

SEALED = {"v": 1, "kid": b"\x01" * 8, "enc": b"\xab" * 32, "ct": b"\xcd" * 40}


def test_a_scan_batch_becomes_one_event_per_scan_with_its_device():
    batch = [
        {"id": "e1", "event": "scan", "t": NOW_MS, "verdict": "accept", "reason": "ok", "subject": SEALED},
        {"id": "e2", "event": "scan", "t": NOW_MS, "verdict": "deny", "reason": "stale", "device": "x"},
    ]
    events, problem = tail.events_of(msg("gate-1", "scan", batch[:1]), SITE)
    assert problem is None
    assert [(e["id"], e["site"], e["device"]) for e in events] == [("e1", SITE, "gate-1")]


def test_an_event_is_labelled_by_its_topic_whatever_its_payload_claims():
    """The ACL vouches for the topic, nothing for the payload: a copied card cannot speak for others."""
    batch = [
        {"id": "e1", "event": "scan", "t": NOW_MS, "verdict": "accept", "reason": "ok", "device": "gate-1"},
        {"id": "e2", "event": "scan", "t": NOW_MS, "verdict": "deny", "reason": "stale", "device": "x"},
        {"id": "e3", "event": "scan", "t": NOW_MS, "verdict": "accept", "reason": "ok", "site": "elsewhere"},
    ]
    events, problem = tail.events_of(msg("gate-1", "scan", batch), SITE)
    assert [(e["id"], e["site"], e["device"]) for e in events] == [
        ("e1", SITE, "gate-1"), ("e2", SITE, "gate-1"), ("e3", SITE, "gate-1")
    ]
    assert problem == "2 events from gate-1 name another site or device; shown as gate-1's"


def test_an_unreadable_message_is_reported_without_its_content():
    events, problem = tail.events_of(msg("gate-1", "scan", {"not": "an array"}), SITE)
    assert events == []
    assert problem == "unreadable scan message from gate-1: payload must be an array, not a map"
    events, problem = tail.events_of(msg("gate-1", "scan", [{"id": "e1"}, 7]), SITE)
    assert [e["id"] for e in events] == ["e1"] and "1 entries" in (problem or "")
    assert tail.events_of(msg("gate-1", "health", {"t": 1}), SITE) == ([], None)


def test_lines_say_a_subject_is_sealed_and_never_show_it():
    event = {"id": "e1", "event": "scan", "t": NOW_MS, "device": "gate-1", "verdict": "accept",
             "reason": "ok", "mode": "scan", "latency_ms": 8.25, "subject": SEALED}
    human = tail.human_line(event)
    assert human.startswith("gate-1  ") and "ACCEPT" in human and human.endswith("subject=sealed")
    as_json = json.loads(tail.json_line(event))
    assert as_json["subject"] == "sealed" and as_json["id"] == "e1"
    for line in (human, tail.json_line(event)):
        assert "abab" not in line and "cdcd" not in line and "q6ur" not in line


ESC = "\x1b]0;owned\x07\x1b[2J\x1b[31m"  # retitle the window, clear the screen, turn red
HOSTILE_BATCH = [
    {"id": "e1", "event": "scan", "t": 1e300, "verdict": "accept", "reason": "ok"},
    {"id": "e2", "event": "scan", "t": NOW_MS, "verdict": 7, "reason": ["x"]},
    {"id": "e3" + ESC, "event": "scan" + ESC, "t": NOW_MS, "verdict": "deny" + ESC, "reason": ESC,
     "mode": "\u202eevil", "scheme": ESC, "issuer": "a\nb\rc\x85", "cause": ESC, "device": "gate-9" + ESC},
    {"id": "e4", "event": "scan", "t": 2**20000, "verdict": "deny", "mode": -(2**20000),
     "latency_ms": float("nan"), "open_s": float("inf"), "x": {"k\x1b": [2**20000, b"\x1b"]}},
    {"id": "e5", "event": None, "t": -5, "verdict": None, "latency_ms": True},
    {"id": "e6", "event": "scan", "t": NOW_MS, "verdict": "accept", "reason": "ok", "mode": "scan"},
]


def unsafe(text: str) -> list[str]:
    return [ch for ch in text if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")]


def test_a_hostile_batch_prints_safely_line_by_line_and_the_good_event_as_always():
    payload = cbor2.dumps(HOSTILE_BATCH)
    events, problem = tail.events_of(msg("gate-1", "scan", None, raw=payload), SITE)
    assert [str(e["id"])[:2] for e in events] == ["e1", "e2", "e3", "e4", "e5", "e6"]
    assert problem == "1 events from gate-1 name another site or device; shown as gate-1's"
    human = [tail.human_line(event) for event in events]
    as_json = [tail.json_line(event) for event in events]
    for line in human + as_json:
        assert unsafe(line) == [], line
    assert human[0].startswith("gate-1  --:--:-- scan") and "ACCEPT" in human[0]
    assert "7 " in human[1] and "['x']" in human[1]
    assert human[2].startswith("gate-1  ") and "gate-9" not in human[2]  # labelled by its topic
    assert "\\x1b[2J" in human[2] and "mode=\\u202eevil" in human[2]
    assert "issuer=a\\x0ab\\x0dc\\x85" in human[2]
    assert "mode=an integer of 20001 bits" in human[3] and "latency" not in human[3]
    assert human[4].startswith("gate-1  --:--:-- None") and "latency=1.0ms" in human[4]
    assert human[5] == tail.human_line(dict(HOSTILE_BATCH[5], device="gate-1"))
    assert " ACCEPT ok " in human[5] and "--:--:--" not in human[5]
    parsed = [json.loads(line) for line in as_json]  # every line is valid JSON
    assert parsed[0]["t"] == 1e300 and parsed[1]["verdict"] == 7
    assert parsed[2]["reason"] == ESC  # JSON's own escapes carry the text as sent
    assert parsed[3]["t"] == "an integer of 20001 bits" and parsed[3]["latency_ms"] == "nan"
    assert parsed[3]["x"] == {"k\x1b": ["an integer of 20001 bits", "1b"]}


def test_a_problem_line_escapes_what_the_topic_or_the_error_carries():
    hostile = msg("gate\x1b[2J", "scan", {"not": "an array"})
    events, problem = tail.events_of(hostile, SITE)
    assert events == [] and problem is not None and unsafe(problem) == [] and "gate\\x1b[2J" in problem


# -- usage errors stop before any connection -----------------------------------------------------


def fleet(argv: list[str], config: Config) -> int:
    from edge_sentry.cli import fleet as fleet_command

    parser = argparse.ArgumentParser(prog="edge-sentry")
    sub = parser.add_subparsers(dest="command", required=True)
    fleet_command.register(sub)
    args = parser.parse_args(["fleet", *argv])
    return args.func(args, config)


@pytest.fixture
def nowhere(tmp_path: Path) -> Config:
    """A broker that is not there: a command that reached the network would exit 4, not 2. The
    operator key is a real one, so each usage error is the one a test is after."""
    key = tmp_path / "operator.key.pem"
    keys.save_private_key(keys.generate(), key)
    return from_mapping({"device": {"id": "console", "site": SITE, "state_dir": str(tmp_path)},
                         "mqtt": {"host": "127.0.0.1", "port": free_port()},
                         "fleet": {"operator_key": str(key)}})


def usage(capsys: pytest.CaptureFixture[str], prefix: str, fragment: str) -> None:
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith(prefix) and fragment in captured.err


def test_no_mqtt_section_is_a_usage_error(capsys):
    assert fleet(["status"], Config()) == 2
    usage(capsys, "edge-sentry fleet status: ", "no [mqtt] section")


def test_a_push_without_a_target_is_a_usage_error(nowhere, tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[gate]\npulse_ms = 700\n")
    assert fleet(["push-config", str(path)], nowhere) == 2
    usage(capsys, "edge-sentry fleet push-config: ", "give --device ID")


def test_a_bad_config_file_is_a_usage_error(nowhere, tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[gate\n")
    assert fleet(["push-config", str(path), "--device", "gate-1"], nowhere) == 2
    usage(capsys, "edge-sentry fleet push-config: ", "not valid TOML")


def test_a_bad_trust_list_or_root_key_is_a_usage_error(nowhere, tmp_path, capsys):
    trust = tmp_path / "trust.json"
    trust.write_text('{"version": 2}')
    assert fleet(["push-trust", str(trust), "--root-key", str(tmp_path / "none.pem"), "--site", SITE],
                 nowhere) == 2
    usage(capsys, "edge-sentry fleet push-trust: ", "trust.json")
    trust.write_text(json.dumps({"version": 2, "issued": "2026-11-26T00:00:00Z", "keys": [],
                                 "revoked": {"kids": [], "subs": []}}))
    assert fleet(["push-trust", str(trust), "--root-key", str(tmp_path / "none.pem"), "--site", SITE],
                 nowhere) == 2
    usage(capsys, "edge-sentry fleet push-trust: ", "none.pem: no such key file")


def test_no_operator_key_is_a_usage_error_before_the_broker_is_dialled(tmp_path, capsys):
    unsigned = from_mapping({"device": {"site": SITE}, "mqtt": {"host": "127.0.0.1", "port": free_port()}})
    assert fleet(["command", "pulse-gate", "--device", "gate-1"], unsigned) == 2
    usage(capsys, "edge-sentry fleet command: ", "no operator key")
    (tmp_path / "not-a-key.pem").write_text("hello")
    (tmp_path / "not-a-key.pem").chmod(0o600)  # owner-only, so its content is what is judged
    assert fleet(["command", "pulse-gate", "--device", "gate-1", "--operator-key",
                  str(tmp_path / "not-a-key.pem")], unsigned) == 2
    usage(capsys, "edge-sentry fleet command: ", "not a PEM private key")


def test_signed_body_reads_a_retained_desired_document_without_trusting_it():
    signed = control.sign(keys.generate(), "sentry/v1/arena/gate-1/config/desired",
                          {"version": 4, "config": {}}, iat_ms=1)
    assert push.signed_body(signed) == {"version": 4, "config": {}}
    assert push.signed_body(cbor2.dumps({"version": 4})) is None


def test_a_bad_arg_is_a_usage_error(nowhere, capsys):
    assert fleet(["command", "selftest", "--device", "gate-1", "--arg", "parts"], nowhere) == 2
    usage(capsys, "edge-sentry fleet command: ", "--arg 'parts': must be KEY=VALUE")


def test_a_wildcard_in_a_device_id_is_a_usage_error(nowhere, capsys):
    assert fleet(["tail", "--device", "#"], nowhere) == 2
    usage(capsys, "edge-sentry fleet tail: ", "device id")
