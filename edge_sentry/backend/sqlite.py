"""The embedded store: SQLite, one file in the state folder (WAL journal), one writer at a time.

Rows are deleted by retention (SQLite has no partitions); ids are unique by the table's key.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import astuple
from pathlib import Path

from ..errors import StoreError
from . import base, schema
from .base import Purged, Written, counter_rows, latest, purge_rows
from .decode import Record, Reject, Status


class SqliteStore:
    """The embedded store: one file, one writer at a time (SQLite's own lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = str(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                       timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the SQLite database {self.url}: {exc}") from None

    def _migrate(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(schema.VERSION_TABLE)
            have = db.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            if have > schema.SCHEMA_VERSION:
                raise StoreError(f"{self.url} has schema version {have}, newer than this program's "
                                 f"{schema.SCHEMA_VERSION}")
            for number in range(have + 1, schema.SCHEMA_VERSION + 1):
                for statement in _statements(schema.STEPS[schema.SQLITE][number - 1]):
                    db.execute(statement)
                db.execute("INSERT INTO schema_version VALUES (?, ?)", (number, int(time.time() * 1000)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def version(self) -> int:
        return int(self._db.execute("SELECT max(version) FROM schema_version").fetchone()[0])

    def prepare(self, now_ms: int) -> None:
        """Nothing to make ahead: SQLite has no partitions."""

    def write(self, records: Sequence[Record], rejects: Sequence[Reject], statuses: Sequence[Status],
              source: str) -> Written:
        written = Written()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            fresh = self._fresh(records)
            db.executemany(_insert_ignore("events", schema.EVENT_COLUMNS), [astuple(r) for r in fresh])
            db.executemany(base.ADD_HOURS, base.hour_rows(fresh))
            db.executemany(base.ADD_ENTRANCE, base.entrance_rows(fresh))
            written.stored = len(fresh)
            written.duplicates = len(records) - written.stored
            for reject in rejects:
                cur = db.execute(_insert_ignore("rejects", schema.REJECT_COLUMNS), astuple(reject))
                if cur.rowcount > 0:
                    written.rejected[reject.reason] += 1
            for status in latest(statuses):
                self._status(status)
            db.executemany(base.ADD_BACKLOG, base.backlog_rows(statuses))
            db.executemany(base.ADD_STATE, base.state_rows(statuses))
            self._count(counter_rows(written), source)
            self.commit()
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return written

    def _fresh(self, records: Sequence[Record]) -> list[Record]:
        """The first copy of each id not stored yet (under the write lock, so none can come between):
        the rollup counts these alone."""
        first = list({r.id: r for r in reversed(records)}.values())[::-1]
        stored: set[str] = set()
        for start in range(0, len(first), _CHUNK):
            ids = [r.id for r in first[start:start + _CHUNK]]
            marks = ", ".join("?" for _ in ids)
            stored.update(row[0] for row in self._db.execute(
                f"SELECT id FROM events WHERE id IN ({marks})", ids))
        return [r for r in first if r.id not in stored]

    def commit(self) -> None:
        """The one place a batch becomes durable (a test's store fails here)."""
        self._db.execute("COMMIT")

    def _status(self, status: Status) -> None:
        if status.body is None:
            self._db.execute("DELETE FROM device_status WHERE site = ? AND device = ? AND kind = ?",
                             (status.site, status.device, status.kind))
            return
        self._db.execute(
            f"INSERT INTO device_status ({', '.join(schema.STATUS_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (site, device, kind) DO UPDATE SET arrived_ms = excluded.arrived_ms, "
            "t_ms = excluded.t_ms, online = excluded.online, body = excluded.body "
            "WHERE excluded.arrived_ms >= device_status.arrived_ms",
            astuple(status))

    def _count(self, rows: list[tuple[str, int]], source: str) -> None:
        self._db.executemany(
            "INSERT INTO counters (name, source, value) VALUES (?, ?, ?) "
            "ON CONFLICT (name, source) DO UPDATE SET value = value + excluded.value",
            [(name, source, n) for name, n in rows])

    def purge(self, cutoff_ms: int, source: str) -> Purged:
        purged = Purged()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            taken = base.taken_rows(db.execute(base.PURGED_HOURS, (cutoff_ms,)))
            db.executemany(base.TAKE_HOURS, taken)
            db.execute(base.DROP_EMPTY_HOURS)
            for statement in base.PURGE_HISTORY:
                db.execute(statement, (cutoff_ms,))
            purged.events = db.execute("DELETE FROM events WHERE arrived_ms < ?", (cutoff_ms,)).rowcount
            purged.rejects = db.execute("DELETE FROM rejects WHERE arrived_ms < ?", (cutoff_ms,)).rowcount
            self._count(purge_rows(purged), source)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return purged

    def counters(self) -> dict[str, int]:
        rows = self._db.execute("SELECT name, sum(value) FROM counters GROUP BY name").fetchall()
        return {name: int(value) for name, value in rows}

    def rows(self, statement: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """A read of committed data (`?` placeholders), for reports."""
        try:
            return [tuple(row) for row in self._db.execute(statement, tuple(params))]
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.url}: {exc}") from None

    def close(self) -> None:
        self._db.close()


_CHUNK = 500  # ids per look-up, under SQLite's limit of parameters


def _insert_ignore(table: str, columns: Sequence[str]) -> str:
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT DO NOTHING"


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
