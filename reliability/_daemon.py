"""A real daemon in a child process, its event log read line by line as it comes.

The power-loss and clock parts judge the sentry by what it says: a line of the JSON event log is
written only once its event is durable (alarms excepted, see `EARLY`), so what was logged before a
kill -9 is what the outbox promised to keep. Each line is stamped on arrival with this process's
monotonic clock, the one clock no part of the suite moves.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_sentry.codes import es1, keys
from edge_sentry.codes.trust import TrustList
from edge_sentry.outbox import Outbox

EXE = str(Path(sys.executable).with_name("edge-sentry"))

# Logged at once, before the outbox has them on disk: the outbox may be what cannot write.
EARLY = frozenset({"disk-low", "outbox-full"})


@dataclass(frozen=True)
class Line:
    at: float  # time.monotonic() in this process when the line arrived
    event: dict[str, Any]


@dataclass
class Child:
    """One child process: stdout parsed as the event log, stderr kept in a file for its verdicts."""

    proc: subprocess.Popen[str]
    stderr_path: Path
    started: float
    lines: list[Line] = field(default_factory=list)
    cut: int = 0  # lines that were not JSON: a line cut by a kill, or a stray print
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _reader: threading.Thread | None = None

    @classmethod
    def spawn(cls, argv: Sequence[str], *, env: Mapping[str, str], stderr_path: Path) -> Child:
        with open(stderr_path, "w") as err:
            proc = subprocess.Popen(
                list(argv), stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True,
                env=dict(env),
            )  # fmt: skip
        child = cls(proc, stderr_path, time.monotonic())
        child._reader = threading.Thread(target=child._read, name="reliability-reader", daemon=True)
        child._reader.start()
        return child

    def _read(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        for raw in stream:
            now = time.monotonic()
            event: Any = None
            if raw.endswith("\n"):
                try:
                    event = json.loads(raw)
                except ValueError:
                    event = None
            with self._cond:
                if isinstance(event, dict):
                    self.lines.append(Line(now, event))
                else:
                    self.cut += 1
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pred: Callable[[Line], bool], timeout: float) -> Line | None:
        """The first line that satisfies `pred`, waiting up to `timeout` s (None: none, or it exited)."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    if pred(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reading()):
                    return None
                self._cond.wait(min(left, 0.1))

    def _reading(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def stderr_has(self, text: str) -> bool:
        try:
            return text in self.stderr_path.read_text(errors="replace")
        except OSError:
            return False

    def wait_stderr(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stderr_has(text):
                return True
            if self.proc.poll() is not None:
                return self.stderr_has(text)
            time.sleep(0.02)
        return False

    def kill(self) -> int:
        """SIGKILL (if still running) and reap; the exit status (-9 when the kill did it)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.finish()

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, the clean stop; SIGKILL if it does not stop in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
        return self.finish()

    def finish(self) -> int:
        status = self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return status

    def snapshot(self) -> list[Line]:
        with self._cond:
            return list(self.lines)


@dataclass
class Ledger:
    """Every event any run logged, to hold against the outbox at the end."""

    durable: dict[str, int] = field(default_factory=dict)  # id -> seq, of lines that mean durable
    seq_ids: dict[int, set[str]] = field(default_factory=dict)
    events: int = 0

    def add(self, lines: Sequence[Line]) -> None:
        for line in lines:
            event = line.event
            event_id, seq = event.get("id"), event.get("seq")
            if not isinstance(event_id, str) or not isinstance(seq, int):
                continue  # an alarm the outbox could not take: logged, never stamped
            self.events += 1
            self.seq_ids.setdefault(seq, set()).add(event_id)
            if event.get("event") not in EARLY:
                self.durable[event_id] = seq

    @property
    def seq_repeats(self) -> int:
        return sum(1 for ids in self.seq_ids.values() if len(ids) > 1)

    def lost(self, stored: Mapping[str, int]) -> int:
        """Logged as durable but not in the outbox, or there under another seq (no broker acks)."""
        return sum(1 for i, seq in self.durable.items() if stored.get(i) != seq)


def stored_events(path: Path) -> tuple[dict[str, int], int]:
    """The outbox's events (id -> seq) and how many seqs it holds twice, read through `Outbox`.

    Retention is set wide: this reads what a kill left, it must not purge anything by its own clock.
    """
    quiet = logging.getLogger("edge_sentry.outbox")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # a full disk's alarm is the daemon's to raise, not this reader's
    try:
        with Outbox(path, max_events=10_000_000, queue_size=100, retention_days=3650) as box:
            events = box.pending(10_000_000)
    finally:
        quiet.setLevel(level)
    seqs = [int(e["seq"]) for e in events]
    return {str(e["id"]): int(e["seq"]) for e in events}, len(seqs) - len(set(seqs))


@dataclass(frozen=True)
class Issuer:
    """A key the sentry trusts, under its own issuer name: scan events name it, so each code's
    decisions can be told apart in the log without the code text ever being logged."""

    name: str
    key: Ed25519PrivateKey

    def code(self, *, iat: int | None = None, lifetime_s: int = 6 * 3600) -> str:
        return es1.issue(self.key, issuer=self.name, iat=iat, lifetime_s=lifetime_s)


def issuers(names: Sequence[str]) -> list[Issuer]:
    return [Issuer(name, keys.generate()) for name in names]


def write_trust(path: Path, trusted: Sequence[Issuer]) -> None:
    trust = TrustList.empty()
    for issuer in trusted:
        trust = trust.with_entry(keys.trust_entry(issuer.key, issuer.name), issued=datetime.now(UTC))
    path.write_text(trust.to_json())


def write_scene(path: Path, cues: Sequence[tuple[str, float, float]], duration: float) -> None:
    path.write_text(
        json.dumps({"duration": duration, "cues": [{"text": t, "start": s, "end": e} for t, s, e in cues]})
    )


def write_config(
    path: Path, *, state_dir: Path, outbox: Path, trust: Path, scene: Path, extra: str = ""
) -> None:
    path.write_text(
        f'[device]\nstate_dir = "{state_dir}"\n'
        f'[trust]\nfile = "{trust}"\n'
        f'[camera]\nscene = "{scene}"\nfps = 15\n'
        f'[gpio]\npin_factory = "mock"\n'
        f'[outbox]\npath = "{outbox}"\n' + extra
    )


def child_env(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "XDG_STATE_HOME": str(home / "xdg"), "PYTHONUNBUFFERED": "1", **extra}


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]
