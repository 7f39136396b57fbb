"""`edge-sentry wipe [--yes]`: erase what the sentry stored on this device (decommissioning, handover).

What it erases: the outbox (`outbox.path`: every event not yet sent, with its sealed subject), the
state the sentry keeps under `device.state_dir` (the state store `store.log` with the applied config
overlays, pushed trust list, answered command ids and boot counter of every identity; the older
state files it replaces, where they have not been moved into it yet; any log in the sentry's
format), and a log file when the config names one. What it leaves: the config and the trust file
and keys it names (an installer's files, not records), and the systemd journal, which the sentry
does not own: the output says so.

Only files the sentry created, never `rm -rf`. A file counts as the sentry's when
- it is an outbox file (`lock`, `events.log`, `state.log`, their `.tmp`) in a folder whose logs are
  in the sentry's log format; or
- anywhere under the state directory (symlinks are never followed), it is in the sentry's log format
  (starts with storage.MAGIC, or is a `*.log`/`*.log.tmp` file cut short before its magic was whole);
  every log the sentry keeps uses that format, the state store and its compaction copy included; or
- its path relative to the state directory is in STATE_FILES (state kept in another format: the
  files the state store replaces, which an upgraded sentry moves into it at its first start), or is
  the temporary file a crash left beside one; or
- it is a rendered voice prompt (or its unfinished copy) in the voice cache, `voice/` (named as
  voice/render.py names them).
Anything else is left in place and listed; folders are removed only once empty; the state directory
itself stays (systemd owns it via StateDirectory=).
Refusals (exit 1, nothing erased): a state directory or outbox that is `/`, one of the user's home's
ancestors, or the home itself unless it is named `edge-sentry` (install.sh makes the service account's
home its state directory, /var/lib/edge-sentry); a state directory with entries of which none is the
sentry's (the config probably names the wrong folder); an outbox locked by a running daemon (the
outbox holds an exclusive flock on `<outbox>/lock` while open; wipe takes the same lock and keeps it
until done, so no daemon can start mid-wipe). Without `--yes`, wipe asks on the terminal; with no
terminal on stdin it refuses (exit 2).

Files are unlinked, not scrubbed: flash storage remaps blocks, so overwriting in place proves nothing.
After a wipe the outbox starts empty and its seq numbers start again from 1, as on a new device: the
"never reused" promise of seq holds between wipes, and the fleet tells the events apart by their ids
(UUIDv7), which never repeat. The boot counter starts again too.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import WipeRefused
from ..storage import MAGIC
from ..voice.render import CACHE_FOLDER as VOICE_CACHE
from ..voice.render import FILE_NAME as VOICE_FILE

# Outbox files by name, as outbox.py and storage.py create them: the lock (outbox._lock_folder),
# the event log, the TinyDB state log, and the compaction copies of both.
OUTBOX_FILES = frozenset({"lock", "events.log", "state.log", "events.log.tmp", "state.log.tmp"})
OUTBOX_LOCK = "lock"

# State files under device.state_dir that are not in the sentry's log format, by path relative to
# it. A module that writes such a file adds its name here in the same change, or wipe leaves the
# file behind (and lists it as not the sentry's). Today these are the files the state store
# (state.py, LEGACY_FILES) replaces: left by an older sentry until the store takes them in.
STATE_FILES: frozenset[str] = frozenset(
    {
        "config.json",  # the applied desired-config overlays
        "trust.json",  # the last trust list pushed and accepted
        "commands.json",  # answered correlation ids and their responses
        "boot_count",  # the start counter
        "boot_count.tmp",  # its copy before the rename, from older sentries
    }
)
# What files.write_atomic leaves beside a file when a crash beats its rename (files.temp_name).
_ATOMIC_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.\d+\.\d+\.tmp$")

SERVICE_DIR_NAME = "edge-sentry"
_LISTED_MAX = 20


@dataclass
class Plan:
    """What one wipe removes and leaves; built before anything is removed."""

    outbox_files: list[Path] = field(default_factory=list)
    state_files: list[Path] = field(default_factory=list)
    log_files: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)  # removed deepest first, if empty by then
    foreign: list[Path] = field(default_factory=list)

    @property
    def files(self) -> list[Path]:
        return self.outbox_files + self.state_files + self.log_files


# --- recognising the sentry's files: no side effects ---------------------------------------------


def is_sentry_log(path: Path) -> bool:
    """True for a regular file in the sentry's log format (or one cut short while being created)."""
    try:
        if path.is_symlink() or not path.is_file():
            return False
        with open(path, "rb") as fh:
            head = fh.read(len(MAGIC))
    except OSError:
        return False
    if head == MAGIC:
        return True
    # A crash between creating a log and writing its magic leaves a prefix of it (maybe nothing).
    return MAGIC.startswith(head) and path.name.endswith((".log", ".log.tmp"))


