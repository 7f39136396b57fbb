"""The daemon's event log on standard output: one line per event, for people or for machines.

In JSON format each line is one object with `event`, `t` and its details, so that a log shipper or a
test can follow decisions without parsing prose. The human format is for a technician's terminal.
Event dicts never carry code texts. A scan event may carry its subject sealed to the health
authority; the log leaves it out all the same, because logs (the journal under systemd) outlive
`privacy.retention_days` and docs/protocol.md section 4 keeps subjects out of them.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

_HUMAN_KEYS = ("mode", "scheme", "issuer", "cause", "open_s", "id")


class EventLog:
    """Writes events as lines; thread-safe because gate callbacks and the outbox writer both log."""

    def __init__(self, fmt: str = "human", stream: TextIO | None = None):
        if fmt not in ("human", "json"):
            raise ValueError(f"unknown log format {fmt!r}")
        self.fmt = fmt
        self._stream = stream if stream is not None else sys.stdout
        self._lock = threading.Lock()

    def write(self, event: dict[str, Any]) -> None:
        line = self.format(event)
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (OSError, ValueError):
                # A closed or broken stdout (the reader went away) must never stop the gate.
                pass

    def format(self, event: dict[str, Any]) -> str:
        if "subject" in event:
            event = {k: v for k, v in event.items() if k != "subject"}
        if self.fmt == "json":
            return json.dumps(event, separators=(",", ":"), default=_jsonable, sort_keys=False)
        return _human(event)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _human(event: dict[str, Any]) -> str:
    t = event.get("t")
    stamp = time.strftime("%H:%M:%S", time.localtime(t / 1000)) if isinstance(t, int | float) else "--:--:--"
    millis = f".{int(t) % 1000:03d}" if isinstance(t, int | float) else ""
    name = event.get("event", "?")
    parts = [f"{stamp}{millis}", f"{name:<14}"]
    if "verdict" in event:
        parts.append(f"{event['verdict'].upper():<6} {event.get('reason', ''):<13}")
    for key in _HUMAN_KEYS:
        if event.get(key) is not None:
            parts.append(f"{key}={event[key]}")
    if isinstance(event.get("latency_ms"), int | float):
        parts.append(f"latency={event['latency_ms']:.1f}ms")
    return " ".join(parts)
