"""The PostgreSQL store (psycopg 3): `events` partitioned by day of arrival, for fleets and for
several ingesters sharing one database.

Ids stay unique across partitions through `event_ids` (backend/schema.py): a batch first inserts its
ids there (`ON CONFLICT DO NOTHING RETURNING id`), and only the ids that came back new are copied
into `events` (COPY). Two ingesters that get the same id at once serialise on its key, so exactly
one stores it. Partitions are made when a row needs one and `partitions_ahead_days` ahead, under an
advisory lock so that concurrent ingesters never race on one name; retention drops every partition
whose whole day is past the cutoff and deletes the older rows of the day the cutoff falls in.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import astuple
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import StoreError
from . import base, schema
from .base import Purged, Written, counter_rows, latest, purge_rows
from .decode import Record, Reject, Status

try:
    import psycopg
    from psycopg import sql
except ImportError:  # the sentry itself never needs it: an extra, `edge-sentry[backend]`
    psycopg = None  # type: ignore[assignment]

#: The advisory lock of schema changes (migrations, partitions): any fixed number of our own.
LOCK_ID = 0x45534E54  # "ESNT"
PARTITION = re.compile(r"^events_p(\d{8})$")
# As COPY's text format sends them: the server reads `id` as uuid and `details` as jsonb.
_EVENT_TYPES = ["text", "text", "text", "text", "text", "int8", "int8", "int8", "text", "text", "text",
                "text", "text", "text", "text", "float8", "bytea", "text"]


def shown_url(url: str) -> str:
    """`url` without its password, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "the PostgreSQL database"
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def partition_name(day: int) -> str:
    """`events_pYYYYMMDD` of a day number (days since the epoch, UTC)."""
    return "events_p" + (dt.date(1970, 1, 1) + dt.timedelta(days=day)).strftime("%Y%m%d")


def partition_day(name: str) -> int | None:
    match = PARTITION.match(name)
    if match is None:
        return None
    return (dt.datetime.strptime(match.group(1), "%Y%m%d").date() - dt.date(1970, 1, 1)).days


