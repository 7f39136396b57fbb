"""The fleet link: MQTT 5 between the outbox and the fleet broker (docs/protocol.md section 6, a contract).

What it must never do: remove an event from the outbox before the broker's PUBACK, with a success
reason code, for the message that carried it; call a refused connection connected; block its
callers (publish() and subscribe() hand over and return); run a handler on paho's network thread
(a slow handler would starve keepalives); log the content of a scan.

`Link` composes the parts, one module each, and keeps the public API. Threads, each named, ended by
one stop event and joined with timeouts:

- `link-supervisor` (supervisor.py) owns the connection: a fresh paho client per attempt, jittered
  backoff between attempts, refusals told from losses.
- paho's network thread runs the MQTT callbacks; they only record and hand over.
- `link-drain` (drain.py) moves the outbox to the broker and acks on a success PUBACK.
- `link-handlers` (dispatch.py) runs subscription handlers and connect hooks, in arrival order.

Other messages (`publish()`, `respond()`, outgoing.py) are QoS 1 by default; while disconnected
they wait in memory (bounded) and go out after the next CONNACK; QoS 0 messages are then dropped
and counted. Whatever must survive a restart goes through the outbox instead. The `state` topic
(presence.py) carries the birth, the offline state on stop and the Will.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from paho.mqtt.reasoncodes import ReasonCode

from .. import __version__
from ..config import Config
from ..errors import LinkError
from .boot import BOOT_ID
from .connection import Connection, LinkState, Status
from .credentials import read_password, tls_context
from .dispatch import Dispatch
from .drain import Acked, Batch, Down, Drain, OutboxLike, Up
from .messages import Handler, Payload
from .outgoing import Outgoing, Post, Tracker, outgoing, publish_properties
from .payloads import CBOR
from .presence import Presence
from .stats import Stats
from .supervisor import Listeners, Supervisor
from .topics import Topics, check_filter, check_publish_topic

log = logging.getLogger(__name__)


class Link:
    """The device's MQTT connection; see the module docstring for the threading model.

    Beyond the config's keys, keyword parameters tune what the config does not name:
    `on_state` is called with every new LinkState; `max_inflight` bounds the drain's messages
    awaiting PUBACK (also bounded by the broker's Receive Maximum); `max_held` bounds the messages
    kept while disconnected; `handler_queue` bounds the messages waiting for handlers (announced as
    the Receive Maximum, so the broker holds back further QoS 1 and 2 messages until the handlers
    took one; QoS 0 messages beyond it are dropped and counted); `idle_poll_s` is how often an
    idle drain looks at the outbox (`wake()` shortens it); `connect_timeout_s` bounds TCP, TLS and
    the wait for CONNACK; `stable_s` is how long a connection must last for the backoff to start
    again from the bottom; `client_id` defaults to the device id; `boot_counter` counts this start
    once, at start() (the device state's `next_boot_count`; without it the state topic carries no
    count).
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
        boot_counter: Callable[[], int] | None = None,
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
        self._presence = Presence(firmware, boot_id)
        self._boot_counter = boot_counter
        self._cbor_props = publish_properties(CBOR)
        self._stop = threading.Event()
        self._stop_timeout = 5.0
        self._status = Status(on_state)
        self._stats = Stats()
        self._tracker: Tracker[Outgoing | Batch] = Tracker()
        rng = rng or random.Random()
        self._post = Post(self._status, self._stats, self._tracker, self._stop, max_held)
        self._dispatch = Dispatch(self._status, self._stats, self._stop,
                                  default_cap=self.mqtt.max_payload, queue_size=handler_queue)
        self._drain = Drain(outbox, self.mqtt, self.topics, self._stats, self._tracker, self._stop, rng,
                            properties=self._cbor_props, max_inflight=max_inflight,
                            idle_poll_s=idle_poll_s, ack_timeout_s=ack_timeout_s)
        listeners = Listeners(up=self._up, down=self._down, published=self._published,
                              subscribed=self._dispatch.subscribed, received=self._dispatch.received,
                              packet_limit=self._dispatch.packet_limit,
                              goodbye=self._goodbye, will=self._presence.will)
        self._supervisor = Supervisor(self.mqtt, self.client_id, self.topics.state, self._status,
                                      self._stats, listeners, self._stop, rng, max_inflight=max_inflight,
                                      receive_maximum=self._dispatch.receive_maximum,
                                      connect_timeout_s=connect_timeout_s, stable_s=stable_s)
        self._threads: list[threading.Thread] = []

    @property
    def firmware(self) -> str:
        return self._presence.firmware

    @property
    def boot_id(self) -> str:
        return self._presence.boot_id

    @property
    def boot_count(self) -> int | None:
        """This start's number as kept in the device state (None before start(), without a
        boot_counter, or if it could not be kept)."""
        return self._presence.boot_count

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Check credentials and TLS files (LinkError if unusable), count this start, and start the
        threads. Returns at once; the connection comes up in the background."""
        if self._threads:
            raise LinkError("link already started")
        read_password(self.mqtt)
        tls_context(self.mqtt)
        if self._boot_counter is not None:
            try:
                self._presence.boot_count = self._boot_counter()
            except OSError as exc:
                # The gate must work with a read-only state folder; the count is only information.
                log.error("cannot persist the boot count: %s", exc)
        self._stop.clear()
        self._status.set(LinkState.CONNECTING)
        self._threads = [
            threading.Thread(target=self._dispatch.run, name="link-handlers", daemon=True),
            threading.Thread(target=self._drain.run, name="link-drain", daemon=True),
            threading.Thread(target=self._supervisor.run, name="link-supervisor", daemon=True),
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
        self._supervisor.wake()
        self._drain.wake()
        by_name = {t.name: t for t in self._threads}
        for name in ("link-supervisor", "link-drain", "link-handlers"):
            thread = by_name[name]
            thread.join(max(0.1, deadline - time.monotonic()))
            if thread.is_alive():
                log.error("%s did not stop within %.1f s", name, timeout)
        self._threads = []
        self._status.set(LinkState.STOPPED)

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

    def state(self) -> LinkState:
        """connecting | connected | refused | disconnected | stopped."""
        return self._status.state

    def wait_state(self, *states: str, timeout: float | None = None) -> bool:
        """Wait until the link is in one of `states`; False at the timeout."""
        return self._status.wait(states, timeout)

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self.wait_state(LinkState.CONNECTED, timeout=timeout)

    def wait_subscribed(self, timeout: float | None = None) -> bool:
        """Wait until connected and every subscription has its SUBACK on this connection: from then
        on, a message published to a subscribed topic reaches the handlers (before, it may not)."""

        def ready() -> bool:
            live = self._status.live
            return live is not None and self._dispatch.all_answered_locked(live)

        return self._status.wait_for(ready, timeout)

    def stats(self) -> dict[str, Any]:
        """Counters for health reports: connects, refusals, disconnects, published (messages),
        events_sent, acked (events acknowledged by PUBACK), puback_failures, dropped (QoS 0 while
        offline, or the held queue overflowing), received, rejected (too large, or QoS 0 with the handler
        queue full), handler_errors, unencodable and oversized (events left in the outbox; oversized also
        counts other messages dropped for the broker's Maximum Packet Size), subscribe_failures,
        in_flight, held, subscriptions, last_error, connected_since (epoch seconds), boot_count."""
        out = self._stats.snapshot()
        state, since = self._status.summary()
        with self._status.lock:
            held, subscriptions = self._post.held_count_locked(), len(self._dispatch.filters_locked())
        out.update(state=state, in_flight=self._drain.in_flight, held=held, subscriptions=subscriptions,
                   connected_since=since, boot_count=self.boot_count)
        return out

    def wake(self) -> None:
        """Tell the drain that the outbox has something new (e.g. from the outbox's on_durable), so
        it need not wait for its next poll."""
        self._drain.wake()

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
        return self._post.submit(outgoing(full, payload, qos, retain, content_type,
                                          response_topic=response_topic, correlation_data=correlation_data,
                                          expiry_s=expiry_s, user_properties=user_properties))

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
        return self._post.submit(outgoing(topic, payload, 1, False, content_type,
                                          correlation_data=correlation_data))

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
        self._dispatch.add(topic_filter, handler, qos, cap)
        with self._status.lock:
            live = self._status.live
        if live is not None:
            self._announce_enough(live)
        return topic_filter

    def unsubscribe(self, topic: str, handler: Handler | None = None) -> None:
        """Remove `handler` (or every handler) from `topic`; unsubscribe when none is left."""
        self._dispatch.remove(check_filter(self.topics.resolve(topic)), handler)

    def add_connect_hook(self, hook: Callable[[], None]) -> None:
        """Call `hook()` on the handlers' thread after every CONNACK (after the state message and
        the subscriptions went out): e.g. to publish `config/reported` again."""
        self._dispatch.add_hook(hook)

    def update_state(self, **fields: Any) -> None:
        """Merge `fields` into every later `state` message and publish it now if connected (while
        disconnected, the next birth carries them)."""
        self._presence.update(fields)
        with self._status.lock:
            conn = self._status.live
        if conn is not None:
            self._post.send(conn, self._state_message(online=True))

    # -- a connection's life (paho's network thread, but _goodbye: the supervisor's) -----------

    def _state_message(self, online: bool, *, reason: str | None = None) -> Outgoing:
        # Never held or re-sent later: a stale state must not overwrite a fresher birth.
        return Outgoing(self.topics.state, self._presence.state(online, reason=reason), 1, True,
                        self._cbor_props, requeue=False)

    def _up(self, conn: Connection) -> None:
        """A success CONNACK: the birth, the subscriptions, what was held, the drain, the hooks."""
        self._tracker.open(conn.gen)
        with self._status.lock:
            self._status.live = conn
            held = self._post.take_held_locked(except_topic=self.topics.state)
            filters = self._dispatch.filters_locked()
        self._stats.count("connects")
        log.info("connected to %s:%d as %s", self.mqtt.host, self.mqtt.port, self.client_id)
        self._status.set(LinkState.CONNECTED)
        self._post.send(conn, self._state_message(online=True))
        if filters:
            self._dispatch.send(conn, filters)
        for msg in held:
            self._post.send(conn, msg)
        self._drain.tell(Up(conn))
        self._dispatch.connected()
        self._announce_enough(conn)  # a subscription made while this CONNECT was on its way

    def _announce_enough(self, conn: Connection) -> None:
        """Connect again if `conn` announced a Maximum Packet Size too small for a subscription
        made since (the broker would drop its bigger messages for this device)."""
        if conn.announced_max < self._dispatch.packet_limit():
            self._supervisor.renew()

    def _down(self, conn: Connection) -> None:
        """`conn` ended: nothing more goes out on it; what waited for its PUBACK is held again."""
        with self._status.lock:
            if self._status.live is conn:
                self._status.live = None
        self._dispatch.forget(conn)
        for record in self._tracker.close(conn.gen):
            if isinstance(record, Outgoing):
                self._post.lost(record)
        self._drain.tell(Down(conn))

    def _published(self, conn: Connection, mid: int, reason: ReasonCode) -> None:
        record = self._tracker.resolve(conn.gen, mid, reason)
        if isinstance(record, Batch):
            self._drain.tell(Acked(record, reason))
        elif isinstance(record, Outgoing):
            self._post.done(record, reason)

    def _goodbye(self, conn: Connection) -> None:
        """Stopping: a clean offline state, then DISCONNECT (so the broker keeps the Will to itself)."""
        if not conn.connacked or conn.down:
            return
        msg = self._state_message(online=False, reason="stopped")
        msg.done = threading.Event()
        if self._post.send(conn, msg):
            msg.done.wait(max(0.1, self._stop_timeout * 0.5))

