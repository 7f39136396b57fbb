"""`edge-sentry fleet ...` against a real private Mosquitto (tests/broker.py) and real sentry-side
pieces: a `Link` with the config shadow, the trust push and the commands attached, an `Outbox`
drained by the link. Sentries that cannot be run here (an offline one, one with a health report
from a Pi) are simulated by publishing the retained messages a sentry publishes.

Every wait polls under a deadline; no assertion is about speed."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import pytest
from broker import Broker, free_port
from codes_helpers import trust_list
from control_helpers import OPERATOR, guard, operator_entry, operator_trust
from gate_helpers import Rig, gate_rig

from edge_sentry.codes import control, keys
from edge_sentry.codes.trust import Audience
from edge_sentry.config import Config, from_mapping
from edge_sentry.fleet import push
from edge_sentry.health import Paths, sample
from edge_sentry.link import Link
from edge_sentry.link.remote_commands import RemoteCommands, builtin_commands
from edge_sentry.link.shadow import ConfigShadow
from edge_sentry.link.trustpush import TrustPush
from edge_sentry.outbox import Outbox
from edge_sentry.state import StateStore

WAIT = 20.0
RETAINED_WAIT = "2"  # seconds for `--wait`: retained messages come within milliseconds
GHOST = "gate-9"  # a sentry known only from retained messages that the test publishes itself


# -- running the command -------------------------------------------------------------------------


def fleet(argv: list[str], config: Config) -> int:
    """Parse `fleet ARGV` with the fleet command's own parser and run its handler in-process, as
    the entry point does."""
    from edge_sentry.cli import fleet as fleet_command

    parser = argparse.ArgumentParser(prog="edge-sentry")
    sub = parser.add_subparsers(dest="command", required=True)
    fleet_command.register(sub)
    args = parser.parse_args(["fleet", *argv])
    return args.func(args, config)


def one_error_line(captured: Any, *fragments: str) -> str:
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err, captured.err
    for fragment in fragments:
        assert fragment in captured.err
    return captured.err


def operator_config(broker: Broker, folder: Path, **mqtt: Any) -> Config:
    """The operator's config: the password in a file, as a systemd credential would be."""
    secret = folder / "operator-password"
    secret.write_text(broker.passwords[broker.operator] + "\n")
    secret.chmod(0o600)
    section = {"host": broker.host, "port": broker.port, "username": broker.operator,
               "password_file": str(secret)}
    section.update(mqtt)
    key = folder / "operator.key.pem"
    if not key.exists():
        keys.save_private_key(OPERATOR, key)
    return from_mapping({
        "device": {"id": "console", "site": broker.site, "state_dir": str(folder / "console")},
        "mqtt": {k: v for k, v in section.items() if v is not None},
        "fleet": {"operator_key": str(key)},
    })


@pytest.fixture
def ops(broker: Broker, tmp_path: Path) -> Config:
    return operator_config(broker, tmp_path)


# -- sentries ------------------------------------------------------------------------------------


@dataclass
class Sentry:
    device: str
    link: Link
    shadow: ConfigShadow
    trust: TrustPush
    prefix: str


@pytest.fixture
def root() -> Any:
    return keys.generate()


