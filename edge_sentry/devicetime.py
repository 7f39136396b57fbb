"""Device time: how long this device has been up, carried across restarts and reboots.

Why not the wall clock. A Pi has no real-time clock: it boots on the time it last saved
(fake-hwclock) and steps to the true time when NTP first answers, perhaps weeks later, or steps
back when an operator or a bad server sets it. A retention period measured on the wall clock then
drops scans that waited minutes (they look weeks old once the clock steps forward) or keeps
personal data far too long (after a step back). Device time moves only with the kernel's
CLOCK_BOOTTIME, which counts suspend and ignores every change to the wall clock.

Across processes and boots. CLOCK_BOOTTIME starts at zero on every boot, so device time is a
timeline of its own: the owner persists a checkpoint (`alive()`: boot id, CLOCK_BOOTTIME, device
time) now and then, and `resume()` continues from it. Within the same boot (same
/proc/sys/kernel/random/boot_id) the time between the checkpoint and now is known exactly and
counts. After a reboot, the new boot's uptime counts too (CLOCK_BOOTTIME is that uptime), but the
time from the last checkpoint to the shutdown and the time the device was off cannot be measured
without trusting the wall clock, so they do not: device time is then a lower bound on the real
time elapsed, short by the power-off time and at most one checkpoint interval per reboot. Where
the boot id cannot be read, a restart adds nothing (it might be the same boot: adding the uptime
would count it twice). Device time never goes backwards, and never runs faster than real time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
_BOOTTIME = getattr(time, "CLOCK_BOOTTIME", None)


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


class DeviceClock:
    """Milliseconds of device time; `resume()` before the first reading.

    Both clocks are injectable: tests move boots, suspends and wall-clock steps by hand.
    """

    def __init__(self, monotonic: Callable[[], float] = boottime,
                 boot_id: Callable[[], str] = read_boot_id) -> None:
        self._monotonic = monotonic
        self._boot_id = boot_id
        self._boot = ""
        self._mono0 = 0.0
        self._base_ms = 0

    def resume(self, alive: Any, floor_ms: int = 0) -> None:
        """Continue from the checkpoint `alive` (or from `floor_ms`: device time already stamped
        on stored data must never be ahead of the clock); anything else than a checkpoint this
        class wrote counts as none."""
        self._boot = self._boot_id()
        self._mono0 = self._monotonic()
        base = floor_ms
        last = _checkpoint(alive)
        if last is not None:
            boot, mono, device_ms = last
            if not self._boot:
                up_ms = 0
            elif boot == self._boot:
                up_ms = round(max(0.0, self._mono0 - mono) * 1000)
            else:
                up_ms = round(max(0.0, self._mono0) * 1000)  # this boot's uptime before the start
            base = max(base, device_ms + up_ms)
        self._base_ms = base

    def now_ms(self) -> int:
        return self._base_ms + int(max(0.0, self._monotonic() - self._mono0) * 1000)

    def alive(self) -> dict[str, Any]:
        """The checkpoint to persist: what `resume()` needs to continue after a restart or reboot."""
        mono = self._monotonic()
        device_ms = self._base_ms + int(max(0.0, mono - self._mono0) * 1000)
        return {"boot": self._boot, "mono": mono, "d": device_ms}


def _checkpoint(alive: Any) -> tuple[str, float, int] | None:
    if not isinstance(alive, Mapping):
        return None
    boot, mono, device_ms = alive.get("boot"), alive.get("mono"), alive.get("d")
    if not isinstance(boot, str) or type(device_ms) is not int:
        return None
    if not isinstance(mono, int | float) or isinstance(mono, bool):
        return None
    return boot, float(mono), device_ms
