"""What the camera aiming page costs the hot loop: nothing watching, the hand-off alone, a real viewer.

Run: .venv/bin/python benchmarks/bench_aim.py [--frames N] [--fps F] [--rounds R] [--aim-fps A]

The real hot loop (`Sentry.process`: zxing-cpp on 1280x720 synthetic frames, half of them with a
code in view, the verifier, the gate on gpiozero mock pins) handles the same frames, paced at the
camera's rate and stamped as a camera stamps them, in four set-ups taken in turn in every round:

1. bare: no viewfinder at all (the baseline: `display.aim = false`);
2. aim on, nobody watching: the viewfinder is there, the page is closed (one integer read a frame);
3. watched, hand-off only: the page counted as open, nobody encoding (the copy at `--aim-fps`);
4. watched by a real reader: the page server in this process encodes and sends every picture to an
   `/aim/stream` reader in another process (the encoding thread competes with the hot loop for the
   interpreter and the 2 cores, as on a sentry).

Printed per set-up: the per-frame time of `Sentry.process` (p50, p99, mean) and its ratio to the
bare loop's in the same run; then the hand-off call alone (due + offer) on a frame it copies. A
loaded machine moves the absolute figures; the ratios are what to read.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpiozero.pins.mock import MockFactory  # noqa: E402

from edge_sentry.camera.base import Frame  # noqa: E402
from edge_sentry.camera.synthetic import Cue, Scene  # noqa: E402
from edge_sentry.codes import es1  # noqa: E402
from edge_sentry.config import Config, from_mapping  # noqa: E402
from edge_sentry.decoder import Decoder  # noqa: E402
from edge_sentry.demo import DemoIssuer, shut_simulated_door  # noqa: E402
from edge_sentry.gpio import build_devices  # noqa: E402
from edge_sentry.pages import aim  # noqa: E402
from edge_sentry.pages.hub import PageHub  # noqa: E402
from edge_sentry.pages.server import PageServer  # noqa: E402
from edge_sentry.sentry import Sentry  # noqa: E402
from edge_sentry.verifier import Verifier  # noqa: E402
from edge_sentry.viewfinder import Viewfinder  # noqa: E402

SIZE = (1280, 720)

# A reader in its own process: counts the pictures it gets, one line on stdout each.
READER = """
import http.client, sys
conn = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=30)
conn.request("GET", "/aim/stream")
response = conn.getresponse()
for line in response:
    if line.startswith(b"data: "):
        print(1, flush=True)
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def render(issuer: DemoIssuer, n: int) -> list[Any]:
    """n frames of a 2 s scene: a code in view for its first second, then the empty entrance."""
    text = es1.issue(issuer.key, issuer="demo-issuer", lifetime_s=3600)
    scene = Scene([Cue(text=text, start=0, end=1, size=0.4, rotation=6)], duration=2)
    renderer = scene.renderer(*SIZE)
    return [renderer.render(2 * i / n, frame=i) for i in range(n)]


def sentry_for(config: Config, issuer: DemoIssuer, viewfinder: Viewfinder | None) -> tuple[Sentry, Any]:
    devices = build_devices(config.gpio, MockFactory())
    shut_simulated_door(devices)
    verifier = Verifier(config.es1, config.gate, config.device, issuer.trust)
    sentry = Sentry(config, None, Decoder(config.decoder), verifier, devices,  # type: ignore[arg-type]
                    lambda e: e, viewfinder=viewfinder)  # fmt: skip
    return sentry, devices


def run(config: Config, issuer: DemoIssuer, frames: list[Any], fps: float, viewfinder: Viewfinder | None,
        out: list[float]) -> None:  # fmt: skip
    """The frames through `Sentry.process`, one every 1/fps s, stamped as they are handed over."""
    sentry, devices = sentry_for(config, issuer, viewfinder)
    gc.collect()
    gc.disable()
    try:
        slot = time.perf_counter()
        for i, y in enumerate(frames):
            slot += 1 / fps
            t0 = time.perf_counter()
            sentry.process(Frame(y=y, t=time.monotonic(), index=i))
            out.append(time.perf_counter() - t0)
            time.sleep(max(0.0, slot - time.perf_counter()))
    finally:
        gc.enable()
        sentry.gate.close()
        devices.close()