@pytest.fixture
def sentries(broker: Broker, broker_config: Callable[..., Config], subscriber: Any,
             root: Any, open_store: Callable[..., StateStore]) -> Iterator[Callable[..., Sentry]]:
    """Start a sentry's link with its shadow, trust push (trust list version 3) and commands; wait
    until its birth is on the broker. At the end stop them and clear every retained message the
    test may have left, so the next test of the module starts from an empty site."""
    made: list[Sentry] = []

    def make(device: str, *, rig: Rig | None = None, outbox: Outbox | None = None,
             selftest: Callable[[Any], list[dict[str, Any]]] = lambda parts: []) -> Sentry:
        config = broker_config(device)
        store = open_store(config)
        trust = TrustPush(operator_trust(version=3, issuer=keys.generate()), root.public_key(), store,
                          site=config.device.site, device=config.device.id)
        checks = guard(config, store, lambda: trust.trust)  # the list in use, as the daemon's guard
        shadow = ConfigShadow(config, store, guard=checks)
        commands = RemoteCommands(store, builtin_commands(
            grant=rig.gate.grant if rig is not None else (lambda mode: None),
            request_restart=lambda: None,
            allow_snapshot=lambda: False,
            snapshot=None,
            selftest=selftest,
        ), guard=checks)
        link = Link(config, outbox)
        shadow.attach(link)
        trust.attach(link)
        commands.attach(link)
        prefix = f"sentry/v1/{broker.site}/{device}"
        watcher = subscriber(f"{prefix}/state")
        link.start()
        sentry = Sentry(device, link, shadow, trust, prefix)
        made.append(sentry)
        # RemoteCommands are not retained: one sent before the sentry's SUBACK would be lost.
        assert link.wait_subscribed(WAIT), broker.log_tail()
        born = watcher.wait_for(f"{prefix}/state", lambda m: cbor2.loads(m.payload).get("online") is True,
                                timeout=WAIT)
        assert born is not None, broker.log_tail()
        return sentry

    yield make
    for sentry in made:
        sentry.link.stop(2.0)
    cleaner = broker.subscriber("nothing/at/all")
    try:
        site = f"sentry/v1/{broker.site}"
        cleaner.publish(f"{site}/all/config/desired", b"", retain=True)
        for device in (*broker.devices, GHOST):
            for kind in ("state", "health", "config/desired", "config/reported", "trust"):
                cleaner.publish(f"{site}/{device}/{kind}", b"", retain=True)
    finally:
        cleaner.close()


