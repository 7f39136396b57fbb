"""What the gate reports: the snapshot's counters after a scripted day, its fields, durations in
whole milliseconds, and the shown state as verdicts come and go."""

from __future__ import annotations

import logging
import math
import time

from gate_helpers import fast_config, gate_rig, wait_until

from edge_sentry.gate import GateState


class MillisecondClock:
    """Real time in whole milliseconds, plus what a test adds: a duration's digits are then known."""

    def __init__(self) -> None:
        self.extra = 0.0

    def __call__(self) -> float:
        return math.floor(time.monotonic() * 1000) / 1000 + self.extra


def whole_ms(seconds: object) -> bool:
    return isinstance(seconds, float) and abs(seconds * 1000 - round(seconds * 1000)) < 1e-6


def test_the_counters_count_every_kind_of_happening(caplog):
    cfg = fast_config(fail_mode="secure", grant_window_s=1.0, held_open_s=0.5, assist_window_s=0.2)
    with gate_rig(cfg) as rig:
        gate = rig.gate

        def unused(count: int) -> None:
            """Wait for the timer to end the grant window (a grant before it would extend it)."""
            wait_until(lambda: gate.snapshot()["counters"].get("grants_unused") == count, what="window end")

        for _ in range(2):  # forced twice
            rig.open_door()
            rig.close_door()
        gate.set_fault("camera")
        gate.set_fault("verifier")
        gate.grant("scan")
        gate.grant("scan")
        gate.clear_fault("camera")
        gate.clear_fault("verifier")

        gate.grant("scan")
        gate.grant("scan")
        for _ in range(2):  # both grants used, then two who follow
            rig.open_door()
            rig.close_door()
        rig.open_door()
        rig.close_door()
        rig.open_door()
        rig.events.wait_for("door-held")
        assert gate.snapshot()["alarms"] == ["door-held"]
        rig.close_door()

        gate.grant("scan")
        gate.grant("scan")
        unused(2)
        gate.grant("scan")
        unused(3)
        gate.grant("scan")
        rig.open_door()
        rig.close_door()
        rig.open_door()  # the lapsed grants left nothing behind: this one follows
        rig.events.wait_for("door-held", 2)
        rig.close_door()

        gate.deny("expired")
        gate.deny("stale")
        gate.await_assist("first")
        gate.await_assist("second")
        rig.events.wait_for("assist-expired", 2)

        assert gate.snapshot()["counters"] == {
            "door_openings": 8,
            "door_forced": 2,
            "faults": 2,
            "grants_refused": 2,
            "grants_scan": 6,
            "tailgates": 3,
            "door_held": 2,
            "grants_unused": 3,
            "denies": 2,
            "assists_expired": 2,
        }
        assert rig.events.names().count("tailgate") == 3
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_the_snapshot_reads_the_grant_window_by_the_clock():
    clock = MillisecondClock()
    cfg = fast_config(pulse_ms=5000, max_open_s=10.0, grant_window_s=5.0, assist_window_s=5.0)
    with gate_rig(cfg, clock=clock) as rig:
        rig.gate.grant()
        rig.gate.grant()
        rig.gate.await_assist("paper")

        assert rig.gate.snapshot() == {
            "state": "open",
            "fail_mode": "secure",
            "faults": [],
            "alarms": [],
            "door_open": False,
            "relay_on": True,
            "grants_waiting": 2,
            "assist_waiting": True,
            "counters": {"grants_scan": 2},
            "relay": {"activations": 1, "cuts": 0, "longest_on_s": 0.0},
        }
        clock.extra += 6.0  # past the window, before the timer thread has woken to end it
        assert rig.gate.snapshot()["grants_waiting"] == 0


def test_durations_are_reported_in_whole_milliseconds():
    clock = MillisecondClock()
    cfg = fast_config(pulse_ms=100, max_open_s=5.0, held_open_s=0.2, grant_window_s=5.0)
    with gate_rig(cfg, clock=clock) as rig:
        rig.gate.grant()
        clock.extra += 0.0004
        rig.open_door()
        clock.extra += 0.0004
        held = rig.events.wait_for("door-held")
        rig.close_door()
        wait_until(lambda: not rig.relay_on(), what="the pulse to end")

        closed = rig.events.of("door-closed")[0]
        longest = rig.gate.snapshot()["relay"]["longest_on_s"]
        assert held["open_s"] >= 0.2 and whole_ms(held["open_s"])
        assert closed["open_s"] >= held["open_s"] and whole_ms(closed["open_s"])
        assert longest > 0 and whole_ms(longest)


def test_the_shown_state_follows_each_verdict():
    with gate_rig() as rig:
        rig.gate.verifying()
        rig.gate.verifying(False)
        assert rig.gate.state is GateState.IDLE
        rig.gate.verifying()
        rig.gate.await_assist("paper")  # the verdict is in: staff decide now
        assert rig.gate.state is GateState.IDLE
        assert rig.gate.snapshot()["assist_waiting"] is True


def test_a_safe_hold_lasts_until_the_last_cause_clears():
    with gate_rig(fast_config(fail_mode="safe", max_open_s=10.0)) as rig:
        rig.gate.set_fault("camera")
        rig.gate.set_fault("verifier")
        rig.gate.clear_fault("camera")
        assert rig.relay_on()
        rig.gate.clear_fault("verifier")
        assert not rig.relay_on()
        assert len(rig.stretches()) == 1
