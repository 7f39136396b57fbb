"""The back end's store interface (`Store`) and what its calls give back, shared by the SQLite and the
PostgreSQL stores.

A store does two things, each in one transaction: `write()` a batch (records deduplicated by id,
rejects by key, the latest status per device, the counters, the report's rollup and the devices'
history), and `purge()` what arrived before a cutoff. The rollup's statements below are written once
for both databases (`?` placeholders; PostgreSQL's store turns them into `%s`).
The ingester acknowledges a batch's messages only after `write()` returned, so a store
must raise rather than return before its commit is durable.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from . import schema
from .decode import Record, Reject, Status


@dataclass
class Written:
    """What a `write()` added: duplicates are records whose id was already stored."""

    stored: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


@dataclass
class Purged:
    events: int = 0
    rejects: int = 0
    partitions: int = 0


class Store(Protocol):
    """The back end's database, as the ingester uses it."""

    url: str

    def write(self, records: Sequence[Record], rejects: Sequence[Reject], statuses: Sequence[Status],
              source: str) -> Written: ...

    def purge(self, cutoff_ms: int, source: str) -> Purged: ...

    def prepare(self, now_ms: int) -> None: ...

    def counters(self) -> dict[str, int]: ...

    def version(self) -> int: ...

    def rows(self, statement: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]: ...

    def close(self) -> None: ...


def counter_rows(written: Written) -> list[tuple[str, int]]:
    """(name, increment) of a write's counters, those that moved only."""
    rows = [(schema.STORED, written.stored), (schema.DUPLICATES, written.duplicates)]
    rows += [(schema.REJECTED + reason, n) for reason, n in sorted(written.rejected.items())]
    return [(name, n) for name, n in rows if n]


def purge_rows(purged: Purged) -> list[tuple[str, int]]:
    rows = [(schema.RETENTION_EVENTS, purged.events), (schema.RETENTION_REJECTS, purged.rejects),
            (schema.RETENTION_PARTITIONS, purged.partitions)]
    return [(name, n) for name, n in rows if n]


def latest(statuses: Iterable[Status]) -> list[Status]:
    """The last status per (site, device, kind): a batch may hold several of one device. In key
    order, as every row a transaction locks: ingesters that upsert the same devices then take their
    locks in one order and never deadlock."""
    found: dict[tuple[str, str, str], Status] = {}
    for status in statuses:
        found[(status.site, status.device, status.kind)] = status
    return [found[key] for key in sorted(found)]


_TEXT = ("entrance", "event", "mode", "verdict", "reason")
_HOUR = f"t_ms - t_ms % {schema.HOUR_MS}"

ADD_HOURS = (f"INSERT INTO event_hours ({', '.join(c[0] for c in schema.EVENT_HOURS)}) "
             "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
             f"ON CONFLICT ({', '.join(schema.EVENT_HOUR_KEY)}) DO UPDATE SET n = event_hours.n + excluded.n")
TAKE_HOURS = ("UPDATE event_hours SET n = n - ? WHERE "
              + " AND ".join(f"{c} = ?" for c in schema.EVENT_HOUR_KEY))
DROP_EMPTY_HOURS = "DELETE FROM event_hours WHERE n <= 0"
PURGED_HOURS = (f"SELECT count(*), {_HOUR}, site, "
                + ", ".join(f"coalesce({c}, '')" for c in _TEXT)
                + f" FROM events WHERE arrived_ms < ? GROUP BY {_HOUR}, site, "
                + ", ".join(f"coalesce({c}, '')" for c in _TEXT))
ADD_BACKLOG = ("INSERT INTO device_hours (hour_ms, site, device, backlog_max) VALUES (?, ?, ?, ?) "
               "ON CONFLICT (hour_ms, site, device) DO UPDATE SET backlog_max = CASE WHEN "
               "excluded.backlog_max > device_hours.backlog_max THEN excluded.backlog_max "
               "ELSE device_hours.backlog_max END")
ADD_STATE = ("INSERT INTO device_states (site, device, arrived_ms, online) VALUES (?, ?, ?, ?) "
             "ON CONFLICT DO NOTHING")
ADD_ENTRANCE = ("INSERT INTO device_entrances (site, device, entrance, last_ms) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (site, device, entrance) DO UPDATE SET last_ms = CASE WHEN "
                "excluded.last_ms > device_entrances.last_ms THEN excluded.last_ms "
                "ELSE device_entrances.last_ms END")
# The entrance names a device used go with the rest: a sender's words are kept no longer than its
# events, and a sentry naming a new entrance in every scan cannot grow the table for ever.
PURGE_HISTORY = (f"DELETE FROM device_hours WHERE hour_ms + {schema.HOUR_MS} <= ?",
                 "DELETE FROM device_states WHERE arrived_ms < ?",
                 "DELETE FROM device_entrances WHERE last_ms < ?")


def hour_rows(records: Iterable[Record]) -> list[tuple[object, ...]]:
    """The increments of `event_hours` for records that were inserted (never for duplicates), in key
    order, so that concurrent ingesters lock the rows they share in one order."""
    found: Counter[tuple[object, ...]] = Counter()
    for r in records:
        found[(r.t_ms - r.t_ms % schema.HOUR_MS, r.site, r.entrance or "", r.event, r.mode or "",
               r.verdict or "", r.reason or "")] += 1
    return [(*key, n) for key, n in sorted(found.items())]


def entrance_rows(records: Iterable[Record]) -> list[tuple[str, str, str, int]]:
    """(site, device, entrance, latest t_ms) of the entrances a batch's records name."""
    found: dict[tuple[str, str, str], int] = {}
    for r in records:
        if r.entrance:
            key = (r.site, r.device, r.entrance)
            found[key] = max(found.get(key, 0), r.t_ms)
    return [(*key, found[key]) for key in sorted(found)]


def backlog_rows(statuses: Iterable[Status]) -> list[tuple[int, str, str, int]]:
    """(hour of arrival, site, device, deepest outbox) of a batch's health reports."""
    found: dict[tuple[int, str, str], int] = {}
    for status in statuses:
        depth = _depth(status) if status.kind == "health" else None
        if depth is not None:
            key = (status.arrived_ms - status.arrived_ms % schema.HOUR_MS, status.site, status.device)
            found[key] = max(found.get(key, 0), depth)
    return [(*key, found[key]) for key in sorted(found)]


def state_rows(statuses: Iterable[Status]) -> list[tuple[str, str, int, bool]]:
    """Every `state` that says whether the device is online (the Last Will included), by arrival."""
    return sorted({(s.site, s.device, s.arrived_ms, s.online) for s in statuses
                   if s.kind == "state" and s.online is not None})


def _depth(status: Status) -> int | None:
    try:
        depth = json.loads(status.body or "{}").get("outbox", {}).get("depth")
    except (ValueError, AttributeError):
        return None
    if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= 2**63 - 1:
        return None
    return depth


def taken_rows(purged: Iterable[Sequence[object]]) -> list[tuple[object, ...]]:
    """`PURGED_HOURS`'s rows as `TAKE_HOURS`'s parameters, in key order."""
    return sorted((tuple(row) for row in purged), key=lambda row: str(row[1:]))
