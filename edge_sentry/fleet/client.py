"""The operator's MQTT 5 client: one connection, calls that wait for their acknowledgement.

The device's `link.Link` is built to keep a gate running through outages: it never blocks, holds
messages while offline and reconnects forever. An operator's command is the opposite case: it wants
to know at once whether the broker took the push, and to fail with one clear line when it did not
(unreachable, refused CONNACK, a subscription or publish refused by the ACL). So this client is
separate and small: `connect()`, `subscribe()` and `publish()` return only once the broker has
answered (CONNACK, SUBACK, PUBACK) and raise FleetError otherwise; incoming messages wait in a
queue that the caller reads with `receive()` on its own thread.

Credentials and TLS come from the same `[mqtt]` section as the device's and are read by the
device link's own helpers (`link.credentials`), so a password file or a systemd
credential works the same way for both. The client id is `fleet-<user>-<random>`: never a device
id, since the broker would then disconnect the sentry that owns it.

After the first CONNACK, paho reconnects by itself (for `tail`, which runs for hours) and the
subscriptions are sent again. Never logs payloads: a scan batch may carry sealed subjects.
"""

from __future__ import annotations

import getpass
import logging
import re
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from queue import Empty, Queue
from types import TracebackType
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ..config import MqttConfig
from ..errors import FleetError, LinkError
from ..link.credentials import read_password, tls_context
from ..link.payloads import CBOR
from ..link.topics import ROOT, SITE_WIDE, check_segment

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
_USER_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Message:
    """One incoming message, with the MQTT 5 properties the fleet commands read."""

    topic: str
    payload: bytes
    retain: bool = False
    content_type: str | None = None
    correlation_data: bytes | None = None


# -- topics of a whole site ----------------------------------------------------------------------


def check_site(site: str) -> str:
    """`site` if it can be one topic level (a `+` in it would widen every subscription)."""
    return check_segment(site, "site id")


def check_device(device: str) -> str:
    """`device` if it can name one sentry: one topic level, and not the site-wide `all`."""
    check_segment(device, "device id")
    if device == SITE_WIDE:
        raise FleetError(f"device id {SITE_WIDE!r} names the whole site, not a sentry")
    return device


def device_topic(site: str, device: str, kind: str) -> str:
    """`sentry/v1/{site}/{device}/{kind}`; `device` may be `all` for the site-wide desired config."""
    return f"{ROOT}/{check_site(site)}/{check_segment(device, 'device id')}/{kind}"


def site_filter(site: str, kind: str, device: str | None = None) -> str:
    """`kind` of every sentry at `site` (`+`), or of one `device`."""
    return f"{ROOT}/{check_site(site)}/{device or '+'}/{kind}"


def split_topic(site: str, topic: str) -> tuple[str, str] | None:
    """(device, kind) of a topic under `sentry/v1/{site}/`, or None for anything else."""
    prefix = f"{ROOT}/{site}/"
    if not topic.startswith(prefix):
        return None
    device, _, kind = topic[len(prefix):].partition("/")
    if not device or not kind:
        return None
    return device, kind


def operator_client_id(username: str | None) -> str:
    """`fleet-<user>-<8 hex digits>`: tells operators apart in the broker's log, never a device id,
    and random so that two terminals of one operator do not take over each other's session."""
    user = username
    if not user:
        try:
            user = getpass.getuser()
        except (OSError, KeyError):  # no login name in a bare container
            user = "operator"
    user = _USER_CHARS.sub("_", user)[:24] or "operator"
    return f"fleet-{user}-{secrets.token_hex(4)}"


