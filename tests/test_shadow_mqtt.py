"""The config shadow over a real broker: retained desired documents (site-wide and the device's own)
are applied or rejected, and the outcome is retained on `config/reported` for the operator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import cbor2
import pytest
from control_helpers import guard, signed_config

from edge_sentry.config import Config
from edge_sentry.link import Link
from edge_sentry.link.shadow import ConfigShadow
from edge_sentry.state import StateStore

WAIT = 20.0


@pytest.fixture
def sentries(broker, open_store) -> Iterator[Callable[[Config], tuple[ConfigShadow, Link]]]:
    """A shadow attached to a started link; stopped at the end, and every retained document the
    test left on the broker cleared, so the next test of the module starts from nothing."""
    made: list[Link] = []

    def make(config: Config) -> tuple[ConfigShadow, Link]:
        shadow = shadow_over(config, open_store(config))
        link = Link(config)
        shadow.attach(link)
        made.append(link)
        link.start()
        assert link.wait_subscribed(WAIT), broker.log_tail()
        return shadow, link

    yield make
    for link in made:
        link.stop(2.0)
    cleaner = broker.subscriber("nothing/at/all")
    try:
        site = f"sentry/v1/{broker.site}"
        for topic in [f"{site}/all/config/desired"] + [
            f"{site}/{d}/config/{k}" for d in broker.devices for k in ("desired", "reported")
        ]:
            cleaner.publish(topic, b"", retain=True)
    finally:
        cleaner.close()


def desired(topic: str, version: int, config: dict[str, Any]) -> bytes:
    """A desired document as an operator's tool sends it: signed for `topic`."""
    return signed_config(topic, version, config)


def push(operator: Any, topic: str, version: int, config: dict[str, Any]) -> None:
    """Publish a signed desired document, retained, as `fleet push-config` does."""
    operator.publish(topic, desired(topic, version, config), retain=True)


def shadow_over(config: Config, store: StateStore) -> ConfigShadow:
    """A shadow whose guard trusts the test operator."""
    return ConfigShadow(config, store, guard=guard(config, store))


def body(message: Any) -> dict[str, Any]:
    return cbor2.loads(message.payload)


def reported(version: int, status: str = "applied") -> Callable[[Any], bool]:
    return lambda m: body(m)["version"] == version and body(m)["status"] == status


def test_a_retained_desired_config_is_applied_and_reported_retained(
    broker, broker_config, subscriber, sentries
):
    config = broker_config()
    prefix = f"sentry/v1/{broker.site}/{config.device.id}"
    operator = subscriber(f"{prefix}/config/reported")
    push(operator, f"{prefix}/config/desired", 3, {"gate": {"pulse_ms": 700}})
    shadow, _ = sentries(config)  # connects after the push: the retained document catches it up
    found = operator.wait_for(f"{prefix}/config/reported", reported(3), WAIT)
    assert found is not None, broker.log_tail()
    assert body(found)["effective"]["gate"]["pulse_ms"] == 700 and body(found)["errors"] == []
    assert shadow.current.gate.pulse_ms == 700
    assert body(found)["effective"]["mqtt"]["password"] == "<set>"
    late = subscriber(f"{prefix}/config/reported")  # the outcome stays on the broker
    assert late.wait_for(f"{prefix}/config/reported", lambda m: m.retain and reported(3)(m), WAIT)


def test_site_wide_defaults_merge_under_the_device_config(broker, broker_config, subscriber, sentries):
    config = broker_config()
    prefix = f"sentry/v1/{broker.site}/{config.device.id}"
    operator = subscriber(f"{prefix}/config/reported")
    site_wide = f"sentry/v1/{broker.site}/all/config/desired"
    push(operator, site_wide, 4, {"gate": {"pulse_ms": 500, "passback_s": 10}})
    push(operator, f"{prefix}/config/desired", 2, {"gate": {"pulse_ms": 700}})
    shadow, _ = sentries(config)
    done = operator.wait_for(
        f"{prefix}/config/reported", lambda m: (body(m)["site_version"], body(m)["version"]) == (4, 2), WAIT
    )
    assert done is not None, broker.log_tail()
    assert body(done)["status"] == "applied"
    assert (shadow.current.gate.pulse_ms, shadow.current.gate.passback_s) == (700, 10)


