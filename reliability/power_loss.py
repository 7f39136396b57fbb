"""Power loss: the real daemon killed with SIGKILL at random moments under load, then on a full disk.

A pulled plug is a kill -9 as far as the files can tell: the process gets no say. What must hold
after each one: the next start opens the outbox, every event the daemon logged (a logged line means
durable) is still there under the same seq, and no seq is ever issued twice, across every run. No
broker takes part, so nothing is acknowledged and the outbox must hold every logged event.

The second phase puts the state folder and the outbox on a small real tmpfs that a filler keeps
filling to ENOSPC and freeing again: the gate must keep deciding while the disk is full (its
decisions reach the log once there is room), never crash-loop, and lose nothing it called durable.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from reliability import _daemon as d
from reliability.report import Part, Report

_SCENE_CUES = 24
_CUE_EVERY_S = 0.5
_DECIDE_TIMEOUT_S = 60.0
_TMPFS_SIZE = "2m"
_FREE_BYTES = 192 * 1024


@dataclass
class Tally:
    """What one phase's runs showed."""

    ledger: d.Ledger = field(default_factory=d.Ledger)
    runs: int = 0
    kills: int = 0
    startup_kills: int = 0
    came_up: int = 0  # runs that were let come up (not killed during start-up)
    clean: int = 0  # of those: outbox opened, start logged, no exit of their own
    open_failures: int = 0
    exited_alone: int = 0
    undecided: int = 0
    disk_low: int = 0
    started: int = 0  # runs let come up whose start event was logged
    first_decision_s: list[float] = field(default_factory=list)
    startup_s: list[float] = field(default_factory=list)  # spawn to its start event logged
    notes: list[str] = field(default_factory=list)


def _site(root: Path, state: Path) -> tuple[Path, Path]:
    """Config, trust list and a busy scene (a new valid code every half second); (config, outbox)."""
    (issuer,) = d.issuers(["power"])
    d.write_trust(root / "trust.json", [issuer])
    cues = [
        (issuer.code(lifetime_s=24 * 3600), i * _CUE_EVERY_S, i * _CUE_EVERY_S + 0.3)
        for i in range(_SCENE_CUES)
    ]
    d.write_scene(root / "scene.json", cues, _SCENE_CUES * _CUE_EVERY_S)
    config, outbox = root / "sentry.toml", state / "outbox"
    d.write_config(
        config, state_dir=state / "state", outbox=outbox, trust=root / "trust.json",
        scene=root / "scene.json", extra="[gate]\npassback_s = 0\n",
    )  # fmt: skip
    return config, outbox


def _spawn(config: Path, root: Path) -> d.Child:
    return d.Child.spawn(
        [d.EXE, "--config", str(config), "run", "--log-format", "json"],
        env=d.child_env(root), stderr_path=root / "stderr.txt",
    )  # fmt: skip


def _judge(child: d.Child, status: int, tally: Tally, *, let_up: bool, full: bool = False) -> None:
    """Count one run once it is dead: did it open the outbox, log its start, die only by our hand.

    On a `full` disk the start event may wait in memory for room until the kill: there a clean
    start is an open outbox and no exit of its own."""
    lines = child.snapshot()
    tally.ledger.add(lines)
    tally.disk_low += sum(1 for line in lines if line.event.get("event") == "disk-low")
    start = next((line for line in lines if line.event.get("event") == "start"), None)
    if start is not None:
        tally.startup_s.append(start.at - child.started)
    tally.runs += 1
    opened = child.stderr_has("outbox open:")
    if status != -9:
        tally.exited_alone += 1
        tail = child.stderr_path.read_text(errors="replace").strip().splitlines()[-3:]
        tally.notes.append(f"run {tally.runs} exited by itself ({status}): {' | '.join(tail)}")
    else:
        tally.kills += 1
    if child.stderr_has("cannot open the outbox") or (let_up and not opened):
        tally.open_failures += 1
    if let_up:
        tally.came_up += 1
        if start is not None:
            tally.started += 1
        if opened and (start is not None or full) and status == -9:
            tally.clean += 1


def _kill_cycle(config: Path, root: Path, rng: random.Random, tally: Tally, linger_s: float) -> None:
    """One run: sometimes killed during start-up, else once it decides and a random while later."""
    child = _spawn(config, root)
    try:
        estimate = d.percentile(tally.startup_s, 50)
        if tally.startup_s and rng.random() < 0.25:
            time.sleep(rng.uniform(0.05, estimate * 1.2))
            tally.startup_kills += 1
            _judge(child, child.kill(), tally, let_up=False)
            return
        first = child.wait_for(lambda line: line.event.get("event") == "scan", _DECIDE_TIMEOUT_S)
        if first is None:
            tally.undecided += 1
        else:
            tally.first_decision_s.append(first.at - child.started)
            time.sleep(rng.uniform(0.0, linger_s))
        _judge(child, child.kill(), tally, let_up=True)
    finally:
        child.kill()


def _kills(report: Report, work: Path, kills: int, linger_s: float, seed: int) -> None:
    root = work / "kills"
    root.mkdir()
    config, outbox = _site(root, root)
    rng = random.Random(seed)
    tally = Tally()
    for i in range(kills):
        _kill_cycle(config, root, rng, tally, linger_s)
        if (i + 1) % 20 == 0 or i + 1 == kills:
            report.say(f"{i + 1}/{kills} kills, {tally.ledger.events} events logged")
    stored, stored_repeats = d.stored_events(outbox)
    _figures(report, tally, stored, stored_repeats, "")
    report.figure("time to first decision after restart p50", d.percentile(tally.first_decision_s, 50), "s")
    report.figure("time to first decision after restart p99", d.percentile(tally.first_decision_s, 99), "s")
    report.check("runs let come up that never decided", tally.undecided == 0, tally.undecided)


