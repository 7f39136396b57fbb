"""Outbox: put -> durable latency with a small and a large backlog, throughput, drain, replay; and
stock TinyDB beside it, to show why the outbox has its own storage.

docs/architecture.md (budgets) asks that the append cost stay flat from 1 k to 100 k queued events (ratio of
the latencies <= 1.5). Latency is measured one event at a time, from put() to its on_durable
callback (so it includes the writer's wake-up, the append and the fsync), in two outboxes filled
with 1 k and 100 k durable, unacknowledged events, measured in turns. Stock TinyDB's JSONStorage
rewrites its whole file on each insert; TinyDB over the outbox's LogStorage appends one record,
but TinyDB's Table still copies the table on each write, which is why events bypass Table (see
edge_sentry/storage.py).

Run: .venv/bin/python benchmarks/bench_outbox.py [--dir DIR] [--rounds N]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinydb import TinyDB
from tinydb.storages import JSONStorage

from edge_sentry.outbox import Outbox
from edge_sentry.storage import LogStorage

TARGET_RATIO = 1.5


def scan_event(n: int) -> dict:
    """A scan event of the size the hot loop produces (a sealed subject is ~90 bytes)."""
    return {"event": "scan", "t": 1_760_000_000_000 + n, "site": "demo-site",
            "device": "sentry-demo", "entrance": "main", "mode": "scan", "scheme": "es1",
            "verdict": "accept", "reason": "ok", "issuer": "demo-issuer", "latency_ms": 12.5,
            "subject": bytes(90)}


def percentiles_ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1e3, p99 * 1e3


def outbox(path: Path, **kwargs) -> Outbox:
    options = {"max_events": 1_000_000, "queue_size": 200_000, "retention_days": 14.0}
    options.update(kwargs)
    return Outbox(path, **options)


def fill(ob: Outbox, count: int) -> None:
    for n in range(count):
        while ob.put(scan_event(n)) is None:
            ob.flush(1.0)
    ob.flush(None)


def append_latency(root: Path, backlogs: tuple[int, ...], rounds: int) -> list[tuple[float, float]]:
    """p50, p99 of put -> on_durable, one event at a time, for outboxes of each backlog.

    The outboxes are measured in turns, round by round, so that a busy spell of the disk or the
    CPU (other work on the machine) lands on all of them alike and the ratio stays honest.
    """
    durable = threading.Event()
    boxes = [outbox(root / f"latency-{n}", on_durable=lambda _e: durable.set()) for n in backlogs]
    samples: list[list[float]] = [[] for _ in backlogs]
    warm_up = rounds // 10  # caches, allocator and the writer's first wake-ups: not measured
    try:
        for ob, backlog in zip(boxes, backlogs, strict=True):
            ob.start()
            fill(ob, backlog)
            assert ob.stats()["depth"] == backlog
        for n in range(warm_up + rounds):
            for ob, taken in zip(boxes, samples, strict=True):
                durable.clear()
                start = time.perf_counter()
                ob.put(scan_event(n))
                durable.wait()
                taken.append(time.perf_counter() - start)
    finally:
        for ob in boxes:
            ob.stop()
    return [percentiles_ms(taken[warm_up:]) for taken in samples]


def throughput(root: Path, count: int) -> tuple[float, float, float, int]:
    """Events/s and MB/s of put() as fast as it goes until all is durable; put() cost; bytes."""
    ob = outbox(root / "throughput")
    with ob:
        start = time.perf_counter()
        for n in range(count):
            ob.put(scan_event(n))
        put_s = time.perf_counter() - start
        ob.flush(None)
        elapsed = time.perf_counter() - start
        size = ob.stats()["file_bytes"]
    return count / elapsed, size / elapsed / 1e6, put_s / count * 1e6, size


def drain(root: Path, batch: int) -> tuple[float, float]:
    """Events/s of pending(batch) + ack() over the throughput run's backlog; replay time (s)."""
    start = time.perf_counter()
    ob = outbox(root / "throughput")
    ob.start()
    replay_s = time.perf_counter() - start
    total = 0
    start = time.perf_counter()
    while True:
        events = ob.pending(batch)
        if not events:
            break
        ob.ack([e["id"] for e in events])
        total += len(events)
    rate = total / (time.perf_counter() - start)
    ob.stop()
    return rate, replay_s


def tinydb_insert(root: Path, storage: type, docs: int, rounds: int = 30) -> tuple[float, float]:
    """ms per insert into a table of `docs` documents, and KB written per insert."""
    path = root / f"tinydb-{storage.__name__}-{docs}.db"
    with TinyDB(path, storage=storage) as db:
        db.insert_multiple(scan_event(n) | {"subject": "00" * 90} for n in range(docs))
        before = path.stat().st_size
        start = time.perf_counter()
        for n in range(rounds):
            db.insert(scan_event(docs + n) | {"subject": "00" * 90})
        elapsed = time.perf_counter() - start
        after = path.stat().st_size
    # JSONStorage rewrites the file: each insert writes all of it; LogStorage appends the delta.
    written = after if storage is JSONStorage else (after - before) / rounds
    return elapsed / rounds * 1e3, written / 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where to write (default: a temporary folder)")
    parser.add_argument("--rounds", type=int, default=2000, help="latency samples per backlog")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-outbox-", dir=args.dir))
    try:
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        small, large = append_latency(root, (1_000, 100_000), args.rounds)
        print(f"append put->durable, backlog   1k: p50 {small[0]:.3f} ms  p99 {small[1]:.3f} ms")
        print(f"append put->durable, backlog 100k: p50 {large[0]:.3f} ms  p99 {large[1]:.3f} ms")
        ratio50, ratio99 = large[0] / small[0], large[1] / small[1]
        verdict = "ok" if ratio50 <= TARGET_RATIO else "OVER TARGET"
        print(f"ratio 100k/1k: p50 {ratio50:.2f}  p99 {ratio99:.2f}  "
              f"(target <= {TARGET_RATIO}: {verdict})")
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"peak RSS growth with a 100k backlog open: {(rss1 - rss0) / 1024:.0f} MB")

        rate, mbps, put_us, size = throughput(root, 100_000)
        print(f"raw throughput, 100k puts until durable: {rate:,.0f} events/s, {mbps:.1f} MB/s "
              f"({size / 100_000:.0f} B/event on disk); put() itself {put_us:.1f} us")
        drain_rate, replay_s = drain(root, 500)
        print(f"replay of 100k events at start: {replay_s:.2f} s; "
              f"drain pending(500)+ack: {drain_rate:,.0f} events/s")

        print("TinyDB, one insert into a table of 1k / 10k documents:")
        for storage, note in ((JSONStorage, "stock: rewrites the whole file"),
                              (LogStorage, "appends one record; Table and read() still copy")):
            (small_ms, small_kb), (large_ms, large_kb) = (
                tinydb_insert(root, storage, 1_000), tinydb_insert(root, storage, 10_000))
            print(f"  {storage.__name__:12s} {small_ms:6.2f} ms / {large_ms:6.2f} ms "
                  f"(ratio {large_ms / small_ms:4.1f}), writes {small_kb:7.1f} KB / "
                  f"{large_kb:7.1f} KB per insert  [{note}]")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
