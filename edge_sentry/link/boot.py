"""Which start of the device this is: a random id per process and a counter persisted per start.

The `state` topic carries both, so the fleet tells a restart (new boot id, count + 1) from a
reconnect (same boot id). Must never stop the gate: the link logs a count it cannot persist and
carries on without it.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from .shadow import write_atomic

log = logging.getLogger(__name__)

#: One per process: lets the fleet tell a restart from a reconnect (boot_count says how many).
BOOT_ID = str(uuid.uuid4())

BOOT_COUNT_FILE = "boot_count"


def next_boot_count(state_dir: str | os.PathLike[str]) -> int:
    """Increment and return the persisted start counter in `state_dir` (1 on a fresh device).

    Written like every state file (`shadow.write_atomic`), so a power cut leaves the old or the
    new count, never a torn one. An unreadable count starts again from 0 (logged)."""
    folder = Path(state_dir)
    path = folder / BOOT_COUNT_FILE
    try:
        previous = int(path.read_text().strip() or 0)
    except FileNotFoundError:
        previous = 0
    except (OSError, ValueError) as exc:
        log.warning("boot count at %s unreadable (%s); counting from 0", path, type(exc).__name__)
        previous = 0
    count = previous + 1
    write_atomic(path, f"{count}\n".encode())
    return count