def publish_as_sentry(broker: Broker, device: str, kind: str, body: dict[str, Any], *, qos: int = 1) -> None:
    """A retained message exactly as a sentry sends it (CBOR map, content type set)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = "application/cbor"
    publisher = broker.subscriber("nothing/at/all")
    try:
        publisher.publish(f"sentry/v1/{broker.site}/{device}/{kind}", cbor2.dumps(body), qos=qos,
                          retain=True, properties=props)
    finally:
        publisher.close()


# -- status --------------------------------------------------------------------------------------


def test_status_shows_each_sentry_from_its_retained_state_and_health(
    broker, ops, sentries, subscriber, tmp_path, capsys
):
    live = sentries("gate-1")
    thermal = tmp_path / "temp"
    thermal.write_text("48312\n")
    health = sample(outbox={"depth": 0, "oldest_age_s": 0}, link="connected", gate="idle",
                    paths=Paths(thermal=thermal, vcgencmd=None), state_dir=tmp_path)
    watcher = subscriber(f"{live.prefix}/health")
    live.link.publish("health", health, qos=0, retain=True)  # as the daemon's health reporter does
    assert watcher.wait_for(f"{live.prefix}/health", timeout=WAIT) is not None
    publish_as_sentry(broker, GHOST, "state", {"online": False, "reason": "lost", "firmware": "0.9.0",
                                               "boot_id": "b-9", "boot_count": 4})
    publish_as_sentry(broker, GHOST, "health", {
        "t": 1_795_000_000_000, "gate": "alarm", "link": "connected", "cpu_temp_c": 81.5,
        "outbox": {"depth": 12, "oldest_age_s": 300.0, "disk_error": None},
        "throttled": {"raw": "0x50005", "now": {"under_voltage": True, "throttled": False},
                      "since_boot": {"under_voltage": True, "throttled": True}},
    }, qos=0)

    assert fleet(["status", "--json", "--wait", RETAINED_WAIT], ops) == 0
    rows = {row["device"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"gate-1", GHOST}
    gate1 = rows["gate-1"]
    assert gate1["online"] is True and gate1["firmware"] == live.link.firmware
    assert (gate1["config_version"], gate1["trust_version"], gate1["config_status"]) == (0, 3, "applied")
    assert (gate1["outbox_depth"], gate1["link"], gate1["cpu_temp_c"]) == (0, "connected", 48.3)
    assert gate1["alarms"] == []
    assert gate1["last_seen"] >= health["t"]
    ghost = rows[GHOST]
    assert (ghost["online"], ghost["reason"], ghost["firmware"]) == (False, "lost", "0.9.0")
    assert ghost["config_version"] is None and ghost["trust_version"] is None  # a Last Will says neither
    assert (ghost["outbox_depth"], ghost["outbox_oldest_age_s"]) == (12, 300.0)
    assert ghost["alarms"] == ["gate-alarm", "throttled"]
    assert ghost["throttled"] == ["under_voltage"]
    assert ghost["throttled_since_boot"] == ["throttled", "under_voltage"]

    assert fleet(["status", "--wait", RETAINED_WAIT], ops) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split()[:2] == ["DEVICE", "ONLINE"]
    by_device = {line.split()[0]: line for line in lines}
    assert " yes " in by_device["gate-1"] and "48.3C" in by_device["gate-1"]
    assert "NO (lost)" in by_device[GHOST] and "12 (5m)" in by_device[GHOST]
    assert "gate-alarm,throttled" in by_device[GHOST]
    assert "under_voltage (since boot: throttled)" in by_device[GHOST]


def test_status_of_a_site_without_sentries_is_an_empty_array(ops, capsys):
    assert fleet(["status", "--json", "--site", "nobody-here", "--wait", "0.2"], ops) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_status_over_tls_with_the_operator_certificate(broker, sentries, tmp_path, capsys):
    sentries("gate-1")
    cert, key = broker.client_certs[broker.operator]
    config = operator_config(broker, tmp_path, port=broker.tls_port, username=None, password_file=None,
                             ca=str(broker.ca), cert=str(cert), key=str(key))
    assert fleet(["status", "--json", "--wait", RETAINED_WAIT], config) == 0
    assert [row["device"] for row in json.loads(capsys.readouterr().out)] == ["gate-1"]


# -- push-config ---------------------------------------------------------------------------------


def test_push_config_to_one_sentry_is_applied_and_versions_count_on(ops, sentries, tmp_path, capsys):
    sentry = sentries("gate-1")
    desired = tmp_path / "gate.toml"
    desired.write_text("[gate]\npulse_ms = 700\n")
    assert fleet(["push-config", str(desired), "--device", "gate-1", "--wait", RETAINED_WAIT], ops) == 0
    out = capsys.readouterr().out
    assert f"published config version 1 to {sentry.prefix}/config/desired" in out
    assert "gate-1: applied (version 1)" in out
    assert sentry.shadow.current.gate.pulse_ms == 700

    desired.write_text('{"gate": {"pulse_ms": 800}}')  # JSON is read too
    assert fleet(["push-config", str(desired), "--device", "gate-1", "--wait", RETAINED_WAIT], ops) == 0
    assert "gate-1: applied (version 2)" in capsys.readouterr().out
    assert (sentry.shadow.version, sentry.shadow.current.gate.pulse_ms) == (2, 800)


def test_push_config_rejected_prints_each_error_by_key_path_and_exits_1(ops, sentries, tmp_path, capsys):
    sentry = sentries("gate-1")
    desired = tmp_path / "bad.toml"
    desired.write_text("[gate]\npulse_ms = 5\n\n[camera]\nnope = 1\n")
    assert fleet(["push-config", str(desired), "--device", "gate-1", "--version", "7",
                  "--wait", RETAINED_WAIT], ops) == 1
    out = capsys.readouterr().out.splitlines()
    assert "gate-1: rejected (version 7)" in out
    assert "  gate.pulse_ms: must be between 50 and 10000" in out
    assert "  camera.nope: unknown key" in out
    assert sentry.shadow.version == 0 and sentry.shadow.current.gate.pulse_ms == 1000


def test_push_config_to_the_site_waits_for_every_known_sentry(ops, sentries, tmp_path, capsys):
    first, second = sentries("gate-1"), sentries("gate-2")
    desired = tmp_path / "site.toml"
    desired.write_text("[es1]\nmax_age_s = 90\n")
    assert fleet(["push-config", str(desired), "--site", "arena", "--wait", RETAINED_WAIT], ops) == 0
    out = capsys.readouterr().out
    assert "to sentry/v1/arena/all/config/desired" in out
    assert "gate-1: applied (version 1)" in out and "gate-2: applied (version 1)" in out
    assert first.shadow.site_version == second.shadow.site_version == 1
    assert first.shadow.current.es1.max_age_s == second.shadow.current.es1.max_age_s == 90


def test_a_site_push_names_an_offline_sentry_and_exits_3(broker, ops, sentries, tmp_path, capsys):
    sentries("gate-1")
    publish_as_sentry(broker, GHOST, "state", {"online": False, "reason": "lost"})
    desired = tmp_path / "site.toml"
    desired.write_text("[es1]\nmax_age_s = 75\n")
    assert fleet(["push-config", str(desired), "--site", "arena", "--wait", RETAINED_WAIT], ops) == 3
    out = capsys.readouterr().out
    assert "gate-1: applied (version 1)" in out
    assert f"{GHOST}: offline (it takes the retained document when it reconnects)" in out


def test_a_device_login_cannot_steer_the_site_version_to_the_top_of_the_range(
    broker, ops, sentries, tmp_path, capsys
):
    # Any sentry writes its own `state`: a taken device login claims a site version near 2^53. The
    # tool leaves that claim out (and says so), so the site push still lands, and a forged version
    # can never use up the range.
    first = sentries("gate-1")
    publish_as_sentry(broker, GHOST, "state", {"online": True, "site_config_version": 2**53 - 2})
    desired = tmp_path / "site.toml"
    desired.write_text("[es1]\nmax_age_s = 90\n")
    fleet(["push-config", str(desired), "--site", "arena", "--wait", RETAINED_WAIT], ops)
    captured = capsys.readouterr()
    assert f"{GHOST} reports version {2**53 - 2}" in captured.err
    assert "gate-1: applied (version 1)" in captured.out
    assert first.shadow.site_version == 1 and first.shadow.current.es1.max_age_s == 90


def test_a_version_the_sentry_already_reached_is_refused_before_publishing(
    broker, ops, sentries, subscriber, tmp_path, capsys
):
    sentry = sentries("gate-1")
    desired = tmp_path / "gate.toml"
    desired.write_text("[gate]\npulse_ms = 700\n")
    assert fleet(["push-config", str(desired), "--device", "gate-1", "--version", "5",
                  "--wait", RETAINED_WAIT], ops) == 0
    capsys.readouterr()
    assert fleet(["push-config", str(desired), "--device", "gate-1", "--version", "4",
                  "--wait", RETAINED_WAIT], ops) == 2
    one_error_line(capsys.readouterr(), "version 4 is not above version 5", "gate-1")
    retained = subscriber(f"{sentry.prefix}/config/desired").wait_for(f"{sentry.prefix}/config/desired",
                                                                      timeout=WAIT)
    assert retained is not None and push.signed_body(retained.payload)["version"] == 5


# -- push-trust ----------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path, root: Any) -> dict[str, Path]:
    """A trust list of version 8, the fleet's trust-root key and a key that is not it."""
    trust = tmp_path / "trust.json"
    trust.write_text(trust_list(keys.generate(), version=8).to_json())
    keys.save_private_key(root, tmp_path / "root.pem")
    keys.save_private_key(keys.generate(), tmp_path / "forger.pem")
    return {"trust": trust, "root": tmp_path / "root.pem", "forger": tmp_path / "forger.pem"}


