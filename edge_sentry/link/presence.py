"""The device's `state` topic: the birth after every CONNACK, the offline state on stop, the Will.

All three are retained, so the fleet always reads the latest. What it must never do: put a scan's
content in a state (only versions and the device's own facts go there), or let a stale state be
held and sent after a fresher one.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from . import payloads


class Presence:
    """The fields of every `state` message: what update_state() merged in (config and trust
    versions...), the firmware, this process's boot id and the device's boot count."""

    def __init__(self, firmware: str, boot_id: str) -> None:
        self.firmware = firmware
        self.boot_id = boot_id
        self.boot_count: int | None = None
        self._lock = threading.Lock()
        self._fields: dict[str, Any] = {}

    def update(self, fields: dict[str, Any]) -> None:
        with self._lock:
            self._fields.update(fields)

    def state(self, online: bool, *, reason: str | None = None) -> bytes:
        """A `state` payload: the birth (online) or the offline state on stop (with its reason)."""
        body: dict[str, Any] = {"config_version": None, "trust_version": None}
        with self._lock:
            body.update(self._fields)
        body.update(online=online, firmware=self.firmware, boot_id=self.boot_id,
                    boot_count=self.boot_count, t=int(time.time() * 1000))
        if reason is not None:
            body["reason"] = reason
        return payloads.encode(body)

    def will(self) -> bytes:
        """The Last Will, which the broker publishes if the connection dies without DISCONNECT."""
        return payloads.encode({"online": False, "reason": "lost", "firmware": self.firmware,
                                "boot_id": self.boot_id, "boot_count": self.boot_count})
