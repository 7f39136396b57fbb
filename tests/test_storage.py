"""The log format: torn tails and damaged records are dropped and nothing else; TinyDB over it
writes only deltas; compaction keeps the content; the events table reads back with TinyDB."""

from __future__ import annotations

import errno
import os

import pytest
from tinydb import Query, TinyDB

from edge_sentry.errors import StorageError
from edge_sentry.storage import (
    MAGIC,
    AppendLog,
    EventStore,
    LogStorage,
    OsLogFile,
    delete_frame,
    encode_frame,
    event_frame,
    iter_log,
    put_frame,
    scan,
)

FRAMES = [put_frame("t", "1", {"a": 1}), put_frame("t", "2", {"b": b"\x00" * 40}),
          delete_frame("t", "1")]


def image(*frames: bytes) -> bytes:
    return MAGIC + b"".join(frames)


def test_scan_reads_back_every_record_in_order():
    result = scan(image(*FRAMES))
    assert [op for op, _ in result.records] == [
        [0, "t", "1", {"a": 1}], [0, "t", "2", {"b": b"\x00" * 40}], [1, "t", "1"]]
    assert result.end == len(image(*FRAMES))
    assert (result.torn, result.skipped) == (0, 0)


def test_a_log_cut_at_any_byte_keeps_exactly_the_whole_records_before_the_cut():
    full = image(*FRAMES)
    bounds = [len(MAGIC)]
    for frame in FRAMES:
        bounds.append(bounds[-1] + len(frame))
    for cut in range(len(MAGIC), len(full) + 1):
        result = scan(full[:cut])
        whole = sum(1 for b in bounds[1:] if b <= cut)
        assert len(result.records) == whole, cut
        assert result.end == bounds[whole]
        assert result.torn == cut - bounds[whole]


def test_a_zero_filled_tail_is_torn_not_data():
    result = scan(image(*FRAMES) + b"\x00" * 4096)
    assert len(result.records) == 3
    assert result.torn == 4096


def test_a_damaged_record_in_the_middle_is_skipped_and_the_ones_after_it_kept():
    damaged = bytearray(FRAMES[1])
    damaged[12] ^= 0xFF
    result = scan(image(FRAMES[0], bytes(damaged), FRAMES[2]))
    assert [op[2] for op, _ in result.records] == ["1", "1"]
    assert result.skipped == len(damaged)
    assert result.torn == 0


def test_a_frame_whose_payload_is_not_an_operation_counts_as_damage():
    result = scan(image(FRAMES[0], encode_frame({"not": "an op"})))
    assert len(result.records) == 1
    assert result.torn > 0


def test_unencodable_documents_raise_value_error():
    with pytest.raises(ValueError):
        put_frame("t", "1", {"x": object()})


def test_append_log_reopens_after_a_torn_tail_and_appends_after_the_good_part(tmp_path):
    path = tmp_path / "x.log"
    log = AppendLog(path)
    log.open()
    log.append(FRAMES[0] + FRAMES[1])
    log.close()
    with open(path, "ab") as fh:
        fh.write(FRAMES[2][:5])  # a batch cut short by a crash
    log = AppendLog(path)
    result = log.open()
    assert result.torn == 5 and len(result.records) == 2
    log.append(FRAMES[2])
    log.close()
    assert [op[0] for op in iter_log(path)] == [0, 0, 1]


def test_a_file_that_is_not_a_log_is_refused_not_overwritten(tmp_path):
    path = tmp_path / "x.log"
    path.write_bytes(b'{"_default": {}}')
    with pytest.raises(StorageError):
        AppendLog(path).open()
    assert path.read_bytes() == b'{"_default": {}}'


