"""Fleet back end: how many scan events per second `fleet ingest` stores, from broker to committed row.

The stream: one million scan events (100 k with `--quick`) from 1,000 simulated sentries (10 sites of
100 gates), each on its own topic `sentry/v1/{site}/{device}/scan`, as a sentry's drain sends them: CBOR
arrays of 100 events per message, QoS 1, content type application/cbor. Every event has a UUIDv7 id, a
per-sentry `seq` and the hot loop's fields (a sealed subject of 90 bytes). The payloads are made before
the clock starts; the messages interleave the sentries, and a few publisher connections (the broker's
operator login) send them through a private local Mosquitto (tests/broker.py, on free loopback ports, a
fresh one for each measurement so that no earlier session holds a copy).

Measured, each from the first publish to the last event committed (the `counters` table, which each
batch's transaction updates, polled every 20 ms):

- baseline: the broker's own throughput for the same messages to a plain paho subscriber that only
  acknowledges them (in this process);
- SQLite: one `edge-sentry fleet ingest` into a SQLite file;
- PostgreSQL: two `edge-sentry fleet ingest` on the same shared subscription, into a fresh database
  (tests/pg.py finds or makes the server; the database is dropped at the end).

The ingesters are subprocesses, as they run in production: two of them in threads of one process would
share one interpreter lock, and this process's publishers would take it too. The figures print the
events per second, the ratio to the baseline (what the ingester costs over the broker), the duplicates
(0 without faults) and each ingester's share. Target: >= 10,000 events/s into PostgreSQL with two
ingesters. Exit 1 when it fails or when an event is missing.

Run: nice -n 10 .venv/bin/python benchmarks/bench_ingest.py [--quick] [--events N] [--publishers N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import paho.mqtt.client as paho  # noqa: E402
import pg  # noqa: E402
from broker import Broker, find_mosquitto  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402
from paho.mqtt.subscribeoptions import SubscribeOptions  # noqa: E402

from edge_sentry.backend import schema  # noqa: E402
from edge_sentry.link import payloads  # noqa: E402
from edge_sentry.records import new_event_id  # noqa: E402

TARGET_PG_EVENTS_S = 10_000.0
SITES, GATES = 10, 100
PER_MESSAGE = 100
POLL_S = 0.02
TIMEOUT_S = 1800.0

Message = tuple[str, bytes]


def sentries() -> list[tuple[str, str]]:
    return [(f"site-{s:02d}", f"gate-{g:03d}") for s in range(SITES) for g in range(GATES)]


def scan_event(site: str, device: str, seq: int, t_ms: int) -> dict[str, Any]:
    """A scan as the hot loop makes it and the outbox stamps it (docs/protocol.md section 4)."""
    return {"event": "scan", "id": new_event_id(), "seq": seq, "t": t_ms, "site": site, "device": device,
            "entrance": "north", "mode": "scan", "scheme": "es1", "verdict": "accept" if seq % 7 else "deny",
            "reason": "ok" if seq % 7 else "expired", "issuer": "arena-box-office",
            "latency_ms": 20.0 + seq % 30, "subject": bytes(90)}


def stream(events: int) -> list[Message]:
    """`events` scan events as (topic, CBOR batch) messages, the sentries taking turns."""
    who = sentries()
    messages = events // PER_MESSAGE
    seq = dict.fromkeys(who, 0)
    t_ms = int(time.time() * 1000)
    out: list[Message] = []
    for n in range(messages):
        site, device = who[n % len(who)]
        first = seq[(site, device)]
        batch = [scan_event(site, device, first + i + 1, t_ms + n) for i in range(PER_MESSAGE)]
        seq[(site, device)] = first + PER_MESSAGE
        out.append((f"sentry/v1/{site}/{device}/scan", payloads.encode(batch)))
    return out


# -- publishing ------------------------------------------------------------------------------------


def publish_all(broker: Broker, messages: list[Message], publishers: int) -> float:
    """Send every message at QoS 1 over `publishers` connections; the perf_counter of the first send."""
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = payloads.CBOR
    clients = []
    for i in range(publishers):
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{i}",
                             protocol=paho.MQTTv5)
        client.username_pw_set(broker.operator, broker.passwords[broker.operator])
        client.max_inflight_messages_set(200)
        client.max_queued_messages_set(0)
        client.connect(broker.host, broker.port, 30)
        client.loop_start()
        clients.append(client)
    started = time.perf_counter()

    def send(i: int) -> None:
        infos = [clients[i].publish(topic, payload, qos=1, properties=props)
                 for topic, payload in messages[i::publishers]]
        for info in infos:
            info.wait_for_publish(TIMEOUT_S)

    threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(publishers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.disconnect()
        client.loop_stop()
    return started


def wait_until(done: Callable[[], bool], what: str) -> float:
    deadline = time.perf_counter() + TIMEOUT_S
    while not done():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{what}: not done within {TIMEOUT_S:g} s")
        time.sleep(POLL_S)
    return time.perf_counter()


# -- the measurements ------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    seconds: float
    events: int
    duplicates: int = 0
    shares: dict[str, int] = field(default_factory=dict)
    rejected: int = 0

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def baseline(folder: Path, messages: list[Message], publishers: int) -> Result:
    """The broker alone: a paho subscriber on the shared subscription that only acknowledges."""
    received = [0]
    lock = threading.Lock()

    def on_message(_c: Any, _u: Any, _m: paho.MQTTMessage) -> None:
        with lock:
            received[0] += 1

    with Broker(folder) as broker:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-sub", protocol=paho.MQTTv5)
        client.username_pw_set(broker.ingester, broker.passwords[broker.ingester])
        client.on_message = on_message
        subscribed = threading.Event()
        client.on_subscribe = lambda *_: subscribed.set()
        client.connect(broker.host, broker.port, 30)
        client.loop_start()
        client.subscribe("$share/base/sentry/v1/+/+/scan", options=SubscribeOptions(qos=1))
        if not subscribed.wait(10):
            raise RuntimeError("the baseline subscriber got no SUBACK")
        started = publish_all(broker, messages, publishers)
        ended = wait_until(lambda: received[0] >= len(messages), "baseline")
        client.disconnect()
        client.loop_stop()
    return Result("broker to a paho subscriber (baseline)", ended - started, received[0] * PER_MESSAGE)


def ingest_config(broker: Broker, folder: Path) -> Path:
    path = folder / "ingest.toml"
    path.write_text(
        f'[device]\nstate_dir = "{folder / "state"}"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nusername = "{broker.ingester}"\n'
        f'password = "{broker.passwords[broker.ingester]}"\n'
        '[ingest]\ngroup = "bench"\nprogress_s = 3600\n')
    return path


@contextlib.contextmanager
def ingesters(config: Path, db: str, count: int) -> Iterator[list[str]]:
    """`count` `edge-sentry fleet ingest` processes, connected and subscribed; their client ids."""
    names = [f"bench-ingest-{i + 1}" for i in range(count)]
    procs = []
    try:
        for name in names:
            command = [sys.executable, "-c", "import sys; from edge_sentry.cli import main; sys.exit(main())",
                       "--config", str(config), "fleet", "ingest", "--db", db, "--client-id", name]
            proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
            procs.append(proc)
            assert proc.stderr is not None
            line = proc.stderr.readline()
            if "storing into" not in line:
                raise RuntimeError(f"{name} did not start: {line.strip()} {proc.stderr.read()[-2000:]}")
        yield names
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Counters:
    """The `counters` table, read on a connection of the benchmark's own."""

    def __init__(self, db: str) -> None:
        self.postgres = db.startswith("postgresql://")
        if self.postgres:
            import psycopg

            self._pg = psycopg.connect(db, autocommit=True)
        else:
            self._lite = sqlite3.connect(db, timeout=30)

    def rows(self) -> list[tuple[str, str, int]]:
        query = "SELECT name, source, value FROM counters"
        if self.postgres:
            return [(n, s, int(v)) for n, s, v in self._pg.execute(query).fetchall()]
        return [(n, s, int(v)) for n, s, v in self._lite.execute(query).fetchall()]

    def total(self, name: str) -> int:
        return sum(v for n, _, v in self.rows() if n == name)

    def handled(self) -> int:
        """Events stored, duplicate or rejected: each counted once its batch committed."""
        return sum(v for n, _, v in self.rows() if n in (schema.STORED, schema.DUPLICATES)
                   or n.startswith(schema.REJECTED))

    def by_source(self, name: str) -> dict[str, int]:
        return {s: v for n, s, v in self.rows() if n == name}

    def events(self) -> int:
        query = "SELECT count(*) FROM events"
        if self.postgres:
            row = self._pg.execute(query).fetchone()
        else:
            row = self._lite.execute(query).fetchone()
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        if self.postgres:
            self._pg.close()
        else:
            self._lite.close()


