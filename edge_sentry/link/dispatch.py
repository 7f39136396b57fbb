"""Incoming messages to their handlers: subscriptions, their SUBACKs, the `link-handlers` thread.

paho's network thread only records a delivery and hands it over; handlers and connect hooks run one
at a time, in arrival order, on `link-handlers`, so a slow handler never starves keepalives. paho's
per-topic callbacks (`message_callback_add`) would run handlers on the network thread and match
filters itself: instead every subscription carries an MQTT 5 subscription identifier, and with
overlapping filters the broker sends one copy per subscription, each naming its own, so each
handler sees each message once.

Acknowledgement and back-pressure. The client acknowledges by hand (paho's `manual_ack`): a QoS 1
or 2 message is acknowledged (PUBACK, or PUBCOMP) only after its handlers ran on `link-handlers`,
or when it was dropped for a reason a redelivery would not fix (over its subscription's cap). So
no message is acknowledged and then lost in a full queue. The network thread never waits for room:
it would stop answering pings and the broker would drop the connection. Instead the CONNECT
announces a Receive Maximum equal to the handler queue's size, and MQTT 5 forbids the broker to
have more unacknowledged QoS 1 and 2 messages out to the client: a slow handler makes the broker
hold the rest (in its own queue for the client, bounded by its `max_queued_messages`), and the
handler queue never holds more than that per connection. QoS 0 messages have no acknowledgement
and no such bound: over the queue's size they are dropped and counted. The CONNECT also announces a
Maximum Packet Size, the largest cap of any subscription plus room for the topic and properties,
so the broker drops a bigger message for this client instead of sending it (a huge retained
message never reaches the device's memory).

What it must never do: block the network thread, acknowledge a message its handlers have not
taken, let a message over its subscription's cap reach a handler, let a failing handler stop the
others, or log a payload.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from queue import Empty, Queue

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from .connection import Connection, Status
from .messages import Handler, MessageProperties
from .stats import Stats

log = logging.getLogger(__name__)

#: Room in a packet beyond its payload: the fixed header, the topic and the properties (content
#: type, response topic, correlation data, user properties, subscription identifiers). The
#: device's topics are well under 200 bytes and a request's properties under 1 KB.
HEADER_ROOM = 8192
MAX_RECEIVE_MAXIMUM = 65535  # the largest Receive Maximum MQTT 5 can express


@dataclass
class Subscription:
    qos: int
    handlers: list[Handler]
    ident: int  # MQTT 5 subscription identifier: tells which subscription a delivery is for
    max_payload: int  # bigger messages never reach these handlers


@dataclass(frozen=True)
class Delivery:
    """A message for the handlers, with the subscription identifiers the broker named."""

    topic: str
    payload: bytes
    properties: MessageProperties
    idents: frozenset[int]
    conn: Connection | None = None  # where to acknowledge it
    mid: int = 0
    qos: int = 0


@dataclass(frozen=True)
class Connected:
    """A CONNACK came: run the connect hooks."""


Work = Delivery | Connected


def incoming_properties(message: paho.MQTTMessage) -> MessageProperties:
    props = message.properties
    user = getattr(props, "UserProperty", None) or []
    return MessageProperties(
        qos=message.qos,
        retain=bool(message.retain),
        content_type=getattr(props, "ContentType", None),
        response_topic=getattr(props, "ResponseTopic", None),
        correlation_data=getattr(props, "CorrelationData", None),
        message_expiry_s=getattr(props, "MessageExpiryInterval", None),
        user_properties=tuple((str(k), str(v)) for k, v in user),
    )


class Dispatch:
    """Subscriptions (guarded by the status lock, which they share with the live connection) and
    the `link-handlers` thread's work."""

    def __init__(self, status: Status, stats: Stats, stop: threading.Event, *, default_cap: int,
                 queue_size: int) -> None:
        self._status = status
        self._stats = stats
        self._stop = stop
        self._default_cap = default_cap
        self._subs: dict[str, Subscription] = {}
        self._next_ident = 0
        self._suback: dict[tuple[int, int], list[str]] = {}
        self._hooks: list[Callable[[], None]] = []
        # Unbounded as a Queue: QoS 0 work is bounded by `queue_size` here, QoS 1 and 2 by the
        # Receive Maximum announced in CONNECT (see the module docstring).
        self._queue: Queue[Work] = Queue()
        self.receive_maximum = min(queue_size, MAX_RECEIVE_MAXIMUM)

    # -- the subscriptions (any thread) ---------------------------------------------------------

    def add(self, topic_filter: str, handler: Handler, qos: int, cap: int) -> None:
        """Add `handler` on `topic_filter`, then subscribe on the live connection if there is one."""
        with self._status.lock:
            sub = self._subs.get(topic_filter)
            if sub is None:
                self._next_ident += 1
                sub = self._subs[topic_filter] = Subscription(qos, [], self._next_ident, cap)
            sub.handlers.append(handler)
            sub.qos = max(sub.qos, qos)
            sub.max_payload = max(sub.max_payload, cap)
            conn = self._status.live
        if conn is not None:
            self.send(conn, [topic_filter])

    def remove(self, topic_filter: str, handler: Handler | None) -> None:
        """Remove `handler` (or every handler) from `topic_filter`; unsubscribe when none is left."""
        with self._status.lock:
            sub = self._subs.get(topic_filter)
            if sub is None:
                return
            if handler is not None:
                sub.handlers = [h for h in sub.handlers if h is not handler]
            if handler is None or not sub.handlers:
                del self._subs[topic_filter]
                conn = self._status.live
            else:
                conn = None
        if conn is not None and conn.client is not None:
            conn.client.unsubscribe(topic_filter)

    def add_hook(self, hook: Callable[[], None]) -> None:
        with self._status.lock:
            self._hooks.append(hook)

    def packet_limit(self) -> int:
        """The Maximum Packet Size to announce in CONNECT: the largest payload any subscription
        takes (`mqtt.max_payload` at least), plus room for the rest of the packet."""
        with self._status.lock:
            largest = max((s.max_payload for s in self._subs.values()), default=0)
        return max(largest, self._default_cap) + HEADER_ROOM

    def filters_locked(self) -> list[str]:
        """Every subscribed filter (caller holds the status lock)."""
        return list(self._subs)

    def all_answered_locked(self, conn: Connection) -> bool:
        """Whether every subscription has its SUBACK on `conn` (caller holds the status lock)."""
        return set(self._subs) <= conn.answered

    def send(self, conn: Connection, filters: list[str]) -> None:
        """One SUBSCRIBE per filter, since a subscription identifier belongs to the whole packet."""
        with self._status.lock:
            wanted = [(f, self._subs[f].qos, self._subs[f].ident) for f in filters if f in self._subs]
        if conn.client is None:
            return
        for topic_filter, qos, ident in wanted:
            props = Properties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = ident
            # no_local: the device never needs its own messages back.
            options = SubscribeOptions(qos=qos, noLocal=True)
            rc, mid = conn.client.subscribe([(topic_filter, options)], properties=props)
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                with self._status.lock:
                    self._suback[(conn.gen, mid)] = [topic_filter]

    # -- paho's network thread: record and hand over, never block -------------------------------

    def forget(self, conn: Connection) -> None:
        """`conn` ended: its SUBACKs will never come."""
        with self._status.lock:
            for key in [k for k in self._suback if k[0] == conn.gen]:
                del self._suback[key]

    def subscribed(self, conn: Connection, mid: int, reasons: list[ReasonCode]) -> None:
        with self._status.changed:
            filters = self._suback.pop((conn.gen, mid), [])
            conn.answered.update(filters)
            self._status.changed.notify_all()
        for i, reason in enumerate(reasons):
            if reason.is_failure:
                name = filters[i] if i < len(filters) else "?"
                self._stats.error(f"subscription to {name} refused: {reason}", counter="subscribe_failures")
                log.error("subscription to %s refused: %s (0x%02x)", name, reason, reason.value)

    def received(self, conn: Connection, message: paho.MQTTMessage) -> None:
        size = len(message.payload)
        self._stats.count("received")
        idents = frozenset(getattr(message.properties, "SubscriptionIdentifier", None) or [])
        with self._status.lock:
            cap = max((s.max_payload for s in self._matching(message.topic, idents)),
                      default=self._default_cap)
        work = Delivery(message.topic, bytes(message.payload), incoming_properties(message), idents,
                        conn, message.mid, message.qos)
        if size > cap:
            self._stats.count("rejected")
            log.warning("message on %s dropped: %d bytes, over its subscription's cap (%d)",
                        message.topic, size, cap)
            self._ack(work)  # sent again, it would be just as big
            return
        if message.qos == 0 and self._queue.qsize() >= self.receive_maximum:
            self._stats.count("rejected")
            log.warning("QoS 0 message on %s dropped: handlers are %d messages behind",
                        message.topic, self.receive_maximum)
            return
        self._queue.put_nowait(work)

    def connected(self) -> None:
        """Queue the connect hooks behind what is already waiting."""
        self._queue.put_nowait(Connected())

    def _ack(self, work: Delivery) -> None:
        """Acknowledge a QoS 1 or 2 message on the connection it came on, if that is still up (the
        session is clean on every connect: a dead connection's messages are not sent again)."""
        conn = work.conn
        if work.qos == 0 or conn is None or conn.client is None or conn.down:
            return
        try:
            conn.client.ack(work.mid, work.qos)
        except Exception:  # the socket went away under us: the broker forgets it with the session
            log.debug("acknowledgement of message %d failed", work.mid, exc_info=True)

    def _matching(self, topic: str, idents: frozenset[int]) -> list[Subscription]:
        """The subscriptions a delivery is for (caller holds the status lock). A broker that names
        no subscription identifier gets the filters matched here."""
        return [s for f, s in self._subs.items()
                if (s.ident in idents if idents else paho.topic_matches_sub(f, topic))]

    # -- the link-handlers thread ---------------------------------------------------------------

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                work = self._queue.get(timeout=0.25)
            except Empty:
                continue
            if isinstance(work, Connected):
                self._run_hooks()
            else:
                self._deliver(work)

    def _run_hooks(self) -> None:
        with self._status.lock:
            hooks = list(self._hooks)
        for hook in hooks:
            try:
                hook()
            except Exception:
                self._stats.count("handler_errors")
                log.exception("link connect hook %r failed", hook)

    def _deliver(self, work: Delivery) -> None:
        with self._status.lock:
            matching = [h for s in self._matching(work.topic, work.idents)
                        if len(work.payload) <= s.max_payload for h in s.handlers]
        for handler in matching:
            try:
                handler(work.topic, work.payload, work.properties)
            except Exception:
                self._stats.count("handler_errors")
                log.exception("handler %r failed for a message on %s", handler, work.topic)
        # Taken, even by a handler that failed: a redelivery would fail the same way.
        self._ack(work)
