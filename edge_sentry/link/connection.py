"""One MQTT connection's facts, the link's state, and the pure rules of reconnecting.

`Connection` is what paho's callbacks learn about one attempt (its CONNACK, the broker's limits, how
it ended); `Status` is the state that health reports and tests wait on, and the one lock that
guards what the link's parts share. What it must never do: call a refused connection connected,
or let a callback that comes late after stop() revive the state.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import paho.mqtt.client as paho
    from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

UNLIMITED_RECEIVE = 65535  # MQTT 5's Receive Maximum when the CONNACK does not set one


class LinkState(StrEnum):
    """Link.state(): reported in health as its value."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    REFUSED = "refused"  # the broker said no (CONNACK failure, or closed before any CONNACK)
    DISCONNECTED = "disconnected"
    STOPPED = "stopped"


@dataclass
class Connection:
    """One connect attempt; a fresh paho client each, so nothing of a dead connection leaks."""

    gen: int
    client: paho.Client | None = None
    connacked: bool = False
    refused: bool = False
    closing: bool = False  # we end it ourselves: its end is neither a loss nor a refusal
    down: bool = False
    connected_at: float = 0.0
    receive_max: int = UNLIMITED_RECEIVE
    max_packet: int | None = None  # the broker's Maximum Packet Size (None: only the protocol's)
    announced_max: int = 0  # the Maximum Packet Size this client announced in its CONNECT
    error: str | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    answered: set[str] = field(default_factory=set)  # filters whose SUBACK came on this connection


def backoff_delay(attempt: int, low: float, high: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before reconnect attempt `attempt` (0 = the first retry): uniform between
    `low` and a ceiling that doubles per attempt up to `high`, so retries spread out in time."""
    ceiling = min(high, low * (2 ** min(attempt + 1, 32)))
    return (rng or random).uniform(low, max(low, ceiling))


def connack_refusal(reason: ReasonCode) -> str:
    """What to report for a CONNACK with a failure reason code."""
    return f"broker refused the connection: {reason} (0x{reason.value:02x})"


def closed_before_connack(detail: str, tls: bool) -> str:
    """What to report when the broker closed the connection after TCP (and TLS) but before any
    CONNACK: a refusal at the TLS layer (no or unknown client certificate) looks exactly like this."""
    message = f"connection closed by the broker before CONNACK: {detail}"
    if tls:
        message += " (is the client certificate accepted?)"
    return message


class Status:
    """The link's state and its live connection (the one that has its CONNACK).

    `lock` is the link's one lock over what its parts share (the live connection, the held
    messages, the subscriptions), so that a publish or a subscribe racing a CONNACK is handled
    exactly once; it is never held while calling into paho. `changed` is notified on every state
    change and every SUBACK."""

    def __init__(self, on_state: Callable[[str], None] | None = None) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.live: Connection | None = None  # guarded by lock
        self._state = LinkState.STOPPED
        self._connected_since: float | None = None
        self._on_state = on_state

    @property
    def state(self) -> LinkState:
        with self.lock:
            return self._state

    def summary(self) -> tuple[LinkState, float | None]:
        """The state and, while connected, the epoch seconds of the connection's CONNACK."""
        with self.lock:
            return self._state, self._connected_since

    def set(self, state: LinkState, *, unless: tuple[LinkState, ...] = ()) -> None:
        with self.changed:
            if self._state == state or self._state in unless:
                return
            if self._state == LinkState.STOPPED and state != LinkState.CONNECTING:
                return  # a late callback after stop() must not revive the state
            self._state = state
            self._connected_since = time.time() if state == LinkState.CONNECTED else None
            self.changed.notify_all()
        if self._on_state is not None:
            try:
                self._on_state(state)
            except Exception:
                log.exception("link on_state callback failed")

    def wait(self, states: tuple[str, ...], timeout: float | None) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self._state in states, timeout)

    def wait_for(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until `ready()` (called with `lock` held) is true; False at the timeout."""
        with self.changed:
            return self.changed.wait_for(ready, timeout)
