"""Event identities and the small helpers that every event dict goes through.

An event id is a UUIDv7 (RFC 9562 section 5.7): a 48-bit Unix millisecond timestamp, the version
and variant bits, and random bits. Ids sort by creation time, so the fleet's back end can index
them without a second timestamp, and the outbox reads an event's age straight from its id.

Ids from one `EventIdGenerator` are strictly increasing even within one millisecond or when the
clock steps back (RFC 9562 section 6.2, method 1: the 12 `rand_a` bits are a counter seeded at
random each millisecond). This module does no I/O and never logs: an event may carry a sealed
subject.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

_COUNTER_BITS = 12
_COUNTER_MAX = (1 << _COUNTER_BITS) - 1
# A fresh millisecond starts its counter in the lower half so that many ids can follow in that
# millisecond before the counter runs out and borrows the next millisecond.
_COUNTER_SEED_MAX = 1 << (_COUNTER_BITS - 1)


def uuid7_from_parts(unix_ms: int, counter: int, rand_b: int) -> str:
    """Lay out a UUIDv7 from its fields (pure; the generator and the tests build on it)."""
    if not 0 <= unix_ms < 1 << 48:
        raise ValueError("unix_ms must fit in 48 bits")
    if not 0 <= counter <= _COUNTER_MAX:
        raise ValueError("counter must fit in 12 bits")
    if not 0 <= rand_b < 1 << 62:
        raise ValueError("rand_b must fit in 62 bits")
    value = (unix_ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def event_id_ms(event_id: str) -> int:
    """The Unix millisecond timestamp inside a UUIDv7 event id; ValueError if it is not one."""
    if len(event_id) != 36 or event_id[14] != "7" or event_id[19] not in "89ab":
        raise ValueError("not a UUIDv7 string")
    return int(event_id[:8] + event_id[9:13], 16)


class EventIdGenerator:
    """Issues UUIDv7 strings that never go backwards, from a clock given in seconds.

    The clock is injectable so that tests and the outbox's retention share one notion of time.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._last_ms = -1
        self._counter = 0

    def __call__(self) -> str:
        now_ms = max(0, int(self._clock() * 1000))
        with self._lock:
            if now_ms > self._last_ms:
                self._last_ms = now_ms
                self._counter = secrets.randbelow(_COUNTER_SEED_MAX)
            else:
                # Same millisecond, or the clock stepped back: keep order by counting on.
                self._counter += 1
                if self._counter > _COUNTER_MAX:
                    self._last_ms += 1
                    self._counter = secrets.randbelow(_COUNTER_SEED_MAX)
            ms, counter = self._last_ms, self._counter
        return uuid7_from_parts(ms, counter, secrets.randbits(62))


_default_generator = EventIdGenerator()


def new_event_id() -> str:
    """A new UUIDv7 string from the system clock, after every id this process issued before."""
    return _default_generator()


def stamp(event: Mapping[str, Any], event_id: str, seq: int, now_ms: int) -> dict[str, Any]:
    """A copy of `event` with its identity set; `t` is kept when the caller already set it.

    A copy, because the caller's dict may still be in use on the hot path while the outbox
    writes this one.
    """
    stamped = dict(event)
    stamped["id"] = event_id
    stamped["seq"] = seq
    stamped.setdefault("t", now_ms)
    return stamped
