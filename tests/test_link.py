"""The fleet link against a real Mosquitto (tests/broker.py): birth and offline state, refusals,
TLS, the outbox drain and its PUBACK rule, the ACL, handlers, request/response, held messages.

Every wait polls under a deadline; no assertion is about speed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from broker import Broker
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_sentry.config import Config
from edge_sentry.link import Link, LinkError, LinkState, MessageProperties
from edge_sentry.outbox import Outbox

WAIT = 20.0  # generous bound for things that normally take milliseconds


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT, step: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        time.sleep(step)


@pytest.fixture
def links() -> Iterator[Callable[..., Link]]:
    """Make links that are stopped at the end of the test, whatever happens."""
    made: list[Link] = []

    def make(config: Config, outbox: Outbox | None = None, **kwargs: Any) -> Link:
        link = Link(config, outbox, **kwargs)
        made.append(link)
        return link

    yield make
    for link in made:
        link.stop(2.0)


@pytest.fixture
def outboxes() -> Iterator[Callable[[Config], Outbox]]:
    made: list[Outbox] = []

    def make(config: Config) -> Outbox:
        box = Outbox(Path(config.outbox.path), max_events=100_000, queue_size=10_000, retention_days=14)
        box.start()
        made.append(box)
        return box

    yield make
    for box in made:
        box.stop()


def scan(n: int) -> dict[str, Any]:
    return {"event": "scan", "mode": "scan", "verdict": "accept", "reason": "ok", "n": n}


def fill(box: Outbox, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    stamped = [box.put(e) for e in events]
    assert all(s is not None for s in stamped)
    assert box.flush(WAIT)
    return stamped  # type: ignore[return-value]


def state_of(message: Any) -> dict[str, Any]:
    return cbor2.loads(message.payload)


# -- state: birth, boot count, offline -----------------------------------------------------------


def test_birth_is_retained_online_with_versions_and_boot_count_counts_starts(broker, broker_config,
                                                                           subscriber, links, open_store):
    config = broker_config()
    topic = f"sentry/v1/{broker.site}/{config.device.id}/state"
    first = links(config, boot_counter=open_store(config).next_boot_count)
    first.update_state(config_version=3, trust_version=7)  # before start: the birth carries them
    first.start()
    assert first.wait_connected(WAIT)
    late = subscriber(topic)
    birth = late.wait_for(topic, lambda m: state_of(m)["online"])  # retained, or live if just sent
    assert birth is not None, broker.log_tail()
    # Once it has been delivered, it is stored: a subscriber that comes later gets it retained.
    kept = subscriber(topic).wait_for(topic, lambda m: m.retain)
    assert kept is not None and kept.payload == birth.payload
    body = state_of(birth)
    assert birth.properties["ContentType"] == "application/cbor"
    assert body["boot_count"] == 1
    assert (body["config_version"], body["trust_version"]) == (3, 7)
    assert body["firmware"] and body["boot_id"] and isinstance(body["t"], int)

    first.stop()
    offline = late.wait_for(topic, lambda m: state_of(m)["online"] is False)
    assert offline is not None and state_of(offline)["reason"] == "stopped"

    second = links(config, boot_counter=open_store(config).next_boot_count)  # the state kept, reopened
    second.start()
    assert second.wait_connected(WAIT)
    again = late.wait_for(topic, lambda m: state_of(m)["online"] and state_of(m)["boot_count"] == 2)
    assert again is not None
    assert state_of(again)["boot_id"] == body["boot_id"]  # same process: a restart, not a reboot


def test_update_state_republishes_what_changed(broker_config, subscriber, links):
    config = broker_config()
    link = links(config)
    link.update_state(config_version=1, trust_version=1)
    sub = subscriber(link.topics.state)
    link.start()
    assert link.wait_connected(WAIT)
    link.update_state(trust_version=8, note="trust pushed")
    got = sub.wait_for(link.topics.state, lambda m: state_of(m)["trust_version"] == 8)
    assert got is not None
    assert state_of(got)["note"] == "trust pushed" and state_of(got)["online"] is True
    assert state_of(got)["config_version"] == 1  # merged into, not replaced


def test_stop_leaves_a_retained_offline_state_and_no_will(broker_config, subscriber, links):
    config = broker_config()
    link = links(config)
    link.start()
    assert link.wait_connected(WAIT)
    link.stop()
    assert link.state() == "stopped"
    later = subscriber(link.topics.state)
    retained = later.wait_for(link.topics.state, lambda m: m.retain)
    assert retained is not None
    assert state_of(retained)["online"] is False and state_of(retained)["reason"] == "stopped"


# -- refusals and TLS ----------------------------------------------------------------------------


def test_wrong_password_is_refused_never_connected_and_retried(broker_config, links):
    seen: list[str] = []
    link = links(broker_config(password="not-the-password"), on_state=seen.append)
    link.start()
    assert link.wait_state(LinkState.REFUSED, timeout=WAIT)
    assert wait_until(lambda: link.stats()["refusals"] >= 2), link.stats()  # retried, with backoff
    stats = link.stats()
    assert stats["connects"] == 0
    assert LinkState.CONNECTED not in seen and link.state() == LinkState.REFUSED
    assert "refused" in stats["last_error"] and "authori" in stats["last_error"].lower()


def test_tls_with_a_client_certificate_connects(broker_config, subscriber, links):
    config = broker_config(tls=True)
    assert config.mqtt.ca and config.mqtt.cert and config.mqtt.username is None
    sub = subscriber(f"sentry/v1/{config.device.site}/{config.device.id}/state")
    link = links(config)
    link.start()
    assert link.wait_connected(WAIT), link.stats()
    assert sub.wait_for(link.topics.state, lambda m: state_of(m)["online"]) is not None


def test_tls_without_a_client_certificate_is_refused(broker_config, links):
    seen: list[str] = []
    link = links(broker_config(tls=True, cert=None, key=None), on_state=seen.append)
    link.start()
    assert link.wait_state(LinkState.REFUSED, timeout=WAIT), link.stats()
    assert link.stats()["connects"] == 0 and LinkState.CONNECTED not in seen
    assert "certificate" in link.stats()["last_error"]


def test_tls_with_an_unknown_ca_never_connects(broker, broker_config, links, tmp_path):
    stranger = Broker(tmp_path / "other-pki", executable=broker.executable)  # its CA, never started
    link = links(broker_config(tls=True, ca=str(stranger.ca)))
    link.start()
    assert wait_until(lambda: "certificate verify failed" in (link.stats()["last_error"] or ""))
    assert link.stats()["connects"] == 0


def test_a_config_without_broker_or_with_a_missing_password_file_is_a_link_error(broker_config,
                                                                               tmp_path):
    base = broker_config()
    with pytest.raises(LinkError, match="no \\[mqtt\\]"):
        Link(Config(device=base.device))
    missing = broker_config(password=None, password_file=str(tmp_path / "nope"))
    with pytest.raises(LinkError, match="password_file"):
        Link(missing).start()


# -- draining the outbox -------------------------------------------------------------------------


def test_outbox_events_arrive_oldest_first_as_cbor_batches_and_events_alone(broker_config, outboxes,
                                                                           subscriber, links):
    config = broker_config(batch_size=40)
    box = outboxes(config)
    events = [scan(n) for n in range(100)]
    events.insert(55, {"event": "door-held", "held_s": 31})
    stamped = fill(box, events)
    link = links(config, box)
    sub = subscriber(f"{link.topics.prefix}/#")
    link.start()
    assert wait_until(lambda: box.stats()["depth"] == 0), link.stats()

    def arrived() -> list[Any]:
        return [m for m in sub.messages if m.topic in (link.topics.scan, link.topics.event)]

    assert wait_until(lambda: sum(len(cbor2.loads(m.payload)) if m.topic == link.topics.scan else 1
                                  for m in arrived()) >= 101)
    order: list[int] = []
    for m in arrived():
        assert m.properties["ContentType"] == "application/cbor" and not m.retain and m.qos == 1
        body = cbor2.loads(m.payload)
        if m.topic == link.topics.scan:
            assert isinstance(body, list) and 1 <= len(body) <= 40
            assert all(e["event"] == "scan" for e in body)
            order += [e["seq"] for e in body]
        else:
            assert isinstance(body, dict) and body["event"] == "door-held" and body["held_s"] == 31
            order.append(body["seq"])
    assert order == [e["seq"] for e in stamped]  # oldest first, nothing missing, nothing twice
    assert link.stats()["acked"] == 101


def test_events_leave_the_outbox_only_when_their_puback_arrives(broker, broker_config, outboxes,
                                                                links):
    config = broker_config()
    box = outboxes(config)
    link = links(config, box)
    link.start()
    assert link.wait_connected(WAIT)
    broker.pause()  # connection open, nothing answered: PUBACKs cannot come
    try:
        fill(box, [scan(n) for n in range(30)])
        link.wake()
        assert wait_until(lambda: link.stats()["events_sent"] >= 30), link.stats()
        time.sleep(0.3)  # room for a wrong early ack to show; the assertion holds either way
        assert box.stats()["depth"] == 30 and link.stats()["acked"] == 0
    finally:
        broker.resume()
    assert wait_until(lambda: box.stats()["depth"] == 0), link.stats()
    assert link.stats()["acked"] == 30


def test_a_failure_reason_code_in_the_puback_is_not_an_ack(tmp_path, outboxes, links, broker):
    # A broker whose ACL lets the device keep its state topic but not publish scans.
    acl = ("user gate-1\ntopic readwrite sentry/v1/arena/gate-1/state\n"
           "user operator\ntopic readwrite #\n")
    with Broker(tmp_path / "strict", acl=acl, executable=broker.executable) as strict:
        config = strict.config(tmp_path / "sentry")
        box = outboxes(config)
        fill(box, [scan(n) for n in range(12)])
        link = links(config, box)
        link.start()
        assert wait_until(lambda: link.stats()["puback_failures"] >= 1), (link.stats(), strict.log_tail())
        assert box.stats()["depth"] == 12 and link.stats()["acked"] == 0
        link.stop()
        assert box.stats()["depth"] == 12



def test_a_broker_maximum_packet_size_splits_batches_and_never_loops_on_a_message_too_big(
        tmp_path, outboxes, links, broker):
    """Mosquitto drops a client that sends a packet over its max_packet_size, so a batch or a held
    message too big for it would be sent again after every reconnect, for ever."""
    with Broker(tmp_path / "small", extra_config="max_packet_size 4000",
                executable=broker.executable) as small:
        config = small.config(tmp_path / "sentry", batch_size=100)
        box = outboxes(config)
        events = [dict(scan(n), pad="x" * 100) for n in range(60)]
        events.insert(30, dict(scan(99), pad="x" * 5000))  # can never fit, even alone
        stamped = fill(box, events)
        link = links(config, box)
        sub = small.subscriber(f"{link.topics.prefix}/#")
        try:
            link.start()
            assert link.wait_connected(WAIT)
            link.publish("config/reported", {"pad": "x" * 5000}, retain=True)
            link.publish("config/reported", {"version": 1}, retain=True)
            assert wait_until(lambda: box.stats()["depth"] == 1), (link.stats(), small.log_tail())
            assert sub.wait_for(link.topics.config_reported) is not None
            expected = [e["seq"] for e in stamped if e["n"] != 99]

            def sent() -> list[int]:
                return [e["seq"] for m in sub.on(link.topics.scan) for e in cbor2.loads(m.payload)]

            assert wait_until(lambda: len(sent()) >= len(expected))
            assert sent() == expected
            assert [e["n"] for e in box.pending(10)] == [99]  # left in the outbox, not acked
            stats = link.stats()
            assert stats["disconnects"] == 0 and stats["oversized"] == 2, stats
        finally:
            sub.close()


# -- the ACL -------------------------------------------------------------------------------------


def test_the_device_cannot_publish_or_read_outside_its_prefix(broker, broker_config, subscriber, links):
    config = broker_config()
    other = f"sentry/v1/{broker.site}/{broker.devices[1]}"
    foreign = [f"{other}/state", "sentry/v1/elsewhere/gate-1/scan"]
    sub = subscriber("#")
    link = links(config)
    got: list[str] = []
    link.subscribe(f"{other}/cmd/+", lambda topic, payload, props: got.append(topic))
    link.subscribe("cmd/+", lambda topic, payload, props: got.append(topic))
    link.start()
    assert link.wait_subscribed(WAIT)
    assert link.publish(foreign[0], {"online": True}, retain=True) is True
    assert link.publish(foreign[1], [{"id": "x"}]) is True
    assert wait_until(lambda: link.stats()["puback_failures"] >= 2), link.stats()
    # Messages from one client reach a subscriber in order: once a later one is in, the refused
    # ones would have been in before it had the broker taken them.
    assert link.publish("health", {"marker": 1}, qos=1)
    assert sub.wait_for(link.topics.health) is not None, link.stats()
    assert not [m for m in sub.messages if m.topic in foreign]
    # Reading: a command for the other device is never delivered, one for this device is.
    sub.publish(f"{other}/cmd/selftest", b"{}")
    sub.publish(link.topics.cmd("selftest"), b"{}")
    assert wait_until(lambda: got)
    assert got == [link.topics.cmd("selftest")]


# -- handlers, request/response, held messages, size cap ----------------------------------------


def test_handlers_run_on_the_worker_thread_answer_requests_and_survive_reconnects(broker, broker_config,
                                                                                 subscriber, links):
    config = broker_config()
    link = links(config)
    calls: list[tuple[str, bytes, MessageProperties, str]] = []

    def handler(topic: str, payload: bytes, props: MessageProperties) -> None:
        calls.append((topic, payload, props, threading.current_thread().name))
        link.respond(props.response_topic, props.correlation_data, {"ok": True, "n": len(calls)})

    assert link.subscribe("cmd/+", handler) == link.topics.cmd_filter
    link.start()
    assert link.wait_subscribed(WAIT)
    reply_topic = f"{link.topics.prefix}/reply/op-1"
    sub = subscriber([reply_topic])

    def ask(correlation: bytes) -> None:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = reply_topic
        props.CorrelationData = correlation
        props.ContentType = "application/json"
        sub.publish(link.topics.cmd("selftest"), b'{"deadline": 1}', properties=props)

    ask(b"c-1")
    reply = sub.wait_for(reply_topic, lambda m: m.properties.get("CorrelationData") == b"c-1")
    assert reply is not None and cbor2.loads(reply.payload) == {"ok": True, "n": 1}
    topic, payload, props, thread = calls[0]
    assert topic == link.topics.cmd("selftest") and payload == b'{"deadline": 1}'
    assert props.content_type == "application/json" and props.qos == 1 and not props.retain
    assert thread == "link-handlers"

    broker.stop()
    try:
        assert link.wait_state("disconnected", "connecting", timeout=WAIT)
    finally:
        broker.start()
    assert link.wait_subscribed(WAIT)
    ask(b"c-2")  # the subscription was made again after the reconnect
    assert sub.wait_for(reply_topic, lambda m: m.properties.get("CorrelationData") == b"c-2") is not None


def test_connect_hooks_run_after_every_connect(broker, broker_config, links):
    link = links(broker_config())
    ran: list[str] = []
    link.add_connect_hook(lambda: ran.append(threading.current_thread().name))
    link.start()
    assert wait_until(lambda: len(ran) == 1)
    broker.stop()
    try:
        assert link.wait_state("disconnected", "connecting", timeout=WAIT)
    finally:
        broker.start()
    assert wait_until(lambda: len(ran) == 2)
    assert set(ran) == {"link-handlers"}


def test_messages_published_while_disconnected_are_held_until_the_next_connect(broker, broker_config,
                                                                               subscriber, links):
    link = links(broker_config())
    link.start()
    assert link.wait_connected(WAIT)
    broker.stop()
    try:
        assert link.wait_state("disconnected", "connecting", timeout=WAIT)
        assert link.publish("config/reported", {"version": 1, "status": "applied"}, retain=True)
        assert link.publish("config/reported", {"version": 2, "status": "applied"}, retain=True)
        assert link.publish("health", {"uptime_s": 1}, qos=0, retain=True) is False  # QoS 0: dropped
        assert link.stats()["held"] == 1  # the newer retained report replaced the older one
    finally:
        broker.start()
    assert link.wait_connected(WAIT)
    assert wait_until(lambda: link.stats()["held"] == 0)
    sub = subscriber(link.topics.config_reported)
    reported = sub.wait_for(link.topics.config_reported)  # retained, or live if it came just now
    assert reported is not None and cbor2.loads(reported.payload)["version"] == 2
    later = subscriber(link.topics.config_reported)
    kept = later.wait_for(link.topics.config_reported, lambda m: m.retain)
    assert kept is not None and cbor2.loads(kept.payload)["version"] == 2


def test_incoming_messages_over_max_payload_never_reach_handlers(broker_config, subscriber, links):
    link = links(broker_config(max_payload=1024))
    got: list[bytes] = []
    link.subscribe("cmd/+", lambda topic, payload, props: got.append(payload))
    link.start()
    assert link.wait_subscribed(WAIT)
    sub = subscriber("unused/topic")
    sub.publish(link.topics.cmd("snapshot"), b"x" * 2000)
    sub.publish(link.topics.cmd("snapshot"), b"{}")
    assert wait_until(lambda: got == [b"{}"])
    assert link.stats()["rejected"] == 1


def test_a_slow_or_failing_handler_neither_stalls_the_connection_nor_stops_other_handlers(
        broker_config, subscriber, links):
    link = links(broker_config())
    entered, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow(topic: str, payload: bytes, props: MessageProperties) -> None:
        entered.set()
        release.wait(WAIT)

    def failing(topic: str, payload: bytes, props: MessageProperties) -> None:
        raise RuntimeError("handler bug")

    link.subscribe("cmd/slow", slow)
    link.subscribe("cmd/+", failing)
    link.subscribe("cmd/+", lambda topic, payload, props: calls.append(topic))
    link.start()
    assert link.wait_subscribed(WAIT)
    sub = subscriber(link.topics.health)
    sub.publish(link.topics.cmd("slow"), b"{}")
    try:
        assert entered.wait(WAIT)
        # The handler thread is stuck, the network thread is not: a publish still gets through.
        assert link.publish("health", {"alive": True})
        assert sub.wait_for(link.topics.health) is not None
        assert link.state() == LinkState.CONNECTED
    finally:
        release.set()
    assert wait_until(lambda: calls == [link.topics.cmd("slow")])
    assert link.stats()["handler_errors"] == 1
