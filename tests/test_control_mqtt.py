"""The signed control plane over a real broker: whoever can publish on a sentry's topics but holds
no operator key of its trust list changes nothing. Each refusal is checked end to end: the answer
(a command's `reason`, or the `signature` error of `config/reported`), the `control-rejected` event,
and that the applied config, the relay's pin history and the trust list stayed as they were."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import cbor2
import pytest
from control_helpers import OPERATOR, guard, operator_entry, operator_trust, signed_command, signed_config
from gate_helpers import Rig, gate_rig
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_sentry.codes import keys
from edge_sentry.config import Config
from edge_sentry.link import Link
from edge_sentry.link.remote_commands import RemoteCommands, builtin_commands
from edge_sentry.link.shadow import ConfigShadow
from edge_sentry.link.topics import Topics
from edge_sentry.link.trustpush import TrustPush
from edge_sentry.state import StateStore

WAIT = 20.0
CONFIG_ONLY = keys.generate()
COMMAND_ONLY = keys.generate()
ELSEWHERE = keys.generate()
STRANGER = keys.generate()
ROOT = keys.generate()


def sentry_trust() -> Any:
    """Version 3: the test operator (both roles, every site), two single-role keys, and one key
    of another site."""
    return operator_trust(
        operator_entry(),
        operator_entry(CONFIG_ONLY, roles=["config"], name="config-only"),
        operator_entry(COMMAND_ONLY, roles=["command"], name="command-only"),
        operator_entry(ELSEWHERE, sites=["elsewhere"], name="elsewhere"),
        version=3,
    )


@dataclass
class Sentry:
    config: Config
    topics: Topics
    rig: Rig
    shadow: ConfigShadow
    push: TrustPush
    link: Link


class Bench:
    """Starts sentries (one link each, stopped at the end) and speaks as an operator."""

    def __init__(self, broker: Any, config: Config, open_store: Callable[..., StateStore], operator: Any):
        self.broker = broker
        self.config = config
        self.open_store = open_store
        self.operator = operator
        self.links: list[Link] = []
        self.topics = Topics(config.device.site, config.device.id)
        self.reply_topic = f"{self.topics.prefix}/reply/{uuid.uuid4().hex[:8]}"

    def start(self, rig: Rig) -> Sentry:
        """A sentry on the config's state folder (a second call is a restart)."""
        store = self.open_store(self.config)
        push = TrustPush(sentry_trust(), ROOT.public_key(), store, site=self.config.device.site,
                         device=self.config.device.id)
        checks = guard(self.config, store, lambda: push.trust)
        shadow = ConfigShadow(self.config, store, guard=checks)
        commands = RemoteCommands(
            store,
            builtin_commands(grant=rig.gate.grant, request_restart=lambda: None, allow_snapshot=lambda: False,
                             snapshot=None, selftest=lambda parts: []),
            guard=checks,
        )  # fmt: skip
        link = Link(self.config)
        shadow.attach(link)
        push.attach(link)
        commands.attach(link)
        self.links.append(link)
        link.start()
        assert link.wait_subscribed(WAIT), self.broker.log_tail()
        return Sentry(self.config, self.topics, rig, shadow, push, link)

    def stop(self) -> None:
        for link in self.links:
            link.stop(2.0)
        self.links.clear()

    # -- commands -----------------------------------------------------------------------------

    def ask(self, name: str, payload: bytes, *, retain: bool = False,
            before: Callable[[], Any] | None = None) -> dict[str, Any]:  # fmt: skip
        """Send a request and wait for its answer; `before` runs between the two (to start the
        sentry after a retained request is on the broker)."""
        correlation = uuid.uuid4().bytes
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self.reply_topic
        props.CorrelationData = correlation
        self.operator.publish(self.topics.cmd(name), payload, retain=retain, properties=props)
        if before is not None:
            before()
        found = self.operator.wait_for(
            self.reply_topic, lambda m: m.properties.get("CorrelationData") == correlation, WAIT
        )
        assert found is not None, f"no answer to {name}"
        answer: dict[str, Any] = cbor2.loads(found.payload)
        return answer

    # -- events -------------------------------------------------------------------------------

    def refusal(self, reason: str) -> dict[str, Any]:
        """The `control-rejected` event with `reason` (waited for)."""

        def rejected(m: Any) -> bool:
            event = cbor2.loads(m.payload)
            return event.get("event") == "control-rejected" and event.get("reason") == reason

        found = self.operator.wait_for(self.topics.event, rejected, WAIT)
        assert found is not None, f"no control-rejected event for {reason}"
        event: dict[str, Any] = cbor2.loads(found.payload)
        return event


