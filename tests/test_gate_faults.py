"""Fail modes, the relay's max_open_s bound under any load, and a clean close."""

from __future__ import annotations

import threading
import time
from itertools import pairwise

import pytest
from gate_helpers import TOLERANCE_S, fast_config, gate_rig, wait_until

from edge_sentry.gate import GateState, Relay


def gate_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("edge-sentry-")]


def test_secure_fault_refuses_scan_grants_but_staff_and_exit_still_open():
    with gate_rig(fast_config(fail_mode="secure")) as rig:
        rig.gate.set_fault("camera")

        assert rig.gate.state is GateState.FAULT
        assert rig.gate.grant("scan", context="c1") is None
        assert not rig.relay_on()
        assert rig.events.of("grant-refused") == [{"mode": "scan", "reason": "fault", "context": "c1"}]
        assert rig.stretches() == []

        rig.press("staff")
        assert rig.events.wait_for("grant")["mode"] == "manual"
        wait_until(lambda: not rig.relay_on())
        rig.press("exit")
        assert rig.events.wait_for("grant", 2)["mode"] == "exit"
        wait_until(lambda: not rig.relay_on())
        assert rig.stretches() == pytest.approx([0.1, 0.1], abs=TOLERANCE_S)


def test_secure_fault_lasts_until_every_cause_clears():
    with gate_rig(fast_config(fail_mode="secure")) as rig:
        rig.gate.set_fault("camera")
        rig.gate.set_fault("verifier")
        rig.gate.set_fault("camera")  # already active: no second event
        rig.gate.clear_fault("camera")
        assert rig.gate.grant() is None

        rig.gate.clear_fault("verifier")
        assert rig.gate.state is GateState.IDLE
        assert rig.gate.grant() is not None
        assert rig.events.of("fault") == [
            {"cause": "camera", "fail_mode": "secure"},
            {"cause": "verifier", "fail_mode": "secure"},
        ]
        assert rig.events.of("fault-cleared") == [{"cause": "camera"}, {"cause": "verifier"}]


def test_secure_fault_still_raises_door_forced():
    with gate_rig(fast_config(fail_mode="secure")) as rig:
        rig.gate.set_fault("camera")
        rig.open_door()
        assert "door-forced" in rig.events.names()
        assert rig.gate.state is GateState.ALARM


def test_safe_fault_holds_the_relay_in_bounded_stretches_with_rests_until_it_clears():
    cfg = fast_config(fail_mode="safe", max_open_s=0.3, relay_rest_ms=150)
    with gate_rig(cfg) as rig:
        rig.gate.set_fault("verifier")
        assert rig.relay_on()
        assert rig.gate.state is GateState.FAULT
        # Mid-way through the third stretch: waited for, as a slow machine's timers run late.
        wait_until(lambda: len(rig.stretches()) >= 3, timeout=30.0, what="a third stretch")
        time.sleep(0.15)
        rig.gate.clear_fault("verifier")
        assert not rig.relay_on()
        time.sleep(0.5)  # and it stays off

        stretches = rig.stretches()
        assert len(stretches) >= 3
        assert max(stretches) <= 0.3 + TOLERANCE_S
        assert all(s == pytest.approx(0.3, abs=TOLERANCE_S) for s in stretches[:-1])
        assert all(g == pytest.approx(0.15, abs=TOLERANCE_S) for g in rig.gaps())
        assert rig.gate.snapshot()["relay"]["cuts"] >= len(stretches) - 1


def test_safe_fault_does_not_call_an_opening_forced():
    with gate_rig(fast_config(fail_mode="safe")) as rig:
        rig.gate.set_fault("camera")
        rig.open_door()
        rig.close_door()
        assert "door-forced" not in rig.events.names()


def test_safe_fault_scan_grant_is_recorded_and_the_pulse_outlives_the_fault():
    cfg = fast_config(fail_mode="safe", pulse_ms=300, max_open_s=1.0)
    with gate_rig(cfg) as rig:
        rig.gate.set_fault("camera")
        assert rig.gate.grant() is not None
        rig.gate.clear_fault("camera")

        assert rig.relay_on()  # the granted person still gets their pulse
        wait_until(lambda: not rig.relay_on())
        assert rig.stretches() == pytest.approx([0.3], abs=TOLERANCE_S)


