"""Crash-safe, append-only storage in the TinyDB data model: framed records, replay, compaction.

Why not stock TinyDB: its JSONStorage rewrites the whole file on every write (an append costs
O(backlog)) and writes it in place, so a power cut mid-write leaves a half-old, half-new file that
no longer parses.

The file format (one format for every log the sentry keeps):

    magic  b"ESLOG\\x00\\x01\\n"
    frame* u32 length (big-endian) | u32 CRC-32 of (length bytes + payload) | payload (CBOR)

A payload is an operation on TinyDB's data model, ``{table: {doc_id (str): document}}``:
``[0, table, doc_id, document]`` puts a document, ``[1, table, doc_id]`` removes one (a tombstone).

Durability argument. Records are only ever appended, and a batch counts as written once the file
has been fsynced after it, so a crash (kill -9, power cut) can damage only bytes after the last
fsync. On replay the first frame whose length is impossible, whose bytes run past the end, whose
CRC fails or whose CBOR does not decode ends the good prefix: a torn tail is dropped (and truncated
away so new appends follow good data). If a valid frame follows a damaged stretch (pages written
out of order before a power cut), replay skips the stretch and carries on, so one bad sector never
hides the records behind it. Compaction writes the live records to a new file, fsyncs it, renames
it over the old one and fsyncs the folder: at every instant the path names either the complete old
file or the complete new one. A failed write or fsync truncates the file back to its last good
length and reopens it before the next try, because after a failed fsync Linux may already have
dropped the dirty pages and a second fsync would wrongly report success.

`LogStorage` is a `tinydb.Storage` over this format: `write()` diffs the new state against the last
written one by table and document id and appends only what changed. TinyDB's `Table` still copies
the whole table on every write (its `_update_table` reads and rebuilds it), so TinyDB over any
storage costs O(table size) per write: fine for the outbox's small state table, not for a
100 000-event backlog. `EventStore` therefore writes the events table of the same format directly,
O(batch) per append, and keeps an index of the live events in memory; its file can still be opened
read-only with TinyDB for inspection.

Nothing here logs a document: events may carry a sealed subject.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import itertools
import logging
import mmap
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cbor2
from tinydb.storages import Storage

from .errors import StorageError
from .files import fsync_dir

log = logging.getLogger(__name__)

MAGIC = b"ESLOG\x00\x01\n"
_HEADER = struct.Struct(">II")
MAX_RECORD = 1 << 20  # a longer length field is damage, not data
OP_PUT = 0
OP_DELETE = 1


# --- framing: pure functions ------------------------------------------------------------------


def encode_frame(payload: Any) -> bytes:
    """One record: length, CRC of length and payload, CBOR payload; ValueError if not encodable."""
    try:
        body = cbor2.dumps(payload)
    except cbor2.CBOREncodeError as exc:
        raise ValueError("record cannot be encoded as CBOR") from exc
    if len(body) > MAX_RECORD:
        raise ValueError(f"record of {len(body)} bytes is over the {MAX_RECORD}-byte limit")
    length = len(body).to_bytes(4, "big")
    return length + zlib.crc32(body, zlib.crc32(length)).to_bytes(4, "big") + body


def _copy(value: Any) -> Any:
    """A deep copy of what the store holds (CBOR's types: a tuple comes back a list, as from disk)."""
    return cbor2.loads(cbor2.dumps(value))


def put_frame(table: str, doc_id: str, document: Any) -> bytes:
    return encode_frame([OP_PUT, table, doc_id, document])


def delete_frame(table: str, doc_id: str) -> bytes:
    return encode_frame([OP_DELETE, table, doc_id])


def _valid_op(op: Any) -> bool:
    if not isinstance(op, list) or len(op) < 3 or not isinstance(op[1], str):
        return False
    if not isinstance(op[2], str):
        return False
    return (op[0] == OP_PUT and len(op) == 4) or (op[0] == OP_DELETE and len(op) == 3)


def _frame_at(buf: bytes | memoryview, offset: int) -> tuple[list[Any], int] | None:
    """The operation and frame length at `offset`; None if no whole, intact frame starts there."""
    if len(buf) - offset < _HEADER.size:
        return None
    length, crc = _HEADER.unpack_from(buf, offset)
    end = offset + _HEADER.size + length
    if length == 0 or length > MAX_RECORD or end > len(buf):
        return None
    body = buf[offset + _HEADER.size : end]
    if zlib.crc32(body, zlib.crc32(length.to_bytes(4, "big"))) != crc:
        return None
    try:
        op = cbor2.loads(body)
    except Exception:  # any decoding failure is damage, whatever cbor2 calls it
        return None
    if not _valid_op(op):
        return None
    return op, end - offset


RecordSink = Callable[[list[Any], int, int], None]  # operation, offset, frame size


@dataclass
class Scan:
    """What replay found in a log: the good records in order and how much damage it stepped over."""

    records: list[tuple[list[Any], bytes]] = field(default_factory=list)  # unless a sink took them
    end: int = len(MAGIC)  # length of the good prefix: where the next append goes
    skipped: int = 0  # damaged bytes between good records (kept out, records behind them kept)
    torn: int = 0  # damaged bytes at the tail (dropped)


def scan(buf: bytes | memoryview, sink: RecordSink | None = None) -> Scan:
    """Split a log image into its good records (the replay of every log goes through it).

    With a `sink`, each (operation, offset, size) goes to it as found instead of into `records`,
    so a large log is never held in memory, decoded or not.
    """
    result = Scan()
    with memoryview(buf) as view:
        _scan_view(view, result, sink)
    return result


def _scan_view(view: memoryview, result: Scan, sink: RecordSink | None) -> None:
    offset = len(MAGIC)
    while offset < len(view):
        found = _frame_at(view, offset)
        if found is None:
            resume = _resync(view, offset + 1)
            if resume is None:
                result.torn = len(view) - offset
                break
            result.skipped += resume - offset
            offset = resume
            continue
        op, size = found
        if sink is None:
            result.records.append((op, bytes(view[offset : offset + size])))
        else:
            sink(op, offset, size)
        offset += size
        result.end = offset


def _resync(view: memoryview, start: int) -> int | None:
    """The next offset where an intact frame starts, if any (a torn tail usually has none)."""
    for candidate in range(start, len(view) - _HEADER.size + 1):
        if _frame_at(view, candidate) is not None:
            return candidate
    return None


def _scan_file(path: Path, sink: RecordSink | None) -> Scan | None:
    """Scan a log file through a read-only mapping (page cache, not heap: a Pi Zero has 512 MB).

    None if the file is missing or shorter than its magic (a creation cut short).
    """
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < len(MAGIC):
            head = fh.read()
            if MAGIC.startswith(head):
                return None
            raise StorageError(f"{path} is not an Edge Sentry log")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            if mapped[: len(MAGIC)] != MAGIC:
                raise StorageError(f"{path} is not an Edge Sentry log")
            view = memoryview(mapped)
            try:
                return scan(view, sink)
            finally:
                view.release()


# --- files -------------------------------------------------------------------------------------


class LogFile(Protocol):
    """What a log needs from an open file; tests inject failing ones (disk full, EIO)."""

    def write(self, data: bytes) -> None:
        """Write all of `data` at the end, or raise OSError (possibly after a partial write)."""

    def sync(self) -> None:
        """Make everything written so far durable."""

    def truncate(self, size: int) -> None: ...

    def size(self) -> int: ...

    def close(self) -> None: ...


class OsLogFile:
    """A log file appended through a plain file descriptor (no user-space buffer to lose)."""

    def __init__(self, path: Path) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(path, flags, 0o600)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def sync(self) -> None:
        # fdatasync persists the data and the new length, which is all an append needs.
        getattr(os, "fdatasync", os.fsync)(self._fd)

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def close(self) -> None:
        os.close(self._fd)


Opener = Callable[[Path], LogFile]


class AppendLog:
    """One append-only log file: replay at open, append + fsync per batch, atomic compaction.

    Single writer: the owner serialises calls. Readers of the replayed records need no file access.
    """

    def __init__(self, path: str | os.PathLike[str], *, opener: Opener = OsLogFile,
                 read_only: bool = False) -> None:
        self.path = Path(path)
        self._opener = opener
        self._read_only = read_only
        self._file: LogFile | None = None
        self._end = len(MAGIC)
        self._dir_unsynced = False
        self._create_pending = False

    @property
    def size(self) -> int:
        """Bytes of good data in the file, magic included."""
        return self._end

    def open(self, sink: RecordSink | None = None) -> Scan:
        """Create the file if needed, replay it and drop a torn tail; return what replay found."""
        tmp = self._tmp_path()
        if not self._read_only and tmp.exists():
            tmp.unlink()  # a compaction that never reached its rename: the old file is still whole
        try:
            result = _scan_file(self.path, sink)
        except FileNotFoundError:
            result = None
        except OSError as exc:
            raise StorageError(f"cannot read {self.path}: {exc.strerror}") from None
        if result is None:
            # Missing, or its creation was cut short: start it again, atomically. On a full or
            # failing disk that waits for the first append, so that opening never needs space.
            self._create_pending = not self._read_only
            if self._create_pending:
                with contextlib.suppress(OSError):
                    self._ensure_file()
            return Scan()
        self._end = result.end
        if result.torn or result.skipped:
            log.warning("%s: dropped %d torn bytes at the tail and skipped %d damaged bytes",
                        self.path, result.torn, result.skipped)
        if not self._read_only:
            try:
                self._reopen()  # cuts a torn tail off: appends must follow good data
            except OSError as exc:
                log.warning("%s: cannot open for appending yet (%s)", self.path, exc.strerror)
        return result

    def append(self, data: bytes) -> int:
        """Append `data` (whole frames) and fsync; return the offset it starts at.

        On OSError the file is back at its old length.
        """
        if self._read_only:
            raise StorageError(f"{self.path} is open read-only")
        self._ensure_file()
        assert self._file is not None
        start = self._end
        if not data:
            return start
        try:
            self._file.write(data)
            self._file.sync()
        except OSError:
            self._abandon_handle()
            raise
        self._end += len(data)
        return start

    def rewrite(self, frames: Iterable[bytes]) -> None:
        """Replace the file by one of only `frames` (compaction); on error the old one stays."""
        if self._read_only:
            raise StorageError(f"{self.path} is open read-only")
        self._replace_with(frames)

    def reset(self) -> None:
        """Drop every record in place, for a log with nothing live left.

        Unlike rewrite() this needs no free space, so it is how a full disk gets room back once
        the broker has acknowledged everything. A crash leaves either the old file or the empty
        one, both valid.
        """
        if self._read_only:
            raise StorageError(f"{self.path} is open read-only")
        self._ensure_file()
        assert self._file is not None
        self._end = len(MAGIC)  # if this fails, the next _reopen() truncates again
        try:
            self._file.truncate(len(MAGIC))
            self._file.sync()
        except OSError:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
            raise

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None

    # -- internals

    def _ensure_file(self) -> None:
        """Finish whatever a failure left undone before the next write may count as durable."""
        if self._create_pending:
            self._replace_with([])
            self._create_pending = False
        if self._dir_unsynced:
            # A rename is durable only once its folder is: no append may count as durable before.
            fsync_dir(self.path.parent)
            self._dir_unsynced = False
        if self._file is None:
            self._reopen()

    def _tmp_path(self) -> Path:
        return self.path.with_name(self.path.name + ".tmp")

    def _replace_with(self, frames: Iterable[bytes]) -> None:
        tmp = self._tmp_path()
        new = self._opener(tmp)
        try:
            new.truncate(0)
            chunk, pending = [MAGIC], len(MAGIC)
            for frame in frames:
                chunk.append(frame)
                pending += len(frame)
                if pending >= 1 << 20:  # bounded memory however big the log is
                    new.write(b"".join(chunk))
                    chunk, pending = [], 0
            new.write(b"".join(chunk))
            new.sync()
            size = new.size()
        except OSError:
            new.close()
            _unlink_quietly(tmp)
            raise
        new.close()
        os.replace(tmp, self.path)
        # From here on the path names the new file: switch to it before anything else can fail.
        self.close()
        self._end = size
        self._dir_unsynced = True
        self._file = self._opener(self.path)
        fsync_dir(self.path.parent)
        self._dir_unsynced = False

    def _abandon_handle(self) -> None:
        """After a failed write or fsync: cut the partial batch off and drop the handle."""
        assert self._file is not None
        # If the truncation fails, _reopen tries again; replay would skip the garbage in any case.
        with contextlib.suppress(OSError):
            self._file.truncate(self._end)
        with contextlib.suppress(OSError):
            self._file.close()
        self._file = None

    def _reopen(self) -> None:
        new = self._opener(self.path)
        try:
            actual = new.size()
            if actual != self._end:
                new.truncate(self._end)
                new.sync()
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EIO, errno.EDQUOT):
                new.close()
                raise
            # The garbage stays; replay steps over it. Appends go after it, so count it as ours.
            self._end = new.size()
        self._file = new


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


