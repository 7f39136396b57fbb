"""`edge-sentry relay-off`: drive the strike's relay to its off level, and nothing else.

The unit's `ExecStopPost=` runs it after every stop of the daemon, including the ones that skip the
gate's own close (a watchdog abort, an OOM kill, SIGKILL), so the strike never stays released until
the next start. It must never start the camera, the outbox, the link or the state store: it runs
when something may be broken, and only the config's `gpio` section matters to it.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..config import Config
from ..gpio import drive_relay_off, make_pin_factory


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "relay-off",
        help="drive the relay to its off level and exit",
        description="Drive gpio.relay to its off level (per gpio.relay_active_high) on the configured "
        "pin factory, and leave it there. Run by systemd after the daemon stops; stop the daemon first "
        "when running it by hand (a running daemon holds the pin).",
    )
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace, config: Config) -> int:
    gpio = config.gpio
    drive_relay_off(gpio, make_pin_factory(gpio.pin_factory))
    level = "high" if not gpio.relay_active_high else "low"
    print(f"relay off: pin {gpio.relay} {level}")
    return 0
