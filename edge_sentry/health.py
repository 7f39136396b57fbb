"""Health: what the `health` topic reports every `health.interval_s`, sampled from the machine and the sentry.

`sample` gathers one report from what is there to read: process and system uptime, load, CPU
temperature, the Pi firmware's throttling bits, memory, disk space of the state folder, camera fps,
decode and frame-to-relay latency percentiles, the outbox backlog, the link state, config and trust
versions. A source that this machine does not have (no thermal zone, no `vcgencmd` off a Pi) leaves
its field out: a health report never guesses, because a made-up "0 °C, not throttled" would hide the
problem it exists to show. File paths and the command runner are parameters, so tests feed fakes.

`HealthReporter` is the thread that samples and hands the report to a publish callable. It never
touches the hot path: it only reads counters and copies the latency deques.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: `vcgencmd get_throttled` bits (Raspberry Pi firmware documentation): now, and since boot (+16).
THROTTLE_FLAGS = {
    0: "under_voltage",
    1: "freq_capped",
    2: "throttled",
    3: "soft_temp_limit",
}
_SINCE_BOOT_SHIFT = 16
_VCGENCMD_TIMEOUT_S = 2.0

Runner = Callable[[list[str]], str | None]


@dataclass(frozen=True)
class Paths:
    """Where the machine's figures are read; a test points them at files it wrote."""

    thermal: Path = Path("/sys/class/thermal/thermal_zone0/temp")
    meminfo: Path = Path("/proc/meminfo")
    uptime: Path = Path("/proc/uptime")
    status: Path = Path("/proc/self/status")
    vcgencmd: str | None = "vcgencmd"