# --- TinyDB storage -----------------------------------------------------------------------------


class LogStorage(Storage):
    """A `tinydb.Storage` that appends only the documents that changed since its last write.

    Use it for small tables (TinyDB itself copies a whole table on each write): the outbox keeps
    its seq reservation here. Compacts itself once dead records outweigh live ones.
    """

    def __init__(self, path: str | os.PathLike[str], create_dirs: bool = False,
                 read_only: bool = False, opener: Opener = OsLogFile,
                 compact_min_bytes: int = 64 * 1024) -> None:
        super().__init__()
        path = Path(path)
        if create_dirs and not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._log = AppendLog(path, opener=opener, read_only=read_only)
        self._compact_min_bytes = compact_min_bytes
        self._tables: dict[str, dict[str, Any]] = {}
        self._frames: dict[tuple[str, str], bytes] = {}
        self._live_bytes = 0
        for op, frame in self._log.open().records:
            self._apply(op, frame)

    def read(self) -> dict[str, dict[str, Any]] | None:
        if not self._tables:
            return None
        # A deep copy: TinyDB updates documents in place before it calls write(), and the diff in
        # write() needs the last written state untouched. Made through CBOR, the documents' own
        # format on disk (so a copy is what a restart would read), at about 2.4x copy.deepcopy's
        # speed: TinyDB reads the whole store at every operation, on the link's thread, while the
        # deciding loop waits for the interpreter lock.
        tables: dict[str, dict[str, Any]] = _copy(self._tables)
        return tables

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        ops: list[list[Any]] = []
        for name in self._tables.keys() - data.keys():
            ops.extend([OP_DELETE, name, key] for key in self._tables[name])
        for name, table in data.items():
            old = self._tables.get(name, {})
            ops.extend([OP_DELETE, name, key] for key in old.keys() - table.keys())
            for key, doc in table.items():
                key = str(key)
                if key not in old or old[key] != doc:
                    ops.append([OP_PUT, name, key, doc])
        if not ops:
            return
        frames = [encode_frame(op) for op in ops]
        self._log.append(b"".join(frames))
        for op, frame in zip(ops, frames, strict=True):
            self._apply(_copy(op), frame)
        self._maybe_compact()

    def close(self) -> None:
        self._log.close()

    def _apply(self, op: list[Any], frame: bytes) -> None:
        name, key = op[1], op[2]
        old = self._frames.pop((name, key), None)
        if old is not None:
            self._live_bytes -= len(old)
        if op[0] == OP_PUT:
            self._tables.setdefault(name, {})[key] = op[3]
            self._frames[(name, key)] = frame
            self._live_bytes += len(frame)
        else:
            table = self._tables.get(name)
            if table is not None:
                table.pop(key, None)
                if not table:
                    del self._tables[name]

    def _maybe_compact(self) -> None:
        dead = self._log.size - len(MAGIC) - self._live_bytes
        if dead > max(self._compact_min_bytes, self._live_bytes):
            try:
                self._log.rewrite(list(self._frames.values()))
            except OSError as exc:
                log.warning("%s: compaction failed (%s); the log stays as it is",
                            self._log.path, exc.strerror)


