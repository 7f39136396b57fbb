"""The provisioned broker on a real Mosquitto: what each login may publish and read, and who is let in.

`edge-sentry fleet provision` writes the CA, the certificates, mosquitto.conf and the ACL; the
broker here runs on exactly those files (tests/broker.py `ProvisionedBroker`). Under MQTT 5
Mosquitto answers an unauthorised QoS 1 PUBLISH with PUBACK reason code 0x87 (Not authorized), and
the tests assert on that and on a reader with every right never receiving it. Mosquitto 2.0 grants
any subscription filter and checks read rights per message, so what a login may read is shown by
subscribing it to `#` and seeing exactly which of every login's messages arrive.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from broker import Pki, ProvisionedBroker, Subscriber
from control_helpers import OPERATOR, operator_entry, operator_trust, write_trust
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_sentry.backend.ingest import Ingester
from edge_sentry.backend.store import open_store
from edge_sentry.cli import main
from edge_sentry.codes import keys
from edge_sentry.config import IngestConfig, from_mapping
from edge_sentry.daemon import Daemon
from edge_sentry.fleet import pki
from edge_sentry.link import payloads
from edge_sentry.records import new_event_id

NOT_AUTHORIZED = 0x87
ACCEPTED_BELOW = 0x80  # 0x00 success, 0x10 no matching subscribers
REFUSED_WAIT_S = 0.5  # how long a message that must not arrive is waited for
INVENTORY = """
[broker]
hosts = ["localhost", "127.0.0.1"]

[sites]
arena = ["gate-1", "gate-2"]
stadium = ["north-1"]

[operators]
alice = ["arena"]
bob = ["stadium"]

