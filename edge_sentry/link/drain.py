"""The outbox drain: events from the outbox to the broker, removed only on a success PUBACK.

`plan()` is the pure part: a fetch of events becomes the messages that carry them, runs of scan
events as ONE `scan` message (a CBOR array), every other event as its own `event` message (one
map), each under the broker's Maximum Packet Size. `Drain` runs it on the `link-drain` thread:
oldest first, `mqtt.batch_size` events per fetch, QoS 1, up to `max_inflight` messages in flight,
and `outbox.ack(ids)` when the PUBACK of the message that carried them comes with a success reason
code. A failure reason code (not authorised, quota...) is not an ack: the drain pauses for a
backoff and sends again from the oldest pending event. On a lost connection it forgets what was in
flight (still in the outbox) and starts again from the oldest pending event after the next CONNACK:
duplicates are possible, losses are not (the fleet dedupes by `id`).

What it must never do: ack an event before the PUBACK of the message that carried it; send a
message the broker would drop the connection for (the same batch would go out again after every
reconnect, for ever: an event too big even alone stays in the outbox, counted); log the content
of an event (it may carry a sealed subject): events are named by id and seq only.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ..config import MqttConfig
from ..errors import PayloadError
from ..vocabulary import Event as EventName
from . import payloads
from .connection import Connection, backoff_delay
from .outgoing import Lost, Tracker, packet_size
from .stats import Stats
from .topics import Topics

log = logging.getLogger(__name__)

Event = Mapping[str, Any]


class OutboxLike(Protocol):
    """What the drain needs of the outbox (edge_sentry.outbox.Outbox has it)."""

    def pending(self, limit: int, *, after_seq: int | None = None) -> list[dict[str, Any]]: ...

    def ack(self, ids: Iterable[str], timeout: float = ...) -> int: ...


# -- the plan: pure ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One drain message: its topic, its CBOR body, the ids of the events it carries."""

    topic: str
    body: bytes
    ids: tuple[str, ...]


@dataclass(frozen=True)
class Skipped:
    """An event left out of every message (and so left in the outbox): `why` names its counter."""

    id: Any
    seq: Any
    why: Literal["unencodable", "oversized"]
    detail: str


def plan(events: Sequence[Event], topics: Topics, max_packet: int | None,
         properties: Properties | None) -> list[Message | Skipped]:
    """The messages that carry `events` (in order), and the events left out, each where it came.

    Runs of scans go as `scan` arrays, any other event alone on `event`. A message whose PUBLISH
    packet (with `properties`) would exceed `max_packet` is halved until each part fits; an event
    that cannot be encoded, or is too big alone, is left out."""
    out: list[Message | Skipped] = []
    run: list[Event] = []
    for event in events:
        if event.get("event") == EventName.SCAN:
            run.append(event)
            continue
        if run:
            _encode(out, topics.scan, run, single=False, max_packet=max_packet, properties=properties)
            run = []
        _encode(out, topics.event, [event], single=True, max_packet=max_packet, properties=properties)
    if run:
        _encode(out, topics.scan, run, single=False, max_packet=max_packet, properties=properties)
    return out


def _encode(out: list[Message | Skipped], topic: str, events: list[Event], *, single: bool,
            max_packet: int | None, properties: Properties | None) -> None:
    """`events` as messages on `topic` (one map when `single`, else an array), appended to `out`."""
    try:
        body = payloads.encode(events[0] if single else events)
    except PayloadError:
        good = []
        for event in events:
            try:
                payloads.encode(event if single else [event])  # as it would be sent
                good.append(event)
            except PayloadError as exc:
                out.append(Skipped(event.get("id"), event.get("seq"), "unencodable", str(exc)))
        if good:
            _encode(out, topic, good, single=single, max_packet=max_packet, properties=properties)
        return
    if max_packet is not None and packet_size(topic, body, 1, properties) > max_packet:
        if len(events) > 1:
            half = len(events) // 2
            _encode(out, topic, events[:half], single=single, max_packet=max_packet, properties=properties)
            _encode(out, topic, events[half:], single=single, max_packet=max_packet, properties=properties)
            return
        out.append(Skipped(events[0].get("id"), events[0].get("seq"), "oversized",
                           f"over the broker's maximum packet size ({max_packet})"))
        return
    out.append(Message(topic, body, tuple(e["id"] for e in events)))


# -- what the drain hears from the connection -----------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """A drain message in flight on connection `gen`: the outbox events it carries."""

    gen: int
    ids: tuple[str, ...]


@dataclass(frozen=True)
class Up:
    """`conn` has its CONNACK: send from the oldest pending event."""

    conn: Connection


@dataclass(frozen=True)
class Down:
    """`conn` ended: what was in flight on it is forgotten (it is still in the outbox)."""

    conn: Connection


@dataclass(frozen=True)
class Acked:
    """The PUBACK of `batch` came with `reason` (a failure reason code is not an ack)."""

    batch: Batch
    reason: ReasonCode


