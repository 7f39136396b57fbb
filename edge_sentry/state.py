"""The device's own state in one TinyDB document store: what it applied, accepted and answered.

One file, `{device.state_dir}/store.log`, holds the applied desired-config overlays (link/shadow),
the last pushed trust list (link/trustpush), the answered command ids with their responses
(link/remote_commands), the ids (jti) of signed commands until their deadline (link/control) and
the start counter (the link's `boot_count`), each in its own table.

Why TinyDB here, and the append-only event log for the outbox. This state is small (a config, a
trust list, a few hundred command ids) and changes rarely, so TinyDB's `Table`, which rebuilds a
whole table on every write, costs nothing that matters, and its document model gives every concern
its tables, queries and document ids in one crash-safe file. Under it sits `storage.LogStorage`: a
write appends only the documents that changed, fsyncs, and compacts by atomic rename, so each
write is durable when the call returns and a power cut leaves the last good state. The outbox's
events are the opposite case (100 000 deep, appended in batches on a hot path), which is why they
stay in `storage.EventStore`, O(batch) per append, outside any `Table`.

Identity. State is written for one device identity (`device.site` and `device.id`) and is never
applied to another: every table is named for its concern and the identity (`config@site/id`), so
two identities sharing a folder (a provisioned gate and the demo, say) never see each other's
state, and each finds its own again when it comes back. Opening the store for an identity that
has no state in it while others have some says so in the log.

Upgrades. A sentry that kept its state in separate files (`config.json`, `trust.json`,
`commands.json`, `boot_count`) moves them into the store when the store is first opened for
writing, for the identity opening it (the files named no identity). A file is removed only once
the store holds its content durably; until then (a crash, a full disk, a read-only folder) the
file's content is what the store serves, and the next open tries again. Running the move twice
changes nothing: the same content is written again (the start counter takes the larger count).

Thread-safe: the shadow, the remote commands and the trust push call in from different threads;
one lock serialises every table access. Never logs a document (trust lists carry keys, command
responses may carry results).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage
from tinydb.table import Document, Table

from .config import Config
from .errors import StorageError
from .files import fsync_dir
from .storage import LogStorage, Opener, OsLogFile

log = logging.getLogger(__name__)

STORE_FILE = "store.log"

CONFIG = "config"
TRUST = "trust"
COMMANDS = "commands"
BOOT = "boot"
CONTROL = "control"

#: The files each concern was kept in before the store, by name under `device.state_dir`.
LEGACY_FILES: dict[str, str] = {
    CONFIG: "config.json",
    TRUST: "trust.json",
    COMMANDS: "commands.json",
    BOOT: "boot_count",
}

_ONLY_DOC = 1  # the config and the start counter are one document per identity
# A record is at most storage.MAX_RECORD (1 MiB); a DCC trust list with every EU signer can come
# near that, so the list's text is kept in parts well under it.
_TRUST_PART_CHARS = 256 * 1024


@dataclass(frozen=True)
class Identity:
    """Who the state belongs to: the site and the device id that name the sentry's topics."""

    site: str
    device: str

    def __str__(self) -> str:
        return f"{self.site}/{self.device}"


class _Unavailable(Storage):
    """Stands in for a store file that cannot be used at all (not ours, or its folder is a file):
    reads find nothing and writes fail like a failing disk, so the sentry runs without its state
    instead of refusing to start or overwriting a file that is not its own."""

    def __init__(self, reason: str) -> None:
        self._reason = reason

    def read(self) -> dict[str, dict[str, Any]] | None:
        return None

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        raise OSError(errno.EIO, self._reason)


