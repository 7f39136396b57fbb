"""`edge-sentry run`: the daemon in the foreground (systemd runs it; a technician can too)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..config import Config


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "run",
        help="run the sentry (foreground)",
        description="Run the sentry: camera, decoder, verifier, gate and outbox. With no config file it "
        "plays the synthetic demo scene on mock pins.",
    )
    parser.add_argument("--duration", type=_positive, metavar="SECONDS", help="stop after this long")
    parser.add_argument(
        "--log-format", choices=("human", "json"), help="event log format (default: log.format)"
    )
    parser.set_defaults(func=handle)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def handle(args: argparse.Namespace, config: Config) -> int:
    from ..daemon import Daemon

    if args.log_format:
        config = dataclasses.replace(config, log=dataclasses.replace(config.log, format=args.log_format))
    return Daemon(config).run(duration=args.duration)
