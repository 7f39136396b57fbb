"""The fleet link: MQTT 5 between the outbox and the fleet broker (DESIGN.md section 5, a contract).

What it must never do: remove an event from the outbox before the broker's PUBACK, with a success
reason code, for the message that carried it; call a refused connection connected; block its
callers (publish() and subscribe() hand over and return); run a handler on paho's network thread
(a slow handler would starve keepalives); log the content of a scan.

Threads, each named, ended by one stop event and joined with timeouts:

- `link-supervisor` owns the connection. It builds a fresh paho client for every attempt, connects,
  hands the socket to paho's network thread (`loop_start`), waits for that connection to end, then
  sleeps an exponential backoff with jitter between `mqtt.backoff_min_s` and `mqtt.backoff_max_s`
  and tries again. paho's own reconnect_delay_set doubles without jitter, so a fleet that lost its
  broker would come back in lockstep; and a fresh client per connection means nothing of a dead
  connection (in-flight ids, queued packets) can leak into the next one.
- paho's network thread runs the MQTT callbacks; they only record and hand over.
- `link-drain` moves the outbox to the broker: oldest first, `mqtt.batch_size` events per fetch,
  runs of scan events as ONE `scan` message (a CBOR array), every other event as its own `event`
  message (one map), QoS 1, up to `max_inflight` messages in flight. `outbox.ack(ids)` is called
  when the PUBACK of the message that carried them arrives with a success reason code. A failure
  reason code (not authorised, quota...) is not an ack: the drain pauses for a backoff and sends
  again from the oldest pending event. On a lost connection it forgets what was in flight (still in
  the outbox) and starts again from the oldest pending event after the next CONNACK: duplicates
  are possible, losses are not (the fleet dedupes by `id`). A run is split into smaller `scan`
  messages when it would exceed the Maximum Packet Size that the broker announced in its CONNACK
  (a broker drops a client that sends a bigger packet, and the same batch would go out again after
  every reconnect, for ever); an event too big to be sent even alone stays in the outbox, counted.
- `link-handlers` runs subscription handlers and connect hooks, in arrival order.

Other messages (`publish()`, `respond()`) are QoS 1 by default. While disconnected, QoS 1 and 2
messages wait in memory (bounded; a newer retained message replaces an older one on the same topic)
and go out after the next CONNACK; QoS 0 messages are dropped and counted (health is QoS 0 and
re-sent every interval). A message over the broker's Maximum Packet Size is dropped and counted,
for the same reason as an oversized batch. Whatever must survive a restart goes through the outbox
instead.

The session is clean on every connect: the device's memory is its outbox, and what an operator
wants it to catch up on is retained (desired config, trust list).
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from queue import Empty, Full, Queue
from types import TracebackType
from typing import Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from .. import __version__
from ..config import Config
from ..errors import LinkError
from . import payloads
from .boot import BOOT_ID, next_boot_count
from .credentials import read_password, tls_context
from .messages import Handler, MessageProperties, Payload
from .payloads import CBOR, PayloadError
from .topics import Topics, check_filter, check_publish_topic

log = logging.getLogger(__name__)

CONNECTING, CONNECTED, REFUSED, DISCONNECTED, STOPPED = (
    "connecting", "connected", "refused", "disconnected", "stopped"
)

_UNLIMITED_RECEIVE = 65535  # MQTT 5's Receive Maximum when the CONNACK does not set one


class OutboxLike(Protocol):
    """What the drain needs of the outbox (edge_sentry.outbox.Outbox has it)."""

    def pending(self, limit: int, *, after_seq: int | None = None) -> list[dict[str, Any]]: ...

    def ack(self, ids: Iterable[str], timeout: float = ...) -> int: ...


# -- small pure helpers --------------------------------------------------------------------------


def backoff_delay(attempt: int, low: float, high: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before reconnect attempt `attempt` (0 = the first retry): uniform between
    `low` and a ceiling that doubles per attempt up to `high`, so retries spread out in time."""
    ceiling = min(high, low * (2 ** min(attempt + 1, 32)))
    return (rng or random).uniform(low, max(low, ceiling))


def _publish_properties(
    content_type: str | None,
    *,
    response_topic: str | None = None,
    correlation_data: bytes | None = None,
    expiry_s: int | None = None,
    user_properties: Iterable[tuple[str, str]] | None = None,
    packet: int = PacketTypes.PUBLISH,
) -> Properties | None:
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


def _incoming_properties(message: paho.MQTTMessage) -> MessageProperties:
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