class StateStore:
    """The device's state for one identity; see the module docstring.

    Every `keep_*` call is durable when it returns, or raises OSError (nothing kept, the caller
    decides whether that matters). `read_only` stores change nothing, the move of old files
    included (for tools that run beside the daemon).
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        identity: Identity,
        *,
        read_only: bool = False,
        opener: Opener = OsLogFile,
    ) -> None:
        self.folder = Path(state_dir)
        self.path = self.folder / STORE_FILE
        self.identity = identity
        self.read_only = read_only
        self._lock = threading.RLock()
        # Content of old state files not yet moved into the store; served in place of the store's.
        self._legacy: dict[str, Any] = {}
        self._db = self._open_db(opener)
        self._legacy = _read_legacy(self.folder)
        if not read_only:
            self._move_legacy()
        self._say_whose()

    @classmethod
    def open(cls, config: Config, *, read_only: bool = False) -> StateStore:
        """The store in `config.device.state_dir` for the identity `config.device` names."""
        identity = Identity(config.device.site, config.device.id)
        return cls(config.device.state_dir, identity, read_only=read_only)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the config shadow ------------------------------------------------------------------

    def applied_config(self) -> dict[str, Any] | None:
        """The applied overlays as the shadow kept them (None: nothing applied yet)."""
        with self._lock:
            if CONFIG in self._legacy:
                return dict(self._legacy[CONFIG])
            doc = self._table(CONFIG).get(doc_id=_ONLY_DOC)
            return dict(doc) if isinstance(doc, Mapping) else None

    def keep_applied_config(self, doc: Mapping[str, Any]) -> None:
        with self._lock:
            self._put_only(CONFIG, doc)
            self._legacy_done(CONFIG)

    # -- the trust push ---------------------------------------------------------------------

    def pushed_trust(self) -> str | None:
        """The JSON form of the last accepted pushed trust list (None: none kept)."""
        with self._lock:
            if TRUST in self._legacy:
                return str(self._legacy[TRUST])
            return _whole_trust(self._table(TRUST).all())

    def keep_pushed_trust(self, text: str) -> None:
        with self._lock:
            self._write_trust(text)
            self._legacy_done(TRUST)

    def _write_trust(self, text: str) -> None:
        table = self._table(TRUST)
        docs = table.all()
        if _whole_trust(docs) == text:
            return
        # The new generation is written whole before the old one goes: a crash between the two
        # writes leaves both, and the reader takes the newest complete one.
        gen = max((d.get("gen", 0) for d in docs if isinstance(d.get("gen"), int)), default=0) + 1
        parts = [text[i : i + _TRUST_PART_CHARS] for i in range(0, len(text), _TRUST_PART_CHARS)]
        parts = parts or [""]
        rows = [{"gen": gen, "part": i, "parts": len(parts), "text": p} for i, p in enumerate(parts)]
        _guarded(lambda: table.insert_multiple(rows))
        old = [d.doc_id for d in docs]
        if old:
            _guarded(lambda: table.remove(doc_ids=old))

    # -- remote commands --------------------------------------------------------------------

    def answered_commands(self) -> list[dict[str, Any]]:
        """The remembered requests, oldest first: `{"key": ..., "response": ...}` each."""
        with self._lock:
            if COMMANDS in self._legacy:
                return [dict(e) for e in self._legacy[COMMANDS]]
            latest: OrderedDict[str, dict[str, Any]] = OrderedDict()
            for doc in sorted(self._table(COMMANDS).all(), key=lambda d: d.doc_id):
                key = doc.get("key")
                if not isinstance(key, str):
                    continue  # not a request id: nothing that was written here
                # After a crash between a write and its clean-up a key can appear twice: the later
                # document is the newer state, in its newer place.
                latest.pop(key, None)
                latest[key] = {"key": key, "response": doc.get("response")}
            return list(latest.values())

    def keep_answered_commands(self, entries: Sequence[Mapping[str, Any]]) -> None:
        """Make the remembered requests exactly `entries` (oldest first)."""
        with self._lock:
            self._write_commands(entries)
            self._legacy_done(COMMANDS)

    def _write_commands(self, entries: Sequence[Mapping[str, Any]]) -> None:
        table = self._table(COMMANDS)
        existing = sorted(table.all(), key=lambda d: d.doc_id)
        # a key twice (see above): the later one
        docs = {d["key"]: d for d in existing if isinstance(d.get("key"), str)}
        # Order is document-id order, so an entry stays where it is only while every entry before
        # it stayed too; from the first one that changed or moved, the rest is written anew at the
        # end. The usual call (one new id, the oldest forgotten) writes one document, drops one.
        kept: set[int] = set()
        fresh: list[dict[str, Any]] = []
        last = 0
        for entry in entries:
            doc = docs.get(entry["key"])
            row = {"key": entry["key"], "response": entry["response"]}
            if not fresh and doc is not None and doc.doc_id > last and dict(doc) == row:
                kept.add(doc.doc_id)
                last = doc.doc_id
            else:
                fresh.append(row)
        if fresh:
            _guarded(lambda: table.insert_multiple(fresh))
        stale = [d.doc_id for d in existing if d.doc_id not in kept]
        if stale:
            _guarded(lambda: table.remove(doc_ids=stale))

    # -- the signed control plane ------------------------------------------------------------

    def control_ids(self) -> dict[str, int]:
        """The jti (hex) of the signed commands taken, each with its deadline (ms since 1970)."""
        with self._lock:
            doc = self._table(CONTROL).get(doc_id=_ONLY_DOC)
            ids = doc.get("ids") if isinstance(doc, Mapping) else None
            if not isinstance(ids, Mapping):
                return {}
            return {k: v for k, v in ids.items() if isinstance(k, str) and isinstance(v, int)}

    def keep_control_ids(self, ids: Mapping[str, int]) -> None:
        """Make the remembered jti exactly `ids`; OSError when they cannot be kept."""
        with self._lock:
            self._put_only(CONTROL, {"ids": dict(ids)})

    # -- the start counter ------------------------------------------------------------------

    def next_boot_count(self) -> int:
        """Count this start and return the count (1 on a fresh device); OSError if not kept."""
        with self._lock:
            count = self._boot_count() + 1
            self._put_only(BOOT, {"count": count})
            self._legacy_done(BOOT)
            return count

    def _boot_count(self) -> int:
        doc = self._table(BOOT).get(doc_id=_ONLY_DOC)
        stored = doc.get("count") if isinstance(doc, Mapping) else 0
        if isinstance(stored, bool) or not isinstance(stored, int) or stored < 0:
            log.warning("state: the start counter in %s is unusable; counting from 0", self.path)
            stored = 0
        return max(stored, int(self._legacy.get(BOOT, 0)))

    # -- internals --------------------------------------------------------------------------

    def _open_db(self, opener: Opener) -> TinyDB:
        if not self.read_only:
            with contextlib.suppress(OSError):  # then the store says why at its first write
                self.folder.mkdir(parents=True, exist_ok=True)
        try:
            return TinyDB(self.path, storage=LogStorage, read_only=self.read_only, opener=opener)
        except (StorageError, OSError) as exc:
            log.error("state: %s cannot be used (%s); nothing will be kept this run", self.path, exc)
            return TinyDB(storage=_Unavailable, reason=f"{self.path} cannot be used")

    def _table(self, concern: str) -> Table:
        return self._db.table(f"{concern}@{self.identity}")

    def _put_only(self, concern: str, doc: Mapping[str, Any]) -> None:
        if self.read_only:
            raise OSError(errno.EROFS, "the state store is open read-only")
        table = self._table(concern)
        new = dict(doc)

        def replace(current: MutableMapping[str, Any]) -> None:
            current.clear()
            current.update(new)

        if table.contains(doc_id=_ONLY_DOC):
            _guarded(lambda: table.update(replace, doc_ids=[_ONLY_DOC]))
        else:
            _guarded(lambda: table.insert(Document(new, doc_id=_ONLY_DOC)))

    def _move_legacy(self) -> None:
        """Take the old state files in (see the module docstring); keep them if that fails."""
        present = [c for c in LEGACY_FILES if (self.folder / LEGACY_FILES[c]).exists()]
        if not present:
            return
        try:
            for concern in present:
                if concern not in self._legacy:
                    continue  # unreadable: nothing to keep, already logged
                value = self._legacy[concern]
                if concern == CONFIG:
                    self._put_only(CONFIG, value)
                elif concern == TRUST:
                    self._write_trust(value)
                elif concern == COMMANDS:
                    self._write_commands(value)
                else:
                    self._put_only(BOOT, {"count": self._boot_count()})
        except OSError as exc:
            log.error("state: cannot move %s into %s yet (%s); using them as they are",
                      ", ".join(LEGACY_FILES[c] for c in present), self.path, exc.strerror)
            return
        for concern in present:
            self._legacy_done(concern)
        log.info("state: moved %s into %s for %s",
                 ", ".join(LEGACY_FILES[c] for c in present), self.path, self.identity)

    def _legacy_done(self, concern: str) -> None:
        """The store now holds `concern` durably: its old file must never be read again."""
        self._legacy.pop(concern, None)
        path = self.folder / LEGACY_FILES[concern]
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("state: cannot remove %s (%s)", path, exc.strerror)
            return
        with contextlib.suppress(OSError):
            fsync_dir(self.folder)

    def _say_whose(self) -> None:
        mine = f"@{self.identity}"
        names = self._db.tables()
        if any(n.endswith(mine) for n in names):
            return
        others = sorted({n.split("@", 1)[1] for n in names if "@" in n})
        if others:
            log.warning("state: %s holds no state of %s, only of %s; none of that applies here",
                        self.path, self.identity, ", ".join(others))


def _guarded(write: Callable[[], Any]) -> None:
    """A store write; every way it can fail to keep the data becomes OSError."""
    try:
        write()
    except OSError:
        raise
    except (StorageError, ValueError) as exc:
        raise OSError(errno.EIO, str(exc)) from exc


def _whole_trust(docs: Sequence[Mapping[str, Any]]) -> str | None:
    """The text of the newest generation of trust-list parts that is complete."""
    gens: dict[int, dict[int, str]] = {}
    sizes: dict[int, int] = {}
    for doc in docs:
        gen, part, parts, text = doc.get("gen"), doc.get("part"), doc.get("parts"), doc.get("text")
        if isinstance(gen, int) and isinstance(part, int) and isinstance(parts, int) and (
            isinstance(text, str)
        ):
            gens.setdefault(gen, {})[part] = text
            sizes[gen] = parts
    for gen in sorted(gens, reverse=True):
        if set(gens[gen]) == set(range(sizes[gen])):
            return "".join(gens[gen][i] for i in range(sizes[gen]))
    return None


def _read_legacy(folder: Path) -> dict[str, Any]:
    """The content of the old state files present in `folder`, by concern; unreadable ones are
    logged and left out (they held nothing the sentry could use)."""
    found: dict[str, Any] = {}
    if not folder.is_dir():
        return found
    for concern, name in LEGACY_FILES.items():
        path = folder / name
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("state: cannot read %s (%s); ignoring it", path, exc.strerror)
            continue
        try:
            found[concern] = _parse_legacy(concern, raw)
        except (ValueError, TypeError) as exc:
            log.warning("state: ignoring %s, it cannot be read: %s", path, exc)
    return found


def _parse_legacy(concern: str, raw: bytes) -> Any:
    if concern == TRUST:
        return raw.decode("utf-8")  # checked as a trust list where it is used, as before
    if concern == BOOT:
        count = int(raw.decode("ascii").strip() or 0)
        if count < 0:
            raise ValueError("a negative count")
        return count
    doc = json.loads(raw.decode("utf-8"))
    if concern == CONFIG:
        if not isinstance(doc, dict):
            raise ValueError("not a map")
        return doc
    if not isinstance(doc, list) or not all(_is_entry(e) for e in doc):
        raise ValueError("not a list of answered requests")
    return [{"key": e["key"], "response": e.get("response")} for e in doc]


def _is_entry(entry: Any) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("key"), str)