def _describe(exc: BaseException) -> str:
    """A socket or TLS failure in words an operator can act on."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the broker's certificate is not trusted ({exc.verify_message or exc})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the broker running on that port?)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _reason(reason: ReasonCode) -> str:
    return f"{reason} (0x{reason.value:02x})"


# -- the client ----------------------------------------------------------------------------------


def paho_client(mqtt: MqttConfig, client_id: str, timeout_s: float, *,
                manual_ack: bool = False) -> paho.Client:
    """An MQTT 5 paho client with the `[mqtt]` section's login and TLS, not yet connected; paho
    reconnects it by itself once it is. FleetError for credentials or TLS files that cannot be used."""
    try:
        password = read_password(mqtt)
        context = tls_context(mqtt)
    except LinkError as exc:
        raise FleetError(str(exc)) from None
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5,
                         manual_ack=manual_ack)
    client.connect_timeout = timeout_s
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    if mqtt.username is not None or password is not None:
        client.username_pw_set(mqtt.username, password)
    if context is not None:
        client.tls_set_context(context)
    return client



class FleetClient:
    """An operator's connection to the fleet broker; use as a context manager.

    `timeout_s` bounds each wait for the broker: TCP, TLS and CONNACK, a SUBACK, a PUBACK.
    """

    def __init__(
        self,
        mqtt: MqttConfig,
        *,
        client_id: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.mqtt = mqtt
        self.client_id = client_id or operator_client_id(mqtt.username)
        self.timeout_s = timeout_s
        self.where = f"{mqtt.host}:{mqtt.port}"
        self._client: paho.Client | None = None
        self._inbox: Queue[Message] = Queue()
        self._cond = threading.Condition()
        self._connack = threading.Event()
        self._failure: str | None = None  # why the first connection did not come up
        self._connected = False
        self._filters: dict[str, int] = {}
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._pubacks: dict[int, ReasonCode] = {}

    # -- life cycle -----------------------------------------------------------------------------

    def connect(self) -> FleetClient:
        """Connect and wait for a successful CONNACK; FleetError saying why not."""
        client = paho_client(self.mqtt, self.client_id, self.timeout_s)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._client = client
        try:
            client.connect(self.mqtt.host, self.mqtt.port, self.mqtt.keepalive_s, clean_start=True)
        except (OSError, ValueError) as exc:  # ssl.SSLError and socket.gaierror are OSErrors
            self._client = None
            raise FleetError(f"cannot connect to the broker at {self.where}: {_describe(exc)}") from None
        client.loop_start()
        answered = self._connack.wait(self.timeout_s)
        if not answered or self._failure is not None:
            failure = self._failure or (
                f"no CONNACK from the broker at {self.where} within {self.timeout_s:g} s")
            self.close()
            raise FleetError(failure)
        log.debug("connected to %s as %s", self.where, self.client_id)
        return self

    def close(self) -> None:
        """Disconnect (cleanly, if connected) and stop the network thread."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.disconnect()
        except Exception:  # a socket already gone is the usual case here
            log.debug("disconnect failed", exc_info=True)
        client.loop_stop()

    def __enter__(self) -> FleetClient:
        return self.connect()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    # -- requests -------------------------------------------------------------------------------

    def subscribe(self, filters: Iterable[str], qos: int = 1) -> None:
        """Subscribe to `filters` and wait for the SUBACK; FleetError naming a refused filter.
        Retained messages on them start arriving in `receive()` right after."""
        wanted = list(dict.fromkeys(filters))
        client = self._require()
        with self._cond:
            for topic_filter in wanted:
                self._filters[topic_filter] = qos
        rc, mid = client.subscribe([(f, SubscribeOptions(qos=qos)) for f in wanted])
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise FleetError(f"cannot subscribe: the connection to {self.where} is down")
        reasons = self._wait_for(self._subacks, mid, "SUBACK")
        for topic_filter, reason in zip(wanted, reasons, strict=False):
            if reason.is_failure:
                raise FleetError(f"the broker refused the subscription to {topic_filter}: {_reason(reason)}")

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        retain: bool = False,
        qos: int = 1,
        content_type: str | None = CBOR,
        response_topic: str | None = None,
        correlation_data: bytes | None = None,
    ) -> None:
        """Publish and, at QoS 1 or 2, wait for the broker to take it; FleetError when it refuses
        (a PUBACK with a failure reason code: not authorised by the ACL, quota, too large)."""
        client = self._require()
        props = Properties(PacketTypes.PUBLISH)
        if content_type is not None:
            props.ContentType = content_type
        if response_topic is not None:
            props.ResponseTopic = response_topic
        if correlation_data is not None:
            props.CorrelationData = correlation_data
        info = client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise FleetError(f"cannot publish to {topic}: the connection to {self.where} is down")
        if qos == 0:
            return
        reason = self._wait_for(self._pubacks, info.mid, "PUBACK")
        if reason.is_failure:
            raise FleetError(f"the broker refused the message on {topic}: {_reason(reason)}")

    def receive(self, timeout: float) -> Message | None:
        """The next message from any subscription, waiting up to `timeout` seconds; None if none."""
        try:
            return self._inbox.get(timeout=max(0.0, timeout))
        except Empty:
            return None

    def collect(self, seconds: float) -> list[Message]:
        """Every message that arrives within `seconds` (retained ones come right after the SUBACK,
        but the broker sends no marker after the last of them: a short window is the only way)."""
        deadline = time.monotonic() + seconds
        found: list[Message] = []
        while (left := deadline - time.monotonic()) > 0:
            message = self.receive(left)
            if message is not None:
                found.append(message)
        return found

    # -- internals ------------------------------------------------------------------------------

    def _require(self) -> paho.Client:
        if self._client is None:
            raise FleetError("not connected to the broker")
        return self._client

    def _wait_for(self, table: dict[int, Any], mid: int, what: str) -> Any:
        """The acknowledgement recorded for `mid`; it may have been recorded before the caller got
        `mid` back from paho, which is why acknowledgements are kept by id rather than awaited."""
        with self._cond:
            if not self._cond.wait_for(lambda: mid in table or not self._connected, self.timeout_s):
                raise FleetError(f"no {what} from the broker at {self.where} within {self.timeout_s:g} s")
            if mid not in table:
                raise FleetError(f"the connection to {self.where} was lost before its {what}")
            return table.pop(mid)

    def _on_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode,
                    _properties: Properties | None) -> None:
        if reason.is_failure:
            message = f"the broker at {self.where} refused the connection: {_reason(reason)}"
            if not self._connack.is_set():
                self._failure = message
                self._connack.set()
                client.disconnect()  # no retries for a refusal: credentials do not heal by waiting
            else:
                log.error("%s", message)
            return
        with self._cond:
            self._connected = True
            filters = dict(self._filters)
            self._cond.notify_all()
        if self._connack.is_set() and filters:
            log.info("reconnected to %s; subscribing again", self.where)
            client.subscribe([(f, SubscribeOptions(qos=q)) for f, q in filters.items()])
        self._connack.set()

    def _on_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason: ReasonCode,
                       _properties: Properties | None) -> None:
        with self._cond:
            was_connected = self._connected
            self._connected = False
            self._cond.notify_all()
        if not self._connack.is_set():
            # Closed after TCP (and TLS) but before any CONNACK: how a broker refuses a client
            # certificate it does not accept.
            hint = " (is the client certificate accepted?)" if self.mqtt.ca else ""
            self._failure = f"the broker at {self.where} closed the connection before CONNACK: {reason}{hint}"
            self._connack.set()
        elif was_connected and self._client is not None:
            log.warning("connection to %s lost (%s); reconnecting", self.where, reason)

    def _on_subscribe(self, _client: paho.Client, _userdata: Any, mid: int, reasons: list[ReasonCode],
                      _properties: Properties | None) -> None:
        with self._cond:
            self._subacks[mid] = list(reasons)
            self._cond.notify_all()

    def _on_publish(self, _client: paho.Client, _userdata: Any, mid: int, reason: ReasonCode,
                    _properties: Properties | None) -> None:
        with self._cond:
            self._pubacks[mid] = reason
            self._cond.notify_all()

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        props = message.properties
        self._inbox.put(
            Message(
                topic=message.topic,
                payload=bytes(message.payload),
                retain=bool(message.retain),
                content_type=getattr(props, "ContentType", None),
                correlation_data=getattr(props, "CorrelationData", None),
            )
        )