def test_push_trust_signed_by_the_root_is_accepted(ops, sentries, files, capsys):
    sentry = sentries("gate-1")
    assert fleet(["push-trust", str(files["trust"]), "--root-key", str(files["root"]), "--device", "gate-1",
                  "--wait", RETAINED_WAIT], ops) == 0
    assert "gate-1: accepted (version 8)" in capsys.readouterr().out
    assert sentry.trust.trust.version == 8
    assert sentry.trust.trust.audience == Audience(devices=frozenset({"arena/gate-1"}))


def test_a_list_pushed_to_one_sentry_and_copied_to_another_is_refused_there(
    ops, sentries, subscriber, files, capsys
):
    """The audience is inside the signature: a broker login that copies gate-1's retained list onto
    gate-2's trust topic gets a `trust-rejected` from gate-2, which keeps its list."""
    first, second = sentries("gate-1"), sentries("gate-2")
    assert fleet(["push-trust", str(files["trust"]), "--root-key", str(files["root"]), "--device", "gate-1",
                  "--wait", RETAINED_WAIT], ops) == 0
    copier = subscriber(f"{first.prefix}/trust")
    retained = copier.wait_for(f"{first.prefix}/trust", lambda m: m.payload, WAIT)
    assert retained is not None and first.trust.trust.version == 8
    events = subscriber(f"{second.prefix}/event")
    events.publish(f"{second.prefix}/trust", retained.payload, retain=True)
    refused = events.wait_for(f"{second.prefix}/event",
                              lambda m: cbor2.loads(m.payload)["event"] == "trust-rejected", WAIT)
    assert refused is not None and cbor2.loads(refused.payload)["reason"] == "audience"
    assert second.trust.trust.version == 3 and second.trust.store.pushed_trust() is None