def _figures(
    report: Report, tally: Tally, stored: dict[str, int], stored_repeats: int, tag: str
) -> None:
    ledger = tally.ledger
    lost = ledger.lost(stored)
    report.figure(f"{tag}kills", tally.kills)
    report.figure(f"{tag}restarts", tally.runs - 1)
    report.figure(f"{tag}kills during start-up", tally.startup_kills)
    report.figure(f"{tag}events logged", ledger.events)
    report.figure(f"{tag}events in the outbox", len(stored))
    for note in tally.notes[:5]:
        report.say(note)
    report.check(f"{tag}events lost", lost == 0 and bool(ledger.durable), lost)
    report.check(f"{tag}seq repeats", ledger.seq_repeats == 0 and stored_repeats == 0,
                 ledger.seq_repeats + stored_repeats)
    report.check(f"{tag}outbox open failures", tally.open_failures == 0, tally.open_failures)
    report.check(f"{tag}runs that exited by themselves", tally.exited_alone == 0, tally.exited_alone)
    clean = tally.clean == tally.came_up and tally.came_up > 0
    report.figure(f"{tag}starts whose start event was logged", f"{tally.started} of {tally.came_up}")
    what = "outbox open, no exit" if tag else "outbox open, start logged, no exit"
    report.check(f"{tag}clean starts ({what})", clean,
                 f"{tally.clean} of {tally.came_up}")


class Filler:
    """Fills the tmpfs to ENOSPC, holds it full a while, frees some room, and again; it keeps the
    wall-clock spans during which the disk was full (scan events carry wall-clock times)."""

    def __init__(self, path: Path, rng: random.Random) -> None:
        self.path = path
        self.rng = rng
        self.full_spans: list[tuple[float, float]] = []
        self.fills = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reliability-filler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while not self._stop.is_set():
                self._fill(fd)
                since = time.time()
                self._stop.wait(self.rng.uniform(1.5, 3.0))
                self.full_spans.append((since, time.time()))
                size = os.fstat(fd).st_size
                os.ftruncate(fd, max(0, size - _FREE_BYTES))
                self._stop.wait(self.rng.uniform(0.3, 1.2))
        finally:
            os.close(fd)

    def _fill(self, fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_END)
        for chunk in (65536, 4096, 512):
            try:
                while os.write(fd, b"\0" * chunk):
                    pass
            except OSError:
                continue  # full at this size: squeeze in smaller ones
        self.fills += 1


def _mount(point: Path) -> str | None:
    """Mount a small tmpfs at `point`; why not, or None."""
    if shutil.which("mount") is None:
        return "no mount command on this machine"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={_TMPFS_SIZE},mode=0700", "tmpfs", str(point)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        return (done.stderr or done.stdout).strip() or f"mount exited {done.returncode}"
    return None


def _full_disk(report: Report, work: Path, kills: int, seed: int) -> None:
    root = work / "disk"
    root.mkdir()
    point = root / "tiny"
    point.mkdir()
    problem = _mount(point)
    if problem is not None:
        report.check("full disk: a real tmpfs could be mounted (run as root)", False,
                     f"mount refused: {problem}")
        return
    filler: Filler | None = None
    try:
        config, outbox = _site(root, point)
        rng = random.Random(seed + 1)
        tally = Tally()
        filler = Filler(point / "filler", rng)
        decided: list[int] = []
        for i in range(kills):
            child = _spawn(config, root)
            try:
                if not child.wait_stderr("outbox open:", _DECIDE_TIMEOUT_S):
                    tally.notes.append(f"run {i + 1}: no `outbox open` within {_DECIDE_TIMEOUT_S:g} s")
                if i == 0:
                    filler.start()  # the first run made the folders; from now on the disk fills up
                time.sleep(rng.uniform(1.5, 5.0))
                _judge(child, child.kill(), tally, let_up=True, full=True)
            finally:
                child.kill()
            decided.extend(
                int(line.event["t"]) for line in child.snapshot()
                if line.event.get("event") == "scan" and isinstance(line.event.get("t"), int)
            )  # fmt: skip
            report.say(f"full disk: {i + 1}/{kills} kills, {filler.fills} fills")
        filler.stop()  # still full: the outbox must open as it is
        stored, stored_repeats = d.stored_events(outbox)
        spans = filler.full_spans
        on_full = sum(1 for t in decided if any(a * 1000 <= t < b * 1000 for a, b in spans))
        _figures(report, tally, stored, stored_repeats, "full disk: ")
        report.figure("full disk: times the disk was filled", filler.fills)
        report.figure("full disk: disk-low alarms logged", tally.disk_low)
        report.check("full disk: decisions made while the disk was full", on_full > 0 and filler.fills > 0,
                     on_full)
    finally:
        if filler is not None:
            filler.stop()
        subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


def run(report: Report, long: bool) -> None:
    kills = 200 if long else 10
    disk_kills = 40 if long else 4
    work = Path(tempfile.mkdtemp(prefix="reliability-power-"))
    try:
        report.say(f"{kills} kills of `edge-sentry run` under load")
        _kills(report, work, kills, 2.5 if long else 1.5, seed=30)
        report.say(f"{disk_kills} kills with the outbox on a filling tmpfs")
        _full_disk(report, work, disk_kills, seed=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)


PART = Part(
    "power-loss", 30,
    "kill -9 at random moments under load, then on a disk that fills up: nothing logged is lost",
    run,
)  # fmt: skip
