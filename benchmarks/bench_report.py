"""Fleet report: its time over a million stored scan events, on SQLite and on PostgreSQL.

Fills each database with generated scan events of 1,000 sentries (50 sites of 20, four entrances a
site) spread over one day, with their state and an hourly health report each, written through the
store's batch write as the ingester writes them (the hourly rollup included), then times
`report.build` over the day, with both ends of the period off the hour so that the edges are read
from the events themselves. Beside it, in the same process: `SELECT count(*)` over the events (the
baseline) and the plain GROUP BY over the events that the rollup spares the report. Target: the
report in under a second (docs/protocol.md section 7.1); exit 1 otherwise.

PostgreSQL comes from where the tests get it (tests/pg.py: EDGE_SENTRY_TEST_PG, a local server, or a
private cluster); `--pg URL` names one, `--no-pg` skips it.

Run: .venv/bin/python benchmarks/bench_report.py [--events N] [--no-pg] [--pg URL]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tests"))

from edge_sentry.backend import report  # noqa: E402
from edge_sentry.backend.decode import Record, Status  # noqa: E402
from edge_sentry.backend.store import Store, open_store  # noqa: E402

TARGET_S = 1.0
SITES, DEVICES, ENTRANCES = 50, 20, ("north", "south", "east", "west")
HOUR, DAY = 3_600_000, 86_400_000
START = 1_795_000_000_000 // DAY * DAY  # a day's start, UTC
BATCH = 10_000
DENY = ("expired", "revoked", "bad-signature", "passback", "unknown-key")
GROUPED = ("SELECT site, entrance, mode, verdict, reason, count(*) FROM events WHERE t_ms >= ? AND t_ms < ? "
           "GROUP BY site, entrance, mode, verdict, reason")
MODES = ("scan",) * 90 + ("manual",) * 4 + ("exit",) * 3 + ("assisted",) * 3


def events(count: int, seed: int = 7) -> Iterator[list[Record]]:
    """`count` scan events in batches, each device's at its own entrance, times over the day."""
    rng = random.Random(seed)
    batch: list[Record] = []
    for n in range(count):
        site, device = rng.randrange(SITES), rng.randrange(DEVICES)
        t = START + rng.randrange(DAY)
        deny = rng.random() < 0.1
        batch.append(Record(
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)), site=f"site-{site:02d}",
            device=f"gate-{device:02d}", kind="scan", event="scan", seq=n + 1, t_ms=t, arrived_ms=t + 200,
            entrance=ENTRANCES[device % 4], mode=rng.choice(MODES), scheme="es1",
            verdict="deny" if deny else "accept", reason=rng.choice(DENY) if deny else "ok",
            issuer="box-office", latency_ms=40.0, subject=b"\x01" * 90, details="{}"))
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def statuses() -> list[Status]:
    """Each sentry online from the day's start, one health report an hour."""
    out = []
    for site in range(SITES):
        for device in range(DEVICES):
            where = (f"site-{site:02d}", f"gate-{device:02d}")
            out.append(Status(*where, "state", START, START, True, json.dumps({"online": True})))
            out += [Status(*where, "health", START + h * HOUR, START + h * HOUR, None,
                           json.dumps({"outbox": {"depth": (site + device + h) % 40}})) for h in range(24)]
    return out


def fill(store: Store, count: int) -> float:
    began = time.perf_counter()
    status = statuses()
    for i, batch in enumerate(events(count)):
        store.write(batch, [], status[i * 1000:(i + 1) * 1000], "bench")
    rest = status[(count // BATCH + 1) * 1000:]
    if rest:
        store.write([], [], rest, "bench")
    return time.perf_counter() - began


def best(action: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return min(times)


def measure(name: str, url: str, count: int) -> bool:
    store = open_store(url)
    try:
        filled = fill(store, count)
        stored = int(str(store.rows("SELECT count(*) FROM events")[0][0]))
        since, until = START + 17 * 60_000, START + DAY - 23 * 60_000
        built = report.build(store, since, until)
        scans = sum(line.scans for line in built.lines)
        expected = int(str(store.rows("SELECT count(*) FROM events WHERE t_ms >= ? AND t_ms < ?",
                                      (since, until))[0][0]))
        baseline = best(lambda: store.rows("SELECT count(*) FROM events"))
        grouped = best(lambda: store.rows(GROUPED, (since, until)), runs=1)
        took = best(lambda: report.build(store, since, until))
    finally:
        store.close()
    ok = took < TARGET_S and scans == expected
    print(f"{name:<11} {stored:>9} events stored in {filled:6.1f} s; report {len(built.lines)} lines, "
          f"{scans} scans ({'matches' if scans == expected else 'DIFFERS FROM'} the events)")
    print(f"{'':<11} count(*) {baseline * 1000:8.1f} ms   plain GROUP BY {grouped * 1000:8.1f} ms   "
          f"report {took * 1000:8.1f} ms  (x{took / baseline:.2f} count(*), "
          f"x{took / grouped:.2f} GROUP BY)   "
          f"target < {TARGET_S:g} s: {'ok' if ok else 'FAILED'}")
    return ok


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    import pg

    with pg.server() as server, pg.fresh_database(server) as fresh:
        yield fresh


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--pg", metavar="URL", help="an empty PostgreSQL database to fill")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-report-") as folder:
        ok &= measure("SQLite", str(Path(folder) / "fleet.sqlite3"), args.events)
    if not args.no_pg:
        with postgres(args.pg) as url:
            ok &= measure("PostgreSQL", url, args.events)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