class PostgresStore:
    """One connection; every call is one transaction."""

    def __init__(self, url: str, *, ahead_days: int = 2) -> None:
        self.url = shown_url(url)
        self.ahead_days = ahead_days
        if psycopg is None:
            raise StoreError("a PostgreSQL database needs psycopg: install `edge-sentry[backend]`")
        try:
            self._db = psycopg.connect(url, autocommit=False)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {self.url}: {' '.join(str(exc).split())}") from None
        try:
            self._migrate()
        except psycopg.Error as exc:
            self._db.close()
            detail = " ".join(str(exc).split())
            raise StoreError(f"cannot prepare the schema of {self.url}: {detail}") from None

    def _lock(self, cur: Any) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))

    def _migrate(self) -> None:
        with self._db.transaction(), self._db.cursor() as cur:
            self._lock(cur)
            cur.execute(schema.VERSION_TABLE)
            cur.execute("SELECT coalesce(max(version), 0) FROM schema_version")
            have = int(_one(cur))
            if have > schema.SCHEMA_VERSION:
                raise StoreError(f"{self.url} has schema version {have}, newer than this program's "
                                 f"{schema.SCHEMA_VERSION}")
            for number in range(have + 1, schema.SCHEMA_VERSION + 1):
                cur.execute(schema.STEPS[schema.POSTGRES][number - 1].encode())
                cur.execute("INSERT INTO schema_version "
                            "VALUES (%s, (extract(epoch FROM now()) * 1000)::bigint)", (number,))

    def version(self) -> int:
        with self._db.transaction(), self._db.cursor() as cur:
            cur.execute("SELECT max(version) FROM schema_version")
            return int(_one(cur))

    # -- partitions -------------------------------------------------------------------------------

    def _ensure(self, cur: Any, days: Iterable[int]) -> None:
        """Make the partitions of `days` that do not exist yet (in the caller's transaction)."""
        missing = []
        for day in sorted(set(days)):
            cur.execute("SELECT to_regclass(%s)", (partition_name(day),))
            if _one(cur) is None:
                missing.append(day)
        if not missing:
            return
        self._lock(cur)
        for day in missing:
            low, high = sql.Literal(day * schema.DAY_MS), sql.Literal((day + 1) * schema.DAY_MS)
            statement = sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF events "
                                "FOR VALUES FROM ({}) TO ({})")
            cur.execute(statement.format(sql.Identifier(partition_name(day)), low, high))

    def prepare(self, now_ms: int) -> None:
        """The partitions of today and of `ahead_days` after it."""
        today = now_ms // schema.DAY_MS
        with self._db.transaction(), self._db.cursor() as cur:
            self._ensure(cur, range(today, today + self.ahead_days + 1))

    def partitions(self) -> list[str]:
        with self._db.transaction(), self._db.cursor() as cur:
            return sorted(self._partitions(cur))

    def _partitions(self, cur: Any) -> list[str]:
        cur.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'events'::regclass")
        return [row[0] for row in cur.fetchall()]

    # -- writing ----------------------------------------------------------------------------------

    def write(self, records: Sequence[Record], rejects: Sequence[Reject], statuses: Sequence[Status],
              source: str) -> Written:
        written = Written()
        with self._db.transaction(), self._db.cursor() as cur:
            if records:
                self._ensure(cur, (r.arrived_ms // schema.DAY_MS for r in records))
                # The first copy of each id, in id order (locks in one order across ingesters).
                first = sorted({r.id: r for r in reversed(records)}.values(), key=lambda r: r.id)
                cur.execute("INSERT INTO event_ids (id, arrived_ms) "
                            "SELECT * FROM unnest(%s::uuid[], %s::bigint[]) "
                            "ON CONFLICT DO NOTHING RETURNING id",
                            ([r.id for r in first], [r.arrived_ms for r in first]))
                new = {str(row[0]) for row in cur.fetchall()}
                fresh = [r for r in first if r.id in new]
                if fresh:
                    columns = sql.SQL(", ").join(map(sql.Identifier, schema.EVENT_COLUMNS))
                    with cur.copy(sql.SQL("COPY events ({}) FROM STDIN").format(columns)) as copy:
                        copy.set_types(_EVENT_TYPES)
                        for record in fresh:
                            copy.write_row(astuple(record))
                    cur.executemany(_pg(base.ADD_HOURS), base.hour_rows(fresh))
                    entrances = base.entrance_rows(fresh)
                    if entrances:
                        cur.executemany(_pg(base.ADD_ENTRANCE), entrances)
                written.stored = len(fresh)
                written.duplicates = len(records) - len(fresh)
            if rejects:
                cur.execute(
                    "INSERT INTO rejects SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[], "
                    "%s::text[], %s::text[], %s::text[], %s::text[], %s::uuid[], %s::bytea[]) "
                    "ON CONFLICT DO NOTHING RETURNING reason",
                    [list(column) for column in zip(*map(astuple, sorted(rejects, key=lambda r: r.key)),
                                                    strict=True)])
                for (reason,) in cur.fetchall():
                    written.rejected[reason] += 1
            for status in latest(statuses):
                self._status(cur, status)
            for statement, rows in ((base.ADD_BACKLOG, base.backlog_rows(statuses)),
                                    (base.ADD_STATE, base.state_rows(statuses))):
                if rows:
                    cur.executemany(_pg(statement), rows)
            self._count(cur, counter_rows(written), source)
        return written

    def _status(self, cur: Any, status: Status) -> None:
        if status.body is None:
            cur.execute("DELETE FROM device_status WHERE site = %s AND device = %s AND kind = %s",
                        (status.site, status.device, status.kind))
            return
        cur.execute(
            "INSERT INTO device_status (site, device, kind, arrived_ms, t_ms, online, body) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb) "
            "ON CONFLICT (site, device, kind) DO UPDATE SET arrived_ms = excluded.arrived_ms, "
            "t_ms = excluded.t_ms, online = excluded.online, body = excluded.body "
            "WHERE excluded.arrived_ms >= device_status.arrived_ms",
            astuple(status))

    def _count(self, cur: Any, rows: list[tuple[str, int]], source: str) -> None:
        if rows:
            cur.executemany(
                "INSERT INTO counters (name, source, value) VALUES (%s, %s, %s) "
                "ON CONFLICT (name, source) DO UPDATE SET value = counters.value + excluded.value",
                [(name, source, n) for name, n in rows])

    # -- retention --------------------------------------------------------------------------------

    def purge(self, cutoff_ms: int, source: str) -> Purged:
        purged = Purged()
        with self._db.transaction(), self._db.cursor() as cur:
            self._lock(cur)
            # The rollup loses what retention deletes, counted before the partitions go.
            cur.execute(_pg(base.PURGED_HOURS), (cutoff_ms,))
            taken = base.taken_rows(cur.fetchall())
            if taken:
                cur.executemany(_pg(base.TAKE_HOURS), taken)
                cur.execute(base.DROP_EMPTY_HOURS)
            for statement in base.PURGE_HISTORY:
                cur.execute(_pg(statement), (cutoff_ms,))
            for name in self._partitions(cur):
                day = partition_day(name)
                if day is None or (day + 1) * schema.DAY_MS > cutoff_ms:
                    continue
                cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name)))
                purged.events += int(_one(cur))
                cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
                purged.partitions += 1
            cur.execute("DELETE FROM events WHERE arrived_ms < %s", (cutoff_ms,))
            purged.events += max(cur.rowcount, 0)
            cur.execute("DELETE FROM event_ids WHERE arrived_ms < %s", (cutoff_ms,))
            cur.execute("DELETE FROM rejects WHERE arrived_ms < %s", (cutoff_ms,))
            purged.rejects = max(cur.rowcount, 0)
            self._count(cur, purge_rows(purged), source)
        return purged

    def counters(self) -> dict[str, int]:
        with self._db.transaction(), self._db.cursor() as cur:
            cur.execute("SELECT name, sum(value) FROM counters GROUP BY name")
            return {name: int(value) for name, value in cur.fetchall()}

    def rows(self, statement: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """A read of committed data (`?` placeholders, as SQLite's store takes them), for reports."""
        try:
            with self._db.transaction(), self._db.cursor() as cur:
                cur.execute(_pg(statement).encode(), tuple(params))
                return [tuple(row) for row in cur.fetchall()]
        except psycopg.Error as exc:
            raise StoreError(f"cannot read {self.url}: {' '.join(str(exc).split())}") from None

    def close(self) -> None:
        self._db.close()


def _pg(statement: str) -> str:
    """A statement of backend/base.py with PostgreSQL's placeholders."""
    return statement.replace("%", "%%").replace("?", "%s")


def _one(cur: Any) -> Any:
    """The first column of the one row a query returns."""
    row = cur.fetchone()
    assert row is not None
    return row[0]
