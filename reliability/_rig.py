"""What the soak and broker-fault parts share: the whole daemon on a scripted camera, driven and watched.

The daemon is `edge_sentry.daemon.Daemon`, the one `edge-sentry run` runs, on its own thread in this
process, with a real Mosquitto (tests/broker.py) and gpiozero mock pins. In-process because the staff
and exit buttons are mock pins only this process can press, and because the relay's switching time is
read from the sentry's own figures; the price is that memory, descriptors and threads are this whole
process's (daemon, drivers and the operator's MQTT client together), which the parts say when they
print them.

One thing is added to `edge-sentry run`: the camera is wrapped (`Watched`) to draw every phone of the
scene before its first frame, not when each first shows (tens of milliseconds in the hot loop, the
scene machinery's cost and not the sentry's), and to note when its scene started, which is how a
decision is matched to the cue on screen. Frames pass through as the synthetic camera stamped them.

The scene loops over a fixed minute of cues (valid codes, the same code shown again a few seconds
later, a stranger's code, text that is no code at all), so the camera's memory stays what it was after
the first pass: the scene renderer keeps every cue's drawn phone. Showing the same codes again each
minute needs `es1.max_age_s` at its maximum, a day: freshness is the verifier tests' concern, not this.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from broker import Broker, Subscriber, find_mosquitto  # noqa: E402
from control_helpers import operator_entry, signed_command  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from edge_sentry.camera.base import Frame, FrameSource  # noqa: E402
from edge_sentry.camera.synthetic import SyntheticSource  # noqa: E402
from edge_sentry.codes import es1, keys  # noqa: E402
from edge_sentry.codes.trust import TrustList  # noqa: E402
from edge_sentry.config import Config, from_mapping  # noqa: E402
from edge_sentry.daemon import Daemon  # noqa: E402
from edge_sentry.demo import DemoIssuer  # noqa: E402
from edge_sentry.gpio import GateDevices  # noqa: E402
from reliability.report import Report  # noqa: E402

__all__ = ["Broker", "Subscriber", "find_mosquitto"]

WAIT_S = 30.0
ISSUER = "reliability"
FPS = 30.0
SCENE_S = 60.0  # one pass of the scene; longer than gate.passback_s, so a valid code is new again
PULSE_MS = 200  # short grants: a storm of them must not hold the strike on into the relay's guard

# kind -> (verdict, reason) the sentry must give it
EXPECTED = {
    "valid": ("accept", "ok"),
    "replay": ("deny", "passback"),
    "stranger": ("deny", "unknown-key"),
    "garbage": ("deny", "unsupported"),
}
# One block of the scene, a cue a second: the replay shows the block's first code again, 4 s later
# (out of sight longer than the sentry's presentation gap, well inside gate.passback_s).
_BLOCK = ("valid", "valid", "stranger", "valid", "replay", "garbage")
_SHOW_S = 0.4
_MATCH_SLACK_S = 0.5  # a decision is logged this long after its cue at most (frames run late under load)


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank), NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, value), per unit of t; 0 for fewer than two points."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / var


def seconds(env: str, short: float, long_s: float, long: bool) -> float:
    """A part's run time: its short or long default, or `env` (seconds) when set."""
    raw = os.environ.get(env)
    if raw:
        return float(raw)
    return long_s if long else short


# -- the scene ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cue:
    kind: str
    start: float
    end: float


@dataclass
class Scene:
    """The scene's cues with what each must get, and the files the daemon reads."""

    cues: list[Cue]
    scene_path: Path
    trust_path: Path


def write_scene(folder: Path, seed: int = 7) -> Scene:
    """Write a looping minute of cues and a trust list naming its issuer and the test operator."""
    rng = random.Random(seed)
    issuer = DemoIssuer.create().key
    stranger: Ed25519PrivateKey = keys.generate()
    cues: list[Cue] = []
    raw: list[dict[str, Any]] = []
    first_valid = ""
    t = 1.0
    n = 0
    while t + 1.0 < SCENE_S - 1.0:
        kind = _BLOCK[n % len(_BLOCK)]
        if kind == "valid":
            text = es1.issue(issuer, issuer=ISSUER, lifetime_s=2 * 86400)
            if n % len(_BLOCK) == 0:
                first_valid = text
        elif kind == "replay":
            text = first_valid
        elif kind == "stranger":
            text = es1.issue(stranger, issuer="stranger", lifetime_s=2 * 86400)
        else:
            text = f"WIFI:S:entrance-{n};T:WPA;P:{rng.randrange(10**8)};;"
        cues.append(Cue(kind, t, t + _SHOW_S))
        raw.append(
            {"text": text, "start": t, "end": t + _SHOW_S, "x": rng.uniform(0.35, 0.65),
             "y": rng.uniform(0.4, 0.6), "rotation": rng.uniform(-12, 12)}
        )  # fmt: skip
        t += 1.0
        n += 1
    scene_path = folder / "scene.json"
    scene_path.write_text(json.dumps({"duration": SCENE_S, "seed": seed, "cues": raw}))
    doc = {
        "version": 1,
        "issued": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "keys": [keys.trust_entry(issuer, ISSUER)],
        "operators": [operator_entry()],
    }
    trust_path = folder / "trust.json"
    trust_path.write_text(TrustList.from_mapping(doc).to_json())
    return Scene(cues, scene_path, trust_path)


