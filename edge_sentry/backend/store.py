"""Which store a `--db` names: `open_store(url)`, and the default SQLite file in the state folder.

SQLite is the embedded default (backend/sqlite.py); PostgreSQL (`postgresql://...`,
backend/postgres.py) is for fleets and several ingesters at once. Both implement `base.Store`.
"""

from __future__ import annotations

from pathlib import Path

from .base import Purged, Store, Written
from .postgres import PostgresStore
from .sqlite import SqliteStore

SQLITE_FILE = "fleet.sqlite3"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")

__all__ = ["POSTGRES_SCHEMES", "SQLITE_FILE", "Purged", "SqliteStore", "Store", "Written", "default_url",
           "open_store"]


def default_url(state_dir: str | Path) -> str:
    return str(Path(state_dir) / SQLITE_FILE)


def open_store(url: str, *, ahead_days: int = 2) -> Store:
    """The store a `--db` names: `postgresql://...` or a SQLite file (`sqlite:///path` or a path).
    The schema is created or migrated before it is returned; StoreError says why it could not be."""
    if url.startswith(POSTGRES_SCHEMES):
        return PostgresStore(url, ahead_days=ahead_days)
    return SqliteStore(url.removeprefix("sqlite://"))