def hand_off_alone(frames: list[Any], aim_fps: float, n: int = 400) -> list[float]:
    """The hot loop's hand-off on a frame it copies: `due` and `offer`, nothing else."""
    viewfinder = Viewfinder(aim_fps)
    viewfinder.watch()
    codes = [((400, 200), (700, 200), (700, 500), (400, 500))]
    times = []
    for i in range(n):
        frame = Frame(y=frames[i % len(frames)], t=i / aim_fps, index=i)  # every frame due
        t0 = time.perf_counter()
        if viewfinder.watched and viewfinder.due(frame):
            viewfinder.offer(frame, codes)
        times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--fps", type=float, default=30.0, help="the camera's frame rate")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--aim-fps", type=float, default=4.0)
    args = parser.parse_args()
    display = {"listen": "127.0.0.1:0", "aim": True, "aim_fps": args.aim_fps}
    base = from_mapping({"gpio": {"pin_factory": "mock"}, "display": display})
    config = dataclasses.replace(base, gate=dataclasses.replace(base.gate, grant_window_s=120))
    issuer = DemoIssuer.create()
    print(f"rendering {args.frames} frames ({SIZE[0]}x{SIZE[1]}), a code in half of them ...", flush=True)
    frames = render(issuer, args.frames)

    viewer = Viewfinder(args.aim_fps)
    server = PageServer(config, PageHub())
    server.mount(aim.routes(viewer))
    host, port = server.start()
    results: dict[str, list[float]] = {name: [] for name in ("bare", "closed", "hand-off", "viewer")}
    pictures = copies = 0
    try:
        for _ in range(args.rounds):
            run(config, issuer, frames, args.fps, None, results["bare"])
            run(config, issuer, frames, args.fps, Viewfinder(args.aim_fps), results["closed"])
            watched = Viewfinder(args.aim_fps)
            watched.watch()
            run(config, issuer, frames, args.fps, watched, results["hand-off"])
            copies += watched.copies
            reader = subprocess.Popen([sys.executable, "-c", READER, host, str(port)],
                                      stdout=subprocess.PIPE, text=True)  # fmt: skip
            deadline = time.monotonic() + 10
            while not viewer.watched and time.monotonic() < deadline:
                time.sleep(0.01)
            run(config, issuer, frames, args.fps, viewer, results["viewer"])
            time.sleep(2 / args.aim_fps)  # the last picture reaches the reader
            reader.terminate()
            pictures += reader.communicate(timeout=10)[0].count("\n")
    finally:
        server.stop()
    us = 1e6
    seconds = args.rounds * args.frames / args.fps
    print(f"{args.frames} frames x {args.rounds} rounds per set-up at {args.fps:g} fps; pictures at "
          f"{args.aim_fps:g} a second")  # fmt: skip
    heads = "".join(f"{h:>10}" for h in ("p50 us", "p99 us", "mean us"))
    print(f"{'Sentry.process per frame':34}{heads}{'p50 x':>8}{'mean x':>8}")
    bare = results["bare"]
    names = {"bare": "bare loop (aim off)", "closed": "aim on, page closed",
             "hand-off": "page open, hand-off only", "viewer": "page open, real reader"}  # fmt: skip
    for key, values in results.items():
        print(f"{names[key]:34}{pct(values, 50) * us:>10.1f}{pct(values, 99) * us:>10.1f}"
              f"{statistics.fmean(values) * us:>10.1f}{pct(values, 50) / pct(bare, 50):>8.3f}"
              f"{statistics.fmean(values) / statistics.fmean(bare):>8.3f}")  # fmt: skip
    print(f"pictures copied with the page open (hand-off only): {copies} in {seconds:.1f} s "
          f"({copies / seconds:.2f} a second); received by the real reader: {pictures} "
          f"({pictures / seconds:.2f} a second)")  # fmt: skip
    alone = hand_off_alone(frames, args.aim_fps)
    print(f"hand-off call copying a {SIZE[0]}x{SIZE[1]} frame: p50 {pct(alone, 50) * us:.1f} us, "
          f"p99 {pct(alone, 99) * us:.1f} us; {pct(alone, 50) / pct(bare, 50):.3f}x the bare frame's p50")
    return 0


if __name__ == "__main__":
    sys.exit(main())