def test_push_trust_to_the_site_goes_to_each_sentry(ops, sentries, files, capsys):
    first, second = sentries("gate-1"), sentries("gate-2")
    assert fleet(["push-trust", str(files["trust"]), "--root-key", str(files["root"]), "--site", "arena",
                  "--wait", RETAINED_WAIT], ops) == 0
    out = capsys.readouterr().out
    assert "gate-1: accepted (version 8)" in out and "gate-2: accepted (version 8)" in out
    assert first.trust.trust.version == second.trust.trust.version == 8
    assert first.trust.trust.audience == Audience(sites=frozenset({"arena"}))


def test_push_trust_signed_by_another_key_is_rejected_and_taken_off_the_broker(
    ops, sentries, subscriber, files, capsys
):
    sentry = sentries("gate-1")
    watcher = subscriber(f"{sentry.prefix}/trust")
    assert fleet(["push-trust", str(files["trust"]), "--root-key", str(files["forger"]), "--device", "gate-1",
                  "--wait", RETAINED_WAIT], ops) == 1
    out = capsys.readouterr().out
    assert "gate-1: rejected (version 8): bad-signature" in out and "keeps version 3" in out
    assert sentry.trust.trust.version == 3
    # The refused list would be refused again at each reconnect: the topic is cleared after it.
    assert watcher.wait_for(f"{sentry.prefix}/trust", lambda m: m.payload == b"", WAIT) is not None


def test_push_trust_not_above_the_version_in_use_is_refused_before_publishing(
    ops, sentries, tmp_path, files, capsys
):
    sentries("gate-1")
    old = tmp_path / "old.json"
    old.write_text(trust_list(keys.generate(), version=3).to_json())
    assert fleet(["push-trust", str(old), "--root-key", str(files["root"]), "--device", "gate-1",
                  "--wait", RETAINED_WAIT], ops) == 2
    one_error_line(capsys.readouterr(), "version 3 is not above version 3 in use on gate-1")


# -- command -------------------------------------------------------------------------------------


@pytest.fixture
def rig() -> Iterator[Rig]:
    with gate_rig() as made:
        yield made


