"""The outbox's contract with the hot loop and the MQTT link, on real files: what is put becomes
durable in order, stays until acked, survives a reopen; seqs are never reused; the bounds drop the
oldest and count them; a full queue drops and counts and never blocks."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fakes import FakeClock, FakeDevice
from tinydb import TinyDB

from edge_sentry.errors import StorageError
from edge_sentry.outbox import Outbox
from edge_sentry.storage import LogStorage, OsLogFile, iter_log

DAY = 86400.0
WAIT = 30.0  # generous bound for waits that succeed at once; never a speed assertion


class Alarms:
    """Collects on_alarm calls; lets a test wait for one."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self._seen = threading.Condition()

    def __call__(self, name: str, details: dict) -> None:
        with self._seen:
            self.calls.append((name, details))
            self._seen.notify_all()

    def wait_for(self, name: str, count: int = 1) -> dict:
        """Wait until `name` was raised `count` times; return the details of the last one."""
        with self._seen:
            assert self._seen.wait_for(lambda: self.names().count(name) >= count, WAIT), self.calls
            return [d for n, d in self.calls if n == name][-1]

    def names(self) -> list[str]:
        return [n for n, _ in self.calls]


def make(path: Path, **kwargs) -> Outbox:
    options = {"max_events": 10_000, "queue_size": 100, "retention_days": 14.0}
    options.update(kwargs)
    return Outbox(path, **options)


def scan_event(n: int) -> dict:
    return {"event": "scan", "mode": "scan", "verdict": "accept", "reason": "ok", "n": n}


def test_put_pending_ack_round_trip_survives_reopen(tmp_path):
    with make(tmp_path / "ob") as ob:
        stamped = [ob.put(scan_event(n)) for n in range(10)]
        assert ob.flush(WAIT)
        assert [e["n"] for e in ob.pending(100)] == list(range(10))
        assert ob.pending(100) == stamped
        assert ob.ack([stamped[0]["id"], stamped[3]["id"], "unknown-id"]) == 2
        assert [e["n"] for e in ob.pending(3)] == [1, 2, 4]
    with make(tmp_path / "ob") as ob:
        assert [e["n"] for e in ob.pending(100)] == [1, 2, 4, 5, 6, 7, 8, 9]
        assert ob.stats()["depth"] == 8


def test_put_stamps_id_seq_and_time_on_a_copy(tmp_path):
    clock = FakeClock(1_760_000_000.0)
    with make(tmp_path / "ob", clock=clock) as ob:
        event = scan_event(1)
        stamped = ob.put(event)
        assert stamped is not None and "id" not in event
        assert stamped["seq"] == 1
        assert stamped["t"] == int(clock.now * 1000)
        assert len(stamped["id"]) == 36 and stamped["id"][14] == "7"


def test_pending_after_seq_lets_a_link_fetch_the_next_batch_before_the_ack(tmp_path):
    with make(tmp_path / "ob") as ob:
        for n in range(10):
            ob.put(scan_event(n))
        ob.flush(WAIT)
        first = ob.pending(4)
        second = ob.pending(4, after_seq=first[-1]["seq"])
        assert [e["n"] for e in second] == [4, 5, 6, 7]


def test_acked_events_stay_gone_after_reopen_and_the_log_holds_tombstones(tmp_path):
    with make(tmp_path / "ob") as ob:
        ids = [ob.put(scan_event(n))["id"] for n in range(5)]
        ob.flush(WAIT)
        assert ob.ack(ids) == 5
        assert ob.pending(10) == [] and ob.stats()["depth"] == 0
    ops = list(iter_log(tmp_path / "ob" / "events.log"))
    assert sum(op[0] == 1 for op in ops) == 5
    with make(tmp_path / "ob") as ob:
        assert ob.pending(10) == []


def test_seq_continues_across_a_clean_restart_without_a_gap(tmp_path):
    with make(tmp_path / "ob") as ob:
        assert [ob.put(scan_event(n))["seq"] for n in range(3)] == [1, 2, 3]
    with make(tmp_path / "ob") as ob:
        assert ob.put(scan_event(3))["seq"] == 4
        assert ob.stats()["seq"] == 4


def test_seq_is_not_reused_even_when_every_event_was_acked(tmp_path):
    with make(tmp_path / "ob") as ob:
        ids = [ob.put(scan_event(n))["id"] for n in range(3)]
        ob.flush(WAIT)
        ob.ack(ids)
    with make(tmp_path / "ob") as ob:
        assert ob.put(scan_event(3))["seq"] == 4