def daemon_config(broker: Broker, folder: Path, scene: Scene, **mqtt: Any) -> Config:
    mapping = broker.config_mapping(folder, **mqtt)
    mapping.update(
        trust={"file": str(scene.trust_path)},
        camera={"source": "synthetic", "scene": str(scene.scene_path), "fps": FPS, "loop": True},
        gpio={"pin_factory": "mock"},
        gate={"pulse_ms": PULSE_MS},
        es1={"max_age_s": 86400},
        log={"format": "json"},
        # Its pages served as on a gate (any free port: several parts may run at once).
        display={"listen": "127.0.0.1:0"},
    )
    return from_mapping(mapping)


# -- the daemon and its camera --------------------------------------------------------------------


class Watched(FrameSource):
    """The configured camera, its phones drawn up front and its start noted (see the module docstring)."""

    def __init__(self, inner: FrameSource) -> None:
        self.inner = inner
        self.name = inner.name
        self.started_wall = 0.0

    def start(self) -> None:
        if isinstance(self.inner, SyntheticSource):
            self.inner.scene.renderer(self.inner.width, self.inner.height).prepare()
        self.inner.start()
        self.started_wall = time.time()

    def read(self, timeout: float) -> Frame | None:
        return self.inner.read(timeout)

    def stop(self) -> None:
        self.inner.stop()


class RigDaemon(Daemon):
    """The daemon with its camera watched; everything else is `edge-sentry run`'s."""

    camera: Watched | None = None

    def _source(self, demo: DemoIssuer | None, devices: GateDevices) -> FrameSource:
        self.camera = Watched(super()._source(demo, devices))
        return self.camera


@dataclass(frozen=True)
class Scan:
    t: float  # wall seconds
    mode: str
    verdict: str
    reason: str
    latency_ms: float | None


class EventTap(io.StringIO):
    """The daemon's JSON event log, read line by line as it is written; keeps only what is checked,
    compactly (a scan is 18 bytes here): a soak's own records must not pass for the daemon's growth."""

    def __init__(self, *, keep_ids: bool = False) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.keep_ids = keep_ids
        self.ids: dict[str, str] = {}  # id -> event name, of every event that went through the outbox
        self.counts: Counter[str] = Counter()
        self.bad_lines = 0
        self._t = array("d")
        self._latency = array("d")  # NaN: none
        self._kind = array("H")  # index into _kinds
        self._kinds: dict[tuple[str, str, str], int] = {}  # (mode, verdict, reason): a handful

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                with self._lock:
                    self.bad_lines += 1
                continue
            self._take(event)
        return len(text)

    def _take(self, event: dict[str, Any]) -> None:
        name = str(event.get("event"))
        with self._lock:
            self.counts[name] += 1
            if self.keep_ids and "id" in event:
                self.ids[str(event["id"])] = name
            if name == "scan":
                kind = (str(event.get("mode")), str(event.get("verdict")), str(event.get("reason")))
                latency = event.get("latency_ms")
                self._t.append(event["t"] / 1000)
                self._latency.append(math.nan if latency is None else float(latency))
                self._kind.append(self._kinds.setdefault(kind, len(self._kinds)))

    def count(self, name: str) -> int:
        with self._lock:
            return self.counts[name]

    def scan_list(self) -> list[Scan]:
        with self._lock:
            kinds = {index: kind for kind, index in self._kinds.items()}
            return [
                Scan(t, *kinds[k], None if math.isnan(ms) else ms)
                for t, ms, k in zip(self._t, self._latency, self._kind, strict=True)
            ]

    def id_map(self) -> dict[str, str]:
        with self._lock:
            return dict(self.ids)