def _guarded(callback: Callable[..., None]) -> Callable[..., None]:
    """A paho callback that logs its own bugs: an exception escaping into paho would end the
    network thread, and with it the connection, for good."""

    def run(*args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("link callback %s failed", getattr(callback, "__name__", callback))

    return run


# -- bookkeeping of what is in flight ------------------------------------------------------------


@dataclass
class _Outgoing:
    """A message from publish(), respond() or the state topic."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties | None
    requeue: bool = True  # hold it again if the connection drops before its PUBACK
    done: threading.Event | None = None
    ok: bool = False


@dataclass
class _Batch:
    """A drain message: the outbox events it carries."""

    gen: int
    ids: list[str]


_LOST = object()  # register(): the connection ended before the message could be tracked


class _Tracker:
    """Matches PUBACKs to what was published, across threads, without holding a lock while paho
    runs: a PUBACK may be handled before publish() has returned its mid to the publisher, so an
    early outcome is kept until the publisher registers the mid."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[int] = set()
        self._waiting: dict[tuple[int, int], Any] = {}
        self._early: dict[tuple[int, int], ReasonCode] = {}

    def open(self, gen: int) -> None:
        with self._lock:
            self._open.add(gen)

    def register(self, gen: int, mid: int, record: Any) -> Any:
        """None: wait for the outcome; a ReasonCode: it already came; _LOST: connection gone."""
        with self._lock:
            if gen not in self._open:
                return _LOST
            early = self._early.pop((gen, mid), None)
            if early is None:
                self._waiting[(gen, mid)] = record
            return early

    def resolve(self, gen: int, mid: int, reason: ReasonCode) -> Any:
        with self._lock:
            record = self._waiting.pop((gen, mid), None)
            if record is None and gen in self._open:
                self._early[(gen, mid)] = reason
            return record

    def close(self, gen: int) -> list[Any]:
        """Forget connection `gen`; return the records still waiting for their PUBACK."""
        with self._lock:
            self._open.discard(gen)
            keys = [k for k in self._waiting if k[0] == gen]
            for k in [k for k in self._early if k[0] == gen]:
                del self._early[k]
            return [self._waiting.pop(k) for k in keys]


@dataclass
class _Connection:
    gen: int
    client: paho.Client | None = None
    connacked: bool = False
    refused: bool = False
    closing: bool = False  # we end it ourselves: its end is neither a loss nor a refusal
    down: bool = False
    connected_at: float = 0.0
    receive_max: int = _UNLIMITED_RECEIVE
    max_packet: int | None = None  # the broker's Maximum Packet Size (None: only the protocol's)
    error: str | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    answered: set[str] = field(default_factory=set)  # filters whose SUBACK came on this connection


@dataclass
class _Subscription:
    qos: int
    handlers: list[Handler]
    ident: int  # MQTT 5 subscription identifier: tells which subscription a delivery is for
    max_payload: int  # bigger messages never reach these handlers


# -- the link ------------------------------------------------------------------------------------


class Link:
    """The device's MQTT connection; see the module docstring for the threading model.

    Beyond the config's keys, keyword parameters tune what the config does not name:
    `on_state` is called with every new state; `max_inflight` bounds the drain's messages
    awaiting PUBACK (also bounded by the broker's Receive Maximum); `max_held` bounds the messages
    kept while disconnected; `handler_queue` bounds the messages waiting for handlers (more are
    dropped and counted); `idle_poll_s` is how often an idle drain looks at the outbox (`wake()`
    shortens it); `connect_timeout_s` bounds TCP, TLS and the wait for CONNACK; `stable_s` is how
    long a connection must last for the backoff to start again from the bottom; `client_id`
    defaults to the device id.
    """

    def __init__(
        self,
        config: Config,
        outbox: OutboxLike | None = None,
        *,
        on_state: Callable[[str], None] | None = None,
        max_inflight: int = 16,
        max_held: int = 1000,
        handler_queue: int = 256,
        idle_poll_s: float = 0.2,
        connect_timeout_s: float = 10.0,
        stable_s: float = 30.0,
        ack_timeout_s: float = 2.0,
        client_id: str | None = None,
        firmware: str = __version__,
        boot_id: str = BOOT_ID,
        rng: random.Random | None = None,
    ) -> None:
        if config.mqtt is None:
            raise LinkError("no [mqtt] section in the config: there is no broker to link to")
        if max_inflight < 1 or max_held < 0 or handler_queue < 1:
            raise ValueError("max_inflight and handler_queue must be positive, max_held not negative")
        self.mqtt = config.mqtt
        self.device = config.device
        self.topics = Topics(config.device.site, config.device.id)
        self.client_id = client_id or config.device.id
        self.firmware = firmware
        self.boot_id = boot_id
        self.boot_count: int | None = None
        self._outbox = outbox
        self._on_state = on_state
        self._max_inflight = max_inflight
        self._max_held = max_held
        self._idle_poll_s = idle_poll_s
        self._connect_timeout_s = connect_timeout_s
        self._stable_s = stable_s
        self._ack_timeout_s = ack_timeout_s
        self._rng = rng or random.Random()
        self._cbor_props = _publish_properties(CBOR)

        # Shared state, guarded by _lock; never held while calling into paho.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._state = STOPPED
        self._live: _Connection | None = None  # the connection that has its CONNACK
        self._held: OrderedDict[tuple[str, Any], _Outgoing] = OrderedDict()
        self._held_seq = 0
        self._subs: dict[str, _Subscription] = {}
        self._next_ident = 0
        self._suback: dict[tuple[int, int], list[str]] = {}
        self._state_fields: dict[str, Any] = {}
        self._hooks: list[Callable[[], None]] = []
        self._counters: dict[str, int] = dict.fromkeys(
            ("connects", "refusals", "disconnects", "published", "events_sent", "acked",
             "puback_failures", "dropped", "received", "rejected", "handler_errors",
             "unencodable", "oversized", "subscribe_failures"), 0)
        self._last_error: str | None = None
        self._connected_since: float | None = None
        self._in_flight = 0
        self._gen = 0
        # paho's own in-flight bound must be set before connecting, so it uses the broker's
        # Receive Maximum as seen on the previous connection (MQTT 5 forbids exceeding it).
        self._receive_max_hint = _UNLIMITED_RECEIVE

        self._tracker = _Tracker()
        self._stop = threading.Event()
        self._stop_timeout = 5.0
        self._wake_supervisor = threading.Event()
        self._drain_wake = threading.Event()
        self._drain_events: deque[tuple[Any, ...]] = deque()
        self._handler_q: Queue[tuple[str, Any, Any, Any]] = Queue(handler_queue)
        self._threads: list[threading.Thread] = []

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Check credentials and TLS files (LinkError if unusable), count this start, and start the
        threads. Returns at once; the connection comes up in the background."""
        if self._threads:
            raise LinkError("link already started")
        read_password(self.mqtt)
        tls_context(self.mqtt)
        try:
            self.boot_count = next_boot_count(self.device.state_dir)
        except OSError as exc:
            # The gate must work with a read-only state folder; the count is only information.
            log.error("cannot persist the boot count in %s: %s", self.device.state_dir, exc)
        self._stop.clear()
        self._set_state(CONNECTING)
        self._threads = [
            threading.Thread(target=self._run_handlers, name="link-handlers", daemon=True),
            threading.Thread(target=self._run_drain, name="link-drain", daemon=True),
            threading.Thread(target=self._supervise, name="link-supervisor", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish the offline state (retained) and disconnect cleanly, so the broker does not send
        the Last Will; stop the threads. What was in flight stays in the outbox."""
        if not self._threads:
            return
        deadline = time.monotonic() + timeout
        self._stop_timeout = timeout
        self._stop.set()
        self._wake_supervisor.set()
        self._drain_wake.set()
        by_name = {t.name: t for t in self._threads}
        for name in ("link-supervisor", "link-drain", "link-handlers"):
            thread = by_name[name]
            thread.join(max(0.1, deadline - time.monotonic()))
            if thread.is_alive():
                log.error("%s did not stop within %.1f s", name, timeout)
        self._threads = []
        self._set_state(STOPPED)

    def __enter__(self) -> Link:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- what callers use -----------------------------------------------------------------------

    @property
    def max_payload(self) -> int:
        """`mqtt.max_payload`: handlers pass it to payloads.decode(); bigger messages never reach them
        (unless their subscription asked for a higher cap)."""
        return self.mqtt.max_payload

    def state(self) -> str:
        """connecting | connected | refused | disconnected | stopped."""
        with self._lock:
            return self._state

    def wait_state(self, *states: str, timeout: float | None = None) -> bool:
        """Wait until the link is in one of `states`; False at the timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._state in states, timeout)

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self.wait_state(CONNECTED, timeout=timeout)

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Wait until connected and every subscription has its SUBACK on this connection: from then
        on, a message published to a subscribed topic reaches the handlers (before, it may not)."""

        def ready() -> bool:
            live = self._live
            return live is not None and set(self._subs) <= live.answered

        with self._changed:
            return self._changed.wait_for(ready, timeout)

    def stats(self) -> dict[str, Any]:
        """Counters for health reports: connects, refusals, disconnects, published (messages),
        events_sent, acked (events acknowledged by PUBACK), puback_failures, dropped (QoS 0 while
        offline, or the held queue overflowing), received, rejected (too large, handler queue
        full), handler_errors, unencodable and oversized (events left in the outbox; oversized also
        counts other messages dropped for the broker's Maximum Packet Size), in_flight, held,
        last_error, connected_since (epoch seconds)."""
        with self._lock:
            out: dict[str, Any] = dict(self._counters)
            out.update(
                state=self._state,
                in_flight=self._in_flight,
                held=len(self._held),
                subscriptions=len(self._subs),
                last_error=self._last_error,
                connected_since=self._connected_since,
                boot_count=self.boot_count,
            )
            return out

    def wake(self) -> None:
        """Tell the drain that the outbox has something new (e.g. from the outbox's on_durable), so
        it need not wait for its next poll."""
        self._drain_wake.set()

    def publish(
        self,
        topic: str,
        payload: Payload,
        *,
        qos: int = 1,
        retain: bool = False,
        content_type: str | None = None,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
        expiry_s: int | None = None,
        user_properties: Iterable[tuple[str, str]] | None = None,
    ) -> bool:
        """Send a message; never blocks on the network.

        `topic` is a kind under the device prefix (`health`, `config/reported`, `cmd/x/reply`) or an
        absolute topic starting with `sentry/v1/`. A map or list payload is CBOR-encoded (content
        type application/cbor); bytes are sent as they are, with `content_type` if given.
        Returns True if the message was handed to the connection or held for the next one, False
        if it was dropped (QoS 0 while disconnected, or the held queue full). Raises TopicError or
        PayloadError for a topic or payload that can never be sent.
        """
        if qos not in (0, 1, 2):
            raise ValueError("qos must be 0, 1 or 2")
        full = check_publish_topic(self.topics.resolve(topic))
        return self._publish(full, payload, qos, retain, content_type, response_topic=response_topic,
                             correlation_data=correlation_data, expiry_s=expiry_s,
                             user_properties=user_properties)

    def respond(
        self,
        response_topic: str,
        correlation_data: bytes | None,
        payload: Payload,
        *,
        content_type: str | None = None,
    ) -> bool:
        """Answer an MQTT 5 request: QoS 1, not retained, to the request's response topic (taken as
        it is: under the broker's ACL it must lie under this device's prefix), echoing its
        correlation data."""
        topic = check_publish_topic(response_topic)
        return self._publish(topic, payload, 1, False, content_type, correlation_data=correlation_data)

    def subscribe(self, topic: str, handler: Handler, *, qos: int = 1, max_payload: int | None = None) -> str:
        """Call `handler(topic, payload, properties)` for every message matching `topic` (a kind
        under the device prefix such as `cmd/+`, or an absolute filter); returns the full filter.

        Handlers run one at a time on the `link-handlers` thread, in arrival order, and are
        subscribed again after every reconnect (a retained message then arrives again: handlers
        must be idempotent). Messages over `max_payload` (default `mqtt.max_payload`) are dropped
        before any handler sees them; a topic whose documents are legitimately bigger (a trust list
        with every DCC signer is a few hundred KB) asks for its own cap. The broker does not echo
        this device's own messages back (MQTT 5 no-local).
        """
        topic_filter = check_filter(self.topics.resolve(topic))
        cap = max_payload if max_payload is not None else self.mqtt.max_payload
        with self._lock:
            sub = self._subs.get(topic_filter)
            if sub is None:
                self._next_ident += 1
                sub = self._subs[topic_filter] = _Subscription(qos, [], self._next_ident, cap)
            sub.handlers.append(handler)
            sub.qos = max(sub.qos, qos)
            sub.max_payload = max(sub.max_payload, cap)
            conn = self._live
        if conn is not None:
            self._send_subscribe(conn, [topic_filter])
        return topic_filter

    def unsubscribe(self, topic: str, handler: Handler | None = None) -> None:
        """Remove `handler` (or every handler) from `topic`; unsubscribe when none is left."""
        topic_filter = check_filter(self.topics.resolve(topic))
        with self._lock:
            sub = self._subs.get(topic_filter)
            if sub is None:
                return
            if handler is not None:
                sub.handlers = [h for h in sub.handlers if h is not handler]
            if handler is None or not sub.handlers:
                del self._subs[topic_filter]
                conn = self._live
            else:
                conn = None
        if conn is not None and conn.client is not None:
            conn.client.unsubscribe(topic_filter)

    def add_connect_hook(self, hook: Callable[[], None]) -> None:
        """Call `hook()` on the handlers' thread after every CONNACK (after the state message and
        the subscriptions went out): e.g. to publish `config/reported` again."""
        with self._lock:
            self._hooks.append(hook)

    def update_state(self, **fields: Any) -> None:
        """Merge `fields` into every later `state` message and publish it now if connected (while
        disconnected, the next birth carries them)."""
        with self._lock:
            self._state_fields.update(fields)
            conn = self._live
        if conn is not None:
            self._send(conn, self._state_message(online=True))

    # -- states and counters --------------------------------------------------------------------

    def _set_state(self, state: str, *, unless: tuple[str, ...] = ()) -> None:
        with self._changed:
            if self._state == state or self._state in unless:
                return
            if self._state == STOPPED and state != CONNECTING:
                return  # a late callback after stop() must not revive the state
            self._state = state
            self._connected_since = time.time() if state == CONNECTED else None
            self._changed.notify_all()
        if self._on_state is not None:
            try:
                self._on_state(state)
            except Exception:
                log.exception("link on_state callback failed")

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] += n

    def _error(self, message: str) -> None:
        with self._lock:
            self._last_error = message

    # -- the state topic ------------------------------------------------------------------------

    def _state_payload(self, online: bool) -> dict[str, Any]:
        fields: dict[str, Any] = {"config_version": None, "trust_version": None}
        with self._lock:
            fields.update(self._state_fields)
        fields.update(online=online, firmware=self.firmware, boot_id=self.boot_id,
                      boot_count=self.boot_count, t=int(time.time() * 1000))
        return fields

    def _state_message(self, online: bool, *, reason: str | None = None) -> _Outgoing:
        body = self._state_payload(online)
        if reason is not None:
            body["reason"] = reason
        # Never held or re-sent later: a stale state must not overwrite a fresher birth.
        return _Outgoing(self.topics.state, payloads.encode(body), 1, True, self._cbor_props,
                         requeue=False)

    def _will_payload(self) -> bytes:
        return payloads.encode({"online": False, "reason": "lost", "firmware": self.firmware,
                                "boot_id": self.boot_id, "boot_count": self.boot_count})

    # -- publishing -----------------------------------------------------------------------------

    def _publish(self, topic: str, payload: Payload, qos: int,
                 retain: bool, content_type: str | None, **props: Any) -> bool:
        if isinstance(payload, bytes | bytearray | memoryview):
            data = bytes(payload)
        else:
            data = payloads.encode(payload)
            content_type = content_type or CBOR
        msg = _Outgoing(topic, data, qos, retain, _publish_properties(content_type, **props))
        with self._lock:
            conn = self._live
            if conn is None:
                return self._hold_locked(msg)
        return self._send(conn, msg)

    def _hold_locked(self, msg: _Outgoing, *, requeued: bool = False) -> bool:
        """Keep `msg` for the next connection (caller holds _lock)."""
        if msg.qos == 0 or self._stop.is_set():
            self._counters["dropped"] += 1
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
            self._counters["dropped"] += 1
        return True

    def _send(self, conn: _Connection, msg: _Outgoing) -> bool:
        """Publish on `conn`; outside any lock of ours (paho takes its own)."""
        client = conn.client
        assert client is not None
        if conn.max_packet is not None and (
            packet_size(msg.topic, msg.payload, msg.qos, msg.properties) > conn.max_packet
        ):
            self._count("oversized")
            self._error(f"a message on {msg.topic} is over the broker's maximum packet size")
            log.error("message on %s dropped: %d bytes, over the broker's maximum packet size (%d)",
                      msg.topic, len(msg.payload), conn.max_packet)
            if msg.done is not None:
                msg.done.set()
            return False
        try:
            info = client.publish(msg.topic, msg.payload, msg.qos, msg.retain, msg.properties)
        except (ValueError, TypeError) as exc:
            log.error("cannot publish to %s: %s", msg.topic, exc)
            self._count("dropped")
            return False
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return self._requeue(msg)
        self._count("published")
        outcome = self._tracker.register(conn.gen, info.mid, msg)
        if outcome is _LOST:
            return self._requeue(msg)
        if outcome is not None:
            self._outgoing_done(msg, outcome)
        return True

    def _requeue(self, msg: _Outgoing) -> bool:
        if not msg.requeue:
            return False
        with self._lock:
            return self._hold_locked(msg, requeued=True)

    def _outgoing_done(self, msg: _Outgoing, reason: ReasonCode) -> None:
        if msg.qos > 0 and reason.is_failure:
            self._count("puback_failures")
            self._error(f"broker refused a message on {msg.topic}: {reason}")
            log.error("broker refused a message on %s: %s (0x%02x)", msg.topic, reason, reason.value)
        else:
            msg.ok = True
        if msg.done is not None:
            msg.done.set()

    # -- subscribing ----------------------------------------------------------------------------

    def _send_subscribe(self, conn: _Connection, filters: list[str]) -> None:
        """One SUBSCRIBE per filter, since a subscription identifier belongs to the whole packet."""
        with self._lock:
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
                with self._lock:
                    self._suback[(conn.gen, mid)] = [topic_filter]

    # -- paho callbacks (network thread: record and hand over, never block) ---------------------

    def _on_connect(self, client: paho.Client, conn: _Connection, _flags: Any, reason: ReasonCode,
                    properties: Properties | None) -> None:
        if reason.is_failure:
            conn.refused = True
            message = f"broker refused the connection: {reason} (0x{reason.value:02x})"
            with self._lock:
                self._counters["refusals"] += 1
                self._last_error = message
            log.error("%s", message)
            self._set_state(REFUSED)
            conn.ended.set()
            self._wake_supervisor.set()
            return
        conn.connacked = True
        conn.connected_at = time.monotonic()
        receive_max = getattr(properties, "ReceiveMaximum", None)
        conn.receive_max = int(receive_max) if receive_max else _UNLIMITED_RECEIVE
        max_packet = getattr(properties, "MaximumPacketSize", None)
        conn.max_packet = int(max_packet) if max_packet else None
        self._receive_max_hint = conn.receive_max
        self._tracker.open(conn.gen)
        with self._lock:
            self._live = conn
            self._counters["connects"] += 1
            held = [m for m in self._held.values() if m.topic != self.topics.state]
            self._held.clear()
            filters = list(self._subs)
        log.info("connected to %s:%d as %s", self.mqtt.host, self.mqtt.port, self.client_id)
        self._set_state(CONNECTED)
        self._send(conn, self._state_message(online=True))
        if filters:
            self._send_subscribe(conn, filters)
        for msg in held:
            self._send(conn, msg)
        self._drain_events.append(("up", conn))
        self._drain_wake.set()
        self._enqueue_handler(("connected", None, None, None))

    def _on_disconnect(self, _client: paho.Client, conn: _Connection, _flags: Any, reason: ReasonCode,
                       _properties: Properties | None) -> None:
        if conn.down:
            return
        conn.down = True
        with self._lock:
            if self._live is conn:
                self._live = None
            for key in [k for k in self._suback if k[0] == conn.gen]:
                del self._suback[key]
        waiting = self._tracker.close(conn.gen)
        for record in waiting:
            if isinstance(record, _Outgoing):
                if record.done is not None:
                    record.done.set()
                else:
                    self._requeue(record)
        self._drain_events.append(("down", conn))
        self._drain_wake.set()
        stopping = self._stop.is_set()
        if conn.connacked:
            self._count("disconnects")
            if not stopping:
                detail = conn.error or str(reason)
                self._error(f"connection lost: {detail}")
                log.warning("connection to %s:%d lost: %s", self.mqtt.host, self.mqtt.port, detail)
                self._set_state(DISCONNECTED)
        elif not conn.refused and not stopping and not conn.closing:
            # The broker closed the connection after TCP (and TLS) but before any CONNACK: a
            # refusal at the TLS layer (no or unknown client certificate) looks exactly like this.
            conn.refused = True
            detail = conn.error or str(reason)
            message = f"connection closed by the broker before CONNACK: {detail}"
            if self.mqtt.ca:
                message += " (is the client certificate accepted?)"
            with self._lock:
                self._counters["refusals"] += 1
                self._last_error = message
            log.error("%s", message)
            self._set_state(REFUSED)
        conn.ended.set()
        self._wake_supervisor.set()

    def _on_publish(self, _client: paho.Client, conn: _Connection, mid: int, reason: ReasonCode,
                    _properties: Properties | None) -> None:
        record = self._tracker.resolve(conn.gen, mid, reason)
        if isinstance(record, _Batch):
            self._drain_events.append(("ack", record, reason))
            self._drain_wake.set()
        elif isinstance(record, _Outgoing):
            self._outgoing_done(record, reason)

    def _on_subscribe(self, _client: paho.Client, conn: _Connection, mid: int,
                      reasons: list[ReasonCode], _properties: Properties | None) -> None:
        with self._changed:
            filters = self._suback.pop((conn.gen, mid), [])
            conn.answered.update(filters)
            self._changed.notify_all()
        for i, reason in enumerate(reasons):
            if reason.is_failure:
                name = filters[i] if i < len(filters) else "?"
                self._count("subscribe_failures")
                self._error(f"subscription to {name} refused: {reason}")
                log.error("subscription to %s refused: %s (0x%02x)", name, reason, reason.value)

    def _on_message(self, _client: paho.Client, _conn: _Connection, message: paho.MQTTMessage) -> None:
        size = len(message.payload)
        self._count("received")
        idents = frozenset(getattr(message.properties, "SubscriptionIdentifier", None) or [])
        with self._lock:
            cap = max((s.max_payload for s in self._matching(message.topic, idents)),
                      default=self.mqtt.max_payload)
        if size > cap:
            self._count("rejected")
            log.warning("message on %s dropped: %d bytes, over its subscription's cap (%d)",
                        message.topic, size, cap)
            return
        item = ("message", message.topic, bytes(message.payload), (_incoming_properties(message), idents))
        if not self._enqueue_handler(item):
            self._count("rejected")
            log.warning("message on %s dropped: handlers are %d messages behind",
                        message.topic, self._handler_q.maxsize)

    def _on_log(self, _client: paho.Client, conn: _Connection, level: int, text: str) -> None:
        if level == paho.MQTT_LOG_ERR:
            if conn.error is None:  # the socket error behind a disconnect; paho reports no other way
                conn.error = text
            log.debug("paho: %s", text)

    # -- supervisor thread ----------------------------------------------------------------------

    def _supervise(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            conn = self._connect_once()
            if conn is not None:
                self._wait_end(conn)
                if self._stop.is_set():
                    self._goodbye(conn)
                self._close(conn)
                if conn.connacked and time.monotonic() - conn.connected_at >= self._stable_s:
                    attempt = 0
            if self._stop.is_set():
                break
            delay = backoff_delay(attempt, self.mqtt.backoff_min_s, self.mqtt.backoff_max_s, self._rng)
            attempt += 1
            log.debug("reconnecting in %.2f s", delay)
            self._stop.wait(delay)

    def _new_client(self, conn: _Connection, password: str | None,
                    context: ssl.SSLContext | None) -> paho.Client:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=paho.MQTTv5, reconnect_on_failure=False)
        client.user_data_set(conn)
        client.connect_timeout = self._connect_timeout_s
        client.max_inflight_messages_set(min(self._max_inflight + 4, self._receive_max_hint))
        if self.mqtt.username is not None or password is not None:
            client.username_pw_set(self.mqtt.username, password)
        if context is not None:
            client.tls_set_context(context)
        will_props = _publish_properties(CBOR, packet=PacketTypes.WILLMESSAGE)
        client.will_set(self.topics.state, self._will_payload(), qos=1, retain=True,
                        properties=will_props)
        client.on_connect = _guarded(self._on_connect)
        client.on_disconnect = _guarded(self._on_disconnect)
        client.on_publish = _guarded(self._on_publish)
        client.on_subscribe = _guarded(self._on_subscribe)
        client.on_message = _guarded(self._on_message)
        client.on_log = _guarded(self._on_log)
        return client

    def _connect_once(self) -> _Connection | None:
        self._gen += 1
        conn = _Connection(self._gen)
        try:
            password = read_password(self.mqtt)
            context = tls_context(self.mqtt)
        except LinkError as exc:
            self._error(str(exc))
            log.error("%s", exc)
            self._set_state(DISCONNECTED)
            return None
        conn.client = self._new_client(conn, password, context)
        self._set_state(CONNECTING, unless=(REFUSED,))
        try:
            conn.client.connect(self.mqtt.host, self.mqtt.port, self.mqtt.keepalive_s, clean_start=True)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            self._error(f"cannot connect to {self.mqtt.host}:{self.mqtt.port}: {exc}")
            log.warning("cannot connect to %s:%d: %s", self.mqtt.host, self.mqtt.port, exc)
            self._set_state(DISCONNECTED)
            return None
        conn.client.loop_start()
        return conn

    def _wait_end(self, conn: _Connection) -> None:
        connack_deadline = time.monotonic() + self._connect_timeout_s
        while not self._stop.is_set() and not conn.ended.is_set():
            self._wake_supervisor.wait(0.5)
            self._wake_supervisor.clear()
            if not conn.connacked and not conn.ended.is_set() and time.monotonic() > connack_deadline:
                self._error(f"no CONNACK from {self.mqtt.host}:{self.mqtt.port} "
                            f"within {self._connect_timeout_s:g} s")
                log.warning("no CONNACK within %.1f s; reconnecting", self._connect_timeout_s)
                self._set_state(DISCONNECTED)
                return

    def _goodbye(self, conn: _Connection) -> None:
        """Stopping: a clean offline state, then DISCONNECT (so the broker keeps the Will to itself)."""
        if not conn.connacked or conn.down:
            return
        msg = self._state_message(online=False, reason="stopped")
        msg.done = threading.Event()
        if self._send(conn, msg):
            msg.done.wait(max(0.1, self._stop_timeout * 0.5))

    def _close(self, conn: _Connection) -> None:
        client = conn.client
        assert client is not None
        conn.closing = True
        try:
            client.disconnect()
        except Exception:  # a socket already gone is the usual case here
            log.debug("disconnect failed", exc_info=True)
        conn.ended.wait(1.0)
        client.loop_stop()
        if not conn.down:  # paho never reported the end (stop, or no CONNACK): do it ourselves
            normal = ReasonCode(PacketTypes.DISCONNECT, "Normal disconnection")
            self._on_disconnect(client, conn, None, normal, None)

    # -- drain thread ---------------------------------------------------------------------------

    def _run_drain(self) -> None:
        if self._outbox is None:
            return
        conn: _Connection | None = None
        cursor: int | None = None
        in_flight = 0
        window = self._max_inflight
        failures = 0
        resume_at: float | None = None
        while True:
            acked: list[str] = []
            while self._drain_events:
                kind, *rest = self._drain_events.popleft()
                if kind == "up":
                    conn, cursor, in_flight = rest[0], None, 0
                    window = max(1, min(self._max_inflight, conn.receive_max))
                elif kind == "down":
                    if conn is rest[0]:
                        conn, cursor, in_flight = None, None, 0
                elif kind == "ack":
                    batch, reason = rest
                    if conn is not None and batch.gen == conn.gen:
                        in_flight -= 1
                    if reason.is_failure:
                        failures += 1
                        pause = backoff_delay(failures - 1, self.mqtt.backoff_min_s,
                                              self.mqtt.backoff_max_s, self._rng)
                        resume_at = time.monotonic() + pause
                        self._count("puback_failures")
                        self._error(f"broker refused {len(batch.ids)} events: {reason}")
                        log.error("broker refused a message of %d events: %s (0x%02x); resending "
                                  "from the oldest in %.1f s", len(batch.ids), reason, reason.value, pause)
                    else:
                        failures = 0
                        acked.extend(batch.ids)
            if acked:
                self._ack(acked)
            with self._lock:
                self._in_flight = in_flight
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
                    with self._lock:
                        self._in_flight = in_flight
            self._drain_wake.wait(wait)
            self._drain_wake.clear()

    def _fill(self, conn: _Connection, cursor: int | None, in_flight: int,
              window: int) -> tuple[int | None, int]:
        """Publish pending events after `cursor` until `window` messages are in flight; return the
        new cursor and count. If paho will not take a message (the connection is ending), the
        fetch is tried again at the next poll, unless the "down" event comes first."""
        assert self._outbox is not None and conn.client is not None
        while in_flight < window and not self._stop.is_set():
            try:
                events = self._outbox.pending(self.mqtt.batch_size, after_seq=cursor)
            except Exception:
                log.exception("outbox pending() failed")
                return cursor, in_flight
            if not events:
                break
            for topic, body, ids in self._messages(events, conn.max_packet):
                batch = _Batch(conn.gen, ids)
                info = conn.client.publish(topic, body, 1, False, self._cbor_props)
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return cursor, in_flight
                outcome = self._tracker.register(conn.gen, info.mid, batch)
                if outcome is _LOST:
                    return cursor, in_flight
                in_flight += 1
                with self._lock:
                    self._counters["published"] += 1
                    self._counters["events_sent"] += len(ids)
                if outcome is not None:
                    self._drain_events.append(("ack", batch, outcome))
            cursor = int(events[-1]["seq"])
        return cursor, in_flight

    def _messages(self, events: list[dict[str, Any]],
                  max_packet: int | None) -> Iterable[tuple[str, bytes, list[str]]]:
        """Runs of scans as `scan` arrays; any other event alone on `event`; each under `max_packet`."""
        run: list[dict[str, Any]] = []
        for event in events:
            if event.get("event") == "scan":
                run.append(event)
                continue
            if run:
                yield from self._encoded(self.topics.scan, run, max_packet)
                run = []
            yield from self._encoded(self.topics.event, [event], max_packet)
        if run:
            yield from self._encoded(self.topics.scan, run, max_packet)

    def _encoded(self, topic: str, events: list[dict[str, Any]],
                 max_packet: int | None) -> Iterable[tuple[str, bytes, list[str]]]:
        """`events` as messages on `topic` (one map on `event`, an array on `scan`), halving a run
        until each message fits `max_packet`. An event that cannot be encoded, or is too big
        alone, is left out (and so left in the outbox), logged by its id and seq only: the content
        may carry a sealed subject."""
        single = topic == self.topics.event
        try:
            body = payloads.encode(events[0] if single else events)
        except PayloadError:
            good = []
            for event in events:
                try:
                    payloads.encode(event if single else [event])  # as it would be sent
                    good.append(event)
                except PayloadError as exc:
                    self._count("unencodable")
                    log.error("event %s (seq %s) cannot be encoded (%s); left in the outbox",
                              event.get("id"), event.get("seq"), exc)
            if good:
                yield from self._encoded(topic, good, max_packet)
            return
        if max_packet is not None and packet_size(topic, body, 1, self._cbor_props) > max_packet:
            if len(events) > 1:
                half = len(events) // 2
                yield from self._encoded(topic, events[:half], max_packet)
                yield from self._encoded(topic, events[half:], max_packet)
                return
            self._count("oversized")
            log.error("event %s (seq %s) is over the broker's maximum packet size (%d); left in the "
                      "outbox", events[0].get("id"), events[0].get("seq"), max_packet)
            return
        yield topic, body, [e["id"] for e in events]

    def _ack(self, ids: list[str]) -> None:
        with self._lock:
            self._counters["acked"] += len(ids)
        try:
            self._outbox.ack(ids, timeout=self._ack_timeout_s)  # type: ignore[union-attr]
        except Exception:
            # They are delivered; at worst they are sent again after a restart.
            log.exception("outbox ack() failed")

    # -- handlers thread ------------------------------------------------------------------------

    def _enqueue_handler(self, item: tuple[str, Any, Any, Any]) -> bool:
        try:
            self._handler_q.put_nowait(item)
            return True
        except Full:
            return False

    def _matching(self, topic: str, idents: frozenset[int]) -> list[_Subscription]:
        """The subscriptions a delivery is for (caller holds _lock). With overlapping filters the
        broker sends one copy per subscription, each naming its subscription: each handler then
        sees each message once. A broker that names none gets the filters matched here."""
        return [s for f, s in self._subs.items()
                if (s.ident in idents if idents else paho.topic_matches_sub(f, topic))]

    def _run_handlers(self) -> None:
        while not self._stop.is_set():
            try:
                kind, topic, payload, props = self._handler_q.get(timeout=0.25)
            except Empty:
                continue
            if kind == "connected":
                with self._lock:
                    hooks = list(self._hooks)
                for hook in hooks:
                    try:
                        hook()
                    except Exception:
                        self._count("handler_errors")
                        log.exception("link connect hook %r failed", hook)
                continue
            props, idents = props
            with self._lock:
                matching = [h for s in self._matching(topic, idents) if len(payload) <= s.max_payload
                            for h in s.handlers]
            for handler in matching:
                try:
                    handler(topic, payload, props)
                except Exception:
                    self._count("handler_errors")
                    log.exception("handler %r failed for a message on %s", handler, topic)

