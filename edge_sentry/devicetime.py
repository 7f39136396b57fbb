"""Device time: how long this device has been up, carried across restarts and reboots.

Why not the wall clock. A Pi has no real-time clock: it boots on the time it last saved
(fake-hwclock) and steps to the true time when NTP first answers, perhaps weeks later, or steps
back when an operator or a bad server sets it. A retention period measured on the wall clock then
drops scans that waited minutes (they look weeks old once the clock steps forward) or keeps
personal data far too long (after a step back). Device time moves only with the kernel's
CLOCK_BOOTTIME, which counts suspend and ignores every change to the wall clock.

Across processes and boots. CLOCK_BOOTTIME starts at zero on every boot, so device time is a
timeline of its own: the owner persists a checkpoint (`alive()`: boot id, CLOCK_BOOTTIME, device
time, and the wall clock with whether NTP had synchronised it) now and then, and `resume()`
continues from it. Within the same boot (same /proc/sys/kernel/random/boot_id) the time between
the checkpoint and now is known exactly and counts. After a reboot, the new boot's uptime counts
at once (CLOCK_BOOTTIME is that uptime); the rest, the time from the last checkpoint to the power
cut and the time the device was off, counts only if the wall clock can measure it: when it was
synchronised at the checkpoint and is synchronised again now (the kernel's own flag, which NTP
clients set: `timedatectl` shows it as "System clock synchronized"). Until then, perhaps forever
on a gate that never reaches a time server, that time is left out and device time is a lower
bound on the time elapsed. The owner applies it with `settle()`, to the data stored before the
reboot only: what was stored since has not waited through it. Where the boot id cannot be read, a
restart adds nothing (it might be the same boot: adding the uptime would count it twice). Device
time never goes backwards and never runs faster than real time.
"""

from __future__ import annotations

import ctypes
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)
_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised
_TIMEX_BYTES = 512  # struct timex is 208 bytes; all zero, so `modes` (first) = 0: read only


def boottime() -> float:
    """Seconds since boot, suspend included (CLOCK_BOOTTIME; CLOCK_MONOTONIC where there is none)."""
    if _BOOTTIME is None:
        return time.monotonic()
    return time.clock_gettime(_BOOTTIME)


def read_boot_id() -> str:
    """This boot's random id; "" where the kernel offers none (every start then counts as a boot)."""
    try:
        return BOOT_ID_PATH.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


@functools.cache
def _adjtimex() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None


def kernel_clock_synchronised() -> bool | None:
    """Whether the kernel says an NTP client keeps its clock synchronised; None if it cannot say.

    adjtimex(2) with no modes only reads; it returns TIME_ERROR while STA_UNSYNC is set, which is
    what timedatectl's NTPSynchronized reports too.
    """
    adjtimex = _adjtimex()
    if adjtimex is None:
        return None
    state = adjtimex(ctypes.create_string_buffer(_TIMEX_BYTES))
    return None if state < 0 else bool(state != _TIME_ERROR)


def clock_synced() -> bool:
    """Whether the wall clock may measure time across a reboot: only if the kernel says so."""
    return kernel_clock_synchronised() is True


@dataclass(frozen=True)
class Gap:
    """Time not yet counted: real time since a synchronised `wall` reading at device time `d`,
    to be charged to what was stored before `seq` (the first seq of the boot that followed)."""

    wall: float
    d: int
    seq: int


class DeviceClock:
    """Milliseconds of device time; `resume()` before the first reading.

    Every clock is injectable: tests move boots, suspends, wall-clock steps and NTP by hand.
    """

    def __init__(self, monotonic: Callable[[], float] = boottime,
                 boot_id: Callable[[], str] = read_boot_id,
                 wall: Callable[[], float] = time.time,
                 synced: Callable[[], bool] = clock_synced) -> None:
        self._monotonic = monotonic
        self._boot_id = boot_id
        self._wall = wall
        self._synced = synced
        self._boot = ""
        self._mono0 = 0.0
        self._base_ms = 0
        self._gap: Gap | None = None

    def resume(self, alive: Any, floor_ms: int = 0, first_seq: int = 1) -> None:
        """Continue from the checkpoint `alive` (or from `floor_ms`: device time already stamped
        on stored data must never be ahead of the clock); anything else than a checkpoint this
        class wrote counts as none. `first_seq` is the first seq this start may store: after a
        reboot, the time the device was off belongs to what came before it."""
        self._boot = self._boot_id()
        self._mono0 = self._monotonic()
        base = floor_ms
        self._gap = None
        last = _checkpoint(alive)
        if last is not None:
            if not self._boot or last.boot == self._boot:
                self._gap = last.gap  # the same boot (or perhaps): still waiting for NTP
            elif last.synced:
                self._gap = Gap(last.wall, last.d, first_seq)
            if not self._boot:
                up_ms = 0
            elif last.boot == self._boot:
                up_ms = round(max(0.0, self._mono0 - last.mono) * 1000)
            else:
                up_ms = round(max(0.0, self._mono0) * 1000)  # this boot's uptime before the start
            base = max(base, last.d + up_ms)
        self._base_ms = base

    def now_ms(self) -> int:
        return self._base_ms + int(max(0.0, self._monotonic() - self._mono0) * 1000)

    def settle(self, persist: Callable[[dict[str, Any]], bool]) -> tuple[int, int] | None:
        """Once the wall clock is synchronised again: (seq, ms) when what was stored before seq
        waited ms longer than device time counted (the device was off); at most once a reboot.

        The settled checkpoint goes to `persist` first, and the result only comes back if it
        was kept: a crash before the owner applies it then loses that time, never counts it twice.
        """
        gap = self._gap
        if gap is None or not self._synced():
            return None
        self._gap = None
        if not persist(self.alive()):
            self._gap = gap
            return None
        uncounted = round((self._wall() - gap.wall) * 1000) - (self.now_ms() - gap.d)
        return (gap.seq, uncounted) if uncounted > 0 else None

    def alive(self) -> dict[str, Any]:
        """The checkpoint to persist: what `resume()` needs to continue after a restart or reboot."""
        mono = self._monotonic()
        device_ms = self._base_ms + int(max(0.0, mono - self._mono0) * 1000)
        gap = self._gap
        # "gap" always present, None when settled: an upsert merges into the stored document.
        return {"boot": self._boot, "mono": mono, "d": device_ms, "wall": self._wall(),
                "synced": self._synced(),
                "gap": None if gap is None else {"wall": gap.wall, "d": gap.d, "seq": gap.seq}}


@dataclass(frozen=True)
class _Checkpoint:
    boot: str
    mono: float
    d: int
    wall: float
    synced: bool
    gap: Gap | None


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _checkpoint(alive: Any) -> _Checkpoint | None:
    if not isinstance(alive, Mapping):
        return None
    boot, mono, device_ms, wall = alive.get("boot"), alive.get("mono"), alive.get("d"), alive.get("wall")
    if not isinstance(boot, str) or type(device_ms) is not int or not _number(mono):
        return None
    synced = alive.get("synced") is True and _number(wall)
    wall_s = float(wall) if synced and _number(wall) else 0.0
    gap = alive.get("gap")
    pending = None
    if isinstance(gap, Mapping) and _number(gap.get("wall")) and type(gap.get("d")) is int \
            and type(gap.get("seq")) is int:
        pending = Gap(float(gap["wall"]), gap["d"], gap["seq"])
    return _Checkpoint(boot, float(mono), device_ms, wall_s, synced, pending)