def run_command(argv: list[str]) -> str | None:
    """Run a short command and return its standard output, or None when it is missing or fails."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_VCGENCMD_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def parse_throttled(text: str) -> dict[str, Any] | None:
    """`throttled=0x50005` -> {"raw", "now": {flag: bool}, "since_boot": {flag: bool}}; None if the
    text is not that."""
    name, _, value = text.strip().partition("=")
    if name != "throttled":
        return None
    try:
        bits = int(value, 16)
    except ValueError:
        return None
    return {
        "raw": f"0x{bits:x}",
        "now": {flag: bool(bits >> bit & 1) for bit, flag in THROTTLE_FLAGS.items()},
        "since_boot": {
            flag: bool(bits >> (bit + _SINCE_BOOT_SHIFT) & 1) for bit, flag in THROTTLE_FLAGS.items()
        },
    }


def percentiles(values: Iterable[float], points: Iterable[int] = (50, 99)) -> dict[str, float] | None:
    """Nearest-rank percentiles (`{"p50": ..., "p99": ...}`), None with no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    out = {}
    for p in points:
        rank = max(1, -(-p * len(ordered) // 100))  # ceil(p/100 * n), at least the first
        out[f"p{p}"] = round(ordered[rank - 1], 3)
    return out


def _copy(values: Iterable[float]) -> list[float]:
    # The hot loop appends while we read; a deque mutated mid-copy raises, so try again.
    for _ in range(5):
        try:
            return list(values)
        except RuntimeError:
            continue
    return []


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _meminfo(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            out[name.strip()] = int(fields[0])
    return out


def machine(paths: Paths, state_dir: str | os.PathLike[str] | None, run: Runner) -> dict[str, Any]:
    """The machine's figures that this host has (each one left out where its source is missing)."""
    out: dict[str, Any] = {}
    uptime = _read_text(paths.uptime)
    if uptime:
        with contextlib.suppress(ValueError, IndexError):
            out["system_uptime_s"] = round(float(uptime.split()[0]), 1)
    with contextlib.suppress(OSError):
        out["load"] = [round(x, 2) for x in os.getloadavg()]
    temp = _read_text(paths.thermal)
    if temp:
        with contextlib.suppress(ValueError):
            out["cpu_temp_c"] = round(int(temp.strip()) / 1000, 1)
    if paths.vcgencmd:
        text = run([paths.vcgencmd, "get_throttled"])
        throttled = parse_throttled(text) if text else None
        if throttled is not None:
            out["throttled"] = throttled
    meminfo = _read_text(paths.meminfo)
    if meminfo:
        mem = _meminfo(meminfo)
        if "MemTotal" in mem and "MemAvailable" in mem and mem["MemTotal"] > 0:
            out["memory"] = {
                "total_kb": mem["MemTotal"],
                "available_kb": mem["MemAvailable"],
                "used_pct": round(100 * (1 - mem["MemAvailable"] / mem["MemTotal"]), 1),
            }
    status = _read_text(paths.status)
    if status:
        rss = _meminfo(status).get("VmRSS")
        if rss is not None:
            out["process_rss_kb"] = rss
    if state_dir is not None:
        try:
            st = os.statvfs(state_dir)
        except OSError:
            pass
        else:
            total = st.f_blocks * st.f_frsize
            free = st.f_bavail * st.f_frsize
            out["disk"] = {
                "total_bytes": total,
                "free_bytes": free,
                "free_pct": round(100 * free / total, 1) if total else None,
            }
    return out


def sample(
    *,
    uptime_s: float | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    frames: int | None = None,
    previous: tuple[int, float] | None = None,
    now_mono: float | None = None,
    decode_ms: Iterable[float] | None = None,
    latency_ms: Iterable[float] | None = None,
    loop_priority: int | None = None,
    outbox: Mapping[str, Any] | None = None,
    link: str | None = None,
    gate: str | None = None,
    config_version: int | None = None,
    trust_version: int | None = None,
    paths: Paths = Paths(),
    run: Runner = run_command,
    wall_clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """One health report. Everything is optional: what is not given is not reported.

    fps comes from `frames` (the loop's frame counter) against `previous` = (frames, monotonic
    time) of the last sample, so it is the rate over the interval, not since boot. The latency
    percentiles are over the loop's recent samples (its deques hold the last 2048).
    """
    report: dict[str, Any] = {"t": int(wall_clock() * 1000)}
    if uptime_s is not None:
        report["uptime_s"] = round(uptime_s, 1)
    report.update(machine(paths, state_dir, run))
    if frames is not None and previous is not None and now_mono is not None:
        elapsed = now_mono - previous[1]
        if elapsed > 0 and frames >= previous[0]:
            report["fps"] = round((frames - previous[0]) / elapsed, 2)
    for name, values in (("decode_ms", decode_ms), ("latency_ms", latency_ms)):
        if values is not None:
            found = percentiles(_copy(values))
            if found is not None:
                report[name] = found
    if loop_priority is not None:
        report["loop_priority"] = loop_priority
    if outbox is not None:
        report["outbox"] = {
            "depth": outbox.get("depth"),
            "oldest_age_s": round(float(outbox.get("oldest_age_s") or 0.0), 1),
            "dropped": {
                "full": outbox.get("dropped_full", 0),
                "size": outbox.get("dropped_size", 0),
                "retention": outbox.get("dropped_retention", 0),
            },
            "disk_error": outbox.get("disk_error"),
        }
    if link is not None:
        report["link"] = link
    if gate is not None:
        report["gate"] = gate
    if config_version is not None:
        report["config_version"] = config_version
    if trust_version is not None:
        report["trust_version"] = trust_version
    return report


class HealthReporter:
    """Samples every `interval_s()` seconds on its own thread and calls `publish(report)`.

    `collect()` returns the keyword arguments of `sample` that change (the sentry's counters, the
    outbox stats, the link state, the versions); the reporter adds the uptime and the fps bookkeeping.
    `interval_s` is a callable so a pushed `health.interval_s` applies from the next wait. The first
    report goes out at start, without fps (there is no interval yet).
    """

    def __init__(
        self,
        publish: Callable[[dict[str, Any]], None],
        collect: Callable[[], Mapping[str, Any]],
        interval_s: Callable[[], float],
        *,
        state_dir: str | os.PathLike[str] | None = None,
        paths: Paths = Paths(),
        run: Runner = run_command,
        clock: Callable[[], float] = time.monotonic,
        name: str = "edge-sentry-health",
    ) -> None:
        self._publish = publish
        self._collect = collect
        self._interval = interval_s
        self._state_dir = state_dir
        self._paths = paths
        self._run = run
        self._clock = clock
        self._started = clock()
        self._previous: tuple[int, float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def sample_now(self) -> dict[str, Any]:
        """Take one sample (and advance the fps window); also used by the tests."""
        inputs = dict(self._collect())
        now = self._clock()
        report = sample(
            uptime_s=now - self._started,
            state_dir=self._state_dir,
            previous=self._previous,
            now_mono=now,
            paths=self._paths,
            run=self._run,
            **inputs,
        )
        frames = inputs.get("frames")
        if frames is not None:
            self._previous = (frames, now)
        return report

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("health thread did not stop within %.1f s", timeout)

    def _loop(self) -> None:
        while True:
            try:
                self._publish(self.sample_now())
            except Exception:
                log.exception("health sample failed")
            try:
                wait = max(1.0, float(self._interval()))
            except Exception:
                wait = 60.0
            if self._stop.wait(wait):
                return