def test_a_reservation_ahead_of_use_is_durable_before_put_hands_out_a_seq(tmp_path):
    with make(tmp_path / "ob", queue_size=50, seq_block=10) as ob:
        seq = ob.put(scan_event(0))["seq"]
        with TinyDB(tmp_path / "ob" / "state.log", storage=LogStorage, read_only=True) as db:
            reserved = db.table("outbox").get(doc_id=1)["seq_reserved"]
        assert reserved >= seq + 50  # a whole queue's worth may be stamped before the next write


def test_on_durable_sees_each_event_once_in_seq_order_after_it_is_in_the_file(tmp_path):
    log_path = tmp_path / "ob" / "events.log"
    seen: list[tuple[int, bool]] = []

    def on_durable(event: dict) -> None:
        in_file = any(op[:2] == [0, "events"] and op[3]["id"] == event["id"]
                      for op in iter_log(log_path))
        seen.append((event["seq"], in_file))

    with make(tmp_path / "ob", on_durable=on_durable) as ob:
        for n in range(40):
            ob.put(scan_event(n))
        assert ob.flush(WAIT)
    assert seen == [(seq, True) for seq in range(1, 41)]


def test_a_failing_on_durable_callback_does_not_stop_the_writer(tmp_path):
    def on_durable(event: dict) -> None:
        raise RuntimeError("callback bug")

    with make(tmp_path / "ob", on_durable=on_durable) as ob:
        ob.put(scan_event(0))
        assert ob.flush(WAIT)
        ob.put(scan_event(1))
        assert ob.flush(WAIT)
        assert len(ob.pending(10)) == 2


def test_ack_and_flush_from_on_durable_do_not_wait_on_the_writer_itself(tmp_path):
    results: list[tuple[int, bool]] = []

    def on_durable(event: dict) -> None:
        results.append((ob.ack([event["id"]]), ob.flush(WAIT)))

    ob = make(tmp_path / "ob", on_durable=on_durable)
    with ob:
        ob.put(scan_event(0))
        assert ob.flush(WAIT)
        assert results == [(0, False)]
        assert ob.pending(10) == []
        assert ob.flush(WAIT)  # the tombstone went with the next cycle
    with make(tmp_path / "ob") as again:
        assert again.pending(10) == []


class GatedFile(OsLogFile):
    """An events log whose writes wait for the test to open the gate: a stuck disk on demand."""

    gate = threading.Event()
    entered = threading.Event()

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._gated = path.name == "events.log"

    def write(self, data: bytes) -> None:
        if self._gated:
            GatedFile.entered.set()
            GatedFile.gate.wait()
        super().write(data)


@pytest.fixture
def gated():
    GatedFile.gate.clear()
    GatedFile.entered.clear()
    yield GatedFile
    GatedFile.gate.set()


def test_a_full_queue_drops_counts_and_alarms_once_per_burst_without_blocking(tmp_path, gated):
    alarms = Alarms()
    with make(tmp_path / "ob", queue_size=10, opener=gated, on_alarm=alarms) as ob:
        assert ob.put(scan_event(0)) is not None
        assert gated.entered.wait(WAIT)  # the writer holds event 0 and is stuck in write()
        accepted = [ob.put(scan_event(n)) for n in range(1, 11)]
        assert all(e is not None for e in accepted)
        assert [ob.put(scan_event(n)) for n in range(11, 16)] == [None] * 5
        assert ob.stats()["dropped_full"] == 5
        details = alarms.wait_for("outbox-full")
        assert details["reason"] == "queue-full"
        gated.gate.set()
        assert ob.flush(WAIT)
        assert [e["n"] for e in ob.pending(100)] == list(range(11))
        assert [e["seq"] for e in ob.pending(100)] == list(range(1, 12))  # drops took no seq
        assert alarms.names().count("outbox-full") == 1

        # Puts that fit ended the burst: the next overflow is a new burst with its own alarm.
        gated.gate.clear()
        gated.entered.clear()
        ob.put(scan_event(100))
        assert gated.entered.wait(WAIT)
        for n in range(101, 111):
            ob.put(scan_event(n))
        assert ob.put(scan_event(111)) is None
        assert ob.put(scan_event(112)) is None
        gated.gate.set()
        assert ob.flush(WAIT)
        assert ob.stats()["dropped_full"] == 7
        alarms.wait_for("outbox-full", count=2)
        assert alarms.names().count("outbox-full") == 2


