"""The back end's stores, SQLite and PostgreSQL alike: the schema is made and versioned by the tool,
writes are idempotent, the latest status wins, and retention goes by arrival (PostgreSQL drops the
partitions of whole days)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import fields

import pytest
from ingest_helpers import alarm, batch, count, now_ms, query, topic

from edge_sentry.backend import schema
from edge_sentry.backend.decode import Decoded, Record, Reject, Status, decode_message
from edge_sentry.backend.postgres import PostgresStore, partition_name
from edge_sentry.backend.store import Store, open_store
from edge_sentry.errors import StoreError
from edge_sentry.link import payloads

DAY = schema.DAY_MS
SOURCE = "ingest-test"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = open_store(db_url)
    yield opened
    opened.close()


def rows(kind: str, body: object, arrived: int | None = None, **where: str) -> Decoded:
    data = body if isinstance(body, bytes) else payloads.encode(body)  # type: ignore[arg-type]
    return decode_message(topic(kind, **where), data, None, now_ms() if arrived is None else arrived,
                          max_future_s=300)


def write(store: Store, *decoded: Decoded):
    return store.write([r for d in decoded for r in d.records], [r for d in decoded for r in d.rejects],
                       [d.status for d in decoded if d.status is not None], SOURCE)


def test_the_rows_of_the_decoder_line_up_with_the_tables_columns() -> None:
    for row, columns in ((Record, schema.EVENT_COLUMNS), (Reject, schema.REJECT_COLUMNS),
                         (Status, schema.STATUS_COLUMNS)):
        assert tuple(f.name for f in fields(row)) == columns


def test_the_schema_is_created_once_and_versioned(db_url: str) -> None:
    first = open_store(db_url)
    assert first.version() == schema.SCHEMA_VERSION
    first.close()
    again = open_store(db_url)  # a second start migrates nothing and loses nothing
    assert again.version() == schema.SCHEMA_VERSION
    assert query(again, "SELECT count(*) FROM schema_version")[0][0] == schema.SCHEMA_VERSION
    again.close()


def test_a_schema_newer_than_the_program_is_refused(store: Store, db_url: str) -> None:
    store_version = schema.SCHEMA_VERSION + 1
    if isinstance(store, PostgresStore):
        with store._db.transaction():
            store._db.execute("INSERT INTO schema_version VALUES (%s, 0)", (store_version,))
    else:
        store._db.execute("INSERT INTO schema_version VALUES (?, 0)", (store_version,))  # type: ignore[attr-defined]
    with pytest.raises(StoreError, match="newer than this program"):
        open_store(db_url)


def test_the_same_batch_written_twice_is_stored_once(store: Store) -> None:
    message = payloads.encode(batch(5))
    first = write(store, rows("scan", message))
    again = write(store, rows("scan", message, arrived=now_ms() + 2 * DAY))  # even on another day
    assert (first.stored, first.duplicates) == (5, 0)
    assert (again.stored, again.duplicates) == (0, 5)
    assert count(store, "events") == 5
    assert store.counters() == {"stored": 5, "duplicates": 5}


def test_a_sealed_subject_is_stored_as_the_bytes_that_came(store: Store) -> None:
    write(store, rows("scan", batch(1, subject=b"\x00\xffsealed")))
    assert bytes(query(store, "SELECT subject FROM events")[0][0]) == b"\x00\xffsealed"


def test_a_rejected_message_is_stored_once_and_counted_by_reason(store: Store) -> None:
    garbage = b"\xff\x00garbage"
    skewed, forged = batch(2, t=now_ms() + 3_600_000), batch(1, device="gate-9")
    for _ in range(2):
        write(store, rows("scan", garbage), rows("scan", skewed), rows("scan", forged))
    assert count(store, "rejects") == 4
    assert count(store, "events") == 0
    assert store.counters() == {"rejected:malformed": 1, "rejected:clock-skew": 2, "rejected:provenance": 1}
    reasons = sorted(r[0] for r in query(store, "SELECT reason FROM rejects"))
    assert reasons == ["clock-skew", "clock-skew", "malformed", "provenance"]


def test_the_latest_state_of_a_device_wins_and_an_empty_retained_message_removes_it(store: Store) -> None:
    t0 = now_ms()
    write(store, rows("state", {"online": True, "t": 1}, arrived=t0))
    write(store, rows("state", {"online": False, "t": 2}, arrived=t0 + 10),
          rows("health", {"t": 3}, arrived=t0))
    write(store, rows("state", {"online": True, "t": 0}, arrived=t0 - 10))  # an older copy arrives late
    found = query(store, "SELECT kind, online, t_ms FROM device_status ORDER BY kind")
    assert [(k, bool(o) if o is not None else None, t) for k, o, t in found] == [
        ("health", None, 3), ("state", False, 2)]
    write(store, rows("health", b""))
    assert [r[0] for r in query(store, "SELECT kind FROM device_status")] == ["state"]


def test_retention_deletes_what_arrived_before_the_cutoff_whatever_the_event_time(store: Store) -> None:
    now = now_ms()
    old_arrival = batch(3, t=now - 20 * DAY)
    long_ago = now - 20 * DAY
    write(store, rows("scan", old_arrival, arrived=long_ago), rows("scan", b"\xffbad", arrived=long_ago))
    write(store, rows("scan", batch(2, t=now - 30 * DAY), arrived=now))  # old sentry time, arrived now
    write(store, rows("event", alarm(t=now - DAY // 2), arrived=now - DAY // 2))
    purged = store.purge(now - 14 * DAY, SOURCE)
    assert (purged.events, purged.rejects) == (3, 1)
    assert count(store, "events") == 3
    counters = store.counters()
    assert (counters["retention:events"], counters["retention:rejects"]) == (3, 1)
    # The id of a purged event is forgotten with it: a late copy is stored again (and purged again).
    again = write(store, rows("scan", payloads.encode(old_arrival), arrived=now))
    assert again.stored == 3


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_postgresql_keeps_events_in_day_partitions_and_retention_drops_whole_days(store: Store) -> None:
    assert isinstance(store, PostgresStore)
    now = now_ms()
    today = now // DAY
    store.prepare(now)
    assert {partition_name(today + n) for n in range(3)} <= set(store.partitions())
    for days_ago in (20, 19, 0):
        write(store, rows("scan", batch(2, t=now - days_ago * DAY), arrived=now - days_ago * DAY))
    assert {partition_name(today - 20), partition_name(today - 19)} <= set(store.partitions())
    # The cutoff falls inside the day 19 days ago: day 20 goes whole, day 19 loses its older rows.
    cutoff = (today - 19) * DAY + (now % DAY) + 1
    purged = store.purge(cutoff, SOURCE)
    assert purged.partitions == 1 and purged.events == 4
    assert partition_name(today - 20) not in store.partitions()
    assert partition_name(today - 19) in store.partitions()
    assert count(store, "events") == 2 and count(store, "event_ids") == 2
    assert store.counters()["retention:partitions"] == 1


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_row_of_a_day_without_a_partition_gets_one(store: Store) -> None:
    far = now_ms() + 40 * DAY
    write(store, rows("scan", batch(1, t=far), arrived=far))
    assert partition_name(far // DAY) in store.partitions()  # type: ignore[attr-defined]


def test_an_unreachable_or_unusable_database_is_one_store_error(tmp_path) -> None:
    with pytest.raises(StoreError, match="cannot connect"):
        open_store("postgresql://postgres@127.0.0.1:1/none?connect_timeout=2")
    folder = tmp_path / "a-file"
    folder.write_text("")
    with pytest.raises(StoreError, match="SQLite"):
        open_store(str(folder / "fleet.sqlite3"))
    not_sqlite = tmp_path / "text.sqlite3"
    not_sqlite.write_text("not a database" * 100)
    with pytest.raises(StoreError):
        open_store(str(not_sqlite))
    assert sqlite3.sqlite_version