def test_command_round_trip_with_a_fresh_response_topic_and_correlation_data(
    ops, sentries, subscriber, rig, capsys
):
    sentry = sentries("gate-1", rig=rig)
    seen = subscriber([f"{sentry.prefix}/cmd/+", f"{sentry.prefix}/reply/#"])
    assert fleet(["command", "pulse-gate", "--device", "gate-1"], ops) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["status"] == "ok" and answer["result"] == {"granted": True}
    assert len(rig.intervals("relay")) == 1

    request = seen.on(f"{sentry.prefix}/cmd/pulse-gate")[0]
    reply_topic = request.properties["ResponseTopic"]
    assert reply_topic.startswith(f"{sentry.prefix}/reply/")
    signed = control.verify(request.payload, operator_trust().operator,
                            topic=f"{sentry.prefix}/cmd/pulse-gate", site="arena", role="command")
    assert set(signed.body) == {"deadline"} and isinstance(signed.body["deadline"], int)
    assert signed.iat <= signed.body["deadline"] and len(signed.jti) == 16
    reply = seen.wait_for(reply_topic, timeout=WAIT)
    assert reply is not None and reply.properties["CorrelationData"] == request.properties["CorrelationData"]

    assert fleet(["command", "pulse-gate", "--device", "gate-1"], ops) == 0
    capsys.readouterr()
    second = seen.on(f"{sentry.prefix}/cmd/pulse-gate")[1]
    assert second.properties["ResponseTopic"] != reply_topic
    assert second.properties["CorrelationData"] != request.properties["CorrelationData"]


def test_a_command_past_its_deadline_is_answered_expired_and_exits_1(ops, sentries, rig, capsys):
    sentries("gate-1", rig=rig)
    assert fleet(["command", "pulse-gate", "--device", "gate-1", "--deadline-s", "0"], ops) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "expired"
    assert rig.intervals("relay") == [] and not rig.relay_on()


def test_command_arguments_reach_the_sentry_as_typed_values(ops, sentries, capsys):
    asked: list[Any] = []

    def selftest(parts: Any) -> list[dict[str, Any]]:
        asked.append(parts)
        return [{"part": "clock", "status": "pass"}]

    sentries("gate-1", selftest=selftest)
    assert fleet(["command", "selftest", "--device", "gate-1", "--arg", 'parts=["clock"]'], ops) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["status"] == "ok" and answer["result"]["passed"] is True
    assert asked == [["clock"]]


def test_a_refused_command_exits_1_with_the_answer(ops, sentries, capsys):
    sentries("gate-1")
    assert fleet(["command", "snapshot", "--device", "gate-1"], ops) == 1
    answer = json.loads(capsys.readouterr().out)
    assert answer["status"] == "rejected" and "allow_snapshot" in answer["error"]


def test_a_command_nobody_answers_exits_3(ops, capsys):
    assert fleet(["command", "selftest", "--device", "gate-2", "--timeout", "0.5"], ops) == 3
    one_error_line(capsys.readouterr(), "no answer from gate-2 within 0.5 s")


def test_a_command_to_an_offline_sentry_exits_3_without_waiting_out_the_timeout(
    broker, ops, sentries, capsys
):
    publish_as_sentry(broker, GHOST, "state", {"online": False, "reason": "lost"})
    assert fleet(["command", "selftest", "--device", GHOST, "--timeout", str(WAIT * 10)], ops) == 3
    one_error_line(capsys.readouterr(), f"{GHOST} is offline")


# -- signing -------------------------------------------------------------------------------------


def no_key(ops: Config) -> Config:
    return from_mapping({"device": {"site": ops.device.site}, "mqtt": dataclasses.asdict(ops.mqtt)})