def is_state_file(state_dir: Path, entry: Path) -> bool:
    """A regular file named in STATE_FILES (or a crash leftover of one), or a rendered voice prompt
    in the voice cache, relative to `state_dir`."""
    if entry.is_symlink() or not entry.is_file():
        return False
    relative = entry.relative_to(state_dir)
    if relative.parent.as_posix() == VOICE_CACHE and VOICE_FILE.match(relative.name):
        return True
    leftover = _ATOMIC_LEFTOVER.match(relative.name)
    if leftover is not None:
        relative = relative.with_name(leftover["name"])
    return relative.as_posix() in STATE_FILES


def is_outbox(folder: Path) -> bool:
    """A folder holding an outbox: its event or state log exists in the sentry's log format."""
    return any(is_sentry_log(folder / name) for name in ("events.log", "state.log"))


def check_folder(path: Path, what: str) -> Path:
    """The resolved folder, unless it is one no wipe may work in (WipeRefused says which rule)."""
    resolved = path.expanduser().resolve()
    if resolved == Path(resolved.anchor):
        raise WipeRefused(f"{what} is {resolved}: refusing to wipe a filesystem root")
    home = Path.home().resolve()
    if resolved in home.parents or (resolved == home and resolved.name != SERVICE_DIR_NAME):
        raise WipeRefused(f"{what} is {resolved}, your home or above it: refusing; fix the config")
    return resolved


