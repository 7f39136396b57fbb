"""The one entry point, `edge-sentry`: parses, loads the config, calls a command, maps errors to exit codes.

Sub-commands only parse and call. `--config FILE` is accepted anywhere on the line (before or after the
sub-command, even after a nested one such as `codes issue`), because a technician types it where they
remember to. Exit codes: 0 success, 1 a deny or a failed check, 2 bad usage or a bad config, 130 Ctrl-C.
No traceback reaches the terminal for an error the sentry raises on purpose.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..config import Config, load
from ..errors import ConfigError, EdgeSentryError, UsageError

log = logging.getLogger(__name__)


def _split_config(argv: list[str]) -> tuple[str | None, list[str]]:
    """Take every `--config FILE` / `--config=FILE` out of argv; the last one wins."""
    path: str | None = None
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg == "--config":
            if i + 1 >= len(argv):
                raise SystemExit(_usage_error("--config needs a file name"))
            path = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return path, rest


def _usage_error(message: str) -> int:
    print(f"edge-sentry: {message}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    from . import (
        authority,
        codes,
        fleet,
        ingest,
        provision,
        relay_off,
        report,
        run,
        scan,
        selftest,
        verify,
        voice,
        wipe,
    )

    parser = argparse.ArgumentParser(
        prog="edge-sentry",
        description="Reads entry codes at a venue entrance, verifies them offline, drives the gate.",
    )
    parser.add_argument("--config", metavar="FILE", help="TOML config file (default: embedded defaults)")
    parser.add_argument("--version", action="version", version=f"edge-sentry {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in (run, relay_off, scan, verify, codes, selftest, voice, authority, wipe):
        module.register(sub)
    fleet_commands = fleet.register(sub)
    provision.register(fleet_commands)
    ingest.register(fleet_commands)
    report.register(fleet_commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    try:
        config_path, rest = _split_config(args_in)
    except SystemExit as exc:
        return int(exc.code or 2)
    parser = build_parser()
    try:
        args = parser.parse_args(rest)
    except SystemExit as exc:
        return int(exc.code or 0)
    args.config = config_path
    try:
        config = load(config_path)
    except ConfigError as exc:
        for path, message in exc.problems:
            where = f"{path}: " if path else ""
            print(f"edge-sentry: config error: {where}{message}", file=sys.stderr)
        return 2
    _setup_logging(config)
    try:
        return int(args.func(args, config))
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:
        print(f"edge-sentry: config error: {exc}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"edge-sentry: {exc}", file=sys.stderr)
        return 2
    except EdgeSentryError as exc:
        print(f"edge-sentry: {exc}", file=sys.stderr)
        return 1


def _setup_logging(config: Config) -> None:
    """Diagnostics go to stderr; stdout is reserved for the event log and command output."""
    logging.basicConfig(
        level=getattr(logging, config.log.level.upper()),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


if __name__ == "__main__":
    sys.exit(main())
