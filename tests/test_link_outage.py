"""The link when things break: the broker goes away under load and comes back on the same port (no
event may go missing), and a sentry process dies without a word (the broker publishes its Will)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest

from edge_sentry.link import Link
from edge_sentry.outbox import Outbox

ROOT = Path(__file__).resolve().parents[1]
WAIT = 30.0


def wait_until(predicate: Callable[[], Any], timeout: float = WAIT, step: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(step)
    return value


@pytest.fixture
def outbox(broker_config) -> Iterator[tuple[Any, Outbox]]:
    config = broker_config(batch_size=50)
    box = Outbox(Path(config.outbox.path), max_events=100_000, queue_size=10_000, retention_days=14)
    box.start()
    yield config, box
    box.stop()


def test_no_event_goes_missing_when_the_broker_restarts_under_load(broker, outbox, subscriber):
    config, box = outbox
    link = Link(config, box)
    # The fleet's ingester: a persistent session, so what arrives while it reconnects waits for it.
    ingest = subscriber(
        [link.topics.scan, link.topics.event],
        client_id="ingest-1",
        clean_start=False,
        session_expiry_s=600,
    )
    produced: list[dict[str, Any]] = []
    stop_feeding = threading.Event()

    def feed() -> None:
        n = 0
        while not stop_feeding.is_set():
            event = {"event": "scan", "n": n} if n % 40 else {"event": "door-forced", "n": n}
            stamped = box.put(event)
            if stamped is not None:
                produced.append(stamped)
            n += 1
            time.sleep(0.001)

    feeder = threading.Thread(target=feed, name="test-feeder", daemon=True)
    feeder.start()
    link.start()
    try:
        assert link.wait_connected(WAIT)
        assert wait_until(lambda: link.stats()["acked"] >= 300), link.stats()
        broker.stop()
        try:
            assert link.wait_state("disconnected", "connecting", timeout=WAIT)
            during = len(produced)
            assert wait_until(lambda: len(produced) >= during + 300)  # the outage lasts a while
            assert link.state() != "connected"
        finally:
            broker.start()
        assert link.wait_connected(WAIT), link.stats()
        acked = link.stats()["acked"]
        assert wait_until(lambda: link.stats()["acked"] >= acked + 300), link.stats()
    finally:
        stop_feeding.set()
        feeder.join(WAIT)
    assert box.flush(WAIT)
    assert wait_until(lambda: box.stats()["depth"] == 0), (link.stats(), box.stats())
    stats = link.stats()
    link.stop()
    assert stats["disconnects"] >= 1 and stats["connects"] >= 2

    def received() -> set[tuple[str, int]]:
        out = set()
        for m in list(ingest.messages):
            body = cbor2.loads(m.payload)
            for event in body if isinstance(body, list) else [body]:
                out.add((event["id"], event["seq"]))
        return out

    want = {(e["id"], e["seq"]) for e in produced}
    pending = {(e["id"], e["seq"]) for e in box.pending(1_000_000)}
    assert wait_until(lambda: not (want - received() - pending)), sorted(want - received() - pending)[:5]
    seqs = sorted(seq for _id, seq in want)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # produced without gaps, so all were checked


CHILD = r"""
import json, sys, time
from edge_sentry.config import from_mapping
from edge_sentry.link import Link
link = Link(from_mapping(json.loads(sys.argv[1])))
link.start()
print("READY" if link.wait_connected(20) else "FAILED " + str(link.stats()), flush=True)
time.sleep(120)
"""


def test_a_sentry_that_dies_gets_its_last_will_published(broker, subscriber, tmp_path):
    mapping = broker.config_mapping(tmp_path / "sentry", device=broker.devices[1])
    topic = f"sentry/v1/{broker.site}/{broker.devices[1]}/state"
    watch = subscriber(topic)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(mapping)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "READY"
        birth = watch.wait_for(topic, lambda m: cbor2.loads(m.payload)["online"] is True)
        assert birth is not None
        os.kill(child.pid, signal.SIGKILL)  # no DISCONNECT: the socket just closes
        child.wait(WAIT)
        will = watch.wait_for(topic, lambda m: cbor2.loads(m.payload)["online"] is False)
        assert will is not None, broker.log_tail()
        body = cbor2.loads(will.payload)
        assert body["reason"] == "lost"
        assert body["boot_id"] == cbor2.loads(birth.payload)["boot_id"]
        assert will.properties["ContentType"] == "application/cbor"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(WAIT)
    later = subscriber(topic)
    kept = later.wait_for(topic, lambda m: m.retain)
    assert kept is not None and cbor2.loads(kept.payload)["online"] is False  # the Will is retained
