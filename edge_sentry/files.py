"""Durable whole-file writes: replace a file atomically, or create a new one that never overwrites.

Every file the sentry and its tools write outside the append-only logs goes through here, so each
has the same crash story: after a power cut the path names either the complete old content or the
complete new one (or, for a new file, nothing), never a torn mix. Both writers fsync the file and
then its folder, because a rename or a new entry lives in the folder and is lost with it.

Modes are set when the file is created, never chmod-ed afterwards: a private key or a state file
must not be readable by others for even a moment. Never logs the data it writes (it may be a key).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from pathlib import Path

from .errors import ExposedSecretError

#: Owner-only: the default for state, which may name keys and correlation ids.
PRIVATE = 0o600
#: World-readable: for outputs meant to be handed on (public keys, trust lists, images).
PUBLIC = 0o644
#: Permission bits of group and others: a secret file with any of them set is refused.
SHARED_BITS = 0o077


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable (the entry lives in the folder)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def temp_name(path: Path) -> Path:
    """The temporary file `write_atomic` fills beside `path` (per process and thread, so two
    writers never share one). `edge-sentry wipe` recognises crash leftovers by this pattern."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_atomic(path: Path, data: bytes, mode: int = PRIVATE, *, create_folder: bool = True) -> None:
    """Replace `path` with `data` so that a crash leaves either the old file or the new one whole.

    A temporary file beside it (same folder, so the rename cannot cross filesystems) is written,
    fsynced and renamed over; then the folder is fsynced. Missing folders are created unless
    `create_folder` is False (an output path with a typo should fail, not grow folders). The new
    file has `mode` (less the umask) from its first byte.
    """
    if create_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(tmp, flags, mode)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `data` and `mode`, durably; FileExistsError if anything is there already.

    Never replaces a file (a key overwritten by mistake is a key lost). If writing fails after the
    file was created, the partial file is removed, so a retry is not refused by its own leftover.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def read_private(path: str | os.PathLike[str]) -> bytes:
    """The content of a secret file (a private key, a password), refused with ExposedSecretError
    when group or others have any permission on it (as ssh refuses such a key). The mode is read
    from the opened file, so what is checked is what is read. Other failures are OSErrors."""
    # O_NONBLOCK: a FIFO put where a key should be must not hang the caller.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
        mode = stat.S_IMODE(st.st_mode)
        if mode & SHARED_BITS:
            raise ExposedSecretError(
                f"{os.fspath(path)}: group or others may access it (mode {mode:04o}); "
                f"make it owner-only (chmod 600)"
            )
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as fh:
        return fh.read()
