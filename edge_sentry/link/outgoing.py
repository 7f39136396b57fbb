"""Messages out of publish(), respond() and the state topic: properties, size, holding while
offline, and matching PUBACKs to what was published.

paho would queue QoS 1 messages across reconnects by itself, but the link builds a fresh client for
every attempt (nothing of a dead connection leaks into the next), and paho's queue is unbounded and
keeps every retained message: here a newer retained message replaces an older one on its topic and
the queue is bounded. What it must never do: block on the network, hold a QoS 0 message (health is
re-sent every interval anyway), or send a message over the broker's Maximum Packet Size (the broker
would drop the connection, and the message would go out again after every reconnect, for ever).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from . import payloads
from .connection import Connection, Status
from .messages import Payload
from .payloads import CBOR
from .stats import Stats

log = logging.getLogger(__name__)


def publish_properties(
    content_type: str | None,
    *,
    response_topic: str | None = None,
    correlation_data: bytes | None = None,
    expiry_s: int | None = None,
    user_properties: Iterable[tuple[str, str]] | None = None,
    packet: int = PacketTypes.PUBLISH,
) -> Properties | None:
    """MQTT 5 properties for a PUBLISH (or a Will), None when there is none to send."""
    props = Properties(packet)
    used = False
    if content_type:
        props.ContentType = content_type
        used = True
    if response_topic is not None:
        props.ResponseTopic = response_topic
        used = True
    if correlation_data is not None:
        props.CorrelationData = bytes(correlation_data)
        used = True
    if expiry_s is not None:
        props.MessageExpiryInterval = int(expiry_s)
        used = True
    if user_properties:
        props.UserProperty = list(user_properties)
        used = True
    return props if used else None


def packet_size(topic: str, payload: bytes, qos: int, properties: Properties | None) -> int:
    """Bytes of the MQTT 5 PUBLISH packet carrying `payload` (section 3.3: fixed header, topic,
    packet id at QoS 1 and 2, properties), to compare with the broker's Maximum Packet Size."""
    props = len(properties.pack()) if properties is not None else 1
    remaining = 2 + len(topic.encode()) + (2 if qos else 0) + props + len(payload)
    varint = 1 if remaining < 128 else 2 if remaining < 16_384 else 3 if remaining < 2_097_152 else 4
    return 1 + varint + remaining


@dataclass
class Outgoing:
    """A message from publish(), respond() or the state topic."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties | None
    requeue: bool = True  # hold it again if the connection drops before its PUBACK
    done: threading.Event | None = None
    ok: bool = False


def outgoing(topic: str, payload: Payload, qos: int, retain: bool, content_type: str | None,
             **props: Any) -> Outgoing:
    """A message ready to send: a map or list CBOR-encoded (application/cbor), bytes as they are."""
    if isinstance(payload, bytes | bytearray | memoryview):
        data = bytes(payload)
    else:
        data = payloads.encode(payload)
        content_type = content_type or CBOR
    return Outgoing(topic, data, qos, retain, publish_properties(content_type, **props))


class Lost(Enum):
    """Tracker.register(): the connection ended before the message could be tracked."""

    LOST = "lost"


R = TypeVar("R")


class Tracker(Generic[R]):
    """Matches PUBACKs to what was published, across threads, without holding a lock while paho
    runs: a PUBACK may be handled before publish() has returned its mid to the publisher, so an
    early outcome is kept until the publisher registers the mid."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[int] = set()
        self._waiting: dict[tuple[int, int], R] = {}
        self._early: dict[tuple[int, int], ReasonCode] = {}

    def open(self, gen: int) -> None:
        with self._lock:
            self._open.add(gen)

    def register(self, gen: int, mid: int, record: R) -> ReasonCode | Lost | None:
        """None: wait for the outcome; a ReasonCode: it already came; Lost: connection gone."""
        with self._lock:
            if gen not in self._open:
                return Lost.LOST
            early = self._early.pop((gen, mid), None)
            if early is None:
                self._waiting[(gen, mid)] = record
            return early

    def resolve(self, gen: int, mid: int, reason: ReasonCode) -> R | None:
        with self._lock:
            record = self._waiting.pop((gen, mid), None)
            if record is None and gen in self._open:
                self._early[(gen, mid)] = reason
            return record

    def close(self, gen: int) -> list[R]:
        """Forget connection `gen`; return the records still waiting for their PUBACK."""
        with self._lock:
            self._open.discard(gen)
            keys = [k for k in self._waiting if k[0] == gen]
            for k in [k for k in self._early if k[0] == gen]:
                del self._early[k]
            return [self._waiting.pop(k) for k in keys]


