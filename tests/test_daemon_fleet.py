"""The whole daemon against a real broker: scans reach the fleet, pushed config is applied, commands
are answered, and a remote restart ends the run with the restart status."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cbor2
from control_helpers import operator_trust, signed_command, signed_config, write_trust
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_sentry.config import from_mapping
from edge_sentry.daemon import Daemon
from edge_sentry.uplink import RESTART_EXIT

WAIT = 20.0


@contextmanager
def running(daemon: Daemon) -> Iterator[dict[str, Any]]:
    """The daemon on its own thread for the block; its exit status in the yielded dict afterwards."""
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.update(status=daemon.run()), name="test-daemon")
    thread.start()
    try:
        yield outcome
    finally:
        daemon.stop_event.set()
        thread.join(15)
        assert not thread.is_alive()


def make_daemon(broker, tmp_path, **sections: Any) -> Daemon:
    mapping = broker.config_mapping(tmp_path)
    mapping["gate"] = {"pulse_ms": 200}
    mapping.update(sections)
    return Daemon(from_mapping(mapping), stream=io.StringIO())


def operator_trust_file(tmp_path: Path) -> dict[str, str]:
    """A `[trust]` section whose list names the test operator (the demo's own list names none, so
    no one could configure or command it)."""
    return {"file": str(write_trust(tmp_path / "operators.json", operator_trust()))}


def scans(sub, topic: str) -> list[dict[str, Any]]:
    return [event for m in sub.on(topic) for event in cbor2.loads(m.payload)]


def test_scans_reach_the_fleet_and_leave_the_outbox(broker, subscriber, tmp_path):
    daemon = make_daemon(broker, tmp_path)
    prefix = f"sentry/v1/{broker.site}/{broker.devices[0]}"
    sub = subscriber(f"{prefix}/#")
    with running(daemon):
        assert sub.wait(lambda: any(e["verdict"] == "accept" for e in scans(sub, f"{prefix}/scan")), WAIT)
        assert sub.wait_for(f"{prefix}/state", lambda m: cbor2.loads(m.payload)["online"], WAIT)
        assert sub.wait_for(f"{prefix}/health", timeout=WAIT) is not None
        assert daemon.outbox is not None
        accepted = [e for e in scans(sub, f"{prefix}/scan") if e["verdict"] == "accept"]
        assert accepted[0]["mode"] == "scan" and accepted[0]["scheme"] == "es1"
        assert sub.wait(lambda: daemon.outbox.stats()["depth"] == 0, WAIT)
    offline = sub.wait_for(f"{prefix}/state", lambda m: not cbor2.loads(m.payload)["online"], WAIT)
    assert offline is not None
    events = [cbor2.loads(m.payload)["event"] for m in sub.on(f"{prefix}/event")]
    assert "start" in events


def test_retained_desired_config_is_applied_at_start(broker, subscriber, tmp_path):
    device = broker.devices[0]
    prefix = f"sentry/v1/{broker.site}/{device}"
    sub = subscriber(f"{prefix}/config/reported")
    version = int(time.time())
    sub.publish(
        f"{prefix}/config/desired",
        signed_config(f"{prefix}/config/desired", version, {"es1": {"max_age_s": 90}}),
        retain=True,
    )
    try:
        daemon = make_daemon(broker, tmp_path, trust=operator_trust_file(tmp_path))
        with running(daemon):
            report = sub.wait_for(
                f"{prefix}/config/reported",
                lambda m: cbor2.loads(m.payload).get("version") == version,
                WAIT,
            )
            assert report is not None
            assert cbor2.loads(report.payload)["status"] == "applied"
            assert daemon.sentry is not None
            assert sub.wait(lambda: daemon.sentry.verifier.es1.max_age_s == 90, WAIT)
    finally:
        sub.publish(f"{prefix}/config/desired", b"", retain=True)  # clear it for later tests


def ask(sub, prefix: str, name: str, request: dict[str, Any]) -> dict[str, Any]:
    reply_topic = f"{prefix}/reply/{uuid.uuid4().hex[:8]}"
    correlation = uuid.uuid4().bytes
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = reply_topic
    props.CorrelationData = correlation
    topic = f"{prefix}/cmd/{name}"
    payload = signed_command(topic, None, iat_ms=int(time.time() * 1000), body=request)
    sub.publish(topic, payload, properties=props)
    answer = sub.wait_for(
        reply_topic, lambda m: m.properties.get("CorrelationData") == correlation, WAIT
    )
    assert answer is not None, f"no answer to {name}"
    return cbor2.loads(answer.payload)


def test_pulse_gate_and_restart_commands(broker, subscriber, tmp_path):
    device = broker.devices[0]
    prefix = f"sentry/v1/{broker.site}/{device}"
    sub = subscriber(f"{prefix}/#")
    daemon = make_daemon(
        broker, tmp_path, clock={"unsynced_clock": "verify"}, trust=operator_trust_file(tmp_path)
    )
    with running(daemon) as outcome:
        assert sub.wait_for(f"{prefix}/state", lambda m: cbor2.loads(m.payload)["online"], WAIT)
        # The birth goes out at CONNACK, before the command subscription is active.
        assert sub.wait(lambda: daemon.uplink is not None, WAIT)
        assert daemon.uplink is not None and daemon.uplink.link.wait_subscribed(WAIT)
        deadline = int((time.time() + 30) * 1000)
        answer = ask(sub, prefix, "pulse-gate", {"deadline": deadline})
        if answer["status"] == "rejected":
            # This machine's clock is not synchronised: a remote pulse is refused, by design.
            assert "clock" in str(answer).lower()
        else:
            assert answer["status"] == "ok"
            assert sub.wait(
                lambda: any(
                    cbor2.loads(m.payload).get("event") == "gate-pulse" for m in sub.on(f"{prefix}/event")
                ),
                WAIT,
            )
        late = ask(sub, prefix, "pulse-gate", {"deadline": int((time.time() - 5) * 1000)})
        assert late["status"] == "expired"
        assert ask(sub, prefix, "restart", {"deadline": deadline})["status"] == "ok"
        assert sub.wait(lambda: "status" in outcome, WAIT)
    assert outcome["status"] == RESTART_EXIT


def test_fleet_status_and_tail_see_a_running_daemon(broker, tmp_path):
    """The operator's CLI, as a real process, against a sentry that is really running."""
    operator = tmp_path / "operator.toml"
    operator.write_text(
        f'[device]\nsite = "{broker.site}"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'username = "{broker.operator}"\npassword = "{broker.passwords[broker.operator]}"\n'
    )
    exe = str(Path(sys.executable).with_name("edge-sentry"))
    daemon = make_daemon(broker, tmp_path)
    with running(daemon):
        assert wait_until(lambda: daemon.uplink is not None)
        assert daemon.uplink is not None and daemon.uplink.link.wait_subscribed(WAIT)
        tail = subprocess.run(
            [exe, "--config", str(operator), "fleet", "tail", "--json", "--count", "1",
             "--duration", str(WAIT)],
            capture_output=True, text=True, timeout=WAIT + 10, stdin=subprocess.DEVNULL,
        )
        status = subprocess.run(
            [exe, "--config", str(operator), "fleet", "status", "--json", "--wait", "2"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        )
    assert status.returncode == 0, status.stderr
    rows = {row["device"]: row for row in json.loads(status.stdout)}
    assert rows[broker.devices[0]]["online"] is True
    assert tail.returncode == 0, tail.stderr
    first = json.loads(tail.stdout.splitlines()[0])
    assert first["device"] == broker.devices[0] and "event" in first


def wait_until(predicate, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False
