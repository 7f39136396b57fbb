"""kill -9 at any instant loses nothing that was reported durable, resurrects nothing that was
reported acked, and never lets a seq be handed out twice; a torn tail costs only the torn record."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from edge_sentry.outbox import Outbox
from edge_sentry.storage import scan

ROOT = Path(__file__).resolve().parents[1]
WAIT = 30.0
ENOUGH_DEADLINE_S = 600.0

# Puts events as fast as it can, acks four in five of the oldest (so compaction runs often), and
# prints: P id seq when put() returned, D id seq when on_durable fired, a id before ack() is called,
# A id when it returned, C n with the compaction count. Each line is one write() under a lock, so
# a line is whole or absent.
CHILD = r"""
import random, sys, threading
from edge_sentry.outbox import Outbox

lock = threading.Lock()
def out(line):
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

ob = Outbox(sys.argv[1], max_events=1_000_000, queue_size=500, retention_days=14,
            on_durable=lambda e: out(f"D {e['id']} {e['seq']}"),
            seq_block=64, compact_min_bytes=8192)
ob.start()
out("READY")
rng = random.Random(int(sys.argv[2]))
n = 0
while True:
    e = ob.put({"event": "scan", "n": n, "pad": "x" * rng.randint(0, 400)})
    if e is not None:
        out(f"P {e['id']} {e['seq']}")
    n += 1
    if n % 5 == 0:
        ids = [x["id"] for x in ob.pending(5)[:4]]
        for i in ids:
            out(f"a {i}")
        if ids and ob.ack(ids) == len(ids):
            for i in ids:
                out(f"A {i}")
    if n % 200 == 0:
        out(f"C {ob.stats()['compactions']}")
"""


class Child:
    """One run of CHILD, its output collected line by line as it comes."""

    def __init__(self, path: Path, seed: int) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(seed)],
                                     stdout=subprocess.PIPE, env=env, cwd=ROOT)
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, name="crash-test-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            if not raw.endswith(b"\n"):
                break  # the write the kill cut short
            line = raw.decode().rstrip("\n")
            self.lines.append(line)
            if line == "READY":
                self.ready.set()

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(WAIT)
        self._reader.join(WAIT)


def test_kill_9_at_random_instants_loses_no_durable_event_and_reuses_no_seq(tmp_path):
    path = tmp_path / "ob"
    rng = random.Random(1234)
    issued: dict[int, str] = {}  # every seq any run handed out, with its id
    durable: set[str] = set()
    acking: set[str] = set()  # ack() called: may be gone or not
    acked: set[str] = set()  # ack() returned: must be gone
    compactions = 0
    # At least six runs, and more until the runs together prove something: a slow machine (a Pi Zero 2 W,
    # an emulated arm64) writes far less before each kill, so the test counts what happened, not time.
    deadline = time.monotonic() + ENOUGH_DEADLINE_S
    run = 0
    while run < 6 or not (len(durable) > 100 and len(acked) > 50 and compactions > 0):
        assert time.monotonic() < deadline, (
            f"after {run} runs only {len(durable)} durable, {len(acked)} acked, {compactions} compactions"
        )
        child = Child(path, seed=run)
        run += 1
        assert child.ready.wait(WAIT), "child did not start"
        time.sleep(rng.uniform(0.05, 0.6))  # the kill lands wherever the child happens to be
        child.kill()
        for line in child.lines:
            kind, *rest = line.split()
            if kind == "P":
                event_id, seq = rest[0], int(rest[1])
                assert seq not in issued, f"seq {seq} handed out twice"
                issued[seq] = event_id
            elif kind == "D":
                durable.add(rest[0])
            elif kind == "a":
                acking.add(rest[0])
            elif kind == "A":
                acked.add(rest[0])
            elif kind == "C":
                compactions = max(compactions, int(rest[0]))

        with Outbox(path, max_events=1_000_000, queue_size=10, retention_days=14) as ob:
            pending = ob.pending(10_000_000)
        pending_ids = {e["id"] for e in pending}
        seqs = [e["seq"] for e in pending]
        assert seqs == sorted(set(seqs))
        assert durable - acking <= pending_ids, "a durable, unacked event was lost"
        assert not (acked & pending_ids), "an acked event came back"
        assert all(issued.get(e["seq"], e["id"]) == e["id"] for e in pending)
        assert scan((path / "events.log").read_bytes()).skipped == 0


def test_a_torn_last_record_is_dropped_and_nothing_else(tmp_path):
    path = tmp_path / "ob"
    with Outbox(path, max_events=100, queue_size=100, retention_days=14) as ob:
        stamped = [ob.put({"n": n}) for n in range(10)]
    log_path = path / "events.log"
    size = log_path.stat().st_size
    with open(log_path, "r+b") as fh:
        fh.truncate(size - 5)  # power cut in the middle of the last record
    with Outbox(path, max_events=100, queue_size=100, retention_days=14) as ob:
        assert ob.pending(100) == stamped[:9]
        assert ob.put({"n": 10})["seq"] == 11  # seq 10 was handed out once: never again
    with Outbox(path, max_events=100, queue_size=100, retention_days=14) as ob:
        assert [e["n"] for e in ob.pending(100)] == [*range(9), 10]
    assert scan(log_path.read_bytes()).torn == 0


def test_garbage_after_the_last_record_is_dropped_on_open(tmp_path):
    path = tmp_path / "ob"
    with Outbox(path, max_events=100, queue_size=100, retention_days=14) as ob:
        stamped = [ob.put({"n": n}) for n in range(3)]
    with open(path / "events.log", "ab") as fh:
        fh.write(b"\x00" * 4096)  # a size extended before the data reached the disk
    with Outbox(path, max_events=100, queue_size=100, retention_days=14) as ob:
        assert ob.pending(100) == stamped
        ob.put({"n": 3})
    with Outbox(path, max_events=100, queue_size=100, retention_days=14) as ob:
        assert len(ob.pending(100)) == 4
