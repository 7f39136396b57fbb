"""Scan and event maps as a sentry publishes them (docs/protocol.md section 4), for the back-end tests."""

from __future__ import annotations

import time
from typing import Any

from edge_sentry.backend.postgres import PostgresStore
from edge_sentry.backend.store import Store
from edge_sentry.records import new_event_id

SITE, DEVICE = "arena", "gate-1"


def now_ms() -> int:
    return int(time.time() * 1000)


def scan(seq: int = 1, *, site: str = SITE, device: str = DEVICE, t: int | None = None, **over: Any,
         ) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event": "scan", "id": new_event_id(), "seq": seq, "t": now_ms() if t is None else t,
        "site": site, "device": device, "entrance": "north", "mode": "scan", "scheme": "es1",
        "verdict": "accept", "reason": "ok", "issuer": "arena-box-office", "latency_ms": 41.5,
        "subject": b"\x01sealed-bytes",
    }  # fmt: skip
    event.update(over)
    return {k: v for k, v in event.items() if v is not ...}


def alarm(name: str = "door-forced", seq: int = 1, *, site: str = SITE, device: str = DEVICE,
          **over: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"event": name, "id": new_event_id(), "seq": seq, "t": now_ms(), "site": site,
                             "device": device, "entrance": "north"}
    event.update(over)
    return event


def batch(count: int, *, first_seq: int = 1, **over: Any) -> list[dict[str, Any]]:
    return [scan(first_seq + i, **over) for i in range(count)]


def topic(kind: str, *, site: str = SITE, device: str = DEVICE) -> str:
    return f"sentry/v1/{site}/{device}/{kind}"


def query(store: Store, text: str) -> list[tuple[Any, ...]]:
    """Rows of a query on the store's own connection, committed data only."""
    db = store._db  # type: ignore[attr-defined]
    if isinstance(store, PostgresStore):
        with db.transaction(), db.cursor() as cur:
            cur.execute(text)
            return list(cur.fetchall())
    return list(db.execute(text).fetchall())


def count(store: Store, table: str, where: str = "true") -> int:
    return int(query(store, f"SELECT count(*) FROM {table} WHERE {where}")[0][0])