TRACEBACK = " (with traceback)"


class LogWatch(logging.Handler):
    """Warnings and errors logged anywhere in the process while a part runs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.warnings: Counter[str] = Counter()
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.name}: {record.getMessage()}"
        if record.levelno >= logging.ERROR or record.exc_info:
            self.errors.append(text + (TRACEBACK if record.exc_info else ""))
        else:
            self.warnings[text[:120]] += 1


@contextmanager
def watching_logs() -> Iterator[LogWatch]:
    watch = LogWatch()
    root = logging.getLogger()
    root.addHandler(watch)
    try:
        yield watch
    finally:
        root.removeHandler(watch)


@dataclass
class Setting:
    """Where a part runs: a temporary folder, the log watch, a started broker, and what undoes it all
    (`cleanup.callback(...)`: undone in reverse, before the broker stops and the folder goes)."""

    folder: Path
    logs: LogWatch
    broker: Broker
    cleanup: ExitStack


@contextmanager
def setting(prefix: str) -> Iterator[Setting]:
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
        logs = stack.enter_context(watching_logs())
        broker = Broker(folder / "broker")
        stack.callback(broker.close)
        broker.start()
        yield Setting(folder, logs, broker, stack)


def start_daemon(where: Setting, config: Config, tap: EventTap, report: Report) -> Running | None:
    """The daemon running and deciding, to be stopped with `where`; None, with a failed check, when
    it does not get there."""
    running = Running(RigDaemon(config, stream=tap))
    where.cleanup.callback(running.stop)
    if running.wait_ready(tap):
        return running
    report.check("daemon started", False, repr(running.error))
    return None


class Running:
    """The daemon on its own thread; `stop()` ends it as SIGTERM would and returns its status."""

    def __init__(self, daemon: RigDaemon) -> None:
        self.daemon = daemon
        self.status: int | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="reliability-daemon", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.status = self.daemon.run()
        except BaseException as exc:  # reported by the part, never lost on the thread
            self.error = exc

    @property
    def alive(self) -> bool:
        return self.thread.is_alive() and not self.daemon.stop_event.is_set()

    def wait_ready(self, tap: EventTap, timeout: float = WAIT_S) -> bool:
        """Deciding (its `start` event logged) and, with a broker, subscribed to its commands."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.thread.is_alive():
            uplink = self.daemon.uplink
            if tap.count("start") and self.daemon.camera is not None and uplink is not None:
                return uplink.link.wait_subscribed(max(0.0, deadline - time.monotonic()))
            time.sleep(0.05)
        return False

    def stop(self, timeout: float = WAIT_S) -> None:
        self.daemon.stop_event.set()
        self.thread.join(timeout)


# -- what the sentry decided ----------------------------------------------------------------------


@dataclass
class Verdicts:
    """Each cue shown in full before `until` against the scan events the sentry logged for it."""

    due: Counter[str] = field(default_factory=Counter)
    right: Counter[str] = field(default_factory=Counter)
    missed: int = 0
    wrong: list[str] = field(default_factory=list)
    doubled: int = 0
    stray: int = 0

    @property
    def ok(self) -> bool:
        return self.missed == 0 and not self.wrong and self.doubled == 0 and self.stray == 0

    def summary(self) -> str:
        total = sum(self.due.values())
        kinds = ", ".join(f"{k} {self.right[k]}/{self.due[k]}" for k in EXPECTED)
        text = f"{sum(self.right.values())} of {total} ({kinds})"
        if not self.ok:
            text += (
                f"; missed {self.missed}, wrong {len(self.wrong)}, doubled {self.doubled}, stray {self.stray}"
            )
            if self.wrong:
                text += f"; first wrong: {self.wrong[0]}"
        return text


