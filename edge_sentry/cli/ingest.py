"""`edge-sentry fleet ingest [--db URL]`: store what the sentries report, until stopped.

The broker and the ingester's login come from the config's `[mqtt]` section, its settings from
`[ingest]`, retention from `privacy.retention_days`. `--db` (or `ingest.db`) is a SQLite file or a
`postgresql://` URL; without either, `fleet.sqlite3` in `device.state_dir`. A progress line goes to
stderr every `ingest.progress_s`. Ctrl-C or SIGTERM stops it after the batch in hand; whatever was
not yet acknowledged the broker keeps for the next start.

Exit codes: 0 stopped; 2 bad usage (no `[mqtt]` section); 4 the broker unreachable or refusing;
5 the database cannot be opened.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from ..backend.ingest import Ingester, default_client_id
from ..backend.store import default_url, open_store
from ..config import Config
from ..errors import FleetError, StoreError, UsageError

EXIT_OK, EXIT_USAGE, EXIT_BROKER, EXIT_DATABASE = 0, 2, 4, 5


def register(fleet: Any) -> None:
    """Add `ingest` to the `fleet` sub-command set."""
    p = fleet.add_parser(
        "ingest",
        help="store every sentry's scans, events, state and health in a database, until stopped",
        description="Subscribe to every sentry's scan and event topics (an MQTT 5 shared subscription: "
        "run several to share the load) and their retained state and health, and store them: in a "
        "SQLite file (default: fleet.sqlite3 in the state folder) or in PostgreSQL (--db "
        "postgresql://...). Each message is acknowledged after its rows are committed. Exit codes: "
        "0 stopped, 2 bad usage, 4 broker unreachable or refusing, 5 database unusable.",
    )
    add_db(p)
    p.add_argument("--client-id", metavar="ID",
                   help="the MQTT client id, which names the persistent session: keep it across "
                   f"restarts, one per process (default {default_client_id()})")
    p.set_defaults(func=handle)


def add_db(parser: Any) -> None:
    """`--db`, the same for every command on the back end's database."""
    parser.add_argument("--db", metavar="URL",
                        help="SQLite file or postgresql:// URL (default: ingest.db, else fleet.sqlite3 in "
                        "device.state_dir)")


def db_url(args: argparse.Namespace, config: Config) -> str:
    return str(args.db or config.ingest.db or default_url(config.device.state_dir))


def handle(args: argparse.Namespace, config: Config) -> int:
    name = "edge-sentry fleet ingest"
    if config.mqtt is None:
        raise UsageError("no [mqtt] section in the config: it names the fleet's broker")
    url = db_url(args, config)
    try:
        store = open_store(url, ahead_days=config.ingest.partitions_ahead_days)
    except StoreError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_DATABASE
    ingester = Ingester(config.mqtt, store, config.ingest, retention_days=config.privacy.retention_days,
                        client_id=args.client_id, progress=sys.stderr)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        ingester.connect()
        print(f"{name}: storing into {store.url} as {ingester.client_id} (Ctrl-C to stop)",
              file=sys.stderr, flush=True)
        ingester.run(stop)
    except KeyboardInterrupt:
        pass
    except FleetError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return EXIT_BROKER
    finally:
        signal.signal(signal.SIGTERM, previous)
        ingester.close()
        store.close()
    return EXIT_OK
