"""Read-only access to the back end's scans, for the health authority's trace.

Unlike `store.open_store`, this never creates, migrates or writes anything: SQLite is opened with
`mode=ro`, PostgreSQL in read-only transactions, so a trace cannot change the operator's database
even by mistake. Scans are read by the sentry's time `t_ms` (the `events_t` index), those with a
subject only: the rows a trace opens.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from ..errors import StoreError
from . import schema
from .postgres import shown_url
from .store import POSTGRES_SCHEMES

try:
    import psycopg
except ImportError:  # an extra, `edge-sentry[backend]`, as for the PostgreSQL store
    psycopg = None  # type: ignore[assignment]

COLUMNS = ("id", "site", "device", "entrance", "t_ms", "mode", "verdict", "subject")
_SCANS = (f"SELECT {', '.join(COLUMNS)} FROM events WHERE kind = 'scan' AND subject IS NOT NULL "
          "AND t_ms >= {p} AND t_ms < {p}")
_COUNT = ("SELECT count(*) FROM events WHERE kind = 'scan' AND subject IS NOT NULL "
          "AND t_ms >= {p} AND t_ms < {p}")
_EVENT = f"SELECT {', '.join(COLUMNS)} FROM events WHERE id = {{p}}"


@dataclass(frozen=True)
class Scan:
    """A stored scan as a trace needs it; `subject` the sealed bytes as stored (None: none)."""

    id: str
    site: str
    device: str
    entrance: str | None
    t_ms: int
    mode: str | None
    verdict: str | None
    subject: bytes | None


class Reader(Protocol):
    url: str

    def event(self, event_id: str) -> Scan | None:
        """The stored event of a canonical UUID text, or None."""

    def count(self, since_ms: int, until_ms: int) -> int: ...

    def scans(self, since_ms: int, until_ms: int) -> Iterator[Scan]: ...

    def close(self) -> None: ...


def _scan(row: tuple[Any, ...]) -> Scan:
    values = dict(zip(COLUMNS, row, strict=True))
    values["id"] = str(values["id"])
    if values["subject"] is not None:
        values["subject"] = bytes(values["subject"])
    return Scan(**values)


@contextlib.contextmanager
def _errors(url: str) -> Iterator[None]:
    """A driver's error while reading, as the StoreError the commands turn into exit code 5."""
    drivers: tuple[type[BaseException], ...] = (sqlite3.Error,)
    if psycopg is not None:
        drivers += (psycopg.Error,)
    try:
        yield
    except drivers as exc:
        raise StoreError(f"cannot read {url}: {' '.join(str(exc).split())}") from None


class SqliteReader:
    def __init__(self, path: str) -> None:
        self.url = path
        if not Path(path).is_file():
            raise StoreError(f"no SQLite database at {path}")
        try:
            self._db = sqlite3.connect(f"file:{quote(str(Path(path).resolve()))}?mode=ro", uri=True,
                                       check_same_thread=False)
            _check_version(self._db.execute("SELECT max(version) FROM schema_version").fetchone(), path)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the SQLite database {path}: {exc}") from None

    def event(self, event_id: str) -> Scan | None:
        with _errors(self.url):
            row = self._db.execute(_EVENT.format(p="?"), (event_id,)).fetchone()
        return None if row is None else _scan(row)

    def count(self, since_ms: int, until_ms: int) -> int:
        with _errors(self.url):
            return int(self._db.execute(_COUNT.format(p="?"), (since_ms, until_ms)).fetchone()[0])

    def scans(self, since_ms: int, until_ms: int) -> Iterator[Scan]:
        with _errors(self.url):
            for row in self._db.execute(_SCANS.format(p="?"), (since_ms, until_ms)):
                yield _scan(row)

    def close(self) -> None:
        self._db.close()


class PostgresReader:
    """One connection whose every transaction is READ ONLY (the server refuses any write)."""

    def __init__(self, url: str) -> None:
        self.url = shown_url(url)
        if psycopg is None:
            raise StoreError("a PostgreSQL database needs psycopg: install `edge-sentry[backend]`")
        try:
            self._db = psycopg.connect(url, autocommit=False)
            self._db.read_only = True
            with self._db.transaction(), self._db.cursor() as cur:
                cur.execute("SELECT max(version) FROM schema_version")
                _check_version(cur.fetchone(), self.url)
        except psycopg.Error as exc:
            raise StoreError(f"cannot read {self.url}: {' '.join(str(exc).split())}") from None

    def event(self, event_id: str) -> Scan | None:
        with _errors(self.url), self._db.transaction(), self._db.cursor() as cur:
            cur.execute(_EVENT.format(p="%s"), (event_id,))
            row = cur.fetchone()
        return None if row is None else _scan(row)

    def count(self, since_ms: int, until_ms: int) -> int:
        with _errors(self.url), self._db.transaction(), self._db.cursor() as cur:
            cur.execute(_COUNT.format(p="%s"), (since_ms, until_ms))
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def scans(self, since_ms: int, until_ms: int) -> Iterator[Scan]:
        """Streamed through a server-side cursor: a long window is never held twice in memory."""
        with _errors(self.url), self._db.transaction(), self._db.cursor(name="trace_scans") as cur:
            cur.execute(_SCANS.format(p="%s"), (since_ms, until_ms))
            for row in cur:
                yield _scan(row)

    def close(self) -> None:
        self._db.close()


def _check_version(row: Any, where: str) -> None:
    have = row[0] if row else None
    if have is None:
        raise StoreError(f"{where} holds no back-end tables (no schema version)")
    if int(have) > schema.SCHEMA_VERSION:
        raise StoreError(f"{where} has schema version {have}, newer than this program's "
                         f"{schema.SCHEMA_VERSION}")


def open_reader(url: str) -> Reader:
    """A read-only reader of the database `url` names (as `fleet ingest --db`); StoreError if it
    cannot be read or holds no back end."""
    if url.startswith(POSTGRES_SCHEMES):
        return PostgresReader(url)
    return SqliteReader(url.removeprefix("sqlite://"))
