"""`fleet ingest`'s MQTT side: what the sentries publish, into the store, acknowledged after commit.

Subscriptions. Scans and events through an MQTT 5 shared subscription
(`$share/{group}/sentry/v1/+/+/scan` and `.../event`), so that several ingesters of one group split
the load, each message going to one of them; `state` and `health` through ordinary subscriptions,
since a broker sends no retained message to a shared one (every ingester upserts them; the latest
arrival wins). The session is persistent (`clean_start` false, `ingest.session_expiry_s`) under a
client id that stays the same across restarts: while an ingester is away the broker keeps what the
shared subscription gave it, and sends it when the ingester comes back.

Acknowledgement. paho's manual acks: a QoS 1 message is acknowledged only once the transaction that
holds its rows has committed, so a crash, a lost connection or a failed commit leaves it unacknowledged
and the broker sends it again (the store's writes are idempotent, so the copy adds nothing). A
failed commit drops the connection and opens a new one on the same session, which is what makes
the broker resend; the batch's messages still in memory belong to the old connection and are never
acknowledged on the new one (a message id is valid on its connection only). A message the store
cannot use (a malformed payload, a provenance or clock-skew reject) is committed as a reject and
then acknowledged like any other: sent again, it would only be rejected again.

Threads: paho's network thread only stamps the arrival time and queues; the caller's thread (`run`)
takes batches of up to `ingest.batch_messages` messages, decodes, writes one transaction, acks, and
between batches runs retention and prints the progress line. The CONNECT's Receive Maximum bounds
the unacknowledged QoS 1 messages the broker sends at once (two batches), and so the queue.
Never logs a payload.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from queue import Empty, Queue
from typing import Any, TextIO

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ..config import IngestConfig, MqttConfig
from ..errors import FleetError
from ..fleet.client import paho_client
from ..link import topics
from ..link.dispatch import HEADER_ROOM, MAX_RECEIVE_MAXIMUM
from .base import Store
from .decode import Record as Row
from .decode import Reject, Status, decode_message
from .schema import DAY_MS

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
MAX_BACKOFF_S = 30.0


def default_client_id() -> str:
    """`ingest-<host>`: the same across restarts, so the persistent session is found again."""
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname())[:40]
    return f"ingest-{host or 'host'}"


def shared_filters(group: str) -> list[str]:
    return [f"$share/{group}/{topics.ROOT}/+/+/{kind}" for kind in (topics.SCAN, topics.EVENT)]


def status_filters() -> list[str]:
    return [f"{topics.ROOT}/+/+/{kind}" for kind in (topics.STATE, topics.HEALTH)]


@dataclass(frozen=True)
class Incoming:
    """A message as the network thread hands it over; `gen` names its connection."""

    gen: int
    mid: int
    qos: int
    topic: str
    payload: bytes
    content_type: str | None
    arrived_ms: int


@dataclass
class Totals:
    """This process's counts, for the progress line (the database keeps the lasting ones)."""

    messages: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    statuses: int = 0
    store_errors: int = 0
    dropped: int = 0  # QoS 0 messages over the queue's bound
    purged: int = 0


