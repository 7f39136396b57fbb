"""The back end's store interface (`Store`) and what its calls give back, shared by the SQLite and the
PostgreSQL stores.

A store does two things, each in one transaction: `write()` a batch (records deduplicated by id,
rejects by key, the latest status per device, the counters), and `purge()` what arrived before a
cutoff. The ingester acknowledges a batch's messages only after `write()` returned, so a store
must raise rather than return before its commit is durable.
"""

from __future__ import annotations

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
