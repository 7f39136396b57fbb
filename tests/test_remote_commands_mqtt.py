"""Remote commands over a real broker: MQTT 5 request/response with correlation data, against a real
gate on mock pins. An expired pulse-gate leaves the relay's pin history empty."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import cbor2
import pytest
from control_helpers import guard, signed_command
from gate_helpers import Rig, gate_rig
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_sentry.link import Link
from edge_sentry.link.remote_commands import RemoteCommands, builtin_commands

WAIT = 20.0


class Remote:
    """A sentry's command side on a started link, its gate, and an operator that asks."""

    def __init__(self, link: Link, rig: Rig, operator: Any, restarted: threading.Event) -> None:
        self.link = link
        self.rig = rig
        self.operator = operator
        self.restarted = restarted
        self.reply_topic = f"{link.topics.prefix}/reply/{uuid.uuid4().hex[:8]}"

    def ask(self, name: str, request: dict[str, Any], correlation: bytes) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self.reply_topic
        props.CorrelationData = correlation
        topic = self.link.topics.cmd(name)
        payload = signed_command(topic, None, iat_ms=int(time.time() * 1000), body=request)
        self.operator.publish(topic, payload, properties=props)

    def answers(self, correlation: bytes) -> list[dict[str, Any]]:
        return [
            cbor2.loads(m.payload)
            for m in self.operator.on(self.reply_topic)
            if m.properties.get("CorrelationData") == correlation
        ]

    def answer(self, correlation: bytes) -> dict[str, Any]:
        found = self.operator.wait_for(
            self.reply_topic, lambda m: m.properties.get("CorrelationData") == correlation, WAIT
        )
        assert found is not None, "no answer"
        return cbor2.loads(found.payload)


@pytest.fixture
def remote(broker, broker_config, subscriber, open_store) -> Iterator[Remote]:
    config = broker_config()
    restarted = threading.Event()
    with gate_rig() as rig:
        store = open_store(config)
        commands = RemoteCommands(
            store,
            builtin_commands(
                grant=rig.gate.grant,
                request_restart=restarted.set,
                allow_snapshot=lambda: False,
                snapshot=None,
                selftest=lambda parts: [],
            ),
            guard=guard(config, store),
        )
        link = Link(config)
        commands.attach(link)
        link.start()
        try:
            assert link.wait_subscribed(WAIT), broker.log_tail()
            operator = subscriber(f"{link.topics.prefix}/reply/#")
            yield Remote(link, rig, operator, restarted)
        finally:
            link.stop(2.0)


def in_ms(seconds: float) -> int:
    return int((time.time() + seconds) * 1000)


def test_pulse_gate_is_answered_with_the_correlation_data_and_moves_the_relay(remote: Remote):
    remote.ask("pulse-gate", {"deadline": in_ms(30)}, b"op-1")
    answer = remote.answer(b"op-1")
    assert answer["status"] == "ok" and answer["result"] == {"granted": True}
    assert [d["mode"] for d in remote.rig.events.of("grant")] == ["remote"]
    assert len(remote.rig.intervals("relay")) == 1


def test_an_expired_pulse_gate_is_answered_expired_and_the_relay_never_moves(remote: Remote):
    remote.ask("pulse-gate", {"deadline": in_ms(-5)}, b"op-late")
    assert remote.answer(b"op-late")["status"] == "expired"
    assert remote.rig.events.of("grant") == []
    assert remote.rig.intervals("relay") == []
    assert not remote.rig.relay_on()


def test_a_repeated_request_is_answered_once_and_run_once(remote: Remote):
    request = {"deadline": in_ms(30)}
    remote.ask("pulse-gate", request, b"op-dup")
    remote.ask("pulse-gate", request, b"op-dup")
    remote.ask("nothing-such", request, b"op-after")  # handled after both: a sync point
    assert remote.answer(b"op-after")["status"] == "unknown-command"
    assert [a["status"] for a in remote.answers(b"op-dup")] == ["ok"]
    assert len(remote.rig.events.of("grant")) == 1


def test_a_request_without_a_deadline_is_rejected(remote: Remote):
    remote.ask("pulse-gate", {}, b"op-no-deadline")
    answer = remote.answer(b"op-no-deadline")
    assert answer["status"] == "rejected" and "deadline" in answer["error"]
    assert remote.rig.events.of("grant") == []


def test_restart_is_answered_before_the_stop_is_asked(remote: Remote):
    remote.ask("restart", {"deadline": in_ms(30)}, b"op-restart")
    assert remote.answer(b"op-restart")["status"] == "ok"
    assert remote.restarted.wait(WAIT)


def test_snapshot_off_by_default_is_rejected(remote: Remote):
    remote.ask("snapshot", {"deadline": in_ms(30)}, b"op-snap")
    assert remote.answer(b"op-snap")["status"] == "rejected"
