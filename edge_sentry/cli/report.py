"""`edge-sentry fleet report [--db URL] [--since ISO8601] [--until ISO8601] [--format table|csv|json|png]
[--out FILE]`: what the fleet did over a period, per site and entrance, from the database that
`fleet ingest` fills (the same `--db`, `ingest.db` or `fleet.sqlite3` in `device.state_dir`).

The period is `since <= t < until`; without `--until` it ends now, without `--since` it starts a day
before its end. `png` draws a chart into `--out`; the other formats go to stdout (or `--out`).

Exit codes: 0 done; 2 bad usage (a time that is not ISO 8601, an empty period, `png` without
`--out`); 5 the database cannot be opened or read (a SQLite file that does not exist is not made).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ..backend import report, report_chart, report_text
from ..backend.store import POSTGRES_SCHEMES, open_store
from ..config import Config
from ..errors import StoreError, UsageError
from ..files import write_atomic
from .ingest import add_db, db_url
from .verify import parse_time

EXIT_OK, EXIT_DATABASE = 0, 5
FORMATS = ("table", "csv", "json", "png")
DAY_MS = 86_400_000


def register(fleet: Any) -> None:
    """Add `report` to the `fleet` sub-command set."""
    p = fleet.add_parser(
        "report",
        help="scans, denials, alarms, uptime and rejects per site and entrance over a period",
        description="Summarise what `fleet ingest` stored, per site and entrance, over a period "
        "(default: the last 24 hours): as a table, CSV, JSON, or a PNG chart. Exit codes: 0 done, "
        "2 bad usage, 5 database missing or unusable.",
    )
    add_db(p)
    p.add_argument("--since", metavar="ISO8601", help="start of the period (default: a day before its end)")
    p.add_argument("--until", metavar="ISO8601", help="end of the period, excluded (default: now)")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    p.add_argument("--out", metavar="FILE", help="write here instead of stdout (needed for png)")
    p.set_defaults(func=handle)


def period(since: str | None, until: str | None, now_ms: int) -> tuple[int, int]:
    end = int(parse_time(until, "--until") * 1000) if until else now_ms
    start = int(parse_time(since, "--since") * 1000) if since else end - DAY_MS
    if start >= end:
        raise UsageError("--since must be before --until: the period is empty")
    return start, end


def handle(args: argparse.Namespace, config: Config) -> int:
    name = "edge-sentry fleet report"
    since_ms, until_ms = period(args.since, args.until, int(time.time() * 1000))
    if args.format == "png" and not args.out:
        raise UsageError("--format png needs --out FILE")
    url = db_url(args, config)
    if not url.startswith(POSTGRES_SCHEMES) and not Path(url.removeprefix("sqlite://")).is_file():
        print(f"{name}: no database at {url}: `edge-sentry fleet ingest` makes it", file=sys.stderr)
        return EXIT_DATABASE
    try:
        store = open_store(url)
        try:
            built = report.build(store, since_ms, until_ms)
        finally:
            store.close()
    except StoreError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_DATABASE
    if args.format == "png":
        data = report_chart.render(built)
    else:
        render = {"table": report_text.as_table, "csv": report_text.as_csv, "json": report_text.as_json}
        data = render[args.format](built).encode()
    if args.out:
        try:
            write_atomic(Path(args.out), data, 0o644)
        except OSError as exc:
            raise UsageError(f"--out: cannot write {args.out}: {exc.strerror or exc}") from None
    else:
        sys.stdout.write(data.decode())
    return EXIT_OK
