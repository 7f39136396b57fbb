"""The pages' state: counts by day, open conditions, lagging streams, and a publish that never fails."""

from __future__ import annotations

import time
from datetime import datetime

from edge_sentry.pages.events import page_event
from edge_sentry.pages.hub import STREAM_QUEUE, PageHub
from edge_sentry.vocabulary import Event, Mode, Reason, Verdict


def ms(text: str) -> int:
    """Local time `YYYY-MM-DD HH:MM` as ms since 1970 (the day's counts go by the sentry's local day)."""
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M").timestamp() * 1000)


def scan(t: int, verdict: str = Verdict.DENY, reason: str = Reason.EXPIRED, mode: str = Mode.SCAN) -> dict:
    page = page_event({"event": Event.SCAN, "t": t, "verdict": verdict, "reason": reason, "mode": mode})
    assert page is not None
    return page


def test_the_days_counts_start_again_on_a_new_day_and_the_recent_decisions_stay():
    now = [ms("2026-11-29 23:58") / 1000]
    hub = PageHub(wall_clock=lambda: now[0])
    hub.take(scan(ms("2026-11-29 23:58")))
    hub.take(scan(ms("2026-11-29 23:59"), Verdict.ACCEPT, Reason.OK, Mode.EXIT))
    assert hub.counts["decisions"] == 2 and hub.counts["exit"] == 1 and hub.day == "2026-11-29"
    hub.take(scan(ms("2026-11-30 00:01")))
    assert hub.day == "2026-11-30" and hub.counts["decisions"] == 1 and hub.counts["exit"] == 0
    assert len(hub.recent) == 3
    now[0] = ms("2026-12-01 08:00") / 1000  # a quiet day: the snapshot says so without an event
    state = hub.snapshot()
    assert state["day"] == "2026-12-01" and state["counts"]["decisions"] == 0


def test_conditions_stay_open_until_the_event_that_ends_them():
    hub = PageHub()
    hub.take({"event": "door-held", "t": 1, "open_s": 20.0})
    hub.take({"event": "fault", "t": 2, "cause": "camera", "fail_mode": "secure"})
    hub.take({"event": "fault", "t": 3, "cause": "trust", "fail_mode": "secure"})
    assert [c["event"] for c in hub.snapshot()["open"]] == ["door-held", "fault", "fault"]
    hub.take({"event": "door-closed", "t": 4, "open_s": 31.0})
    hub.take({"event": "fault-cleared", "t": 5, "cause": "camera"})
    assert hub.snapshot()["open"] == [{"event": "fault", "t": 3, "cause": "trust", "fail_mode": "secure"}]
    assert [a["event"] for a in hub.snapshot()["alarms"]] == ["fault", "fault", "door-held"]
    assert hub.counts["alarms"] == {"door-held": 1, "fault": 2}


def test_a_stream_that_falls_behind_is_ended_and_the_others_go_on():
    hub = PageHub()
    slow, quick = hub.open_stream(with_state=False), hub.open_stream(with_state=False)
    for i in range(STREAM_QUEUE + 1):
        hub.take(scan(int(time.time() * 1000) + i))
        while not quick.queue.empty():
            quick.queue.get_nowait()
    assert hub.streams == 1
    assert slow.queue.get_nowait() is None  # told to end: its EventSource connects again
    hub.take(scan(int(time.time() * 1000)))
    assert quick.queue.get_nowait() is not None


def test_publish_without_a_running_server_does_nothing_and_odd_events_never_raise():
    hub = PageHub()
    hub.publish({"event": Event.SCAN, "t": 1, "verdict": "deny", "reason": "expired", "mode": "scan"})
    hub.publish_health({"t": 1})
    assert hub.counts["decisions"] == 0 and hub.health is None
    hub._loop = object()  # type: ignore[assignment]  # as if attached: only the filter runs here
    hub.publish({"event": Event.SCAN, "t": 1, "verdict": {"a": 1}})  # no exception out of publish
    hub.publish(None)  # type: ignore[arg-type]


def test_a_stalled_pages_loop_never_holds_up_publish_and_what_waits_is_bounded():
    import asyncio

    from edge_sentry.pages.hub import PENDING

    hub = PageHub()
    stalled = asyncio.new_event_loop()  # attached but never run: the pages' thread is stuck
    try:
        hub.attach(stalled)
        for i in range(PENDING * 3):
            hub.publish({"event": Event.SCAN, "t": i, "verdict": "deny", "reason": "expired", "mode": "scan"})
        assert len(hub._pending) == PENDING  # the oldest went; nothing grew, nothing waited
        assert hub._pending[-1][1]["t"] == PENDING * 3 - 1
    finally:
        hub.detach()
        stalled.close()