def test_without_an_operator_key_push_config_and_command_are_usage_errors_and_send_nothing(
    ops, sentries, subscriber, tmp_path, capsys
):
    sentry = sentries("gate-1")
    seen = subscriber([f"{sentry.prefix}/config/desired", f"{sentry.prefix}/cmd/+"])
    desired = tmp_path / "gate.toml"
    desired.write_text("[gate]\npulse_ms = 700\n")
    unsigned = no_key(ops)
    assert fleet(["push-config", str(desired), "--device", "gate-1"], unsigned) == 2
    one_error_line(capsys.readouterr(), "no operator key", "--operator-key")
    assert fleet(["command", "pulse-gate", "--device", "gate-1"], unsigned) == 2
    one_error_line(capsys.readouterr(), "no operator key")
    assert fleet(["command", "pulse-gate", "--device", "gate-1", "--operator-key",
                  str(tmp_path / "missing.pem")], unsigned) == 2
    one_error_line(capsys.readouterr(), "missing.pem: no such key file")
    # a later command is a sync point: nothing arrived before it
    assert fleet(["command", "selftest", "--device", "gate-1", "--operator-key",
                  str(tmp_path / "operator.key.pem")], unsigned) == 0
    capsys.readouterr()
    assert seen.wait_for(f"{sentry.prefix}/cmd/selftest", timeout=WAIT) is not None
    assert [m.topic for m in seen.messages] == [f"{sentry.prefix}/cmd/selftest"]
    assert sentry.shadow.version == 0


def test_a_version_at_2_to_the_53_is_a_usage_error(ops, tmp_path, capsys):
    desired = tmp_path / "gate.toml"
    desired.write_text("[gate]\npulse_ms = 700\n")
    assert fleet(["push-config", str(desired), "--device", "gate-1", "--version", str(2**53)], ops) == 2
    one_error_line(capsys.readouterr(), "below 2^53")


def test_a_key_of_another_operator_is_refused_by_the_sentry(ops, sentries, rig, tmp_path, capsys):
    sentries("gate-1", rig=rig)
    keys.save_private_key(keys.generate(), tmp_path / "stranger.pem")
    assert fleet(["command", "pulse-gate", "--device", "gate-1", "--operator-key",
                  str(tmp_path / "stranger.pem")], ops) == 1
    answer = json.loads(capsys.readouterr().out)
    assert (answer["status"], answer["reason"]) == ("rejected", "unknown-operator")
    assert rig.intervals("relay") == []


def test_operators_come_from_the_trust_list_in_use_at_each_message(
    ops, sentries, rig, root, tmp_path, capsys
):
    """A pushed list that drops the operator locks its key out at once; one that lists a new
    operator lets that one in, without a restart."""
    sentry = sentries("gate-1", rig=rig)
    newcomer = keys.generate()
    keys.save_private_key(newcomer, tmp_path / "newcomer.pem")
    keys.save_private_key(root, tmp_path / "root.pem")
    swapped = operator_trust(operator_entry(newcomer, roles=["command"], sites=["arena"]), version=4)
    (tmp_path / "swapped.json").write_text(swapped.to_json())
    assert fleet(["push-trust", str(tmp_path / "swapped.json"), "--root-key", str(tmp_path / "root.pem"),
                  "--device", "gate-1", "--wait", RETAINED_WAIT], ops) == 0
    capsys.readouterr()
    assert sentry.trust.trust.version == 4
    assert fleet(["command", "pulse-gate", "--device", "gate-1"], ops) == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "unknown-operator"
    assert rig.intervals("relay") == []
    assert fleet(["command", "pulse-gate", "--device", "gate-1", "--operator-key",
                  str(tmp_path / "newcomer.pem")], ops) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "ok"
    assert len(rig.intervals("relay")) == 1


# -- tail ----------------------------------------------------------------------------------------


class Announcing(io.StringIO):
    """A stderr that says when the tail has subscribed (it writes "listening on ..." then)."""

    def __init__(self) -> None:
        super().__init__()
        self.listening = threading.Event()

    def write(self, text: str) -> int:
        if "listening on" in text:
            self.listening.set()
        return super().write(text)


