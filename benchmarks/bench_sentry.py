"""Frame timestamp -> relay on, and the daemon's start-up time and resident memory.

Run: .venv/bin/python benchmarks/bench_sentry.py [--frames N]

1. Latency: the hot loop (real zxing-cpp, real verifier, gate on gpiozero mock pins) handles 1280x720
   frames each showing a new valid ES1 code; the figure is the frame's timestamp to the moment the
   relay was switched on, p50 and p99, against the frame interval at 30 fps (the design's bound) and
   the 10 ms target, with the decode time of the same frames beside it as the baseline.
2. Daemon: `edge-sentry run` is started with a config whose scene shows a valid code from its first
   frame; the figures are the wall time from spawn to the first decision line, the daemon's own
   start-up time (its `start` event), and its peak resident memory, each beside a bare Python
   interpreter measured the same way in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from gpiozero.pins.mock import MockFactory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_sentry.camera.base import Frame, FrameSource  # noqa: E402
from edge_sentry.camera.synthetic import Cue, Scene  # noqa: E402
from edge_sentry.codes import es1, keys  # noqa: E402
from edge_sentry.codes.trust import TrustList  # noqa: E402
from edge_sentry.config import Config  # noqa: E402
from edge_sentry.decoder import Decoder  # noqa: E402
from edge_sentry.demo import DemoIssuer, shut_simulated_door  # noqa: E402
from edge_sentry.gpio import build_devices  # noqa: E402
from edge_sentry.sentry import Sentry  # noqa: E402
from edge_sentry.verifier import Verifier  # noqa: E402

FRAME_INTERVAL_30FPS_MS = 1000 / 30
TARGET_P99_MS = 10.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Frames(FrameSource):
    """Prepared frames, stamped as they are handed over (as a camera stamps at capture)."""

    def __init__(self, frames: list, done: threading.Event) -> None:
        self.frames = frames
        self.done = done
        self.i = 0

    def start(self) -> None:
        self.i = 0

    def read(self, timeout: float) -> Frame | None:
        if self.i >= len(self.frames):
            self.done.set()
            return None
        self.i += 1
        return Frame(y=self.frames[self.i - 1], t=time.monotonic(), index=self.i - 1)

    def stop(self) -> None:
        pass


def latency(n: int) -> None:
    issuer = DemoIssuer.create()
    config = Config()
    print(f"rendering {n} frames (1280x720), each with a new valid code ...", flush=True)
    frames = []
    for i in range(n):
        text = es1.issue(issuer.key, issuer="demo-issuer", lifetime_s=3600)
        cue = Cue(text=text, start=0, end=1, x=0.3 + 0.4 * (i % 5) / 4, rotation=(i % 7) * 5 - 15)
        frames.append(Scene([cue], duration=1, seed=i).render_at(0.5))
    devices = build_devices(config.gpio, MockFactory())
    shut_simulated_door(devices)
    events: list[dict] = []
    verifier = Verifier(config.es1, config.gate, config.device, issuer.trust)
    done = threading.Event()
    source = Frames(frames, done)
    sentry = Sentry(config, source, Decoder(config.decoder), verifier, devices, events.append)
    try:
        sentry.run(done)
    finally:
        sentry.close()
        devices.close()
    lat = list(sentry.stats.latency_ms)
    dec = list(sentry.stats.decode_ms)
    accepted = sum(1 for e in events if e.get("event") == "scan" and e.get("verdict") == "accept")
    p50, p99 = pct(lat, 50), pct(lat, 99)
    print(f"decisions: {len(lat)} of {n} frames, accepted {accepted}")
    print(f"{'':28}{'p50 ms':>10}{'p99 ms':>10}")
    print(f"{'decode (baseline)':28}{pct(dec, 50):>10.2f}{pct(dec, 99):>10.2f}")
    print(f"{'frame -> relay on':28}{p50:>10.2f}{p99:>10.2f}")
    print(f"frame -> relay / decode, p50: {p50 / pct(dec, 50):.2f}x")
    print(f"p99 / frame interval at 30 fps ({FRAME_INTERVAL_30FPS_MS:.1f} ms): "
          f"{p99 / FRAME_INTERVAL_30FPS_MS:.2f}")
    verdict = "PASS" if p99 <= TARGET_P99_MS and len(lat) == n else "FAIL"
    print(f"{verdict}: p99 {p99:.2f} ms <= {TARGET_P99_MS} ms, every frame decided")


def _peak_rss_mb(argv: list[str], env: dict[str, str], first_line: str | None) -> tuple[float, float]:
    """Run argv in a fresh process (via a tiny launcher, so its rusage is its own); return
    (seconds to `first_line` in stdout or to exit, peak RSS in MB)."""
    launcher = (
        "import json,resource,subprocess,sys,time\n"
        "argv=json.loads(sys.argv[1]); want=sys.argv[2]\n"
        "t0=time.monotonic(); p=subprocess.Popen(argv,stdout=subprocess.PIPE,text=True)\n"
        "first=None\n"
        "for line in p.stdout:\n"
        "    if first is None and want and want in line: first=time.monotonic()-t0\n"
        "p.wait(); end=time.monotonic()-t0\n"
        "rss=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024\n"
        "print(json.dumps([first if first is not None else end, rss]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", launcher, json.dumps(argv), first_line or ""],
        capture_output=True, text=True, env=env, check=True,
    )
    seconds, rss = json.loads(out.stdout.strip().splitlines()[-1])
    return seconds, rss


def daemon() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        key = keys.generate()
        trust = TrustList.empty().with_entry(keys.trust_entry(key, "bench"), issued=datetime.now(UTC))
        (work / "trust.json").write_text(trust.to_json())
        text = es1.issue(key, issuer="bench", lifetime_s=3600)
        scene = {"duration": 30, "cues": [{"text": text, "start": 0, "end": 30}]}
        (work / "scene.json").write_text(json.dumps(scene))
        (work / "sentry.toml").write_text(
            f'[trust]\nfile = "{work / "trust.json"}"\n'
            f'[camera]\nscene = "{work / "scene.json"}"\nfps = 15\n'
            f'[gpio]\npin_factory = "mock"\n[outbox]\npath = "{work / "outbox"}"\n'
        )
        env = {**os.environ, "XDG_STATE_HOME": str(work / "state")}
        exe = str(Path(sys.executable).with_name("edge-sentry"))
        argv = [exe, "--config", str(work / "sentry.toml"), "run", "--duration", "3",
                "--log-format", "json"]
        to_first, rss = _peak_rss_mb(argv, env, '"event":"scan"')
        base_t, base_rss = _peak_rss_mb([sys.executable, "-c", "pass"], env, None)
        imp_t, imp_rss = _peak_rss_mb(
            [sys.executable, "-c", "import numpy, zxingcpp, gpiozero, cryptography, tinydb"], env, None
        )
        startup_ms = None
        run = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
        for line in run.stdout.splitlines():
            event = json.loads(line)
            if event.get("event") == "start":
                startup_ms = event.get("startup_ms")
        print(f"{'':40}{'seconds':>10}{'peak RSS MB':>14}")
        print(f"{'python -c pass (baseline)':40}{base_t:>10.3f}{base_rss:>14.1f}")
        print(f"{'python importing the dependencies':40}{imp_t:>10.3f}{imp_rss:>14.1f}")
        print(f"{'edge-sentry run: spawn -> first decision':40}{to_first:>10.3f}{rss:>14.1f}")
        print(f"daemon start-up (config loaded -> loop running, its own figure): {startup_ms} ms")
        print(f"ratios to bare python: time {to_first / base_t:.1f}x, memory {rss / base_rss:.1f}x")
        print(f"memory share of a Pi Zero 2 W (512 MB): {rss / 512:.0%}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args()
    print("== frame timestamp -> relay on")
    latency(args.frames)
    print()
    print("== daemon start-up and memory")
    daemon()


if __name__ == "__main__":
    main()
