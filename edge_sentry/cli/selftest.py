"""`edge-sentry selftest [--json] [--only PART]...`: check the entrance's hardware, part by part.

Runs with the configured pin factory (the mock off a Pi) and camera source, on pins and a camera
of its own: run it while the daemon is stopped (a running daemon holds them; its MQTT `selftest`
command runs the same checks in-process). Only what the chosen parts need is opened: `--only clock`
touches no pin and no camera.

Output: a table (part, status, detail), or with `--json` one object `{"passed", "parts": [...]}`.
Exit 0 when no part failed (skipped parts do not count), 1 when one did, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

from .. import selftest
from ..codes import keys
from ..config import Config
from ..errors import EdgeSentryError


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "selftest",
        help="test the relay, lights, buzzer, door, buttons, camera, decoder, trust list, clock",
        description="Run the hardware self-tests with the configured pins and camera; exit 0 only "
        "if no part fails. Parts: " + ", ".join(selftest.PARTS) + ".",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument(
        "--only",
        action="append",
        metavar="PART",
        help="run only this part (repeat, or separate with commas)",
    )
    parser.set_defaults(func=handle)


def _wanted(only: list[str] | None) -> list[str] | None:
    if not only:
        return None
    return [name.strip() for item in only for name in item.split(",") if name.strip()]


@contextlib.contextmanager
def open_rig(config: Config, parts: list[str]) -> Iterator[selftest.Rig]:
    """A rig with what `parts` need, closed again afterwards; problems recorded, not raised."""
    from ..link.trustpush import load_initial
    from ..state import StateStore

    rig = selftest.Rig(config)
    with contextlib.ExitStack() as stack:
        if selftest.GPIO_PARTS & set(parts):
            _open_gpio(config, rig, stack)
        if selftest.CAMERA_PARTS & set(parts):
            _open_camera(config, rig, stack)
        if "trust" in parts:
            # Read-only: the daemon may be running and owns the store.
            with StateStore.open(config, read_only=True) as store:
                rig.trust, rig.trust_problem = load_initial(config.trust.file, store)
        if "venue-poster" in parts and config.trust.root_key:
            try:
                rig.root_key = keys.load_public_key(config.trust.root_key)
            except EdgeSentryError as exc:
                rig.root_key_problem = f"trust.root_key: {exc}"
        yield rig


def _open_gpio(config: Config, rig: selftest.Rig, stack: contextlib.ExitStack) -> None:
    from gpiozero.pins.mock import MockFactory

    from ..demo import shut_simulated_door
    from ..gpio import build_devices, make_pin_factory

    try:
        factory = make_pin_factory(config.gpio.pin_factory)
        devices = build_devices(config.gpio, factory)
    except EdgeSentryError as exc:
        rig.gpio_problem = str(exc)
        return
    stack.callback(devices.close)
    if isinstance(factory, MockFactory):
        shut_simulated_door(devices)  # as the daemon does: a simulated door starts shut
    rig.devices = devices


def _open_camera(config: Config, rig: selftest.Rig, stack: contextlib.ExitStack) -> None:
    from ..camera import open_source
    from ..camera.base import FrameSource
    from ..demo import DemoIssuer, DemoSource

    cam = config.camera
    source: FrameSource
    try:
        if cam.source == "synthetic" and cam.scene == "demo":
            source = DemoSource(config, DemoIssuer.create())
        else:
            source = open_source(cam)
        source.start()
    except EdgeSentryError as exc:
        rig.camera_problem = f"camera: {exc}"
        return
    stack.callback(source.stop)
    rig.read_frame = source.read


def table(results: list[dict[str, Any]]) -> str:
    width = max([len("PART"), *(len(r["part"]) for r in results)])
    lines = [f"{'PART':<{width}}  STATUS  DETAIL"]
    lines += [f"{r['part']:<{width}}  {r['status']:<6}  {r['detail']}" for r in results]
    return "\n".join(lines)


def handle(args: argparse.Namespace, config: Config) -> int:
    wanted = _wanted(args.only)
    parts = list(selftest.PARTS) if wanted is None else wanted
    bad = selftest.unknown_parts(parts)
    if bad:
        print(
            f"edge-sentry selftest: --only: unknown part {', '.join(bad)} "
            f"(parts: {', '.join(selftest.PARTS)})",
            file=sys.stderr,
        )
        return 2
    with open_rig(config, parts) as rig:
        results = selftest.run_all(rig, parts)
    ok = selftest.passed(results)
    if args.json:
        print(json.dumps({"passed": ok, "parts": results}))
    else:
        print(table(results))
    return 0 if ok else 1