def test_retention_purges_unsent_events_periodically_and_counts_them(tmp_path):
    device = FakeDevice()
    with make(tmp_path / "ob", **device.clocks(), retention_days=1, retention_check_s=60) as ob:
        for n in range(3):
            ob.put(scan_event(n))
        assert ob.flush(WAIT)
        device.wait(DAY + 1)
        ob.put(scan_event(3))
        assert ob.flush(WAIT)
        assert [e["n"] for e in ob.pending(10)] == [3]
        assert ob.stats()["dropped_retention"] == 3
    with make(tmp_path / "ob", **device.clocks(), retention_days=1) as ob:
        assert [e["n"] for e in ob.pending(10)] == [3]


def test_retention_purges_at_start_and_the_purge_is_durable(tmp_path):
    device = FakeDevice()
    with make(tmp_path / "ob", **device.clocks(), retention_days=2) as ob:
        for n in range(4):
            ob.put(scan_event(n))
        device.wait(DAY)
        ob.put(scan_event(4))
    device.wait(DAY + 60)
    with make(tmp_path / "ob", **device.clocks(), retention_days=2) as ob:
        assert ob.stats()["dropped_retention"] == 4
        assert [e["n"] for e in ob.pending(10)] == [4]
        assert ob.stats()["oldest_age_s"] == pytest.approx(DAY + 60, abs=1)
    with make(tmp_path / "ob", **device.clocks(), retention_days=2) as ob:
        assert ob.stats()["dropped_retention"] == 0
        assert [e["n"] for e in ob.pending(10)] == [4]


def test_max_events_keeps_the_newest_and_counts_the_oldest_dropped(tmp_path):
    with make(tmp_path / "ob", max_events=10) as ob:
        for n in range(25):
            ob.put(scan_event(n))
            if n % 4 == 0:
                ob.flush(WAIT)  # some overflow hits durable events, some the batch in hand
        assert ob.flush(WAIT)
        assert [e["n"] for e in ob.pending(100)] == list(range(15, 25))
        assert ob.stats()["dropped_size"] == 15
    with make(tmp_path / "ob", max_events=10) as ob:
        assert [e["n"] for e in ob.pending(100)] == list(range(15, 25))


def test_compaction_shrinks_the_log_and_keeps_what_is_pending(tmp_path):
    with make(tmp_path / "ob", queue_size=1000, compact_min_bytes=2048) as ob:
        ids = []
        for n in range(200):
            ids.append(ob.put(scan_event(n))["id"])
        ob.flush(WAIT)
        ob.ack(ids[:190])
        ob.put(scan_event(200))  # the next cycle sees the dead weight
        ob.flush(WAIT)
        assert ob.stats()["compactions"] >= 1
        assert ob.stats()["file_bytes"] < 20 * 300
    with make(tmp_path / "ob") as ob:
        assert [e["n"] for e in ob.pending(100)] == list(range(190, 201))


def test_a_second_outbox_on_the_same_folder_is_refused(tmp_path):
    with make(tmp_path / "ob"), pytest.raises(StorageError):
        make(tmp_path / "ob").start()


def test_put_refuses_an_event_cbor_cannot_encode_and_consumes_no_seq(tmp_path):
    with make(tmp_path / "ob") as ob:
        with pytest.raises(ValueError):
            ob.put({"event": "scan", "bad": object()})
        assert ob.put(scan_event(0))["seq"] == 1


def test_put_after_stop_returns_none(tmp_path):
    ob = make(tmp_path / "ob")
    ob.start()
    ob.stop()
    assert ob.put(scan_event(0)) is None


def test_stats_report_depth_age_and_seq(tmp_path):
    device = FakeDevice()
    with make(tmp_path / "ob", **device.clocks()) as ob:
        assert ob.stats()["depth"] == 0 and ob.stats()["oldest_age_s"] == 0.0
        ob.put(scan_event(0))
        ob.flush(WAIT)
        device.wait(90)
        stats = ob.stats()
        assert stats["depth"] == 1 and stats["seq"] == 1 and stats["queued"] == 0
        assert stats["oldest_age_s"] == pytest.approx(90, abs=0.01)
