"""The link's counters and last error, as health reports show them.

Its lock is the innermost of the link's: nothing here calls out, so any part may count while
holding the link's own lock.
"""

from __future__ import annotations

import threading
from typing import Any, Literal, get_args

CounterName = Literal[
    "connects", "refusals", "disconnects", "published", "events_sent", "acked", "puback_failures",
    "dropped", "received", "rejected", "handler_errors", "unencodable", "oversized", "subscribe_failures",
]

COUNTERS: tuple[CounterName, ...] = get_args(CounterName)


class Stats:
    """Thread-safe counters (see Link.stats() for what each one counts) and the last error seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[CounterName, int] = dict.fromkeys(COUNTERS, 0)
        self._last_error: str | None = None

    def count(self, name: CounterName, n: int = 1) -> None:
        with self._lock:
            self._counters[name] += n

    def sent(self, events: int) -> None:
        """One drain message published, carrying `events` events."""
        with self._lock:
            self._counters["published"] += 1
            self._counters["events_sent"] += events

    def error(self, message: str, *, counter: CounterName | None = None) -> None:
        """Remember `message` as the last error, counting it under `counter` in the same step."""
        with self._lock:
            self._last_error = message
            if counter is not None:
                self._counters[counter] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {name: n for name, n in self._counters.items()}
            out["last_error"] = self._last_error
            return out