[ingesters]
backend-1 = ["arena"]
"""
ARENA = "sentry/v1/arena"
GATE1 = f"{ARENA}/gate-1"
GATE2 = f"{ARENA}/gate-2"
NORTH1 = "sentry/v1/stadium/north-1"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProvisionedBroker]:
    root = tmp_path_factory.mktemp("fleet")
    (root / "inventory.toml").write_text(INVENTORY)
    assert main(["fleet", "provision", str(root / "inventory.toml"), "--out", str(root / "out")]) == 0
    broker = ProvisionedBroker(root / "out", root / "broker")
    broker.start()
    yield broker
    broker.close()


@pytest.fixture
def login(fleet: ProvisionedBroker) -> Iterator[Callable[..., Subscriber]]:
    """Started clients logged in with a provisioned identity, closed at the end of the test."""
    made: list[Subscriber] = []

    def make(kind: str, name: str, topics: str | list[str] = (), **options: Any) -> Subscriber:
        client = fleet.client(fleet.files(kind, name), topics, port=fleet.port_for(kind), **options)
        made.append(client)
        return client.start()

    yield make
    for client in made:
        client.close()


def _never_arrives(reader: Subscriber, topic: str) -> bool:
    return reader.wait_for(topic, timeout=REFUSED_WAIT_S) is None


# -- devices -------------------------------------------------------------------------------------


def test_a_device_publishes_its_own_state_scan_event_health_report_and_replies(login) -> None:
    operator = login("operators", "alice", f"{ARENA}/#")
    device = login("devices", "gate-1")
    for kind in ("state", "scan", "event", "health", "config/reported", "reply/7f3a"):
        topic = f"{GATE1}/{kind}"
        assert device.publish_ack(topic, kind.encode()) < ACCEPTED_BELOW, topic
        got = operator.wait_for(topic)
        assert got is not None and got.payload == kind.encode()


def test_a_device_cannot_publish_to_its_own_control_topics(login) -> None:
    operator = login("operators", "alice", f"{ARENA}/#")
    device = login("devices", "gate-1")
    for topic in (f"{GATE1}/cmd/pulse-gate", f"{GATE1}/config/desired", f"{GATE1}/trust",
                  f"{ARENA}/all/config/desired"):
        assert device.publish_ack(topic, b"forged") == NOT_AUTHORIZED, topic
        assert _never_arrives(operator, topic), topic


def test_a_device_cannot_write_another_devices_topics_or_under_another_site(login) -> None:
    operator = login("operators", "alice", f"{ARENA}/#")
    device = login("devices", "gate-1")
    for topic in (f"{GATE2}/state", f"{GATE2}/scan", f"{GATE2}/reply/1", f"{GATE2}/cmd/restart",
                  "sentry/v1/stadium/gate-1/state", "sentry/v1/stadium/gate-1/scan", f"{NORTH1}/event",
                  f"{GATE1}/other", "elsewhere"):
        assert device.publish_ack(topic, b"x") == NOT_AUTHORIZED, topic
    assert _never_arrives(operator, f"{GATE2}/state")


def test_a_device_reads_only_its_own_control_topics_and_its_sites_desired_config(login) -> None:
    device = login("devices", "gate-1", "#")
    sent = _publish_everywhere(login, {"gate-1": device})
    allowed = {f"{GATE1}/config/desired", f"{GATE1}/trust", f"{GATE1}/cmd/restart",
               f"{ARENA}/all/config/desired"}
    assert allowed <= set(sent)
    assert _topics_read(device, allowed) == allowed


def test_a_device_gets_its_commands_and_not_another_devices(login) -> None:
    operator = login("operators", "alice")
    gate1 = login("devices", "gate-1", f"{GATE1}/cmd/+")
    gate2 = login("devices", "gate-2", f"{GATE2}/cmd/+")
    assert operator.publish_ack(f"{GATE1}/cmd/selftest", b"{}") < ACCEPTED_BELOW
    assert gate1.wait_for(f"{GATE1}/cmd/selftest") is not None
    assert _never_arrives(gate2, f"{GATE1}/cmd/selftest")


# -- operators and ingesters ---------------------------------------------------------------------


def test_an_operator_sends_a_command_and_reads_the_answer(login) -> None:
    operator = login("operators", "alice", f"{GATE1}/reply/+")
    device = login("devices", "gate-1", f"{GATE1}/cmd/+")
    reply_topic = f"{GATE1}/reply/{uuid.uuid4().hex}"
    request = Properties(PacketTypes.PUBLISH)
    request.ResponseTopic = reply_topic
    request.CorrelationData = b"c-1"
    assert operator.publish_ack(f"{GATE1}/cmd/pulse-gate", b"{}", properties=request) < ACCEPTED_BELOW
    got = device.wait_for(f"{GATE1}/cmd/pulse-gate")
    assert got is not None and got.properties["ResponseTopic"] == reply_topic
    answer = Properties(PacketTypes.PUBLISH)
    answer.CorrelationData = b"c-1"
    assert device.publish_ack(reply_topic, b'{"status": "ok"}', properties=answer) < ACCEPTED_BELOW
    reply = operator.wait_for(reply_topic)
    assert reply is not None and reply.payload == b'{"status": "ok"}'


def test_an_operator_controls_only_their_sites_and_cannot_speak_for_a_device(login) -> None:
    operator = login("operators", "alice")
    for topic in (f"{GATE1}/config/desired", f"{ARENA}/all/config/desired", f"{GATE2}/trust",
                  f"{GATE2}/cmd/restart"):
        assert operator.publish_ack(topic, b"{}") < ACCEPTED_BELOW, topic
    for topic in (f"{NORTH1}/cmd/restart", "sentry/v1/stadium/all/config/desired", f"{GATE1}/scan",
                  f"{GATE1}/state", f"{GATE1}/reply/1"):
        assert operator.publish_ack(topic, b"{}") == NOT_AUTHORIZED, topic


def test_an_operator_reads_everything_of_their_sites_and_nothing_else(login) -> None:
    operator = login("operators", "alice", "#")
    sent = _publish_everywhere(login)
    arena = {t for t in sent if t.startswith(f"{ARENA}/")}
    assert _topics_read(operator, arena) == arena


def test_an_ingester_reads_scans_events_health_and_state_and_cannot_publish(login) -> None:
    ingester = login("ingesters", "backend-1", "#")
    sent = _publish_everywhere(login)
    wanted = {t for t in sent if t.startswith(f"{ARENA}/") and t.rpartition("/")[2] in
              ("scan", "event", "health", "state")}
    assert wanted == {f"{GATE1}/scan", f"{GATE1}/state", f"{GATE1}/event", f"{GATE1}/health",
                      f"{GATE2}/scan", f"{GATE2}/state"}
    assert _topics_read(ingester, wanted) == wanted
    for topic in (f"{GATE1}/scan", f"{GATE1}/cmd/restart", f"{GATE1}/config/desired", "elsewhere"):
        assert ingester.publish_ack(topic, b"x") == NOT_AUTHORIZED, topic


def _publish_everywhere(login: Callable[..., Subscriber], open_devices: dict[str, Subscriber] | None = None
                        ) -> list[str]:
    """Every login publishes what it may (each accepted): the topics, in order. A device has one
    session at a time (its login is its client id), so one already open in `open_devices` is used."""
    alice, bob = login("operators", "alice"), login("operators", "bob")
    gate1, gate2, north1 = (
        (open_devices or {}).get(name) or login("devices", name) for name in ("gate-1", "gate-2", "north-1"))
    plan = [
        (gate1, f"{GATE1}/state"), (gate1, f"{GATE1}/scan"), (gate1, f"{GATE1}/event"),
        (gate1, f"{GATE1}/health"), (gate1, f"{GATE1}/config/reported"), (gate1, f"{GATE1}/reply/1"),
        (gate2, f"{GATE2}/state"), (gate2, f"{GATE2}/scan"), (gate2, f"{GATE2}/reply/2"),
        (alice, f"{GATE1}/config/desired"), (alice, f"{GATE1}/trust"), (alice, f"{GATE1}/cmd/restart"),
        (alice, f"{ARENA}/all/config/desired"), (alice, f"{GATE2}/config/desired"),
        (alice, f"{GATE2}/trust"), (alice, f"{GATE2}/cmd/restart"),
        (north1, f"{NORTH1}/scan"), (north1, f"{NORTH1}/state"),
        (bob, f"{NORTH1}/cmd/restart"), (bob, "sentry/v1/stadium/all/config/desired"),
    ]
    for client, topic in plan:
        assert client.publish_ack(topic, topic.encode()) < ACCEPTED_BELOW, topic
    return [topic for _, topic in plan]


def _topics_read(reader: Subscriber, expected: set[str]) -> set[str]:
    """The topics `reader` received: once the expected ones are in, a little longer for strays.
    (Mosquitto 2.0 grants any subscription and checks read rights as it delivers; later versions
    may refuse the filter in the SUBACK instead. Either way nothing unallowed may arrive.)"""
    reader.wait(lambda: expected <= {m.topic for m in reader.messages})
    time.sleep(REFUSED_WAIT_S)
    with reader._cond:
        return {m.topic for m in reader.messages}


# -- who is let in -------------------------------------------------------------------------------


def _let_in(fleet: ProvisionedBroker, tls_files: tuple[Path, Path | None, Path | None],
            port: int | None = None) -> bool:
    client = fleet.client(tls_files, port=port)
    try:
        client.start(timeout=3.0)
    except (OSError, TimeoutError):  # a TLS alert may come in the handshake or just after it
        return False
    finally:
        client.close()
    return True


def test_a_provisioned_certificate_is_let_in_on_its_own_listener(fleet: ProvisionedBroker) -> None:
    for kind, name in (("devices", "north-1"), ("operators", "bob"), ("ingesters", "backend-1")):
        assert _let_in(fleet, fleet.files(kind, name), fleet.port_for(kind)), name


def test_a_device_certificate_is_refused_on_the_operators_listener(fleet: ProvisionedBroker) -> None:
    # There it could choose its client id; on the devices' listener its login is its client id.
    assert not _let_in(fleet, fleet.files("devices", "gate-1"), fleet.operator_port)


def test_an_operator_certificate_is_refused_on_the_devices_listener(fleet: ProvisionedBroker) -> None:
    for kind, name in (("operators", "alice"), ("ingesters", "backend-1")):
        assert not _let_in(fleet, fleet.files(kind, name), fleet.tls_port), name


def test_a_client_without_a_certificate_is_refused(fleet: ProvisionedBroker) -> None:
    for port in (fleet.tls_port, fleet.operator_port):
        assert not _let_in(fleet, (fleet.ca, None, None), port)


def test_a_certificate_from_another_ca_is_refused(fleet: ProvisionedBroker, tmp_path: Path) -> None:
    stranger = Pki(tmp_path / "stranger", "Another CA")
    cert, key = stranger.issue("gate-1")
    for port in (fleet.tls_port, fleet.operator_port):
        assert not _let_in(fleet, (fleet.ca, cert, key), port)


def test_a_device_certificate_cannot_take_another_devices_client_id(fleet: ProvisionedBroker,
                                                                   login) -> None:
    gate2 = login("devices", "gate-2", f"{GATE2}/cmd/+", client_id="gate-2")
    for _ in range(3):  # an impostor that keeps reconnecting
        impostor = login("devices", "gate-1", client_id="gate-2")
        impostor.close()
    alice = login("operators", "alice")
    assert alice.publish_ack(f"{GATE2}/cmd/restart", b"still here") < ACCEPTED_BELOW
    assert gate2.wait_for(f"{GATE2}/cmd/restart") is not None
    assert gate2.connects == 1
    assert "Client gate-2 already connected" not in fleet.log_text()


def test_two_sessions_of_one_operator_stay_connected_together(fleet: ProvisionedBroker, login) -> None:
    first = login("operators", "alice", f"{GATE1}/state")
    second = login("operators", "alice", f"{GATE1}/state")
    gate1 = login("devices", "gate-1")
    assert gate1.publish_ack(f"{GATE1}/state", b"both") < ACCEPTED_BELOW
    for session in (first, second):
        assert session.wait_for(f"{GATE1}/state") is not None
        assert session.connects == 1


def test_there_is_no_plaintext_listener(fleet: ProvisionedBroker) -> None:
    connacks: list[object] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="plain", protocol=mqtt.MQTTv5)
    client.on_connect = lambda *args: connacks.append(args)
    try:
        client.connect(fleet.host, fleet.port, keepalive=5)
        client.loop_start()
        time.sleep(1.0)
    except OSError:
        pass  # the refusal may come as a socket error at connect: the assertion below covers both
    finally:
        client.loop_stop()
        client.disconnect()
    assert connacks == []
    # Nor is anything else listening on Mosquitto's default port for this broker's config.
    assert "listener 1883" not in (fleet.out / "broker" / "mosquitto.conf").read_text()


def test_a_login_the_inventory_does_not_name_can_do_nothing(fleet: ProvisionedBroker, login,
                                                          tmp_path: Path) -> None:
    # A device removed from the inventory keeps a valid certificate until it expires; the ACL,
    # which no longer names it, is what shuts it out.
    ca_key = pki.load_key(fleet.out / "ca" / "ca.key")
    ca_cert = pki.load_cert(fleet.out / "ca" / "ca.crt")
    key = pki.new_key()
    cert = pki.issue(ca_key, ca_cert, "gate-9", key.public_key(), dt.datetime.now(dt.UTC))
    (tmp_path / "c.pem").write_bytes(pki.cert_pem(cert))
    (tmp_path / "k.pem").write_bytes(pki.key_pem(key))
    client = fleet.client((fleet.ca, tmp_path / "c.pem", tmp_path / "k.pem"), "#").start()
    try:
        assert client.publish_ack(f"{ARENA}/gate-9/state", b"x") == NOT_AUTHORIZED
        assert client.publish_ack(f"{GATE1}/cmd/restart", b"x") == NOT_AUTHORIZED
        _publish_everywhere(login)
        assert _topics_read(client, set()) == set()
    finally:
        client.close()


# -- the sentry itself ---------------------------------------------------------------------------


def _mqtt_section(fleet: ProvisionedBroker, kind: str, name: str) -> dict[str, Any]:
    ca, cert, key = fleet.files(kind, name)
    return {"host": "localhost", "port": fleet.port_for(kind), "ca": str(ca), "cert": str(cert),
            "key": str(key), "backoff_min_s": 0.05, "backoff_max_s": 0.5}


def test_a_sentry_and_its_operator_work_with_nothing_more_than_their_grants(
        fleet: ProvisionedBroker, login, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ingester = login("ingesters", "backend-1", f"{ARENA}/+/scan")
    device = {"id": "gate-1", "site": "arena", "state_dir": str(tmp_path / "state")}
    # The operator's key is listed in the sentry's trust list: the broker grant alone changes nothing.
    trust = write_trust(tmp_path / "trust.json", operator_trust(operator_entry(sites=["arena"])))
    keys.save_private_key(OPERATOR, tmp_path / "alice.key.pem")
    daemon = Daemon(from_mapping({"device": device, "outbox": {"path": str(tmp_path / "outbox")},
                                  "trust": {"file": str(trust)},
                                  "gate": {"pulse_ms": 200},
                                  "mqtt": _mqtt_section(fleet, "devices", "gate-1")}),
                    stream=io.StringIO())
    operator_config = tmp_path / "alice.toml"
    alice = _mqtt_section(fleet, "operators", "alice")
    mqtt_lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in alice.items())
    operator_config.write_text(f'[device]\nsite = "arena"\n\n[mqtt]\n{mqtt_lines}\n\n'
                               f'[fleet]\noperator_key = "{tmp_path / "alice.key.pem"}"\n')
    desired = tmp_path / "desired.toml"
    desired.write_text("[es1]\nmax_age_s = 90\n")
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.update(status=daemon.run()), name="test-daemon")
    thread.start()
    try:
        assert ingester.wait_for(f"{GATE1}/scan", timeout=20.0) is not None  # the outbox drains
        assert _wait(lambda: daemon.uplink is not None and daemon.uplink.link.wait_subscribed(0.1))
        assert main(["--config", str(operator_config), "fleet", "push-config", str(desired),
                     "--device", "gate-1"]) == 0
        capsys.readouterr()
        assert main(["--config", str(operator_config), "fleet", "command", "selftest", "--device",
                     "gate-1", "--arg", 'parts=["outbox"]']) == 0
        answer = json.loads(capsys.readouterr().out)
        assert answer["status"] == "ok"
    finally:
        daemon.stop_event.set()
        thread.join(15)
        clear = login("operators", "alice")
        clear.publish_ack(f"{GATE1}/config/desired", b"", retain=True)
    assert not thread.is_alive()


def _wait(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_brokers_certificate_names_only_the_inventorys_hosts(fleet: ProvisionedBroker) -> None:
    # A sentry checks the broker's name against the certificate, so one pointed at another host
    # (or a host posing as the broker with another certificate of this CA) is refused.
    for kind, login in (("devices", "gate-1"), ("operators", "alice")):
        ca, cert, key = fleet.files(kind, login)
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
        context.load_cert_chain(str(cert), str(key))
        port = fleet.port_for(kind)
        for name in ("localhost", "127.0.0.1"):
            with socket.create_connection((fleet.host, port), timeout=5) as raw, \
                    context.wrap_socket(raw, server_hostname=name) as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
        with socket.create_connection((fleet.host, port), timeout=5) as raw, \
                pytest.raises(ssl.SSLCertVerificationError):
            context.wrap_socket(raw, server_hostname="mqtt.elsewhere.example")


# -- the back end's ingester ---------------------------------------------------------------------


def test_a_provisioned_ingester_stores_its_sites_scans_over_tls_and_nothing_of_other_sites(
        fleet: ProvisionedBroker, login, tmp_path: Path) -> None:
    """`fleet ingest`'s shared subscription to every site (`+`) is granted, and the broker's read
    rights per message keep other sites' scans from it."""
    def scans(site: str, device: str) -> bytes:
        return payloads.encode([{"event": "scan", "id": new_event_id(), "seq": 1,
                                 "t": int(time.time() * 1000), "site": site, "device": device,
                                 "entrance": "main", "mode": "scan", "verdict": "accept", "reason": "ok"}])

    mqtt = from_mapping({"mqtt": _mqtt_section(fleet, "ingesters", "backend-1")}).mqtt
    assert mqtt is not None
    store = open_store(str(tmp_path / "fleet.sqlite3"))
    ingester = Ingester(mqtt, store, IngestConfig(batch_wait_s=0.05), retention_days=14,
                        client_id="backend-1-test").connect()
    stop = threading.Event()
    worker = threading.Thread(target=ingester.run, args=(stop,), daemon=True)
    worker.start()
    try:
        assert login("devices", "north-1").publish_ack(f"{NORTH1}/scan", scans("stadium", "north-1")) == 0
        assert login("devices", "gate-1").publish_ack(f"{GATE1}/scan", scans("arena", "gate-1")) == 0
        deadline = time.monotonic() + 20
        while ingester.totals.stored < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(REFUSED_WAIT_S)  # room for the other site's scan to arrive, if the broker let it
        assert ingester.totals.stored == 1
        assert store.counters() == {"stored": 1}
    finally:
        stop.set()
        worker.join(10)
        ingester.close()
        store.close()