@pytest.fixture
def bench(broker, broker_config, subscriber, open_store) -> Iterator[Bench]:
    config = broker_config()
    topics = Topics(config.device.site, config.device.id)
    operator = subscriber([f"{topics.prefix}/reply/#", topics.event, topics.config_reported])
    made = Bench(broker, config, open_store, operator)
    try:
        yield made
    finally:
        made.stop()
        cleaner = broker.subscriber("nothing/at/all")
        try:
            for topic in (topics.config_desired, topics.config_reported, topics.site_config_desired,
                          *(topics.cmd(n) for n in ("pulse-gate", "selftest"))):  # fmt: skip
                cleaner.publish(topic, b"", retain=True)
        finally:
            cleaner.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    with gate_rig() as made:
        yield made


def now_ms() -> int:
    return int(time.time() * 1000)


def pulse(topics: Topics, *, key: Any = OPERATOR, aud: str | None = None, iat: int | None = None,
          deadline_s: float = 30.0, jti: bytes | None = None) -> bytes:  # fmt: skip
    """A signed pulse-gate for `topics`' device (by default: everything right)."""
    issued = now_ms() if iat is None else iat
    return signed_command(aud or topics.cmd("pulse-gate"), issued + int(deadline_s * 1000), iat_ms=issued,
                          key=key, jti=jti)  # fmt: skip


def tampered(payload: bytes) -> bytes:
    """The same COSE_Sign1 with one bit of its signature flipped."""
    item = cbor2.loads(payload)
    parts = list(item.value)
    parts[3] = bytes([parts[3][0] ^ 1]) + parts[3][1:]
    return cbor2.dumps(cbor2.CBORTag(18, parts))


def unchanged(sentry: Sentry) -> None:
    """Nothing a refused message could have touched has moved."""
    assert sentry.rig.intervals("relay") == [] and not sentry.rig.relay_on()
    assert sentry.rig.events.of("grant") == []
    assert sentry.shadow.version == 0 and sentry.shadow.site_version == 0
    assert sentry.shadow.current == sentry.config
    assert sentry.push.trust == sentry_trust()


# -- commands ------------------------------------------------------------------------------------

COMMAND_REFUSALS: dict[str, tuple[Callable[[Topics], bytes], str]] = {
    "JSON typed by hand": (
        lambda t: f'{{"deadline": {now_ms() + 30_000}}}'.encode(), "unsigned"),
    "bare CBOR": (lambda t: cbor2.dumps({"deadline": now_ms() + 30_000}), "unsigned"),
    "a config key's message on a command topic": (
        lambda t: signed_config(t.cmd("pulse-gate"), 1, {}, key=CONFIG_ONLY), "role"),
    "bad signature": (lambda t: tampered(pulse(t)), "bad-signature"),
    "unknown operator": (lambda t: pulse(t, key=STRANGER), "unknown-operator"),
    "a config-only key": (lambda t: pulse(t, key=CONFIG_ONLY), "role"),
    "a key of another site": (lambda t: pulse(t, key=ELSEWHERE), "scope"),
    "aud of another device": (
        lambda t: pulse(t, aud=Topics(t.site, "gate-other").cmd("pulse-gate")), "audience"),
    "aud of another command": (lambda t: pulse(t, aud=t.cmd("selftest")), "audience"),
    "stale iat": (lambda t: pulse(t, iat=now_ms() - 120_000, deadline_s=200), "stale"),
    "iat from the future": (lambda t: pulse(t, iat=now_ms() + 120_000), "stale"),
    "deadline too far after iat": (lambda t: pulse(t, deadline_s=301), "deadline"),
}


@pytest.mark.parametrize("make, reason", COMMAND_REFUSALS.values(), ids=COMMAND_REFUSALS.keys())
def test_a_refused_pulse_gate_is_answered_rejected_with_its_reason_and_never_moves_the_relay(
    bench: Bench, rig: Rig, make: Callable[[Topics], bytes], reason: str
):
    sentry = bench.start(rig)
    answer = bench.ask("pulse-gate", make(bench.topics))
    assert (answer["status"], answer["reason"]) == ("rejected", reason), answer
    event = bench.refusal(reason)
    assert event["topic"] == bench.topics.cmd("pulse-gate")
    signed_by_operator = reason not in ("unsigned", "bad-signature", "unknown-operator")
    assert (event["operator"] is not None) == signed_by_operator
    unchanged(sentry)


def test_a_retained_command_is_refused_when_the_sentry_subscribes(bench: Bench, rig: Rig):
    """A retained request reaches every later subscription (each reconnect): it never runs."""
    started: list[Sentry] = []
    answer = bench.ask(
        "pulse-gate", pulse(bench.topics), retain=True, before=lambda: started.append(bench.start(rig))
    )
    assert (answer["status"], answer["reason"]) == ("rejected", "retained"), answer
    assert bench.refusal("retained")["operator"] is not None
    unchanged(started[0])