News = Up | Down | Acked


# -- the thread ----------------------------------------------------------------------------------


class Drain:
    """The `link-drain` thread's work; see the module docstring."""

    def __init__(self, outbox: OutboxLike | None, mqtt: MqttConfig, topics: Topics, stats: Stats,
                 tracker: Tracker[Any], stop: threading.Event, rng: random.Random, *,
                 properties: Properties | None, max_inflight: int, idle_poll_s: float,
                 ack_timeout_s: float) -> None:
        self._outbox = outbox
        self._mqtt = mqtt
        self._topics = topics
        self._stats = stats
        self._tracker = tracker
        self._stop = stop
        self._rng = rng
        self._properties = properties
        self._max_inflight = max_inflight
        self._idle_poll_s = idle_poll_s
        self._ack_timeout_s = ack_timeout_s
        self._news: deque[News] = deque()
        self._wake = threading.Event()
        self.in_flight = 0  # messages awaiting their PUBACK, for stats(); written by this thread only

    def tell(self, news: News) -> None:
        """From another thread: hand over `news` and wake the drain."""
        self._news.append(news)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def run(self) -> None:
        if self._outbox is None:
            return
        conn: Connection | None = None
        cursor: int | None = None
        in_flight = 0
        window = self._max_inflight
        failures = 0
        resume_at: float | None = None
        while True:
            acked: list[str] = []
            while self._news:
                news = self._news.popleft()
                if isinstance(news, Up):
                    conn, cursor, in_flight = news.conn, None, 0
                    window = max(1, min(self._max_inflight, news.conn.receive_max))
                elif isinstance(news, Down):
                    if conn is news.conn:
                        conn, cursor, in_flight = None, None, 0
                else:
                    batch, reason = news.batch, news.reason
                    if conn is not None and batch.gen == conn.gen:
                        in_flight -= 1
                    if reason.is_failure:
                        failures += 1
                        pause = backoff_delay(failures - 1, self._mqtt.backoff_min_s,
                                              self._mqtt.backoff_max_s, self._rng)
                        resume_at = time.monotonic() + pause
                        self._stats.error(f"broker refused {len(batch.ids)} events: {reason}",
                                          counter="puback_failures")
                        log.error("broker refused a message of %d events: %s (0x%02x); resending "
                                  "from the oldest in %.1f s", len(batch.ids), reason, reason.value, pause)
                    else:
                        failures = 0
                        acked.extend(batch.ids)
            if acked:
                self._ack(acked)
            self.in_flight = in_flight
            if self._stop.is_set():
                return
            wait = self._idle_poll_s
            if conn is not None:
                if resume_at is not None and time.monotonic() < resume_at:
                    wait = min(wait, resume_at - time.monotonic())
                else:
                    if resume_at is not None:
                        resume_at, cursor = None, None  # send again from the oldest pending
                    cursor, in_flight = self._fill(conn, cursor, in_flight, window)
                    self.in_flight = in_flight
            self._wake.wait(wait)
            self._wake.clear()

    def _fill(self, conn: Connection, cursor: int | None, in_flight: int,
              window: int) -> tuple[int | None, int]:
        """Publish pending events after `cursor` until `window` messages are in flight; return the
        new cursor and count. If paho will not take a message (the connection is ending), the
        fetch is tried again at the next poll, unless the Down news comes first."""
        assert self._outbox is not None and conn.client is not None
        while in_flight < window and not self._stop.is_set():
            try:
                events = self._outbox.pending(self._mqtt.batch_size, after_seq=cursor)
            except Exception:
                log.exception("outbox pending() failed")
                return cursor, in_flight
            if not events:
                break
            for item in plan(events, self._topics, conn.max_packet, self._properties):
                if isinstance(item, Skipped):
                    self._skipped(item)
                    continue
                batch = Batch(conn.gen, item.ids)
                info = conn.client.publish(item.topic, item.body, 1, False, self._properties)
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return cursor, in_flight
                outcome = self._tracker.register(conn.gen, info.mid, batch)
                if outcome is Lost.LOST:
                    return cursor, in_flight
                in_flight += 1
                self._stats.sent(len(item.ids))
                if outcome is not None:
                    self._news.append(Acked(batch, outcome))  # seen at the next round, no wake needed
            cursor = int(events[-1]["seq"])
        return cursor, in_flight

    def _skipped(self, item: Skipped) -> None:
        self._stats.count(item.why)
        if item.why == "unencodable":
            log.error("event %s (seq %s) cannot be encoded (%s); left in the outbox",
                      item.id, item.seq, item.detail)
        else:
            log.error("event %s (seq %s) is %s; left in the outbox", item.id, item.seq, item.detail)

    def _ack(self, ids: list[str]) -> None:
        assert self._outbox is not None
        self._stats.count("acked", len(ids))
        try:
            self._outbox.ack(ids, timeout=self._ack_timeout_s)
        except Exception:
            # They are delivered; at worst they are sent again after a restart.
            log.exception("outbox ack() failed")