class Post:
    """Sends messages on the live connection, or holds them (bounded) for the next one."""

    def __init__(self, status: Status, stats: Stats, tracker: Tracker[Any], stop: threading.Event,
                 max_held: int) -> None:
        self._status = status
        self._stats = stats
        self._tracker = tracker
        self._stop = stop
        self._max_held = max_held
        self._held: OrderedDict[tuple[str, Any], Outgoing] = OrderedDict()  # guarded by status.lock
        self._held_seq = 0

    def submit(self, msg: Outgoing) -> bool:
        """Send `msg` now if connected, else hold it; False if it was dropped."""
        with self._status.lock:
            conn = self._status.live
            if conn is None:
                return self._hold_locked(msg)
        return self.send(conn, msg)

    def held_count_locked(self) -> int:
        return len(self._held)

    def take_held_locked(self, *, except_topic: str) -> list[Outgoing]:
        """Everything held, oldest first, but what was held for `except_topic` (caller holds
        status.lock): the connection that takes them sends its own state."""
        held = [m for m in self._held.values() if m.topic != except_topic]
        self._held.clear()
        return held

    def _hold_locked(self, msg: Outgoing, *, requeued: bool = False) -> bool:
        """Keep `msg` for the next connection (caller holds status.lock)."""
        if msg.qos == 0 or self._stop.is_set():
            self._stats.count("dropped")
            return False
        if msg.retain:
            key: tuple[str, Any] = ("retained", msg.topic)
            if requeued and key in self._held:
                return True  # a newer message for that topic is already waiting
            self._held.pop(key, None)
        else:
            self._held_seq += 1
            key = ("message", self._held_seq)
        self._held[key] = msg
        while len(self._held) > self._max_held:
            self._held.popitem(last=False)
            self._stats.count("dropped")
        return True

    def send(self, conn: Connection, msg: Outgoing) -> bool:
        """Publish on `conn`; outside any lock of ours (paho takes its own)."""
        client = conn.client
        assert client is not None
        if conn.max_packet is not None and (
            packet_size(msg.topic, msg.payload, msg.qos, msg.properties) > conn.max_packet
        ):
            self._stats.count("oversized")
            self._stats.error(f"a message on {msg.topic} is over the broker's maximum packet size")
            log.error("message on %s dropped: %d bytes, over the broker's maximum packet size (%d)",
                      msg.topic, len(msg.payload), conn.max_packet)
            if msg.done is not None:
                msg.done.set()
            return False
        try:
            info = client.publish(msg.topic, msg.payload, msg.qos, msg.retain, msg.properties)
        except (ValueError, TypeError) as exc:
            log.error("cannot publish to %s: %s", msg.topic, exc)
            self._stats.count("dropped")
            return False
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return self.requeue(msg)
        self._stats.count("published")
        outcome = self._tracker.register(conn.gen, info.mid, msg)
        if outcome is Lost.LOST:
            return self.requeue(msg)
        if outcome is not None:
            self.done(msg, outcome)
        return True

    def requeue(self, msg: Outgoing) -> bool:
        """Hold `msg` again after its connection ended before its PUBACK (unless it must not be)."""
        if not msg.requeue:
            return False
        with self._status.lock:
            return self._hold_locked(msg, requeued=True)

    def lost(self, msg: Outgoing) -> None:
        """`msg`'s connection ended before its PUBACK: wake whoever waits for it, or hold it again."""
        if msg.done is not None:
            msg.done.set()
        else:
            self.requeue(msg)

    def done(self, msg: Outgoing, reason: ReasonCode) -> None:
        """`msg`'s PUBACK (or PUBCOMP) came with `reason`."""
        if msg.qos > 0 and reason.is_failure:
            self._stats.error(f"broker refused a message on {msg.topic}: {reason}", counter="puback_failures")
            log.error("broker refused a message on %s: %s (0x%02x)", msg.topic, reason, reason.value)
        else:
            msg.ok = True
        if msg.done is not None:
            msg.done.set()
