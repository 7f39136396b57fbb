"""What the link announces in CONNECT, against a real Mosquitto (tests/broker.py): a Maximum Packet
Size, so the broker never sends a message bigger than the device takes, and a Receive Maximum with
acknowledgements sent only once the handlers took a message, so a slow handler holds the broker
back instead of losing messages.

Every wait polls under a deadline; no assertion is about speed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from edge_sentry.config import Config
from edge_sentry.link import Link, LinkState, MessageProperties
from edge_sentry.link.dispatch import HEADER_ROOM

WAIT = 20.0


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT, step: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


@pytest.fixture
def links() -> Iterator[Callable[..., Link]]:
    made: list[Link] = []

    def make(config: Config, **kwargs: Any) -> Link:
        link = Link(config, **kwargs)
        made.append(link)
        return link

    yield make
    for link in made:
        link.stop(2.0)


def test_a_retained_message_over_the_cap_never_leaves_the_broker_and_the_link_stays_up(
        broker_config, subscriber, links):
    config = broker_config(max_payload=1024)
    link = links(config)
    got: list[bytes] = []
    link.subscribe("cmd/+", lambda topic, payload, props: got.append(payload))
    operator = subscriber("unused/topic")
    huge = b"x" * (1024 + HEADER_ROOM + 1)  # bigger than the whole packet the link announced
    operator.publish(link.topics.cmd("snapshot"), huge, retain=True)
    try:
        link.start()
        assert link.wait_subscribed(WAIT)
        operator.publish(link.topics.cmd("selftest"), b"{}")
        assert wait_until(lambda: got == [b"{}"]), link.stats()
        stats = link.stats()
        # Not dropped by the link's own cap: the broker never sent it (received counts every
        # message paho read off the socket), and it did not end the connection over it.
        assert stats["received"] == 1 and stats["rejected"] == 0
        assert link.state() == LinkState.CONNECTED and stats["connects"] == 1
        assert stats["disconnects"] == 0
    finally:
        operator.publish(link.topics.cmd("snapshot"), b"", retain=True)  # clear the retained one


def test_a_subscription_with_a_larger_cap_made_while_connected_announces_it_again(
        broker_config, subscriber, links):
    link = links(broker_config(max_payload=1024))
    link.start()
    assert link.wait_connected(WAIT)
    got: list[int] = []
    link.subscribe("trust", lambda topic, payload, props: got.append(len(payload)), max_payload=64 * 1024)
    # The link connects again at once, announcing room for the trust topic's messages.
    assert wait_until(lambda: link.stats()["connects"] == 2), link.stats()
    assert link.wait_subscribed(WAIT)
    operator = subscriber("unused/topic")
    operator.publish(link.topics.trust, b"t" * 50_000)
    assert wait_until(lambda: got == [50_000]), link.stats()
    assert "lost" not in (link.stats()["last_error"] or "")  # on purpose, not a loss


def test_a_slow_handler_holds_the_broker_back_and_loses_no_qos1_message(broker_config, subscriber, links):
    queue = 4
    link = links(broker_config(), handler_queue=queue)
    release = threading.Event()
    handled: list[bytes] = []

    def slow(topic: str, payload: bytes, props: MessageProperties) -> None:
        release.wait(WAIT)
        handled.append(payload)

    link.subscribe("cmd/+", slow)
    link.start()
    assert link.wait_subscribed(WAIT)
    operator = subscriber("unused/topic")
    burst = [f"m{n:03d}".encode() for n in range(10 * queue)]
    for payload in burst:
        operator.publish(link.topics.cmd("selftest"), payload)
    try:
        # The first message is stuck in the handler, unacknowledged: the broker may have at most
        # the announced Receive Maximum out to the link, and keeps the rest for later.
        assert wait_until(lambda: link.stats()["received"] == queue), link.stats()
        time.sleep(0.5)
        assert link.stats()["received"] == queue
        assert link.state() == LinkState.CONNECTED
    finally:
        release.set()
    assert wait_until(lambda: len(handled) == len(burst)), (len(handled), link.stats())
    assert handled == burst  # every one, once, in order
    assert link.stats()["rejected"] == 0


def test_a_handler_too_slow_for_a_burst_still_gets_every_message(broker_config, subscriber, links):
    link = links(broker_config(), handler_queue=2)
    handled: list[bytes] = []

    def slow(topic: str, payload: bytes, props: MessageProperties) -> None:
        time.sleep(0.01)
        handled.append(payload)

    link.subscribe("cmd/+", slow)
    link.start()
    assert link.wait_subscribed(WAIT)
    operator = subscriber("unused/topic")
    burst = [f"b{n:03d}".encode() for n in range(200)]
    for payload in burst:
        operator.publish(link.topics.cmd("pulse-gate"), payload)
    assert wait_until(lambda: len(handled) == len(burst)), (len(handled), link.stats())
    assert handled == burst
    assert link.stats()["rejected"] == 0 and link.stats()["received"] == len(burst)
