"""`edge-sentry authority trace`: the health authority traces one subject on the fleet's back end.

    edge-sentry authority trace --db URL --key PEM (--event ID | --subject B64)
                                [--since ISO8601] [--until ISO8601] [--window-min N] [--format table|json]

The subject is the one sealed in event ID (opened with the key), or given as its own value in
base64. The window [--since, --until) defaults to the last `privacy.retention_days` up to now, the
most the back end keeps. Every scan of the window with a subject is opened (one HPKE open each);
the report lists the subject's visits and, per visit, the other subjects scanned at the same site
and entrance within ± --window-min minutes, by their opened value in base64 (what --subject takes,
to trace a contact next). Progress (opened / total) goes to stderr on long windows.

The database is only read (backend/reader.py). Opened subjects go to stdout, the command's product,
and nowhere else: no log call here carries one, no file is written.

Exit codes: 0 traced and every subject opened; 1 traced, but some subjects did not open (counted in
the report), or the event's own subject does not open; 2 bad usage (key file, key type, an event id
that is not stored or has no subject, bad base64 or times); 5 the database cannot be read.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from .. import privacy, tracing
from ..backend.reader import Reader, Scan, open_reader
from ..config import Config
from ..errors import AuthorityKeyError, StoreError, SubjectError, UsageError
from ..fleet.tail import escaped
from .verify import parse_time

EXIT_OK, EXIT_UNOPENED, EXIT_USAGE, EXIT_DATABASE = 0, 1, 2, 5
NAME = "edge-sentry authority trace"
PROGRESS_EVERY = 20000  # scans opened between two progress lines
DEFAULT_WINDOW_MIN = 30.0


def register(actions: Any) -> None:
    """Add `trace` to the `authority` actions."""
    p = actions.add_parser(
        "trace",
        help="one subject's visits and co-visitors, from the fleet's back-end database",
        description="Open the sealed subjects of a time window in the back-end database (read only), "
        "find one subject's visits (the subject of --event, or --subject in base64) and the subjects "
        "scanned at the same entrance within ±--window-min minutes of each. Exit codes: 0 traced, 1 "
        "some subjects did not open, 2 bad usage, 5 database unreadable.",
    )
    p.add_argument("--db", required=True, metavar="URL", help="SQLite file or postgresql:// URL")
    p.add_argument("--key", required=True, metavar="PEM", help="the authority's private key")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--event", metavar="ID", help="an event id whose subject to trace")
    which.add_argument("--subject", metavar="B64", help="the subject's own value, base64")
    p.add_argument("--since", metavar="ISO8601", help="window start (default: privacy.retention_days ago)")
    p.add_argument("--until", metavar="ISO8601", help="window end, excluded (default: now)")
    p.add_argument("--window-min", type=float, default=DEFAULT_WINDOW_MIN, metavar="N",
                   help=f"minutes either side of a visit for co-visitors (default {DEFAULT_WINDOW_MIN:g})")
    p.add_argument("--format", choices=("table", "json"), default="table", help="output (default table)")
    p.set_defaults(func=handle)


def _say(message: str) -> None:
    print(f"{NAME}: {' '.join(message.split())}", file=sys.stderr)


def _fail(message: str, code: int) -> int:
    _say(message)
    return code


def _window(args: argparse.Namespace, config: Config) -> tuple[int, int, int]:
    until = parse_time(args.until, "--until") if args.until else time.time()
    if args.since:
        since = parse_time(args.since, "--since")
    else:
        since = until - config.privacy.retention_days * 86_400
    if since >= until:
        raise UsageError("--since must be before --until")
    if not 0 <= args.window_min <= 24 * 60:
        raise UsageError("--window-min must be between 0 and 1440")
    return int(since * 1000), int(until * 1000), int(args.window_min * tracing.MINUTE_MS)


def _subject_arg(text: str) -> bytes:
    try:
        sub = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise UsageError("--subject: not base64") from None
    if not 0 < len(sub) <= privacy.MAX_SUB_LENGTH:
        raise UsageError(f"--subject: must be 1 to {privacy.MAX_SUB_LENGTH} bytes")
    return sub


def _event_scan(reader: Reader, text: str) -> Scan:
    try:
        event_id = str(uuid.UUID(text.strip()))
    except ValueError:
        raise UsageError(f"--event: not an event id (a UUID): {text!r}") from None
    scan = reader.event(event_id)
    if scan is None:
        raise UsageError(f"--event: no event {event_id} in {reader.url}")
    if scan.subject is None:
        raise UsageError(f"--event: event {event_id} carries no subject")
    return scan


def _progress(total: int, out: TextIO) -> Callable[[int], None] | None:
    if total <= PROGRESS_EVERY:
        return None

    def show(done: int) -> None:
        if done % PROGRESS_EVERY == 0 or done == total:
            print(f"{NAME}: opened {done}/{total}", file=out, flush=True)

    return show


def handle(args: argparse.Namespace, config: Config) -> int:
    try:
        key = privacy.load_private_key(args.key)
        since_ms, until_ms, window_ms = _window(args, config)
        sub = _subject_arg(args.subject) if args.subject is not None else None
    except AuthorityKeyError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        return _fail(f"{exc.filename or args.key}: {exc.strerror}", EXIT_USAGE)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    try:
        reader = open_reader(args.db)
    except StoreError as exc:
        return _fail(str(exc), EXIT_DATABASE)
    try:
        return _trace(args, reader, key, sub, since_ms, until_ms, window_ms)
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except StoreError as exc:
        return _fail(str(exc), EXIT_DATABASE)
    finally:
        reader.close()


def _trace(args: argparse.Namespace, reader: Reader, key: Any, sub: bytes | None, since_ms: int,
           until_ms: int, window_ms: int) -> int:
    if sub is None:
        scan = _event_scan(reader, args.event)
        try:
            sub = tracing.open_scan(scan, key)
        except SubjectError as exc:
            return _fail(f"the subject of event {scan.id} does not open with this key ({exc.reason}: "
                         f"{exc})", EXIT_UNOPENED)
        if not since_ms <= scan.t_ms < until_ms:
            _say(f"event {scan.id} at {iso(scan.t_ms)} lies outside the window: it is not among the visits")
    trace = tracing.Trace(sub, since_ms, until_ms, window_ms)
    # Co-visitors of a visit near an edge may lie just outside the window: read that far too.
    low, high = since_ms - window_ms, until_ms + window_ms + 1
    expected = reader.count(low, high)
    opened = tracing.open_all(reader.scans(low, high), key, trace, _progress(expected, sys.stderr))
    tracing.find(trace, opened)
    if args.format == "json":
        print(json.dumps(as_json(trace), indent=2))
    else:
        print(as_table(trace))
    if trace.failed:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(trace.failed.items()))
        return _fail(f"{sum(trace.failed.values())} of {trace.total} subjects did not open ({reasons})",
                     EXIT_UNOPENED)
    return EXIT_OK


# --- output -----------------------------------------------------------------------------------------


def b64(sub: bytes) -> str:
    return base64.b64encode(sub).decode("ascii")


def iso(t_ms: int) -> str:
    return datetime.fromtimestamp(t_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _scan_json(scan: Scan) -> dict[str, Any]:
    return {"id": scan.id, "t": iso(scan.t_ms), "t_ms": scan.t_ms, "site": scan.site, "device": scan.device,
            "entrance": scan.entrance, "mode": scan.mode, "verdict": scan.verdict}


def as_json(trace: tracing.Trace) -> dict[str, Any]:
    visits = []
    for visit in trace.visits:
        co = [{"subject": b64(o.sub), **_scan_json(o.scan), "delta_s": (o.scan.t_ms - visit.scan.t_ms) / 1000}
              for o in visit.co_visitors]
        visits.append({**_scan_json(visit.scan), "co_visitors": co})
    return {
        "subject": b64(trace.sub), "since": iso(trace.since_ms), "until": iso(trace.until_ms),
        "window_min": trace.window_ms / tracing.MINUTE_MS, "scans": trace.total, "opened": trace.opened,
        "failed": dict(sorted(trace.failed.items())), "visits": visits,
        "contacts": sorted({b64(o.sub) for v in trace.visits for o in v.co_visitors}),
    }  # fmt: skip


def as_table(trace: tracing.Trace) -> str:
    lines = [
        f"subject {b64(trace.sub)}: {len(trace.visits)} visit(s) from {iso(trace.since_ms)} to "
        f"{iso(trace.until_ms)}, co-visitors within ±{trace.window_ms / tracing.MINUTE_MS:g} min",
        f"scans opened: {trace.opened} of {trace.total}"
        + "".join(f", {n} {reason}" for reason, n in sorted(trace.failed.items())),
    ]
    for visit in trace.visits:
        s = visit.scan
        lines += ["", escaped(f"{iso(s.t_ms)}  {s.site} / {s.entrance or '-'}  ({s.device})  "
                              f"{s.mode or '-'} {s.verdict or '-'}  event {s.id}")]
        if not visit.co_visitors:
            lines.append("    no co-visitors")
        for o in visit.co_visitors:
            delta = (o.scan.t_ms - s.t_ms) / 1000
            lines.append(escaped(f"    {b64(o.sub):<26} {iso(o.scan.t_ms)}  {delta:+9.0f} s  "
                                 f"{o.scan.device}  {o.scan.mode or '-'} {o.scan.verdict or '-'}"))
    contacts = {b64(o.sub) for v in trace.visits for o in v.co_visitors}
    lines += ["", f"{len(contacts)} distinct co-visitor(s)"]
    return "\n".join(lines)
