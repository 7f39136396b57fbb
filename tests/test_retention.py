"""Retention: events older than privacy.retention_days go, sent or not, and health reports the drop."""

from __future__ import annotations

from fakes import FakeDevice

from edge_sentry.health import sample
from edge_sentry.outbox import Outbox

DAY = 86400.0


def outbox(path, device: FakeDevice) -> Outbox:
    return Outbox(path, max_events=1000, queue_size=100, retention_days=14, **device.clocks())


def test_unsent_events_past_retention_are_purged_and_reported_in_health(tmp_path):
    device = FakeDevice(1_800_000_000.0)
    with outbox(tmp_path / "outbox", device) as box:
        for i in range(5):
            box.put({"event": "scan", "verdict": "accept", "n": i})
        assert box.flush(5)
    device.wait(10 * DAY)
    with outbox(tmp_path / "outbox", device) as box:
        for i in range(3):
            box.put({"event": "scan", "verdict": "deny", "n": i})
        assert box.flush(5)
    device.wait(5 * DAY)  # the first five have waited 15 days, the last three 5 days
    with outbox(tmp_path / "outbox", device) as box:
        kept = box.pending(100)
        stats = box.stats()
    assert [e["verdict"] for e in kept] == ["deny"] * 3
    assert stats["dropped_retention"] == 5
    report = sample(outbox=stats, wall_clock=device.wall)
    assert report["outbox"]["depth"] == 3
    assert report["outbox"]["dropped"]["retention"] == 5