def refused(broker, broker_config, subscriber, sentries, version: int, document: dict[str, Any], *,
            site_wide: bool = False) -> Any:
    """Publish a signed desired document, retained, for a running sentry (or for its site);
    its `rejected` report, once it is checked that the config in force did not change."""
    config = broker_config()
    prefix = f"sentry/v1/{broker.site}/{config.device.id}"
    operator = subscriber(f"{prefix}/config/reported")
    shadow, _ = sentries(config)
    before = shadow.current
    topic = f"sentry/v1/{broker.site}/all/config/desired" if site_wide else f"{prefix}/config/desired"
    operator.publish(topic, desired(topic, version, document), retain=True)
    found = operator.wait_for(f"{prefix}/config/reported", lambda m: body(m)["status"] == "rejected", WAIT)
    assert found is not None, broker.log_tail()
    assert shadow.current is before and (shadow.version, shadow.site_version) == (0, 0)
    return body(found)


def error_paths(report: dict[str, Any]) -> set[str]:
    return {e["path"] for e in report["errors"]}


def test_a_bad_desired_config_is_rejected_by_key_path_and_nothing_changes(
    broker, broker_config, subscriber, sentries
):
    bad = {"gate": {"pulse_ms": "fast"}, "device": {"id": "other"}}
    report = refused(broker, broker_config, subscriber, sentries, 5, bad)
    assert report["version"] == 5 and error_paths(report) == {"gate.pulse_ms", "device.id"}


def test_who_may_enter_and_how_the_gate_fails_cannot_be_pushed(broker, broker_config, subscriber, sentries):
    """A broker login may tune a sentry, never loosen it: venue, fail mode and the remote bounds stay."""
    loosen = {
        "device": {"venue": "elsewhere", "entrance": "back"},
        "gate": {"fail_mode": "safe", "passback_s": 0},
        "es1": {"skew_s": 3600, "max_age_s": 86400, "accept_status": [0, 1, 2]},
    }
    report = refused(broker, broker_config, subscriber, sentries, 6, loosen)
    assert error_paths(report) == {
        "device.venue", "device.entrance", "gate.fail_mode", "gate.passback_s", "es1.skew_s",
        "es1.max_age_s", "es1.accept_status",
    }  # fmt: skip
    assert report["effective"]["gate"]["fail_mode"] == "secure"


def test_a_site_document_version_beyond_2_53_is_rejected(broker, broker_config, subscriber, sentries):
    report = refused(broker, broker_config, subscriber, sentries, 2**53, {"gate": {"pulse_ms": 600}},
                     site_wide=True)
    assert error_paths(report) == {"signature"}
    assert report["errors"][0]["message"].startswith("version:")


def test_after_a_restart_the_kept_config_is_reported_and_the_retained_one_not_applied_twice(
    broker, broker_config, subscriber, sentries, open_store
):
    config = broker_config()
    prefix = f"sentry/v1/{broker.site}/{config.device.id}"
    operator = subscriber([f"{prefix}/config/reported", f"{prefix}/state"])
    push(operator, f"{prefix}/config/desired", 6, {"es1": {"max_age_s": 45}})
    _, link = sentries(config)
    assert operator.wait_for(f"{prefix}/config/reported", reported(6), WAIT) is not None
    link.stop(2.0)

    again = shadow_over(config, open_store(config))  # a new store on the folder: a restart
    applied: list[Config] = []
    again.add_listener(applied.append)
    assert again.current.es1.max_age_s == 45 and again.version == 6
    link = Link(config)
    again.attach(link)
    link.start()
    try:
        assert link.wait_subscribed(WAIT)
        # the state topic tells the fleet which version runs
        state = operator.wait_for(
            f"{prefix}/state", lambda m: body(m).get("online") and body(m).get("config_version") == 6, WAIT
        )
        assert state is not None
        # a later push proves the redelivered version 6 was handled (in order) without applying
        push(operator, f"{prefix}/config/desired", 7, {"es1": {"max_age_s": 40}})
        assert operator.wait_for(f"{prefix}/config/reported", reported(7), WAIT) is not None
    finally:
        link.stop(2.0)
    assert [c.es1.max_age_s for c in applied] == [40]