def _walk(top: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    for root, dirs, files in os.walk(top, followlinks=False):
        base = Path(root)
        # os.walk lists a symlink to a folder under dirs without entering it: it is a file to us.
        links = [d for d in dirs if (base / d).is_symlink()]
        dirs[:] = sorted(d for d in dirs if d not in links)
        yield base, dirs, sorted(files + links)


def plan_wipe(state_dir: Path, outbox: Path, log_file: Path | None) -> Plan:
    """Sort every entry under the state directory and the outbox into the sentry's or not."""
    plan = Plan()
    has_outbox = outbox.is_dir() and is_outbox(outbox)
    if has_outbox:
        for name in sorted(os.listdir(outbox)):
            entry = outbox / name
            owned = name in OUTBOX_FILES and not entry.is_symlink() and entry.is_file()
            (plan.outbox_files if owned else plan.foreign).append(entry)
        plan.folders.append(outbox)
    if state_dir.is_dir():
        for root, _dirs, files in _walk(state_dir):
            if has_outbox and (root == outbox or outbox in root.parents):
                continue  # sorted above, by the outbox's own rule
            for name in files:
                entry = root / name
                owned = is_sentry_log(entry) or is_state_file(state_dir, entry)
                (plan.state_files if owned else plan.foreign).append(entry)
            if root != state_dir:
                plan.folders.append(root)
        foreign = [p for p in plan.foreign if state_dir in p.parents]
        ours = plan.state_files + [p for p in plan.outbox_files if state_dir in p.parents]
        if foreign and not ours:
            raise WipeRefused(
                f"device.state_dir {state_dir} does not look like the sentry's: none of its "
                f"{len(foreign)} entries is a file the sentry writes; nothing erased"
            )
    if log_file is not None and log_file.is_file() and not log_file.is_symlink():
        plan.log_files.append(log_file)
    plan.folders.sort(key=lambda p: len(p.parts), reverse=True)
    return plan


# --- doing it ---------------------------------------------------------------------------------


def lock_outbox(outbox: Path) -> int | None:
    """Take the outbox's own lock (a daemon holding it makes this refuse); None if there is no outbox.

    In an outbox whose lock file is missing it is created, so that a daemon starting during the wipe
    finds it taken; in a folder that is no outbox nothing is created.
    """
    lock = outbox / OUTBOX_LOCK
    if not outbox.is_dir() or not (lock.exists() or is_outbox(outbox)):
        return None
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise WipeRefused(f"cannot open the outbox lock in {outbox}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WipeRefused(
            f"the outbox at {outbox} is in use: stop the sentry first (systemctl stop edge-sentry); "
            "nothing erased"
        ) from None
    return fd


def execute(plan: Plan) -> list[str]:
    """Remove the planned files, then the folders left empty; return a line per failure."""
    failures = []
    # The outbox lock file goes last: the flock that keeps a starting daemon out lives on that file,
    # and once it is unlinked a daemon would create a fresh one and run on what is left.
    locks = [path for path in plan.outbox_files if path.name == OUTBOX_LOCK]
    for path in [path for path in plan.files if path not in locks] + locks:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            failures.append(f"{path}: {exc.strerror}")
    for folder in plan.folders:
        with contextlib.suppress(OSError):  # not empty (foreign entries) or already gone
            folder.rmdir()
    return failures


def _confirm(plan: Plan, state_dir: Path, outbox: Path) -> bool:
    prompt = (
        f"This erases {len(plan.outbox_files)} outbox files in {outbox} (events not yet sent are "
        f"lost) and {len(plan.state_files) + len(plan.log_files)} state and log files of the sentry "
        f"under {state_dir}. Type 'wipe' to go on: "
    )
    print(prompt, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip() == "wipe"


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "wipe",
        help="erase the outbox, the sentry's state and its log file",
        description="Erase what the sentry stored on this device: the outbox (events not yet sent "
        "included), the files it keeps under device.state_dir, and its log file if one is "
        "configured. Only files the sentry created are removed; the journal is not touched. Refuses "
        "while the sentry runs. Asks for confirmation unless --yes.",
    )
    parser.add_argument("--yes", action="store_true", help="do not ask (needed when not on a terminal)")
    parser.set_defaults(func=handle)


def _report(plan: Plan, state_dir: Path, outbox: Path, log_file: Path | None) -> None:
    print(f"removed {len(plan.outbox_files)} outbox files from {outbox}")
    print(f"removed {len(plan.state_files)} state files from {state_dir}")
    if plan.foreign:
        shown = ", ".join(str(p) for p in plan.foreign[:_LISTED_MAX])
        more = f" and {len(plan.foreign) - _LISTED_MAX} more" if len(plan.foreign) > _LISTED_MAX else ""
        print(f"left {len(plan.foreign)} entries the sentry did not create: {shown}{more}")
    if log_file is not None:
        print(f"removed {len(plan.log_files)} log file ({log_file})")
    print(
        "logs: the sentry's own log lines went to standard output; under systemd they are in the "
        "journal, which wipe does not touch (the journal's retention applies; an administrator can "
        "clear it with journalctl --rotate --vacuum-time=1s)"
    )
    print("the outbox is empty: the next run starts its seq numbers again from 1")


def handle(args: argparse.Namespace, config: Config) -> int:
    if not args.yes and not sys.stdin.isatty():
        print(
            "edge-sentry wipe: refusing without --yes: stdin is not a terminal to confirm on",
            file=sys.stderr,
        )
        return 2
    log_name = getattr(config.log, "file", None)  # no log file key today: logs go to stdout
    lock_fd = None
    try:
        state_dir = check_folder(Path(config.device.state_dir), "device.state_dir")
        outbox = check_folder(Path(config.outbox.path), "outbox.path")
        log_file = Path(log_name).expanduser().absolute() if log_name else None
        lock_fd = lock_outbox(outbox)
        plan = plan_wipe(state_dir, outbox, log_file)
        if not args.yes and not _confirm(plan, state_dir, outbox):
            print("edge-sentry wipe: not confirmed; nothing erased", file=sys.stderr)
            return 1
        failures = execute(plan)
    except WipeRefused as exc:
        print(f"edge-sentry wipe: {exc}", file=sys.stderr)
        return 1
    finally:
        if lock_fd is not None:
            os.close(lock_fd)
    for line in failures:
        print(f"edge-sentry wipe: could not remove {line}", file=sys.stderr)
    _report(plan, state_dir, outbox, log_file)
    return 1 if failures else 0
