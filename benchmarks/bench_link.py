"""Fleet link: how fast a backlog drains to the broker, and how big the payloads are.

Drain: an outbox pre-filled with scan events (20 k by default) is drained by `Link` to a private
local Mosquitto (tests/broker.py, on free loopback ports) with QoS 1, until every event is acked
and gone from the outbox. The baseline, measured in the same run, is a bare paho client publishing
the very same CBOR batches at QoS 1 and waiting for every PUBACK: the cost of MQTT itself, without
the outbox reads, the acks written to disk, and the link's bookkeeping. Rounds alternate the two so
that machine load lands on both alike; each figure is the best round.
docs/architecture.md (budgets) asks for thousands of events per second: the target is >= 2,000 events/s.

Sizes: a `scan` batch of 100 events and a `health` message, as CBOR (what the link sends) and as
JSON (bytes as base64), with the ratio.

Run: .venv/bin/python benchmarks/bench_link.py [--events N] [--rounds N] [--batch N]
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import paho.mqtt.client as paho  # noqa: E402
from broker import Broker, find_mosquitto  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from edge_sentry.link import Link, payloads  # noqa: E402
from edge_sentry.outbox import Outbox  # noqa: E402

TARGET_EVENTS_S = 2000.0


def scan_event(n: int) -> dict[str, Any]:
    """A scan event as the hot loop makes it, with a sealed subject (~90 bytes of HPKE output)."""
    return {"event": "scan", "t": 1_760_000_000_000 + n, "site": "arena", "device": "gate-1",
            "entrance": "north", "mode": "scan", "scheme": "es1", "verdict": "accept", "reason": "ok",
            "issuer": "demo-issuer", "latency_ms": 12.5, "subject": bytes(90)}


def health_message() -> dict[str, Any]:
    """A health report with the fields of docs/protocol.md section 6.4."""
    return {"t": 1_760_000_000_000, "uptime_s": 86_400, "load": [0.41, 0.37, 0.30], "cpu_temp_c": 52.1,
            "throttled": {"now": [], "since_boot": ["under-voltage"], "bits": 0x50000},
            "memory": {"rss_mb": 78.2, "available_mb": 311.0}, "disk": {"free_mb": 10_240, "used_pct": 31.5},
            "fps": 14.9, "decode_ms": {"p50": 0.8, "p99": 3.1}, "e2e_ms": {"p50": 21.0, "p99": 48.0},
            "outbox": {"depth": 0, "oldest_age_s": 0.0, "dropped": 0},
            "link": {"state": "connected", "connects": 1, "refusals": 0}}


def to_json(value: Any) -> bytes:
    def default(obj: Any) -> Any:
        if isinstance(obj, bytes):
            return base64.b64encode(obj).decode()
        raise TypeError(type(obj).__name__)

    return json.dumps(value, separators=(",", ":"), default=default).encode()


def fill(box: Outbox, count: int) -> None:
    for n in range(count):
        while box.put(scan_event(n)) is None:  # the queue is bounded: let the writer catch up
            time.sleep(0.001)
    if not box.flush(120):
        raise RuntimeError("outbox did not become durable")


def drain_with_link(broker: Broker, work: Path, count: int, batch: int) -> tuple[float, dict[str, Any]]:
    config = broker.config(work, batch_size=batch)
    box = Outbox(Path(config.outbox.path), max_events=max(200_000, count * 2), queue_size=10_000,
                 retention_days=14)
    box.start()
    try:
        fill(box, count)
        link = Link(config, box)
        started = time.perf_counter()
        link.start()
        while box.stats()["depth"] > 0:
            if time.perf_counter() - started > 300:
                raise RuntimeError(f"drain stalled: {link.stats()}")
            time.sleep(0.002)
        elapsed = time.perf_counter() - started
        stats = link.stats()
        link.stop()
        return elapsed, stats
    finally:
        box.stop()
        shutil.rmtree(work, ignore_errors=True)


def batches_of(count: int, batch: int) -> list[bytes]:
    events = []
    for n in range(count):
        event = scan_event(n)
        event.update(id=f"id-{n}", seq=n + 1)
        events.append(event)
    return [payloads.encode(events[i:i + batch]) for i in range(0, count, batch)]


def publish_bare(broker: Broker, messages: list[bytes]) -> float:
    """A plain paho client: connect, publish every message at QoS 1, wait for the last PUBACK."""
    device = broker.devices[0]
    topic = f"sentry/v1/{broker.site}/{device}/scan"
    done = threading.Event()
    acked = [0]

    def on_publish(*_args: Any) -> None:
        acked[0] += 1
        if acked[0] == len(messages):
            done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{device}-bare", protocol=paho.MQTTv5)
    client.username_pw_set(device, broker.passwords[device])
    client.on_publish = on_publish
    client.max_inflight_messages_set(20)
    started = time.perf_counter()
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    for message in messages:
        client.publish(topic, message, qos=1)
    if not done.wait(300):
        raise RuntimeError(f"bare client got {acked[0]} of {len(messages)} PUBACKs")
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return elapsed


def sizes() -> None:
    batch = [scan_event(n) | {"id": "01a2177c-e21d-749d-a7a4-6fcc40561d50", "seq": 10_000 + n}
             for n in range(100)]
    print("\npayload sizes (bytes)           CBOR      JSON   CBOR/JSON")
    for name, value in (("scan batch of 100 events", batch), ("health message", health_message())):
        cbor_size, json_size = len(payloads.encode(value)), len(to_json(value))
        print(f"  {name:<26} {cbor_size:>8} {json_size:>9} {cbor_size / json_size:>10.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=100, help="events per scan message (mqtt.batch_size)")
    args = parser.parse_args()
    if find_mosquitto() is None:
        print("mosquitto is not installed: scripts/setup --dev installs it", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-link-"))
    try:
        with Broker(tmp / "broker") as broker:
            messages = batches_of(args.events, args.batch)
            bare_s, link_s = [], []
            stats: dict[str, Any] = {}
            for r in range(args.rounds):
                bare_s.append(publish_bare(broker, messages))
                elapsed, stats = drain_with_link(broker, tmp / f"sentry-{r}", args.events, args.batch)
                link_s.append(elapsed)
                print(f"round {r + 1}: bare paho {args.events / bare_s[-1]:>9,.0f} events/s   "
                      f"link {args.events / link_s[-1]:>9,.0f} events/s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bare_rate, link_rate = args.events / min(bare_s), args.events / min(link_s)
    print(f"\ndrain of {args.events:,} scan events, {args.batch} per message, QoS 1, to a local Mosquitto")
    print(f"  bare paho client (same messages, no outbox)  {bare_rate:>10,.0f} events/s")
    print(f"  Link from the outbox, acked on PUBACK        {link_rate:>10,.0f} events/s"
          f"   ({link_rate / bare_rate:.2f}x bare)")
    print(f"  link: {stats['published']} messages, {stats['events_sent']} events sent, "
          f"{stats['acked']} acked, {stats['puback_failures']} PUBACK failures")
    ok = link_rate >= TARGET_EVENTS_S and stats["acked"] >= args.events
    print(f"  target >= {TARGET_EVENTS_S:,.0f} events/s: {'PASS' if ok else 'FAIL'}")
    sizes()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