# --- the events table ---------------------------------------------------------------------------


EVENTS_TABLE = "events"
# `{"d": ms}` keyed by a seq: the events from that seq up to the next mark were stored at device
# time d or later (devicetime.py). Apart from the events so that what is sent stays the event.
MARKS_TABLE = "stored"
# A new mark only once device time moved on this far: one small record per second of appending
# at most, and an event's stored time is early by less than this (retention errs on the safe side).
MARK_STEP_MS = 1000


def event_frame(seq: int, event: dict[str, Any]) -> bytes:
    """The put record of one event; keyed by its seq so TinyDB sees integer document ids."""
    return put_frame(EVENTS_TABLE, str(seq), event)


def mark_frame(seq: int, device_ms: int) -> bytes:
    """The record saying the events from `seq` on were stored at device time `device_ms`."""
    return put_frame(MARKS_TABLE, str(seq), {"d": device_ms})


class EventStore:
    """The outbox's events on disk (an append-only log) and in memory (the live ones, oldest first).

    Memory holds, per live event, its seq, its id and where its frame sits in the file (under 300
    bytes, so 200 000 pending events fit in some 60 MB on a Pi Zero), not the event itself;
    `oldest()` reads and decodes only what it returns; and the marks (MARKS_TABLE) that give the
    live events their stored times. Index reads and updates are thread-safe; file changes
    (`write`, `add_marks`, `compact`) belong to one writer thread.
    """

    def __init__(self, path: str | os.PathLike[str], *, opener: Opener = OsLogFile) -> None:
        self.path = Path(path)
        self._log = AppendLog(path, opener=opener)
        self._lock = threading.Lock()
        # seq -> (offset << 24 | frame size, event id), in seq order
        self._live: dict[int, tuple[int, str]] = {}
        self._by_id: dict[str, int] = {}
        self._live_bytes = 0
        self._marks: dict[int, int] = {}  # seq -> device ms
        self._mark_seqs: list[int] = []  # sorted keys of _marks
        self.last_mark_ms = 0  # the latest device time any mark in the log gave
        self._new_run = True  # the first put written after open() gets a mark of its own
        self._read_fd: int | None = None
        self.max_seq = 0  # highest seq the log has ever held, acked ones included
        self.replay = Scan()

    def open(self) -> Scan:
        """Replay the log into the index, one record at a time."""
        self.replay = self._log.open(self._replay_record)
        self._new_run = True
        # Frames sit out of seq order only in a file edited by hand; the index must not.
        seqs = list(self._live)
        if any(a > b for a, b in itertools.pairwise(seqs)):
            self._live = dict(sorted(self._live.items()))
        self._mark_seqs = sorted(self._marks)
        if self._live:
            # Marks of events long gone stay in the file until compaction, not in memory.
            first = bisect.bisect_right(self._mark_seqs, next(iter(self._live))) - 1
            for seq in self._mark_seqs[: max(0, first)]:
                del self._marks[seq]
            self._mark_seqs = self._mark_seqs[max(0, first):]
        return self.replay

    def _replay_record(self, op: list[Any], offset: int, size: int) -> None:
        if not op[2].isdigit():
            return
        if op[1] == MARKS_TABLE:
            if op[0] == OP_PUT and isinstance(op[3], dict) and type(op[3].get("d")) is int:
                self._marks[int(op[2])] = op[3]["d"]
                self.last_mark_ms = max(self.last_mark_ms, op[3]["d"])
            return
        if op[1] != EVENTS_TABLE:
            return
        seq = int(op[2])
        if op[0] == OP_DELETE:
            self._remove(seq)
        elif isinstance(op[3], dict) and isinstance(op[3].get("id"), str):
            self.max_seq = max(self.max_seq, seq)
            self._add(seq, op[3]["id"], offset, size)

    def close(self) -> None:
        self._log.close()
        with self._lock:
            self._close_reader()

    # -- index (thread-safe)

    def __len__(self) -> int:
        return len(self._live)

    @property
    def file_size(self) -> int:
        return self._log.size

    @property
    def live_bytes(self) -> int:
        return self._live_bytes

    @property
    def dead_bytes(self) -> int:
        return self._log.size - len(MAGIC) - self._live_bytes

    def oldest(self, limit: int, after_seq: int | None = None) -> list[dict[str, Any]]:
        """Up to `limit` live events, oldest first, read from the file; only seq > after_seq."""
        with self._lock:
            picked: list[int] = []
            for seq, (where, _id) in self._live.items():
                if len(picked) >= limit:
                    break
                if after_seq is None or seq > after_seq:
                    picked.append(where)
            events = [self._read(where) for where in picked]
        return [event for event in events if event is not None]

    def oldest_times(self, limit: int) -> list[tuple[int, int | None]]:
        """(seq, device ms it was stored at) of up to `limit` oldest live events, for retention
        and ages; None for an event no mark covers (written before marks existed)."""
        with self._lock:
            return [(seq, self._stored_ms(seq))
                    for seq in itertools.islice(self._live, limit)]

    def unmarked(self) -> list[tuple[int, str]]:
        """(seq, id) of the live events no mark covers: written before the log kept marks."""
        with self._lock:
            first = self._mark_seqs[0] if self._mark_seqs else None
            return list(itertools.takewhile(
                lambda entry: first is None or entry[0] < first,
                ((seq, event_id) for seq, (_where, event_id) in self._live.items())))

    def oldest_seqs(self, limit: int) -> list[int]:
        with self._lock:
            return list(itertools.islice(self._live, limit))

    def remove_ids(self, ids: Iterable[str]) -> list[int]:
        """Take events out of the index by id; return their seqs (tombstones are for the caller)."""
        with self._lock:
            seqs = [s for s in (self._by_id.get(i) for i in ids) if s is not None]
            for seq in seqs:
                self._remove(seq)
        return seqs

    def remove_seqs(self, seqs: Iterable[int]) -> list[int]:
        with self._lock:
            removed = [s for s in seqs if s in self._live]
            for seq in removed:
                self._remove(seq)
        return removed

    # -- file (writer thread only)

    def write(self, added: list[tuple[int, str, bytes]], removed: list[int],
              stored_ms: Sequence[int] = ()) -> None:
        """Append puts (seq, id, frame) and tombstones, fsync, then index the puts.

        `stored_ms` gives each put the device time it was taken at (non-decreasing, like the
        seqs); a mark goes before a put whenever its time is MARK_STEP_MS past the last mark, and
        before the first put after open(), so that `shift_marks` can tell the runs apart.
        On OSError the file and the index are as they were, so the caller can simply retry.
        """
        chunks = [frame for _seq, _id, frame in added]
        sizes = [len(frame) for frame in chunks]  # of each frame in chunks; a mark's negated
        marks: list[tuple[int, int]] = []
        last = self._marks[self._mark_seqs[-1]] if self._mark_seqs and not self._new_run else None
        for i, ms in enumerate(stored_ms):
            if last is None or not 0 <= ms - last < MARK_STEP_MS:
                marks.append((i, ms))
                last = ms
        for i, ms in reversed(marks):  # usually one mark per batch, often none
            mark = mark_frame(added[i][0], ms)
            chunks.insert(i, mark)
            sizes.insert(i, -len(mark))
        chunks.extend(delete_frame(EVENTS_TABLE, str(seq)) for seq in removed)
        offset = self._log.append(b"".join(chunks))
        with self._lock:
            for i, ms in marks:
                self._set_mark(added[i][0], ms)
                self._new_run = False
            puts = iter(added)
            for size in sizes:
                if size > 0:
                    seq, event_id, _frame = next(puts)
                    self._add(seq, event_id, offset, size)
                    self.max_seq = max(self.max_seq, seq)
                offset += abs(size)

    def shift_marks(self, before_seq: int, delta_ms: int) -> None:
        """Move the stored time of every live event before `before_seq` by `delta_ms`."""
        with self._lock:
            moved = [(seq, self._marks[seq] + delta_ms)
                     for seq in itertools.takewhile(lambda s: s < before_seq, self._mark_seqs)]
        self.add_marks(moved)

    def add_marks(self, marks: Iterable[tuple[int, int]]) -> None:
        """Give events their stored times after the fact (events written before marks existed).

        They count at once; if the disk refuses them, compaction writes them later, or the next
        start derives them again.
        """
        marks = list(marks)
        if not marks:
            return
        with self._lock:
            for seq, ms in marks:
                self._set_mark(seq, ms)
        try:
            self._log.append(b"".join(mark_frame(seq, ms) for seq, ms in marks))
        except OSError as exc:
            log.warning("%s: stored times not written yet (%s)", self.path, exc.strerror)

    def needs_compaction(self, min_bytes: int) -> bool:
        """True once dead records outweigh live ones (compaction then costs O(1) per record)."""
        return self.dead_bytes > max(min_bytes, self._live_bytes)

    def compact(self) -> None:
        """Rewrite the log with the live events only; tombstones not yet written become moot.

        With nothing live the file is truncated in place, which needs no free space.
        """
        with self._lock:
            entries = [(seq, where, self._mark_of(seq)) for seq, (where, _id) in self._live.items()]
            # Readers must go on reading the old file until the index moves to the new offsets:
            # one that opened the path after the rename would read the new file at old offsets.
            self._reader()
        if not entries:
            self._log.reset()
            with self._lock:
                self._marks, self._mark_seqs = {}, []
            return
        # Only this thread changes the file, so the old one can be read without the lock while
        # acks go on removing entries from the index. Frames stream through: no copy in memory.
        moved: dict[int, int] = {}
        kept: dict[int, int] = {}  # the marks the live events need, and only those

        def frames(fd: int) -> Iterator[bytes]:
            offset = len(MAGIC)
            for seq, where, mark in entries:
                if mark is not None and mark[0] not in kept:
                    kept[mark[0]] = mark[1]
                    frame = mark_frame(*mark)
                    offset += len(frame)
                    yield frame
                frame = os.pread(fd, where & _SIZE_MASK, where >> _SIZE_BITS)
                moved[seq] = offset << _SIZE_BITS | len(frame)
                offset += len(frame)
                yield frame

        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            self._log.rewrite(frames(fd))
        finally:
            os.close(fd)
        with self._lock:
            self._close_reader()  # it reads the old file: the path names the new one now
            for seq, (_where, event_id) in self._live.items():
                self._live[seq] = (moved[seq], event_id)
            self._marks, self._mark_seqs = kept, sorted(kept)

    # -- internals (caller holds the lock, or is replaying)

    def _reader(self) -> int:
        if self._read_fd is None:
            self._read_fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        return self._read_fd

    def _close_reader(self) -> None:
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None

    def _read(self, where: int) -> dict[str, Any] | None:
        size, offset = where & _SIZE_MASK, where >> _SIZE_BITS
        try:
            data = os.pread(self._reader(), size, offset)
        except OSError as exc:
            log.error("%s: cannot read an event back (%s)", self.path, exc.strerror)
            return None
        found = _frame_at(data, 0)
        if found is None:
            log.error("%s: an event's record no longer checks out at offset %d", self.path, offset)
            return None
        document: dict[str, Any] = found[0][3]
        return document

    def _mark_of(self, seq: int) -> tuple[int, int] | None:
        """The mark covering `seq`: the one with the highest seq not above it."""
        i = bisect.bisect_right(self._mark_seqs, seq) - 1
        if i < 0:
            return None
        key = self._mark_seqs[i]
        return key, self._marks[key]

    def _stored_ms(self, seq: int) -> int | None:
        mark = self._mark_of(seq)
        return None if mark is None else mark[1]

    def _set_mark(self, seq: int, ms: int) -> None:
        if seq not in self._marks:
            bisect.insort(self._mark_seqs, seq)
        self._marks[seq] = ms
        self.last_mark_ms = max(self.last_mark_ms, ms)

    def _add(self, seq: int, event_id: str, offset: int, size: int) -> None:
        if seq in self._live:
            self._remove(seq)
        self._live[seq] = (offset << _SIZE_BITS | size, event_id)
        self._by_id[event_id] = seq
        self._live_bytes += size

    def _remove(self, seq: int) -> None:
        entry = self._live.pop(seq, None)
        if entry is not None:
            where, event_id = entry
            self._by_id.pop(event_id, None)
            self._live_bytes -= where & _SIZE_MASK


_SIZE_BITS = 24  # a frame is at most MAX_RECORD (1 MiB) + header
_SIZE_MASK = (1 << _SIZE_BITS) - 1


def iter_log(path: str | os.PathLike[str]) -> Iterator[list[Any]]:
    """The good operations of a log file, read-only (for inspection and tests)."""
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise StorageError(f"{path} is not an Edge Sentry log")
    for op, _frame in scan(data).records:
        yield op