def judge(cues: list[Cue], scans: list[Scan], started_wall: float, until_wall: float) -> Verdicts:
    """Match scan events to the cue on screen when they were decided, pass by pass of the scene.

    A cue is due when it left the screen long enough before `until_wall` for its decision to be
    logged; a decision for a cue that was not due yet is matched but not counted.
    """
    out = Verdicts()
    due: set[tuple[int, int]] = set()
    for loop in range(math.ceil((until_wall - started_wall) / SCENE_S) + 1):
        for i, cue in enumerate(cues):
            if started_wall + loop * SCENE_S + cue.end + _MATCH_SLACK_S <= until_wall:
                due.add((loop, i))
                out.due[cue.kind] += 1
    seen: Counter[tuple[int, int]] = Counter()
    for scan in scans:
        if scan.mode != "scan":
            continue
        phase = scan.t - started_wall
        loop = math.floor(phase / SCENE_S)
        at = phase - loop * SCENE_S
        index = next((i for i, c in enumerate(cues) if c.start - 0.05 <= at <= c.end + _MATCH_SLACK_S), None)
        if index is None:
            out.stray += 1
            continue
        key = (loop, index)
        seen[key] += 1
        if seen[key] > 1:
            out.doubled += 1
        elif key in due:
            cue = cues[index]
            if (scan.verdict, scan.reason) == EXPECTED[cue.kind]:
                out.right[cue.kind] += 1
            else:
                out.wrong.append(f"{cue.kind} got {scan.verdict}/{scan.reason}")
    out.missed = len(due - set(seen))
    return out


def relay_latencies(scans: list[Scan], since: float = 0.0, until: float = math.inf) -> list[float]:
    """Frame -> relay on, of the codes that opened the gate between `since` and `until` (wall s)."""
    return [
        s.latency_ms for s in scans
        if s.mode == "scan" and s.verdict == "accept" and s.latency_ms is not None and since <= s.t < until
    ]  # fmt: skip


# -- the operator ---------------------------------------------------------------------------------


class Operator:
    """Signed remote commands as an operator's tool sends them, and their answers (tallied as they
    come, nothing kept but what still waits for one)."""

    def __init__(self, broker: Broker, prefix: str) -> None:
        self.prefix = prefix
        self.reply_topic = f"{prefix}/reply/reliability"
        self.client = Subscriber(broker, self.reply_topic)
        self.pending: dict[bytes, tuple[str, str]] = {}  # correlation -> (command, status it must get)
        self.wanted: Counter[tuple[str, str]] = Counter()  # every request sent: (command, status)
        self.statuses: Counter[str] = Counter()  # every answer's status
        self.right = 0  # answers with the status their request must get
        self.stray = 0  # answers to no request of ours, or a second one

    def start(self) -> Operator:
        self.client.start()
        return self

    def command(self, name: str, args: dict[str, Any] | None = None, *, expect: str = "ok") -> None:
        topic = f"{self.prefix}/cmd/{name}"
        now_ms = int(time.time() * 1000)
        correlation = uuid.uuid4().bytes
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self.reply_topic
        props.CorrelationData = correlation
        payload = signed_command(topic, now_ms + 30_000, iat_ms=now_ms, args=args)
        self.pending[correlation] = (name, expect)
        self.wanted[(name, expect)] += 1
        self.client.publish(topic, payload, properties=props)

    def collect(self) -> int:
        """Tally the answers that came; return how many requests still wait for theirs."""
        for message in self.client.take():
            key = message.properties.get("CorrelationData")
            entry = self.pending.pop(key, None) if isinstance(key, bytes) else None
            if entry is None:
                self.stray += 1
                continue
            status = str(cbor2.loads(message.payload).get("status"))
            self.statuses[status] += 1
            self.right += status == entry[1]
        return len(self.pending)

    def close(self) -> None:
        self.client.close()


def press(pin: Any, hold_s: float = 0.1) -> None:
    """A person pressing a push-to-make button wired to ground (a mock pin)."""
    pin.drive_low()
    time.sleep(hold_s)
    pin.drive_high()


# -- this process's resources ---------------------------------------------------------------------


def _status_kb(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


@dataclass
class Sample:
    t: float  # monotonic seconds
    rss_kb: int
    fds: int
    threads: int
    blocks: int  # memory blocks held by Python's allocator: objects kept, apart from the C heap


def sample() -> Sample:
    return Sample(
        time.monotonic(),
        _status_kb("VmRSS"),
        len(os.listdir("/proc/self/fd")),
        _status_kb("Threads"),
        sys.getallocatedblocks(),
    )


def forget_pin_history(factory: Any) -> None:
    """Empty the mock pins' record of every state they went through (gpiozero keeps it for test
    assertions, growing with each switch): a real pin keeps nothing, so neither may the soak."""
    for pin in list(getattr(factory, "pins", {}).values()):
        clear = getattr(pin, "clear_states", None)
        if clear is not None:
            clear()


class Sampler:
    """This process's resident memory, open descriptors and threads, every `period` seconds."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reliability-sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            self.samples.append(sample())
            if self._stop.wait(self.period):
                return

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(5)
        self.samples.append(sample())