def test_tail_prints_the_scans_a_real_link_drains_from_a_real_outbox(
    broker, broker_config, ops, sentries, monkeypatch, capsys
):
    folder = Path(broker_config("gate-1").outbox.path)
    box = Outbox(folder, max_events=1000, queue_size=100, retention_days=14)
    box.start()
    try:
        sealed = {"v": 1, "kid": b"K" * 8, "enc": b"\xee" * 32, "ct": b"\xcc" * 48}
        stamped = [box.put({"event": "scan", "device": "gate-1", "mode": "scan", "scheme": "es1",
                            "verdict": verdict, "reason": reason, "latency_ms": 12.5, "subject": sealed})
                   for verdict, reason in (("accept", "ok"), ("deny", "expired"))]
        stamped.append(box.put({"event": "door-forced", "device": "gate-1"}))
        assert box.flush(WAIT)

        announcing = Announcing()
        monkeypatch.setattr(sys, "stderr", announcing)
        codes: list[int] = []
        tailer = threading.Thread(target=lambda: codes.append(
            fleet(["tail", "--device", "gate-1", "--json", "--count", "3", "--duration", str(WAIT)], ops)))
        tailer.start()
        assert announcing.listening.wait(WAIT)
        sentries("gate-1", outbox=box)  # the link drains what the outbox holds
        tailer.join(WAIT + 5)
        assert codes == [0]
    finally:
        box.stop()
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]
    assert [e["id"] for e in lines] == [e["id"] for e in stamped]
    assert [e.get("verdict") for e in lines] == ["accept", "deny", None]
    assert [e.get("subject") for e in lines] == ["sealed", "sealed", None]
    assert lines[2]["event"] == "door-forced"
    assert "eeeeeeee" not in out and "7u7u" not in out  # neither hex nor base64 of the sealed bytes


# -- broker errors and bad usage -----------------------------------------------------------------


def test_an_unreachable_broker_is_one_line_and_exit_4(broker, tmp_path, capsys):
    config = operator_config(broker, tmp_path, port=free_port())
    assert fleet(["status"], config) == 4
    one_error_line(capsys.readouterr(), "cannot connect to the broker at 127.0.0.1:", "connection refused")


def test_a_refused_connection_names_the_reason_and_exits_4(broker, tmp_path, capsys):
    config = operator_config(broker, tmp_path)
    (tmp_path / "operator-password").write_text("not-the-password\n")
    assert fleet(["command", "selftest", "--device", "gate-1"], config) == 4
    err = one_error_line(capsys.readouterr(), "refused the connection")
    assert "0x8" in err


def test_a_push_the_broker_refuses_is_one_line_and_exit_4(broker, broker_config, tmp_path, capsys):
    config = broker_config("gate-2")  # a sentry's own login: its ACL covers its own prefix only
    desired = tmp_path / "gate.toml"
    desired.write_text("[gate]\npulse_ms = 700\n")
    keys.save_private_key(OPERATOR, tmp_path / "operator.pem")
    assert fleet(["push-config", str(desired), "--device", "gate-1", "--wait", "0.2",
                  "--operator-key", str(tmp_path / "operator.pem")], config) == 4
    one_error_line(capsys.readouterr(), "refused the message on sentry/v1/arena/gate-1/config/desired",
                   "Not authorized")


def test_an_untrusted_broker_certificate_is_named(broker, tmp_path, capsys):
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(broker.server_cert.read_bytes())  # a certificate, but not the CA's
    cert, key = broker.client_certs[broker.operator]
    config = operator_config(broker, tmp_path, port=broker.tls_port, username=None, password_file=None,
                             ca=str(other_ca), cert=str(cert), key=str(key))
    assert fleet(["status"], config) == 4
    one_error_line(capsys.readouterr(), "TLS")


def test_the_client_subscribes_again_after_a_broker_restart(broker, ops):
    from edge_sentry.fleet.client import FleetClient

    topic = f"sentry/v1/{broker.site}/{GHOST}/health"
    assert ops.mqtt is not None
    with FleetClient(ops.mqtt) as client:
        client.subscribe([topic])
        broker.stop()
        broker.start()  # same ports; the client finds it again by itself
        publisher = broker.subscriber("nothing/at/all")
        try:
            # Retained: it reaches the client whenever its new subscription comes, before or after.
            publisher.publish(topic, cbor2.dumps({"t": 1}), retain=True)
            message = client.receive(WAIT)
            assert message is not None and message.topic == topic and message.retain
        finally:
            publisher.publish(topic, b"", retain=True)
            publisher.close()
