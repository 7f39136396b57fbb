"""The `link-supervisor` thread: connects, waits for the connection to end, backs off, again.

It builds a fresh paho client for every attempt, connects, hands the socket to paho's network
thread (`loop_start`), waits for that connection to end, then sleeps an exponential backoff with
jitter between `mqtt.backoff_min_s` and `mqtt.backoff_max_s` and tries again. paho's own
`reconnect_delay_set` doubles without jitter, so a fleet that lost its broker would come back in
lockstep; and a fresh client per connection means nothing of a dead connection (in-flight ids,
queued packets) can leak into the next one. The session is clean on every connect: the device's
memory is its outbox, and what an operator wants it to catch up on is retained.

Each CONNECT announces what the device takes (dispatch.py): a Maximum Packet Size and a Receive
Maximum; acknowledgements are manual. A subscription that needs a larger packet size than the live
connection announced makes it `renew()`: the connection ends on purpose and the next one starts at
once, without backoff, and is not counted as lost.

It tells a refusal (a CONNACK with a failure reason code; or, under TLS, the broker closing the
connection before any CONNACK) from a loss, and hands every other callback to the link's parts.
What it must never do: call a refused connection connected; let an exception escape into paho
(it would end the network thread, and with it the connection, for good); block in a callback.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ..config import MqttConfig
from ..errors import LinkError
from .connection import (
    UNLIMITED_RECEIVE,
    Connection,
    LinkState,
    Status,
    backoff_delay,
    closed_before_connack,
    connack_refusal,
)
from .credentials import read_password, tls_context
from .outgoing import publish_properties
from .payloads import CBOR
from .stats import Stats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listeners:
    """Where a connection's news goes; all but `goodbye` are called on paho's network thread."""

    up: Callable[[Connection], None]  # a success CONNACK
    down: Callable[[Connection], None]  # the connection ended (called once)
    published: Callable[[Connection, int, ReasonCode], None]  # a PUBACK / PUBCOMP
    subscribed: Callable[[Connection, int, list[ReasonCode]], None]  # a SUBACK
    received: Callable[[Connection, paho.MQTTMessage], None]
    packet_limit: Callable[[], int]  # the Maximum Packet Size to announce in the next CONNECT
    goodbye: Callable[[Connection], None]  # stopping: the last words before DISCONNECT
    will: Callable[[], bytes]  # the Last Will's payload for the next attempt


def guarded(callback: Callable[..., None]) -> Callable[..., None]:
    """A paho callback that logs its own bugs instead of ending paho's network thread."""

    def run(*args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("link callback %s failed", getattr(callback, "__name__", callback))

    return run


class Supervisor:
    """One connection after another, until `stop` is set."""

    def __init__(self, mqtt: MqttConfig, client_id: str, state_topic: str, status: Status,
                 stats: Stats, listeners: Listeners, stop: threading.Event, rng: random.Random, *,
                 max_inflight: int, receive_maximum: int, connect_timeout_s: float,
                 stable_s: float) -> None:
        self._mqtt = mqtt
        self._client_id = client_id
        self._state_topic = state_topic
        self._status = status
        self._stats = stats
        self._listeners = listeners
        self._stop = stop
        self._rng = rng
        self._max_inflight = max_inflight
        self._receive_maximum = receive_maximum
        self._connect_timeout_s = connect_timeout_s
        self._stable_s = stable_s
        self._wake = threading.Event()
        self._renew = threading.Event()
        self._gen = 0
        # paho's own in-flight bound must be set before connecting, so it uses the broker's
        # Receive Maximum as seen on the previous connection (MQTT 5 forbids exceeding it).
        self._receive_max_hint = UNLIMITED_RECEIVE

    def wake(self) -> None:
        self._wake.set()

    def renew(self) -> None:
        """End the connection and connect again at once, without backoff: the CONNECT's
        announcements (the Maximum Packet Size) must change."""
        self._renew.set()
        self._wake.set()

    def run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self._renew.clear()
            conn = self._connect_once()
            if conn is not None:
                self._wait_end(conn)
                if self._stop.is_set():
                    self._listeners.goodbye(conn)
                self._close(conn)
                if conn.connacked and time.monotonic() - conn.connected_at >= self._stable_s:
                    attempt = 0
            if self._stop.is_set():
                break
            if self._renew.is_set():
                log.info("connecting again to announce a larger Maximum Packet Size")
                continue
            delay = backoff_delay(attempt, self._mqtt.backoff_min_s, self._mqtt.backoff_max_s, self._rng)
            attempt += 1
            log.debug("reconnecting in %.2f s", delay)
            self._stop.wait(delay)

    def _new_client(self, conn: Connection, password: str | None,
                    context: ssl.SSLContext | None) -> paho.Client:
        # manual_ack: a QoS 1 or 2 message is acknowledged once its handlers took it (dispatch.py).
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self._client_id,
                             protocol=paho.MQTTv5, reconnect_on_failure=False, manual_ack=True)
        client.user_data_set(conn)
        client.connect_timeout = self._connect_timeout_s
        client.max_inflight_messages_set(min(self._max_inflight + 4, self._receive_max_hint))
        if self._mqtt.username is not None or password is not None:
            client.username_pw_set(self._mqtt.username, password)
        if context is not None:
            client.tls_set_context(context)
        will_props = publish_properties(CBOR, packet=PacketTypes.WILLMESSAGE)
        client.will_set(self._state_topic, self._listeners.will(), qos=1, retain=True,
                        properties=will_props)
        client.on_connect = guarded(self._on_connect)
        client.on_disconnect = guarded(self._on_disconnect)
        client.on_publish = guarded(self._on_publish)
        client.on_subscribe = guarded(self._on_subscribe)
        client.on_message = guarded(self._on_message)
        client.on_log = guarded(self._on_log)
        return client

    def _connect_once(self) -> Connection | None:
        self._gen += 1
        conn = Connection(self._gen)
        try:
            password = read_password(self._mqtt)
            context = tls_context(self._mqtt)
        except LinkError as exc:
            self._stats.error(str(exc))
            log.error("%s", exc)
            self._status.set(LinkState.DISCONNECTED)
            return None
        conn.client = self._new_client(conn, password, context)
        self._status.set(LinkState.CONNECTING, unless=(LinkState.REFUSED,))
        connect_props = Properties(PacketTypes.CONNECT)
        conn.announced_max = self._listeners.packet_limit()
        # The broker then never sends a bigger packet, nor more unacknowledged messages than the
        # handler queue takes (dispatch.py).
        connect_props.MaximumPacketSize = conn.announced_max
        connect_props.ReceiveMaximum = self._receive_maximum
        try:
            conn.client.connect(self._mqtt.host, self._mqtt.port, self._mqtt.keepalive_s, clean_start=True,
                                properties=connect_props)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            self._stats.error(f"cannot connect to {self._mqtt.host}:{self._mqtt.port}: {exc}")
            log.warning("cannot connect to %s:%d: %s", self._mqtt.host, self._mqtt.port, exc)
            self._status.set(LinkState.DISCONNECTED)
            return None
        conn.client.loop_start()
        return conn

    def _wait_end(self, conn: Connection) -> None:
        connack_deadline = time.monotonic() + self._connect_timeout_s
        while not self._stop.is_set() and not conn.ended.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if self._renew.is_set():
                return
            if not conn.connacked and not conn.ended.is_set() and time.monotonic() > connack_deadline:
                self._stats.error(f"no CONNACK from {self._mqtt.host}:{self._mqtt.port} "
                                  f"within {self._connect_timeout_s:g} s")
                log.warning("no CONNACK within %.1f s; reconnecting", self._connect_timeout_s)
                self._status.set(LinkState.DISCONNECTED)
                return

    def _close(self, conn: Connection) -> None:
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

    # -- paho callbacks (network thread: record and hand over, never block) ---------------------

    def _on_connect(self, _client: paho.Client, conn: Connection, _flags: Any, reason: ReasonCode,
                    properties: Properties | None) -> None:
        if reason.is_failure:
            conn.refused = True
            message = connack_refusal(reason)
            self._stats.error(message, counter="refusals")
            log.error("%s", message)
            self._status.set(LinkState.REFUSED)
            conn.ended.set()
            self._wake.set()
            return
        conn.connacked = True
        conn.connected_at = time.monotonic()
        receive_max = getattr(properties, "ReceiveMaximum", None)
        conn.receive_max = int(receive_max) if receive_max else UNLIMITED_RECEIVE
        max_packet = getattr(properties, "MaximumPacketSize", None)
        conn.max_packet = int(max_packet) if max_packet else None
        self._receive_max_hint = conn.receive_max
        self._listeners.up(conn)

    def _on_disconnect(self, _client: paho.Client, conn: Connection, _flags: Any, reason: ReasonCode,
                       _properties: Properties | None) -> None:
        if conn.down:
            return
        conn.down = True
        self._listeners.down(conn)
        stopping = self._stop.is_set()
        if conn.connacked:
            self._stats.count("disconnects")
            if not stopping:
                if not conn.closing:  # closing: ended on purpose, to connect again at once
                    detail = conn.error or str(reason)
                    self._stats.error(f"connection lost: {detail}")
                    log.warning("connection to %s:%d lost: %s", self._mqtt.host, self._mqtt.port, detail)
                self._status.set(LinkState.DISCONNECTED)
        elif not conn.refused and not stopping and not conn.closing:
            conn.refused = True
            message = closed_before_connack(conn.error or str(reason), tls=bool(self._mqtt.ca))
            self._stats.error(message, counter="refusals")
            log.error("%s", message)
            self._status.set(LinkState.REFUSED)
        conn.ended.set()
        self._wake.set()

    def _on_publish(self, _client: paho.Client, conn: Connection, mid: int, reason: ReasonCode,
                    _properties: Properties | None) -> None:
        self._listeners.published(conn, mid, reason)

    def _on_subscribe(self, _client: paho.Client, conn: Connection, mid: int,
                      reasons: list[ReasonCode], _properties: Properties | None) -> None:
        self._listeners.subscribed(conn, mid, reasons)

    def _on_message(self, _client: paho.Client, conn: Connection, message: paho.MQTTMessage) -> None:
        self._listeners.received(conn, message)

    def _on_log(self, _client: paho.Client, conn: Connection, level: int, text: str) -> None:
        if level == paho.MQTT_LOG_ERR:
            if conn.error is None:  # the socket error behind a disconnect; paho reports no other way
                conn.error = text
            log.debug("paho: %s", text)