def test_a_failed_append_leaves_the_file_at_its_last_good_length(tmp_path):
    class HalfWrite(OsLogFile):
        fail = False

        def write(self, data: bytes) -> None:
            if HalfWrite.fail:
                super().write(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            super().write(data)

    path = tmp_path / "x.log"
    log = AppendLog(path, opener=HalfWrite)
    log.open()
    log.append(FRAMES[0])
    HalfWrite.fail = True
    with pytest.raises(OSError):
        log.append(FRAMES[1])
    assert path.stat().st_size == len(MAGIC) + len(FRAMES[0])
    HalfWrite.fail = False
    log.append(FRAMES[1])
    log.close()
    assert scan(path.read_bytes()).torn == 0
    assert len(list(iter_log(path))) == 2


def test_rewrite_replaces_the_file_whole_and_appends_continue_on_the_new_one(tmp_path):
    path = tmp_path / "x.log"
    log = AppendLog(path)
    log.open()
    log.append(b"".join(FRAMES))
    log.rewrite([FRAMES[1]])
    log.append(FRAMES[0])
    log.close()
    assert [op[2] for op in iter_log(path)] == ["2", "1"]
    assert not (tmp_path / "x.log.tmp").exists()


def test_a_compaction_cut_short_leaves_the_old_file_in_force(tmp_path):
    path = tmp_path / "x.log"
    log = AppendLog(path)
    log.open()
    log.append(b"".join(FRAMES))
    log.close()
    (tmp_path / "x.log.tmp").write_bytes(MAGIC + FRAMES[1][:7])  # killed before the rename
    log = AppendLog(path)
    assert len(log.open().records) == 3
    log.close()
    assert not (tmp_path / "x.log.tmp").exists()


# --- TinyDB over LogStorage ---------------------------------------------------------------------


def test_tinydb_over_log_storage_round_trips_inserts_updates_and_removes(tmp_path):
    path = tmp_path / "db.log"
    with TinyDB(path, storage=LogStorage) as db:
        people = db.table("people")
        people.insert_multiple([{"name": name, "n": n} for n, name in enumerate("abc", 1)])
        people.update({"n": 20}, Query().name == "b")
        people.remove(Query().name == "a")
        db.table("other").insert({"x": True})
    with TinyDB(path, storage=LogStorage) as db:
        people = db.table("people").all()
        assert sorted((d["name"], d["n"]) for d in people) == [("b", 20), ("c", 3)]
        assert db.table("other").all() == [{"x": True}]
        assert db.table("people").insert({"name": "d"}) == 4  # ids are not reused after a reopen


def test_each_tinydb_write_appends_only_the_documents_it_changed(tmp_path):
    path = tmp_path / "db.log"
    with TinyDB(path, storage=LogStorage) as db:
        table = db.table("t")
        table.insert_multiple({"i": i, "pad": "x" * 50} for i in range(1000))
        before = path.stat().st_size
        table.update({"pad": "y"}, doc_ids=[500])
        grown = path.stat().st_size - before
    assert 0 < grown < 100  # one record, not a rewrite of a thousand


def test_log_storage_compacts_once_dead_records_outweigh_live_ones(tmp_path):
    path = tmp_path / "db.log"
    with TinyDB(path, storage=LogStorage, compact_min_bytes=1024) as db:
        table = db.table("t")
        doc_id = table.insert({"n": 0})
        for n in range(1, 500):
            table.update({"n": n}, doc_ids=[doc_id])
    assert path.stat().st_size < 1024 + 200
    with TinyDB(path, storage=LogStorage) as db:
        assert db.table("t").get(doc_id=doc_id) == {"n": 499}


def test_read_only_storage_never_changes_the_file(tmp_path):
    path = tmp_path / "db.log"
    with TinyDB(path, storage=LogStorage) as db:
        db.insert({"a": 1})
    with open(path, "ab") as fh:
        fh.write(b"\x01\x02")  # a torn tail that a writer would truncate
    before = path.read_bytes()
    db = TinyDB(path, storage=LogStorage, read_only=True)
    assert db.all() == [{"a": 1}]
    with pytest.raises(StorageError):
        db.insert({"b": 2})
    db.close()
    assert path.read_bytes() == before


# --- the events table ---------------------------------------------------------------------------


def test_event_store_replays_puts_and_tombstones_and_tinydb_can_read_its_file(tmp_path):
    path = tmp_path / "events.log"
    store = EventStore(path)
    store.open()
    events = [{"id": f"id-{seq}", "seq": seq} for seq in range(1, 6)]
    store.write([(e["seq"], e["id"], event_frame(e["seq"], e)) for e in events], [])
    assert store.oldest(10) == events
    assert store.remove_ids(["id-2", "id-4", "nope"]) == [2, 4]
    store.write([], [2, 4])
    store.close()

    again = EventStore(path)
    again.open()
    assert [e["seq"] for e in again.oldest(10)] == [1, 3, 5]
    assert [e["seq"] for e in again.oldest(10, after_seq=1)] == [3, 5]
    assert again.max_seq == 5
    again.close()
    with TinyDB(path, storage=LogStorage, read_only=True) as db:
        assert sorted(doc.doc_id for doc in db.table("events").all()) == [1, 3, 5]


def test_event_store_compaction_keeps_exactly_the_live_events(tmp_path):
    path = tmp_path / "events.log"
    store = EventStore(path)
    store.open()
    events = [{"id": f"id-{seq}", "seq": seq, "pad": "p" * 100} for seq in range(1, 101)]
    store.write([(e["seq"], e["id"], event_frame(e["seq"], e)) for e in events], [])
    gone = store.remove_seqs(range(1, 91))
    store.write([], gone)
    assert store.needs_compaction(min_bytes=0)
    size = path.stat().st_size
    store.compact()
    assert path.stat().st_size < size / 5
    assert store.oldest(1000) == events[90:]  # the index follows the records to the new file
    store.write([(101, "id-101", event_frame(101, {"id": "id-101", "seq": 101}))], [])
    assert [e["id"] for e in store.oldest(2, after_seq=99)] == ["id-100", "id-101"]
    store.close()
    again = EventStore(path)
    again.open()
    assert [e["seq"] for e in again.oldest(1000)] == list(range(91, 102))


def test_event_store_truncates_in_place_when_nothing_is_live(tmp_path):
    path = tmp_path / "events.log"
    store = EventStore(path)
    store.open()
    store.write([(seq, f"id-{seq}", event_frame(seq, {"id": f"id-{seq}"})) for seq in range(1, 4)],
                [])
    store.write([], store.remove_seqs([1, 2, 3]))
    inode = path.stat().st_ino
    store.compact()
    assert path.stat().st_size == len(MAGIC) and path.stat().st_ino == inode
    store.write([(4, "id-4", event_frame(4, {"id": "id-4"}))], [])
    assert store.oldest(5) == [{"id": "id-4"}]


def test_a_read_while_compaction_swaps_the_files_gets_the_events_the_index_names(tmp_path):
    # The link reads pending events on its own thread while the writer compacts. Between the rename
    # of the new file and the move of the index to its offsets, a reader that opens the path must
    # not read the new file at the old offsets: with frames of one size those land exactly on other
    # events, which would be sent in place of the ones the index names.
    path = tmp_path / "events.log"
    store = EventStore(path)
    store.open()
    events = [{"id": f"id-{seq}", "seq": seq, "pad": "p" * 50} for seq in range(100, 140)]
    store.write([(e["seq"], e["id"], event_frame(e["seq"], e)) for e in events], [])
    store.write([], store.remove_seqs(range(100, 110)))
    seen_mid_swap: list[list[dict]] = []
    rewrite = store._log.rewrite

    def rewrite_then_read(frames):
        rewrite(frames)
        seen_mid_swap.append(store.oldest(3))

    store._log.rewrite = rewrite_then_read
    store.compact()
    assert seen_mid_swap == [events[10:13]]
    assert store.oldest(3) == events[10:13]
    store.close()


def test_stored_times_take_a_mark_per_second_and_survive_compaction_and_reopen(tmp_path):
    path = tmp_path / "events.log"
    store = EventStore(path)
    store.open()
    events = [{"id": f"id-{seq}", "seq": seq, "pad": "p" * 100} for seq in range(1, 101)]
    stored = [5_000 + 20 * (seq - 1) for seq in range(1, 101)]  # 20 ms apart: 2 s in all
    store.write([(e["seq"], e["id"], event_frame(e["seq"], e)) for e in events], [], stored)
    marks = [op for op in iter_log(path) if op[1] == "stored"]
    assert [(op[2], op[3]) for op in marks] == [("1", {"d": 5_000}), ("51", {"d": 6_000})]
    assert store.oldest_times(3) == [(1, 5_000), (2, 5_000), (3, 5_000)]
    store.write([], store.remove_seqs(range(1, 60)))
    store.compact()
    assert store.oldest(1000) == events[59:]
    assert store.oldest_times(1) == [(60, 6_000)]
    store.write([(seq, f"id-{seq}", event_frame(seq, {"id": f"id-{seq}"})) for seq in (101, 102)],
                [], [6_900, 7_500])
    store.close()
    again = EventStore(path)
    again.open()
    assert [ms for _seq, ms in again.oldest_times(100)] == [6_000] * 42 + [7_500]
    assert again.last_mark_ms == 7_500
    assert again.unmarked() == []
    again.close()
    with TinyDB(path, storage=LogStorage, read_only=True) as db:
        assert len(db.table("events")) == 43


def test_events_written_without_stored_times_are_unmarked_until_given_some(tmp_path):
    path = tmp_path / "events.log"
    store = EventStore(path)
    store.open()
    store.write([(seq, f"id-{seq}", event_frame(seq, {"id": f"id-{seq}"})) for seq in (1, 2, 3)], [])
    assert store.oldest_times(5) == [(1, None), (2, None), (3, None)]
    store.write([(4, "id-4", event_frame(4, {"id": "id-4"}))], [], [900])
    assert store.unmarked() == [(1, "id-1"), (2, "id-2"), (3, "id-3")]
    store.add_marks([(1, -50_000), (3, 100)])
    store.close()
    again = EventStore(path)
    again.open()
    assert again.oldest_times(5) == [(1, -50_000), (2, -50_000), (3, 100), (4, 900)]
    assert again.unmarked() == []