class Ingester:
    """One ingester process's connection and writer; `connect()`, then `run(stop)` on one thread."""

    def __init__(
        self,
        mqtt: MqttConfig,
        store: Store,
        settings: IngestConfig,
        *,
        retention_days: float,
        client_id: str | None = None,
        clock: Callable[[], float] = time.time,
        progress: TextIO | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.mqtt = mqtt
        self.store = store
        self.settings = settings
        self.retention_days = retention_days
        self.client_id = client_id or default_client_id()
        self.clock = clock
        self.progress = progress
        self.timeout_s = timeout_s
        self.where = f"{mqtt.host}:{mqtt.port}"
        self.totals = Totals()
        self.receive_maximum = min(2 * settings.batch_messages, MAX_RECEIVE_MAXIMUM)
        self._queue: Queue[Incoming] = Queue()
        self._lock = threading.Lock()
        self._gen = 0
        self._connected = False
        self._client: paho.Client | None = None
        self._connack = threading.Event()
        self._subacks = 0
        self._failure: str | None = None
        self._backoff_s = 0.0
        self._last_progress = time.monotonic()
        self._last_purge: float | None = None
        self._progress_mark = 0

    # -- the connection -------------------------------------------------------------------------

    def connect(self) -> Ingester:
        """Connect, subscribe and wait for the SUBACKs; FleetError saying why not."""
        self._open()
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._failure is not None or self._subacks >= 2:
                    break
            time.sleep(0.01)
        with self._lock:
            failure, ready = self._failure, self._subacks >= 2
        if failure is not None or not ready:
            self.close()
            raise FleetError(failure or f"no CONNACK and SUBACK from the broker at {self.where} "
                             f"within {self.timeout_s:g} s")
        return self

    def _open(self) -> None:
        client = paho_client(self.mqtt, self.client_id, self.timeout_s, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        props.MaximumPacketSize = self.mqtt.max_payload + HEADER_ROOM
        client.connect_async(self.mqtt.host, self.mqtt.port, self.mqtt.keepalive_s, clean_start=False,
                             properties=props)
        self._client = client
        client.loop_start()

    def close(self) -> None:
        """Disconnect; the session stays on the broker for `ingest.session_expiry_s`."""
        with self._lock:
            client, self._client = self._client, None
            self._gen += 1
            self._connected = False
        if client is None:
            return
        try:
            client.disconnect()
        except Exception:  # a socket already gone
            log.debug("disconnect failed", exc_info=True)
        client.loop_stop()

    def _reopen(self) -> None:
        """A new connection on the same session: the broker sends again what was not acknowledged."""
        self.close()
        try:
            self._open()
        except FleetError as exc:
            log.error("cannot reconnect: %s", exc)

    def _on_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode,
                    _properties: Properties | None) -> None:
        if reason.is_failure:
            message = f"the broker at {self.where} refused the connection: {reason} (0x{reason.value:02x})"
            with self._lock:
                if self._subacks < 2 and self._failure is None:
                    self._failure = message
            log.error("%s", message)
            return
        with self._lock:
            if client is not self._client:
                return
            self._gen += 1
            self._connected = True
        # Again at every connect: a session that expired has lost its subscriptions, and the
        # ordinary ones bring the retained state and health anew.
        options = SubscribeOptions(qos=1)
        client.subscribe([(f, options) for f in shared_filters(self.settings.group)])
        client.subscribe([(f, options) for f in status_filters()])

    def _on_disconnect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode,
                       _properties: Properties | None) -> None:
        with self._lock:
            if client is not self._client:
                return
            self._connected = False
            first = self._subacks < 2 and self._failure is None
            if first:
                self._failure = f"the broker at {self.where} closed the connection: {reason}"
        if not first:
            log.warning("connection to %s lost (%s); reconnecting", self.where, reason)

    def _on_subscribe(self, _client: paho.Client, _userdata: Any, _mid: int, reasons: list[ReasonCode],
                      _properties: Properties | None) -> None:
        refused = [r for r in reasons if r.is_failure]
        with self._lock:
            if refused and self._subacks < 2 and self._failure is None:
                self._failure = f"the broker at {self.where} refused a subscription: {refused[0]}"
            self._subacks += 1
        for reason in refused:
            log.error("the broker refused a subscription: %s (0x%02x)", reason, reason.value)

    def _on_message(self, client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        arrived_ms = int(self.clock() * 1000)
        with self._lock:
            gen = self._gen
        if message.qos == 0 and self._queue.qsize() >= self.receive_maximum:
            self.totals.dropped += 1  # health: the next report replaces it
            return
        self._queue.put_nowait(Incoming(gen, message.mid, message.qos, message.topic, bytes(message.payload),
                                        getattr(message.properties, "ContentType", None), arrived_ms))

    # -- the writer -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Batches until `stop` is set; retention and the progress line in between."""
        while not stop.is_set():
            self.housekeeping()
            self.step()
            if self._backoff_s:
                stop.wait(self._backoff_s)

    def step(self) -> int:
        """One batch: take up to `batch_messages` messages (waiting `batch_wait_s` for more after the
        first), write them in one transaction, acknowledge them; the number of messages taken."""
        batch = self._take()
        if not batch:
            return 0
        with self._lock:
            gen = self._gen
        live = [m for m in batch if m.qos == 0 or m.gen == gen]  # the others come again on this one
        records: list[Row] = []
        rejects: list[Reject] = []
        statuses: list[Status] = []
        for message in live:
            decoded = decode_message(message.topic, message.payload, message.content_type, message.arrived_ms,
                                     max_future_s=self.settings.max_future_s,
                                     max_payload=self.mqtt.max_payload)
            records += decoded.records
            rejects += decoded.rejects
            if decoded.status is not None:
                statuses.append(decoded.status)
        try:
            written = self.store.write(records, rejects, statuses, self.client_id)
        except Exception as exc:  # the driver's own errors: a database that went away, a full disk
            self.totals.store_errors += 1
            self._backoff_s = min(max(2 * self._backoff_s, 0.5), MAX_BACKOFF_S)
            log.error("a batch of %d messages was not stored (%s); reconnecting so that the broker sends "
                      "it again, in %.1f s", len(live), " ".join(str(exc).split()) or type(exc).__name__,
                      self._backoff_s)
            self._reopen()
            return len(batch)
        self._backoff_s = 0.0
        self._ack(live)
        self.totals.messages += len(live)
        self.totals.stored += written.stored
        self.totals.duplicates += written.duplicates
        self.totals.rejected.update(written.rejected)
        self.totals.statuses += len(statuses)
        return len(batch)

    def _take(self) -> list[Incoming]:
        try:
            first = self._queue.get(timeout=self.settings.batch_wait_s)
        except Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.settings.batch_wait_s
        while len(batch) < self.settings.batch_messages:
            try:
                batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except Empty:
                break
        return batch

    def _ack(self, messages: list[Incoming]) -> None:
        with self._lock:
            client, gen, connected = self._client, self._gen, self._connected
        if client is None or not connected:
            return
        for message in messages:
            if message.qos > 0 and message.gen == gen:
                try:
                    client.ack(message.mid, message.qos)
                except Exception:  # the socket went away: the broker sends it again
                    log.debug("acknowledgement of message %d failed", message.mid, exc_info=True)

    def housekeeping(self) -> None:
        """Retention every `retention_check_s` (and at the start), the progress line every `progress_s`."""
        now = time.monotonic()
        if self._last_purge is None or now - self._last_purge >= self.settings.retention_check_s:
            self._last_purge = now
            self.purge()
        if self.progress is not None and now - self._last_progress >= self.settings.progress_s:
            self.progress.write(self.progress_line(now - self._last_progress) + "\n")
            self.progress.flush()
            self._last_progress = now
            self._progress_mark = self.totals.stored + self.totals.duplicates

    def purge(self) -> None:
        """Delete what arrived more than `privacy.retention_days` ago; make tomorrow's partitions."""
        now_ms = int(self.clock() * 1000)
        try:
            self.store.prepare(now_ms)
            purged = self.store.purge(now_ms - int(self.retention_days * DAY_MS), self.client_id)
        except Exception as exc:
            log.error("retention did not run: %s", " ".join(str(exc).split()) or type(exc).__name__)
            return
        self.totals.purged += purged.events
        if purged.events or purged.rejects:
            log.info("retention: %d events (%d whole days) and %d rejects deleted", purged.events,
                     purged.partitions, purged.rejects)

    def progress_line(self, seconds: float) -> str:
        t = self.totals
        rate = (t.stored + t.duplicates - self._progress_mark) / seconds if seconds > 0 else 0.0
        rejected = sum(t.rejected.values())
        return (f"ingest: {rate:.1f} events/s, backlog {self._queue.qsize()} messages, stored {t.stored}, "
                f"duplicates {t.duplicates}, rejects {rejected}, store errors {t.store_errors}")

    def backlog(self) -> int:
        return self._queue.qsize()

