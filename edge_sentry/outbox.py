"""The durable outbox: every scan and gate event waits here until the fleet broker acknowledges it.

    hot loop --put()--> bounded queue --writer thread: batch, append, fsync--> events.log
                                                      \\--> on_durable(event)
    MQTT link --pending()--> oldest durable events --publish, PUBACK--> ack(ids) --> tombstones

What it must never do: block or fail `put()` because of the disk or the writer (a full queue drops
the event, counts it and raises one `outbox-full` alarm per burst); raise out of its threads; reuse
a seq; delete an unacknowledged event except by the retention and size rules (both counted); log an
event's content (it may carry a sealed subject).

Storage (see storage.py for the file format and the durability argument). `events.log` is an
append-only log in TinyDB's data model, written by `EventStore` so that an append costs O(batch)
whatever the backlog; acks, retention and the size bound append tombstones; compaction rewrites the
live events once dead records outweigh them. `state.log` is a TinyDB database over `LogStorage`
holding the seq reservation. TinyDB's `Table` copies a whole table on each write, so TinyDB keeps
the small state and the events table bypasses `Table` (the benchmark shows both costs).

Seq numbers are never reused, even after kill -9: `put()` stamps a seq only if it is covered by a
reservation already durable in `state.log`; the writer thread moves the reservation ahead in blocks
before the headroom runs out. A crash therefore leaves a gap in the seqs, never a repeat; a clean
`stop()` gives the unused reservation back, so a normal restart leaves no gap.

Disk errors (ENOSPC, EIO): the writer keeps what it could not write in memory (up to
`memory_events`), truncates the partial write, retries with backoff and raises `disk-low` once per
episode; meanwhile `put()` goes on, and only when memory is full does the queue fill and drop. On
a full disk it writes as much as fits, and drops acked and expired records (compaction) to make
room. Opening needs no free space; but until a seq reservation is durable, `put()` drops (alarm
`outbox-full`, reason `no-seq`) rather than promise a seq it might reissue.

Retention counts how long an event has waited on this device, in device time (devicetime.py):
CLOCK_BOOTTIME, carried across restarts and reboots by the "alive" checkpoint in `state.log`
(written at start, at every retention check and at stop), never the wall clock, which a Pi
without a real-time clock steps by weeks when NTP first answers. Each event's device time at put()
reaches the disk as a mark in `events.log` (storage.py, MARKS_TABLE). Within a boot the waited time
is exact, daemon restarts included; after a reboot it counts from the last checkpoint plus the new
boot's uptime, and the time the device was off is added only once NTP has synchronized the wall
clock both at the last checkpoint and now, and only to the events stored before the reboot (their
marks move back). A step of the wall clock, forwards or back, neither drops an event early nor
keeps one longer. Events written before marks existed get one, once, from the wall-clock age of
their id (negative ages count as zero). The purge walks from the oldest and stops at the first
young event.

Callbacks: `on_durable` runs on the writer thread after the fsync; `on_alarm` runs on its own
thread, so neither the hot loop nor the writer ever waits on foreign code.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from tinydb import TinyDB
from tinydb.table import Document

from .devicetime import DeviceClock, boottime, clock_synced, read_boot_id
from .errors import StorageError
from .records import EventIdGenerator, event_id_ms, stamp
from .storage import MARK_STEP_MS, EventStore, LogStorage, Opener, OsLogFile, event_frame
from .vocabulary import Event

log = logging.getLogger(__name__)

_STATE_DOC = 1
_ALIVE_DOC = 2  # the device-time checkpoint
_TICK_S = 1.0  # how often the writer looks at its periodic work when nothing is queued
_FIRST_RETRY_S = 0.05

# seq, id, encoded frame, the stamped event (handed to on_durable), device ms at put()
_Item = tuple[int, str, bytes, dict[str, Any], int]


class Outbox:
    """Durable, bounded queue of events between the hot loop and the MQTT link.

    Beyond the config's keys, the keyword parameters exist for tests and tuning: `clock` is the
    wall clock (ids and `t`), `monotonic`, `boot_id` and `wall_synced` the device clock retention
    runs on (devicetime.py), `opener` opens the log files (fault injection), `memory_events`
    bounds what waits in memory while the disk refuses writes, `seq_block` is how far ahead seqs
    are reserved (the gap a crash may leave), `retention_check_s` how often retention runs (in device time),
    `compact_min_bytes` the dead weight tolerated before compaction, `min_free_bytes` the free
    space under which `disk-low` is raised (checked every `disk_check_s`), `retry_max_s` the
    longest wait between retries of a failed write.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_events: int,
        queue_size: int,
        retention_days: float,
        on_durable: Callable[[dict[str, Any]], None] | None = None,
        on_alarm: Callable[[str, dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = boottime,
        boot_id: Callable[[], str] = read_boot_id,
        wall_synced: Callable[[], bool] = clock_synced,
        opener: Opener = OsLogFile,
        memory_events: int = 10_000,
        seq_block: int = 4096,
        retention_check_s: float = 60.0,
        compact_min_bytes: int = 4 << 20,
        min_free_bytes: int = 16 << 20,
        disk_check_s: float = 30.0,
        retry_max_s: float = 5.0,
    ) -> None:
        if max_events < 1 or queue_size < 1 or memory_events < 1 or seq_block < 1:
            raise ValueError("max_events, queue_size, memory_events and seq_block must be positive")
        if retention_days <= 0:
            raise ValueError("retention_days must be positive")
        self.path = Path(path)
        self._max_events = max_events
        self._queue_size = queue_size
        self._retention_ms = round(retention_days * 86_400_000)
        self._on_durable = on_durable
        self._on_alarm = on_alarm
        self._clock = clock
        self._device = DeviceClock(monotonic, boot_id, clock, wall_synced)
        self._opener = opener
        self._memory_events = memory_events
        self._seq_block = seq_block
        self._retention_check_ms = retention_check_s * 1000
        self._compact_min_bytes = compact_min_bytes
        self._min_free_bytes = min_free_bytes
        self._disk_check_s = disk_check_s
        self._retry_max_s = retry_max_s
        self._new_id = EventIdGenerator(clock)

        # Shared with put(), flush(), ack() and stats(); never held across file I/O.
        self._lock = threading.Lock()
        self._durable = threading.Condition(self._lock)
        self._running = False
        self._queue: deque[_Item] = deque()
        self._next_seq = 1
        self._reserved = 0  # highest seq covered by a durable reservation
        self._done_seq = 0  # every seq up to here is durable or was dropped
        self._acks: list[int] = []  # seqs acked, tombstones not yet taken by the writer
        self._ack_asked = 0
        self._ack_done = 0
        self._full_burst = False
        self._dropped_full = 0
        self._dropped_size = 0
        self._dropped_retention = 0
        self._compactions = 0

        # Writer thread only.
        self._buffer: list[_Item] = []  # drained from the queue, not yet durable
        self._tombs: list[int] = []
        self._tombs_gen = 0
        self._disk_error: str | None = None
        self._backoff_s = 0.0
        self._retry_at = 0.0
        self._compact_retry_at = 0.0
        self._last_retention = 0
        self._last_disk_check = float("-inf")
        self._low_space = False

        self._store: EventStore | None = None
        self._db: TinyDB | None = None
        self._lock_fd: int | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._stop_deadline = 0.0
        self._alarms: deque[tuple[str, dict[str, Any]]] = deque()
        self._alarm_wake = threading.Event()
        self._alarm_stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._notifier: threading.Thread | None = None

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Open (or create) the outbox, replay it, purge what retention forbids, start the threads.

        Raises StorageError if the folder is unusable, not an outbox, or open in another process.
        """
        if self._store is not None:
            raise StorageError("outbox already started")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _lock_folder(self.path)
            # The seq reservation stays here, beside the events it numbers, not in the device's
            # state store: `outbox.path` may be configured apart from `device.state_dir`, and a
            # seq is only "never reused" while the reservation and the events travel together
            # (moved, restored from a backup or wiped as one folder, under one lock).
            self._db = TinyDB(self.path / "state.log", storage=LogStorage, opener=self._opener)
            store = EventStore(self.path / "events.log", opener=self._opener)
            store.open()
        except OSError as exc:
            self._close_files()
            raise StorageError(f"cannot open the outbox at {self.path}: {exc.strerror}") from None
        except StorageError:
            self._close_files()
            raise
        self._store = store
        state = self._state().get(doc_id=_STATE_DOC)
        reserved = int(state["seq_reserved"]) if isinstance(state, Mapping) else 0
        last = max(reserved, store.max_seq)
        self._next_seq = last + 1
        self._done_seq = last
        self._reserved = last
        self._device.resume(self._state().get(doc_id=_ALIVE_DOC), store.last_mark_ms,
                            self._next_seq)
        self._mark_unmarked()
        self._settle_off_time()
        self._last_retention = self._device.now_ms()
        self._purge_expired(self._last_retention)
        self._save_alive()
        self._reserve_seqs()
        log.info("outbox open: %d pending, next seq %d", len(store), self._next_seq)
        self._stop.clear()
        self._alarm_stop.clear()
        self._running = True
        self._notifier = threading.Thread(target=self._run_alarms, name="outbox-alarms",
                                          daemon=True)
        self._writer = threading.Thread(target=self._run_writer, name="outbox-writer", daemon=True)
        self._notifier.start()
        self._writer.start()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued (for up to most of `timeout`), stop the threads, close the files."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            self._durable.notify_all()
        self._stop_deadline = time.monotonic() + timeout * 0.8
        self._stop.set()
        self._wake.set()
        assert self._writer is not None and self._notifier is not None
        self._writer.join(timeout)
        if self._writer.is_alive():
            log.error("outbox writer did not stop within %.1f s; files left open", timeout)
            return
        lost = len(self._queue) + len(self._buffer)
        if lost:
            log.warning("outbox stopped with %d events not durable", lost)
        else:
            # Give the unused reservation back so that a clean restart leaves no gap in the seqs.
            with contextlib.suppress(OSError):
                self._write_reservation(self._next_seq - 1)
        self._save_alive()
        self._alarm_stop.set()
        self._alarm_wake.set()
        self._notifier.join(timeout)
        self._close_files()
        self._store = None

    def __enter__(self) -> Outbox:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- the hot loop's side ------------------------------------------------------------------

    def put(self, event: Mapping[str, Any]) -> dict[str, Any] | None:
        """Stamp `event` with `id` and `seq` and queue it; never blocks, never touches the disk.

        Returns the stamped copy, or None when the queue is full (or the outbox is stopped).
        Raises ValueError for an event that CBOR cannot encode: a bug, better seen at once.
        """
        event_id = self._new_id()
        now_ms = int(self._clock() * 1000)
        with self._lock:
            if not self._running:
                return None
            if len(self._queue) >= self._queue_size or self._next_seq > self._reserved:
                self._dropped_full += 1
                if not self._full_burst:
                    self._full_burst = True
                    reason = "queue-full" if len(self._queue) >= self._queue_size else "no-seq"
                    self._alarm(Event.OUTBOX_FULL, {"reason": reason, "queue_size": self._queue_size,
                                                "dropped_full": self._dropped_full})
                return None
            seq = self._next_seq
            stamped = stamp(event, event_id, seq, now_ms)
            frame = event_frame(seq, stamped)
            self._next_seq = seq + 1
            self._full_burst = False
            # Taken under the lock so that device times never decrease along the seqs.
            self._queue.append((seq, event_id, frame, stamped, self._device.now_ms()))
        self._wake.set()
        return stamped

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued and acked so far is durable; False on timeout.

        From an `on_durable` callback (the writer's own thread) it cannot wait: it returns False.
        """
        if threading.current_thread() is self._writer:
            return False
        with self._lock:
            seq, acks = self._next_seq - 1, self._ack_asked
        self._wake.set()
        def done() -> bool:
            return self._done_seq >= seq and self._ack_done >= acks

        with self._durable:
            self._durable.wait_for(lambda: done() or not self._running, timeout)
            return done()

    # --- the MQTT link's side -----------------------------------------------------------------

    def pending(self, limit: int, *, after_seq: int | None = None) -> list[dict[str, Any]]:
        """Up to `limit` durable, unacknowledged events, oldest first.

        `after_seq` skips events up to that seq, so a link can fetch the next batch while the
        previous one still waits for its PUBACK.
        """
        store = self._store
        if store is None or limit <= 0:
            return []
        return store.oldest(limit, after_seq)

    def ack(self, ids: Iterable[str], timeout: float = 5.0) -> int:
        """Remove acknowledged events; return how many were pending and are now durably gone.

        They leave `pending()` at once; the count is 0 if their tombstones are not durable within
        `timeout` (the writer keeps trying; at worst a crash makes the broker see them again).
        From an `on_durable` callback (the writer's own thread) it cannot wait for itself: the
        tombstones go with the next batch and the count is 0.
        """
        store = self._store
        if store is None or not self._running:
            return 0
        seqs = store.remove_ids(ids)
        if not seqs:
            return 0
        with self._lock:
            self._acks.extend(seqs)
            self._ack_asked += 1
            gen = self._ack_asked
        self._wake.set()
        if threading.current_thread() is self._writer:
            return 0
        with self._durable:
            done = self._durable.wait_for(lambda: self._ack_done >= gen or not self._running,
                                          timeout)
            return len(seqs) if done and self._ack_done >= gen else 0

    def stats(self) -> dict[str, Any]:
        """Depth and age (time waited on this device) of the backlog, what was dropped and why,
        the last seq issued."""
        store = self._store
        depth, oldest = (len(store), store.oldest_times(1)) if store is not None else (0, [])
        stored_ms = oldest[0][1] if oldest else None
        age = 0.0 if stored_ms is None else max(0.0, (self._device.now_ms() - stored_ms) / 1000)
        with self._lock:
            return {
                "depth": depth,
                "oldest_age_s": age,
                "queued": len(self._queue) + len(self._buffer),
                "dropped_full": self._dropped_full,
                "dropped_size": self._dropped_size,
                "dropped_retention": self._dropped_retention,
                "seq": self._next_seq - 1,
                "disk_error": self._disk_error,
                "file_bytes": store.file_size if store is not None else 0,
                "compactions": self._compactions,
            }

    # --- writer thread ------------------------------------------------------------------------

    def _run_writer(self) -> None:
        while True:
            wait = self._wait_s()
            if self._stop.is_set():
                wait = min(wait, max(0.0, self._stop_deadline - time.monotonic()))
            self._wake.wait(wait)
            self._wake.clear()
            try:
                self._cycle()
            except Exception:
                # A bug here must not end durability for the rest of the run: log and go on.
                log.exception("outbox writer cycle failed")
                self._stop.wait(_FIRST_RETRY_S)
            if self._stop.is_set() and (self._idle() or time.monotonic() >= self._stop_deadline):
                return

    def _cycle(self) -> None:
        now_ms = self._device.now_ms()
        if now_ms - self._last_retention >= self._retention_check_ms:
            self._last_retention = now_ms
            self._settle_off_time()
            self._purge_expired(self._device.now_ms())
            self._save_alive()
        if time.monotonic() - self._last_disk_check >= self._disk_check_s:
            self._last_disk_check = time.monotonic()
            self._check_free_space()
        self._reserve_seqs()
        self._drain()
        self._enforce_size()
        self._write()
        self._maybe_compact()

    def _wait_s(self) -> float:
        if self._disk_error is not None and (self._buffer or self._tombs):
            return max(0.005, self._retry_at - time.monotonic())
        return _TICK_S

    def _idle(self) -> bool:
        return not (self._queue or self._buffer or self._tombs or self._acks)

    def _drain(self) -> None:
        room = self._memory_events - len(self._buffer)
        with self._lock:
            take = min(room, len(self._queue))
            batch = [self._queue.popleft() for _ in range(take)]
        self._buffer.extend(batch)

    def _enforce_size(self) -> None:
        """Keep at most max_events: the oldest go first, durable or not, and are counted."""
        store = self._store
        assert store is not None
        over = len(store) + len(self._buffer) - self._max_events
        if over <= 0:
            return
        victims = store.remove_seqs(store.oldest_seqs(over))
        self._tombs.extend(victims)
        dropped = len(victims)
        if over > dropped:
            cut = over - dropped
            del self._buffer[:cut]
            dropped += cut
        with self._lock:
            self._dropped_size += dropped

    def _purge_expired(self, now_ms: int) -> None:
        """Drop events that waited longer than the retention period on this device, sent or not
        (privacy outranks delivery)."""
        store = self._store
        assert store is not None
        cutoff_ms = now_ms - self._retention_ms
        purged = 0
        while True:
            batch = store.oldest_times(256)
            old = [seq for seq, ms in batch if ms is None or ms < cutoff_ms]
            removed = store.remove_seqs(old)
            self._tombs.extend(removed)
            purged += len(removed)
            if len(old) < len(batch) or not batch:
                break
        keep = [item for item in self._buffer if item[4] >= cutoff_ms]
        purged += len(self._buffer) - len(keep)
        self._buffer = keep
        if purged:
            with self._lock:
                self._dropped_retention += purged
            log.info("outbox: %d events passed the retention period and were dropped", purged)

    def _mark_unmarked(self) -> None:
        """Give events from before device time their stored time, once, from their id's age.

        The wall clock is trusted this one time, as retention always trusted it before; an id
        from the future counts as just stored, one that is no UUIDv7 as expired.
        """
        store = self._store
        assert store is not None
        unmarked = store.unmarked()
        if not unmarked:
            return
        now_ms, wall_ms = self._device.now_ms(), int(self._clock() * 1000)
        marks: list[tuple[int, int]] = []
        for seq, event_id in unmarked:
            try:
                age = max(0, wall_ms - event_id_ms(event_id))
            except ValueError:
                age = self._retention_ms + 1
            if not marks or abs(now_ms - age - marks[-1][1]) >= MARK_STEP_MS:
                marks.append((seq, now_ms - age))
        store.add_marks(marks)

    def _settle_off_time(self) -> None:
        """Once NTP vouches for the wall clock again, charge the time the device was off to the
        events stored before the reboot (not to those stored since)."""
        settled = self._device.settle(self._save_alive)
        if settled is None:
            return
        store = self._store
        assert store is not None
        before_seq, off_ms = settled
        store.shift_marks(before_seq, -off_ms)
        log.info("outbox: %.0f s while the device was off now count towards retention",
                 off_ms / 1000)

    def _save_alive(self, alive: dict[str, Any] | None = None) -> bool:
        """Persist the device-time checkpoint: after a reboot, waiting resumes from here."""
        if self._db is None:
            return False
        try:
            doc = self._device.alive() if alive is None else alive
            self._state().upsert(Document(doc, doc_id=_ALIVE_DOC))
        except OSError:
            return False
        return True

    def _write(self) -> None:
        """Write what the writer holds: as much as the disk takes, in order, each part fsynced."""
        store = self._store
        assert store is not None
        with self._lock:
            if self._acks:
                self._tombs.extend(self._acks)
                self._acks = []
                self._tombs_gen = self._ack_asked
        if not self._buffer and not self._tombs:
            self._mark_done([])
            return
        if self._disk_error is not None and time.monotonic() < self._retry_at:
            return
        limit = len(self._buffer)
        compacted = False
        while self._buffer or self._tombs:
            batch = self._buffer[:limit]
            try:
                store.write([(seq, event_id, frame) for seq, event_id, frame, _e, _d in batch],
                            self._tombs, [item[4] for item in batch])
            except OSError as exc:
                if _no_space(exc) and not compacted:
                    compacted = True  # acked events may be holding the space we need
                    if self._compact_for_space():
                        continue
                if _no_space(exc) and limit > 1:
                    limit //= 2  # write what fits now rather than nothing
                    continue
                self._disk_failed(exc)
                return
            del self._buffer[: len(batch)]
            self._tombs = []
            limit = len(self._buffer)
            if self._disk_error is not None:
                log.warning("outbox: writing again after %s", self._disk_error)
                self._disk_error = None
                self._backoff_s = 0.0
            self._mark_done(batch)
            self._call_on_durable(batch)

    def _call_on_durable(self, batch: list[_Item]) -> None:
        if self._on_durable is None:
            return
        for _seq, _id, _frame, event, _ms in batch:
            try:
                self._on_durable(event)
            except Exception:
                log.exception("outbox on_durable callback failed")

    def _compact_for_space(self) -> bool:
        """On a full disk, drop the dead records (acked, expired) to make room; True if it did."""
        store = self._store
        assert store is not None
        if store.dead_bytes <= 0:
            return False
        try:
            store.compact()
        except OSError:
            return False
        self._compactions += 1
        # The new file left out every event already gone from the index: their tombstones are moot.
        self._tombs = []
        self._mark_done([])
        return True

    def _mark_done(self, batch: list[_Item]) -> None:
        with self._lock:
            if batch:
                self._done_seq = max(self._done_seq, batch[-1][0])
            elif not self._queue and not self._buffer:
                # Nothing was written because everything queued was dropped by the size bound.
                self._done_seq = max(self._done_seq, self._next_seq - 1)
            if not self._tombs:
                self._ack_done = self._tombs_gen
            self._durable.notify_all()

    def _disk_failed(self, exc: OSError) -> None:
        self._backoff_s = min(self._retry_max_s, max(_FIRST_RETRY_S, self._backoff_s * 2))
        self._retry_at = time.monotonic() + self._backoff_s
        if self._disk_error is None:
            self._disk_error = errno.errorcode.get(exc.errno or 0, "OSError")
            log.error("outbox: cannot write (%s); %d events held in memory, retrying",
                      self._disk_error, len(self._buffer))
            self._alarm(Event.DISK_LOW, {"error": self._disk_error, "buffered": len(self._buffer),
                                     "path": str(self.path)})

    def _maybe_compact(self) -> None:
        store = self._store
        assert store is not None
        if self._disk_error is not None or time.monotonic() < self._compact_retry_at:
            return
        if not store.needs_compaction(self._compact_min_bytes):
            return
        try:
            store.compact()
            self._compactions += 1
        except OSError as exc:
            # Needs room for a copy; the old file stays whole, so try again much later.
            self._compact_retry_at = time.monotonic() + 60.0
            log.warning("outbox compaction failed (%s); will retry",
                        errno.errorcode.get(exc.errno or 0, "OSError"))

    def _check_free_space(self) -> None:
        try:
            st = os.statvfs(self.path)
        except OSError:
            return
        free = st.f_bavail * st.f_frsize
        if free < self._min_free_bytes and not self._low_space:
            self._low_space = True
            self._alarm(Event.DISK_LOW, {"free_bytes": free, "path": str(self.path)})
        elif free >= 2 * self._min_free_bytes:
            self._low_space = False

    # --- seq reservation ----------------------------------------------------------------------

    def _reserve_seqs(self) -> None:
        """Keep a durable reservation ahead of the seqs put() may hand out."""
        with self._lock:
            issued = self._next_seq - 1
            headroom = self._reserved - issued
        want = self._queue_size + self._seq_block
        if headroom > want - self._seq_block // 2:
            return
        if self._disk_error is not None and time.monotonic() < self._retry_at:
            return
        target = issued + want
        try:
            self._write_reservation(target)
        except OSError as exc:
            self._disk_failed(exc)
            return
        with self._lock:
            self._reserved = max(self._reserved, target)

    def _write_reservation(self, seq: int) -> None:
        self._state().upsert(Document({"seq_reserved": seq}, doc_id=_STATE_DOC))

    def _state(self) -> Any:
        assert self._db is not None
        return self._db.table("outbox")

    # --- alarms -------------------------------------------------------------------------------

    def _alarm(self, name: str, details: dict[str, Any]) -> None:
        self._alarms.append((name, details))
        self._alarm_wake.set()

    def _run_alarms(self) -> None:
        while True:
            self._alarm_wake.wait(_TICK_S)
            self._alarm_wake.clear()
            while self._alarms:
                name, details = self._alarms.popleft()
                log.warning("outbox alarm %s: %s", name, details)
                if self._on_alarm is not None:
                    try:
                        self._on_alarm(name, details)
                    except Exception:
                        log.exception("outbox on_alarm callback failed")
            if self._alarm_stop.is_set():
                return

    # --- files --------------------------------------------------------------------------------

    def _close_files(self) -> None:
        if self._store is not None:
            self._store.close()
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


def _no_space(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _lock_folder(path: Path) -> int:
    """Hold an exclusive lock on the outbox folder for the life of the process (freed by the kernel
    on any exit, kill -9 included): two writers on one log would corrupt it."""
    fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageError(f"the outbox at {path} is in use by another process") from None
    return fd