def test_a_replayed_command_is_refused_even_after_a_restart(bench: Bench, rig: Rig):
    sentry = bench.start(rig)
    payload = pulse(bench.topics)
    assert bench.ask("pulse-gate", payload)["status"] == "ok"
    assert len(rig.intervals("relay")) == 1
    replayed = bench.ask("pulse-gate", payload)  # a new correlation id: not a redelivery
    assert (replayed["status"], replayed["reason"]) == ("rejected", "replay")
    assert bench.refusal("replay")["operator"] is not None

    bench.stop()
    again = bench.start(rig)  # the jti is kept in the state store until the deadline
    replayed = bench.ask("pulse-gate", payload)
    assert (replayed["status"], replayed["reason"]) == ("rejected", "replay")
    assert len(rig.intervals("relay")) == 1 and len(rig.events.of("grant")) == 1
    assert again.push.trust == sentry_trust() and sentry.shadow.version == 0


def test_a_well_signed_command_runs(bench: Bench, rig: Rig):
    bench.start(rig)
    answer = bench.ask("pulse-gate", pulse(bench.topics, key=COMMAND_ONLY))
    assert answer["status"] == "ok"
    assert len(rig.intervals("relay")) == 1


# -- config --------------------------------------------------------------------------------------

CONFIG = {"gate": {"pulse_ms": 700}}

CONFIG_REFUSALS: dict[str, tuple[Callable[[Topics], bytes], str]] = {
    "JSON typed by hand": (lambda t: b'{"version": 1, "config": {"gate": {"pulse_ms": 700}}}', "unsigned"),
    "bare CBOR": (lambda t: cbor2.dumps({"version": 1, "config": CONFIG}), "unsigned"),
    "bad signature": (lambda t: tampered(signed_config(t.config_desired, 1, CONFIG)), "bad-signature"),
    "unknown operator": (
        lambda t: signed_config(t.config_desired, 1, CONFIG, key=STRANGER), "unknown-operator"),
    "a command-only key": (lambda t: signed_config(t.config_desired, 1, CONFIG, key=COMMAND_ONLY), "role"),
    "a key of another site": (lambda t: signed_config(t.config_desired, 1, CONFIG, key=ELSEWHERE), "scope"),
    "aud of another device": (
        lambda t: signed_config(Topics(t.site, "gate-other").config_desired, 1, CONFIG), "audience"),
    "aud of the site-wide topic": (lambda t: signed_config(t.site_config_desired, 1, CONFIG), "audience"),
    "a command key's message on the config topic": (
        lambda t: pulse(t, key=COMMAND_ONLY, aud=t.config_desired), "role"),
    "version 2^53": (lambda t: signed_config(t.config_desired, 2**53, CONFIG), "version"),
}


@pytest.mark.parametrize("make, reason", CONFIG_REFUSALS.values(), ids=CONFIG_REFUSALS.keys())
def test_a_refused_desired_config_is_reported_under_signature_and_changes_nothing(
    bench: Bench, rig: Rig, make: Callable[[Topics], bytes], reason: str
):
    sentry = bench.start(rig)
    bench.operator.publish(bench.topics.config_desired, make(bench.topics), retain=True)

    def refused(m: Any) -> bool:
        report = cbor2.loads(m.payload)
        return report["status"] == "rejected" and report["errors"][0]["path"] == "signature"

    found = bench.operator.wait_for(bench.topics.config_reported, refused, WAIT)
    assert found is not None, bench.broker.log_tail()
    report = cbor2.loads(found.payload)
    assert report["errors"][0]["message"].startswith(reason)
    assert report["effective"]["gate"]["pulse_ms"] == sentry.config.gate.pulse_ms
    assert bench.refusal(reason)["topic"] == bench.topics.config_desired
    unchanged(sentry)


def test_a_well_signed_config_with_no_clock_check_is_applied(bench: Bench, rig: Rig):
    """A config relies on its version, not on time: one signed a week ago still applies."""
    sentry = bench.start(rig)
    week_ago = now_ms() - 7 * 86400 * 1000
    payload = signed_config(bench.topics.config_desired, 2**32, CONFIG, key=CONFIG_ONLY, iat_ms=week_ago)
    bench.operator.publish(bench.topics.config_desired, payload, retain=True)
    applied = bench.operator.wait_for(
        bench.topics.config_reported, lambda m: cbor2.loads(m.payload)["status"] == "applied"
        and cbor2.loads(m.payload)["version"] == 2**32, WAIT,
    )  # fmt: skip
    assert applied is not None, bench.broker.log_tail()
    assert sentry.shadow.current.gate.pulse_ms == 700