def test_a_storm_of_overlapping_grants_never_holds_the_relay_past_max_open_s():
    cfg = fast_config(pulse_ms=100, max_open_s=0.4, relay_rest_ms=100, grant_window_s=5.0)
    with gate_rig(cfg) as rig:
        stop = time.monotonic() + 1.5

        def hammer(grant) -> None:
            while time.monotonic() < stop:
                grant()
                time.sleep(0.005)

        workers = [
            threading.Thread(target=hammer, args=(lambda: rig.gate.grant("scan"),)),
            threading.Thread(target=hammer, args=(lambda: rig.press("staff"),)),
            threading.Thread(target=hammer, args=(lambda: rig.press("exit"),)),
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        wait_until(lambda: not rig.relay_on())

        stretches = rig.stretches()
        assert len(stretches) >= 3
        assert max(stretches) <= 0.4 + TOLERANCE_S
        # Every cut (a stretch that reached max_open_s) is followed by a full rest. A pulse that
        # ended on its own (a loaded machine starved the grant threads for a pulse's length) may
        # be followed by the next grant at once.
        intervals = rig.intervals()
        after_cuts = [
            nxt[0] - prev[1]
            for prev, nxt in pairwise(intervals)
            if prev[1] - prev[0] >= 0.4 - TOLERANCE_S
        ]
        assert after_cuts and min(after_cuts) >= 0.1 - TOLERANCE_S
        assert rig.gate.snapshot()["relay"]["longest_on_s"] <= 0.4 + TOLERANCE_S


def test_a_pulse_longer_than_max_open_s_is_cut_and_a_grant_in_the_rest_waits_for_it():
    # pulse_ms > max_open_s is refused by config validation, but the bound must hold regardless
    cfg = fast_config(pulse_ms=500, max_open_s=0.3, relay_rest_ms=200, grant_window_s=5.0)
    with gate_rig(cfg) as rig:
        rig.gate.grant()
        wait_until(lambda: not rig.relay_on(), what="the cut")
        cut_at = rig.intervals()[0][1]
        t_relay = rig.gate.grant()  # during the rest

        assert not rig.relay_on()
        assert t_relay is not None and t_relay - cut_at == pytest.approx(0.2, abs=TOLERANCE_S)
        wait_until(lambda: len(rig.stretches()) == 2 and not rig.relay_on())
        assert rig.stretches() == pytest.approx([0.3, 0.3], abs=TOLERANCE_S)
        assert rig.gaps() == pytest.approx([0.2], abs=TOLERANCE_S)
        assert rig.intervals()[1][0] == pytest.approx(t_relay, abs=TOLERANCE_S)


def test_close_leaves_the_relay_off_and_every_thread_joined():
    cfg = fast_config(fail_mode="safe", pulse_ms=1000, max_open_s=2.0)
    with gate_rig(cfg) as rig:
        rig.gate.grant()
        rig.gate.set_fault("camera")
        rig.gate.await_assist("paper")
        assert rig.relay_on()
        assert len(gate_threads()) == 2

        rig.gate.close()

        assert not rig.relay_on()
        assert gate_threads() == []
        assert not rig.devices.green.value and not rig.devices.buzzer.value
        assert rig.gate.grant() is None
        before = rig.events.names()
        rig.press("staff")
        rig.open_door()
        time.sleep(0.5)  # the assist window would have lapsed by now
        assert rig.events.names() == before
        assert not rig.relay_on()
        rig.gate.close()  # twice is harmless


def test_snapshot_reports_state_faults_alarms_and_counters():
    with gate_rig() as rig:
        rig.gate.grant()
        rig.gate.deny("expired")
        rig.gate.set_fault("camera")
        rig.open_door()
        snap = rig.gate.snapshot()

        assert snap["state"] == "fault"
        assert snap["faults"] == ["camera"]
        assert snap["alarms"] == []  # the door opened within the grant: not forced
        assert snap["door_open"] is True
        assert snap["counters"]["grants_scan"] == 1
        assert snap["counters"]["denies"] == 1
        assert snap["relay"]["activations"] == 1


def test_the_relay_refuses_to_switch_on_once_its_guard_is_gone():
    with gate_rig() as rig:
        rig.gate.close()
        relay = Relay(rig.devices.relay, max_on_s=1.0, rest_s=0.1)
        relay.close()

        assert relay.pulse(0.5) is None
        relay.hold()
        assert not rig.relay_on()


def test_closing_the_devices_before_the_gate_is_harmless():
    with gate_rig() as rig:
        rig.gate.grant()
        rig.devices.close()
        rig.gate.close()

        assert gate_threads() == []