def ingest(name: str, folder: Path, db: str, count: int, messages: list[Message], publishers: int) -> Result:
    events = len(messages) * PER_MESSAGE
    with Broker(folder / "broker") as broker, ingesters(ingest_config(broker, folder), db, count):
        counters = Counters(db)
        try:
            started = publish_all(broker, messages, publishers)
            ended = wait_until(lambda: counters.handled() >= events, name)
            stored = counters.events()
            rejected = counters.handled() - counters.total(schema.STORED) - counters.total(schema.DUPLICATES)
            return Result(name, ended - started, stored, counters.total(schema.DUPLICATES),
                          counters.by_source(schema.STORED), rejected)
        finally:
            counters.close()


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    with pg.server() as server, pg.fresh_database(server) as url:
        yield url


# -- the report ------------------------------------------------------------------------------------


def show(result: Result, base: Result | None) -> None:
    ratio = f"   {result.rate / base.rate:.2f}x broker" if base is not None else ""
    print(f"  {result.name:<44} {result.rate:>10,.0f} events/s  ({result.seconds:6.1f} s){ratio}")
    if base is not None:
        total = sum(result.shares.values()) or 1
        shares = ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(result.shares.items()))
        print(f"    {result.events:,} events stored, {result.duplicates} duplicates, "
              f"{result.rejected} rejects; "
              f"share: {shares}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 k events instead of a million")
    parser.add_argument("--events", type=int, help="scan events in the stream (a multiple of 100)")
    parser.add_argument("--publishers", type=int, default=4, help="publisher connections")
    args = parser.parse_args()
    if find_mosquitto() is None:
        print("mosquitto is not installed: scripts/setup --dev installs it", file=sys.stderr)
        return 2
    events = args.events or (100_000 if args.quick else 1_000_000)
    clock = time.perf_counter()
    messages = stream(events)
    events = len(messages) * PER_MESSAGE
    print(f"stream: {events:,} scan events from {SITES * GATES:,} sentries, {PER_MESSAGE} per message, "
          f"{sum(len(p) for _, p in messages) / len(messages) / 1024:.1f} KiB a message "
          f"(made in {time.perf_counter() - clock:.1f} s, not measured); {args.publishers} publishers, QoS 1")
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        base = baseline(tmp / "baseline", messages, args.publishers)
        show(base, None)
        lite = ingest("SQLite, 1 ingester", tmp / "sqlite", str(tmp / "fleet.sqlite3"), 1, messages,
                      args.publishers)
        show(lite, base)
        try:
            with postgres_database() as url:
                post = ingest("PostgreSQL, 2 ingesters (shared subscription)", tmp / "pg", url, 2, messages,
                              args.publishers)
        except RuntimeError as exc:
            if str(exc) != pg.MISSING:
                raise
            print(exc, file=sys.stderr)
            return 2
        show(post, base)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    complete = all(r.events == events and not r.rejected for r in (lite, post))
    ok = post.rate >= TARGET_PG_EVENTS_S and complete
    print(f"  every event stored once: {'yes' if complete else 'NO'}")
    print(f"  target PostgreSQL >= {TARGET_PG_EVENTS_S:,.0f} events/s: {'PASS' if ok else 'FAIL'}")
    print(f"total run time {time.perf_counter() - clock:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
