"""Disk errors never crash the outbox or block put(): events wait in memory (bounded), the partial
write is cut off, `disk-low` is raised once, and everything lands once the disk takes writes again.
Faults are injected through the outbox's file opener, and once on a real, tiny tmpfs."""

from __future__ import annotations

import errno
import functools
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from edge_sentry.outbox import Outbox
from edge_sentry.storage import OsLogFile, iter_log, scan

WAIT = 30.0  # generous bound for waits that succeed at once; never a speed assertion


class Faults:
    """Switches shared by every file the outbox opens."""

    def __init__(self) -> None:
        self.write_errno: int | None = None
        self.sync_failures = 0  # how many fsyncs still to fail with EIO


class FaultyFile(OsLogFile):
    def __init__(self, path: Path, faults: Faults) -> None:
        super().__init__(path)
        self._faults = faults

    def write(self, data: bytes) -> None:
        code = self._faults.write_errno
        if code is not None:
            super().write(data[: len(data) // 2])  # the disk took part of it, as a full one does
            raise OSError(code, os.strerror(code))
        super().write(data)

    def sync(self) -> None:
        if self._faults.sync_failures:
            self._faults.sync_failures -= 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        super().sync()


class Recorder:
    def __init__(self) -> None:
        self.alarms: list[tuple[str, dict]] = []
        self.durable: list[dict] = []
        self._cond = threading.Condition()

    def on_alarm(self, name: str, details: dict) -> None:
        with self._cond:
            self.alarms.append((name, details))
            self._cond.notify_all()

    def on_durable(self, event: dict) -> None:
        self.durable.append(event)

    def wait_alarm(self, name: str) -> dict:
        with self._cond:
            assert self._cond.wait_for(lambda: any(n == name for n, _ in self.alarms), WAIT)
            return next(d for n, d in self.alarms if n == name)

    def count(self, name: str) -> int:
        return sum(n == name for n, _ in self.alarms)


def make(path: Path, faults: Faults, rec: Recorder, **kwargs) -> Outbox:
    options = {"max_events": 10_000, "queue_size": 100, "retention_days": 14.0,
               "min_free_bytes": 0, "opener": functools.partial(FaultyFile, faults=faults),
               "on_alarm": rec.on_alarm, "on_durable": rec.on_durable}
    options.update(kwargs)
    return Outbox(path, **options)


def assert_log_is_clean(path: Path) -> list[int]:
    """The log has no damage and each event exactly once; returns the seqs of its puts."""
    result = scan(path.read_bytes())
    assert (result.torn, result.skipped) == (0, 0)
    seqs = [int(op[2]) for op in iter_log(path) if op[:2] == [0, "events"]]
    assert len(seqs) == len(set(seqs))
    return seqs


def test_a_full_disk_keeps_events_in_memory_alarms_once_and_catches_up(tmp_path):
    faults, rec = Faults(), Recorder()
    with make(tmp_path / "ob", faults, rec) as ob:
        for n in range(5):
            ob.put({"n": n})
        assert ob.flush(WAIT)
        faults.write_errno = errno.ENOSPC
        stamped = [ob.put({"n": n}) for n in range(5, 25)]
        assert all(e is not None for e in stamped)  # put() goes on while the disk refuses
        details = rec.wait_alarm("disk-low")
        assert details["error"] == "ENOSPC"
        assert not ob.flush(0.2)  # cannot be durable while the disk is full
        stats = ob.stats()
        assert (stats["depth"], stats["queued"], stats["disk_error"]) == (5, 20, "ENOSPC")
        assert [e["n"] for e in ob.pending(100)] == list(range(5))  # only the durable ones

        faults.write_errno = None
        assert ob.flush(WAIT)
        assert [e["n"] for e in rec.durable] == list(range(25))
        assert ob.stats()["disk_error"] is None
        assert rec.count("disk-low") == 1
    assert assert_log_is_clean(tmp_path / "ob" / "events.log") == list(range(1, 26))
    with make(tmp_path / "ob", faults, Recorder()) as ob:
        assert [e["n"] for e in ob.pending(100)] == list(range(25))


def test_a_failed_fsync_rewrites_the_batch_rather_than_trusting_a_second_fsync(tmp_path):
    faults, rec = Faults(), Recorder()
    with make(tmp_path / "ob", faults, rec) as ob:
        ob.put({"n": 0})
        assert ob.flush(WAIT)
        faults.sync_failures = 2
        for n in range(1, 10):
            ob.put({"n": n})
        assert ob.flush(WAIT)
        assert rec.wait_alarm("disk-low")["error"] == "EIO"
        assert [e["n"] for e in rec.durable] == list(range(10))
    assert assert_log_is_clean(tmp_path / "ob" / "events.log") == list(range(1, 11))


def test_memory_is_bounded_while_the_disk_is_down_and_put_drops_instead_of_blocking(tmp_path):
    faults, rec = Faults(), Recorder()
    with make(tmp_path / "ob", faults, rec, queue_size=5, memory_events=10) as ob:
        faults.write_errno = errno.EIO
        results = [ob.put({"n": n}) for n in range(40)]
        accepted = [e for e in results if e is not None]
        assert 5 <= len(accepted) <= 15  # the queue, plus what the writer holds in memory
        assert ob.stats()["dropped_full"] == 40 - len(accepted)
        rec.wait_alarm("outbox-full")
        rec.wait_alarm("disk-low")

        faults.write_errno = None
        assert ob.flush(WAIT)
        assert ob.pending(100) == accepted
        assert [e["seq"] for e in accepted] == list(range(1, len(accepted) + 1))


def test_stop_with_a_dead_disk_returns_and_keeps_what_was_already_durable(tmp_path):
    faults, rec = Faults(), Recorder()
    ob = make(tmp_path / "ob", faults, rec)
    ob.start()
    first = ob.put({"n": 0})
    assert ob.flush(WAIT)
    faults.write_errno = errno.EIO
    ob.put({"n": 1})
    ob.stop(timeout=0.5)
    faults.write_errno = None
    with make(tmp_path / "ob", faults, Recorder()) as again:
        assert again.pending(10) == [first]
        assert again.put({"n": 2})["seq"] > 2  # seq 2 was handed out before the stop: never again


def test_a_disk_dead_from_the_start_opens_drops_without_seqs_and_recovers(tmp_path):
    faults, rec = Faults(), Recorder()
    faults.write_errno = errno.EIO
    with make(tmp_path / "ob", faults, rec) as ob:  # opening needs no write
        assert ob.put({"n": 0}) is None  # no durable seq reservation: no seq can be promised
        assert rec.wait_alarm("outbox-full")["reason"] == "no-seq"
        rec.wait_alarm("disk-low")
        faults.write_errno = None
        accepted = None
        while accepted is None:  # the writer retries on its own schedule
            accepted = ob.put({"n": 1})
            if accepted is None:
                ob.flush(0.05)
        assert ob.flush(WAIT)
        assert ob.pending(10) == [accepted]
    assert_log_is_clean(tmp_path / "ob" / "events.log")


def test_low_free_space_raises_disk_low_before_any_write_fails(tmp_path):
    faults, rec = Faults(), Recorder()
    with make(tmp_path / "ob", faults, rec, min_free_bytes=1 << 62):
        details = rec.wait_alarm("disk-low")
        assert details["free_bytes"] >= 0


@pytest.fixture
def tiny_fs(tmp_path):
    """A real 256 KiB tmpfs, if this machine lets the test mount one (root, no sandbox veto)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def test_a_real_full_filesystem_is_survived_and_acks_give_the_space_back(tiny_fs):
    rec = Recorder()
    outbox = Outbox(tiny_fs / "ob", max_events=10_000, queue_size=1000, retention_days=14,
                    on_alarm=rec.on_alarm, on_durable=rec.on_durable, min_free_bytes=0)
    with outbox as ob:
        # About 330 KiB of events for a 256 KiB filesystem: the tail cannot fit yet.
        results = [ob.put({"n": n, "pad": "p" * 1000}) for n in range(300)]
        accepted = [e for e in results if e is not None]
        assert len(accepted) == 300
        assert rec.wait_alarm("disk-low")["error"] == "ENOSPC"
        assert ob.stats()["queued"] > 0
        durable_before = ob.pending(1000)
        assert durable_before == accepted[: len(durable_before)]  # in order, none lost or torn

        # The link drains what is durable; acks make room; the rest is written in order.
        for _ in range(100):
            if not ob.stats()["queued"]:
                break
            ob.ack([e["id"] for e in ob.pending(1000)], timeout=WAIT)
            ob.flush(0.1)
        assert ob.flush(WAIT)
        assert [e["seq"] for e in rec.durable] == [e["seq"] for e in accepted]
        assert ob.stats()["disk_error"] is None
        assert ob.stats()["compactions"] >= 1
    assert_log_is_clean(tiny_fs / "ob" / "events.log")
