"""The relay's guard and the gate's end: a failed guard leaves the strike off for good, a grant in
the enforced rest is served whole after it, and nothing moves once the gate is closed."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

import pytest
from gate_helpers import fast_config, gate_rig, wait_until

from edge_sentry import gate as gate_module
from edge_sentry.gate import Gate, GateState, Relay

GUARD = "edge-sentry-relay-guard"


def on_guard_thread() -> bool:
    return threading.current_thread().name == GUARD


class GuardClock:
    """Real time, except that one read on the relay's guard thread fails once `fail()` is called."""

    def __init__(self) -> None:
        self._armed = threading.Event()

    def fail(self) -> None:
        self._armed.set()

    def __call__(self) -> float:
        if self._armed.is_set() and on_guard_thread():
            self._armed.clear()
            raise RuntimeError("clock read failed")
        return time.monotonic()


def test_a_failed_guard_switches_a_held_strike_off_and_every_later_grant_is_refused(caplog):
    clock = GuardClock()
    cfg = fast_config(fail_mode="safe", max_open_s=30.0, grant_window_s=5.0)
    with gate_rig(cfg, clock=clock) as rig:
        rig.gate.set_fault("camera")  # held with no end but the guard's bound
        assert rig.relay_on()
        clock.fail()
        rig.gate.grant("manual")  # wakes the guard, which fails on its next clock read

        wait_until(lambda: not rig.relay_on(), what="the failed guard to switch the strike off")
        assert "relay guard failed" in caplog.text
        assert rig.gate.snapshot()["relay_on"] is False
        assert rig.gate.grant("scan", context="frame-9") is None
        rig.press("exit")
        rig.gate.clear_fault("camera")
        rig.gate.set_fault("verifier")  # a new hold is refused too

        assert not rig.relay_on()
        assert len(rig.stretches()) == 1
        assert rig.events.of("grant-refused") == [
            {"mode": "scan", "reason": "relay", "context": "frame-9"},
            {"mode": "exit", "reason": "relay", "context": None},
        ]
        assert "grant scan refused: the relay guard is not running" in caplog.text
        assert rig.gate.snapshot()["counters"]["grants_refused"] == 2


def test_a_failed_guard_switches_a_running_pulse_off_at_once():
    clock = GuardClock()
    with gate_rig(fast_config(pulse_ms=5000, max_open_s=30.0, grant_window_s=10.0), clock=clock) as rig:
        rig.gate.grant()
        clock.fail()
        rig.gate.grant()  # extends the pulse, and wakes the guard

        wait_until(lambda: not rig.relay_on(), what="the failed guard to end the pulse")
        assert rig.gate.snapshot()["relay_on"] is False
        assert rig.gate.grant() is None
        assert not rig.relay_on()


def test_a_pulse_asked_for_in_the_rest_is_served_whole_once_the_rest_is_over():
    with gate_rig() as rig:
        rig.gate.close()
        relay = Relay(rig.devices.relay, max_on_s=0.1, rest_s=0.4)
        try:
            relay.hold()
            wait_until(lambda: relay.cuts == 1, what="the hold to be cut")
            relay.release()
            rig.reset_history()
            asked = time.monotonic()
            t_on = relay.pulse(0.05)  # shorter than what is left of the rest

            assert t_on is not None and t_on > asked
            assert not relay.is_on
            wait_until(lambda: len(rig.intervals()) == 1 and not relay.is_on, what="the pulse after the rest")
            assert relay.activations == 2
            assert relay.cuts == 1
        finally:
            relay.close()


def test_a_cut_is_counted_once_and_the_longest_stretch_is_recorded():
    cfg = fast_config(pulse_ms=3000, max_open_s=0.2, relay_rest_ms=10000, grant_window_s=10.0)
    with gate_rig(cfg) as rig:
        rig.gate.grant()
        wait_until(lambda: not rig.relay_on(), what="the cut")

        relay = rig.gate.snapshot()["relay"]
        assert relay["cuts"] == 1
        assert relay["activations"] == 1
        assert relay["longest_on_s"] >= 0.2
        assert not rig.relay_on()  # the pulse still wants it, the rest says no


def test_the_gate_threads_never_keep_the_process_alive():
    with gate_rig():
        threads = [t for t in threading.enumerate() if t.name.startswith("edge-sentry-")]
        assert len(threads) == 2
        assert all(t.daemon for t in threads)


def test_after_close_nothing_is_shown_emitted_or_counted():
    with gate_rig(fast_config(grant_window_s=5.0)) as rig:
        rig.gate.grant()
        rig.gate.await_assist("paper")
        rig.gate.close()
        rig.reset_history()
        before = rig.events.names()

        assert rig.gate.grant("manual") is None
        rig.gate.deny("expired")
        rig.gate.verifying()
        rig.gate.await_assist("late")
        rig.gate.set_fault("camera")
        snap = rig.gate.snapshot()

        assert rig.events.names() == before
        assert rig.gate.state is GateState.IDLE
        assert snap["grants_waiting"] == 0 and snap["assist_waiting"] is False
        assert snap["faults"] == []
        assert all(rig.stretches(key) == [] for key in ("relay", "green", "red", "buzzer"))
        assert rig.devices.staff.when_pressed is None and rig.devices.exit.when_pressed is None
        assert rig.devices.door.when_activated is None and rig.devices.door.when_deactivated is None


def test_close_does_not_wait_forever_on_a_timer_stuck_in_emit(monkeypatch, caplog):
    monkeypatch.setattr(gate_module, "JOIN_TIMEOUT_S", 0.2)
    stuck = threading.Event()
    release = threading.Event()

    def emit(name: str, detail: dict) -> None:
        if name == "assist-expired":  # delivered by the timer thread
            stuck.set()
            release.wait()

    try:
        cfg = fast_config(assist_window_s=0.1, pulse_ms=5000, max_open_s=10.0)
        with gate_rig(cfg, also_emit=emit) as rig:
            rig.gate.grant("manual")
            rig.gate.await_assist("paper")
            assert stuck.wait(5.0)

            rig.gate.close()

            assert "gate timer thread did not stop within 0.2 s" in caplog.text
            assert not rig.relay_on()
    finally:
        release.set()


def test_an_emit_that_raises_is_logged_and_the_next_events_still_go_out(caplog):
    class Stop(BaseException):
        pass

    calls: list[str] = []

    def emit(name: str, detail: dict) -> None:
        calls.append(name)
        if len(calls) == 1:
            raise RuntimeError("sink broken")
        if len(calls) == 2:
            raise Stop

    with gate_rig(also_emit=emit) as rig:
        rig.gate.deny("expired")
        assert "emit of gate event deny failed" in caplog.text
        with pytest.raises(Stop):
            rig.gate.deny("stale")  # not an Exception: it reaches the caller
        rig.gate.deny("unknown-issuer")

        assert calls == ["deny", "deny", "deny"]


def test_events_are_delivered_in_order_by_one_thread_at_a_time():
    inside = threading.Event()
    release = threading.Event()
    threads: set[str] = set()

    def emit(name: str, detail: dict) -> None:
        threads.add(threading.current_thread().name)
        if name == "grant":
            inside.set()
            release.wait()

    with gate_rig(also_emit=emit) as rig:
        granting = threading.Thread(target=rig.gate.grant, name="granting")
        granting.start()
        assert inside.wait(5.0)
        rig.gate.deny("expired")  # queued: the granting thread is delivering

        assert rig.events.names() == ["grant"]
        release.set()
        granting.join(5.0)
        assert rig.events.names() == ["grant", "deny"]
        assert threads == {"granting"}


class OnceBrokenLight:
    """A light whose first switch-off fails (a driver error), then works again."""

    def __init__(self, light: Any) -> None:
        self._light = light
        self.failed = False

    def on(self) -> None:
        self._light.on()

    def off(self) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("LED driver gone")
        self._light.off()


def test_a_failing_light_is_logged_and_later_timers_still_run(caplog):
    cfg = fast_config(light_ms=100, beep_accept_ms=300)
    with gate_rig(cfg) as rig:
        rig.gate.close()  # a fresh gate, on a green light whose switch-off fails once
        devices = dataclasses.replace(rig.devices, green=OnceBrokenLight(rig.devices.green))
        gate = Gate(cfg, devices, lambda name, detail: None)
        try:
            rig.reset_history()
            gate.grant("manual")
            wait_until(lambda: "gate timer green-off failed" in caplog.text, what="the failure to be logged")
            wait_until(lambda: not rig.devices.buzzer.value, what="the buzzer to end")

            assert len(rig.stretches("buzzer")) == 1
        finally:
            gate.close()


@pytest.mark.parametrize(("beep_ms", "beeps"), [(0, 0), (1, 1)])
def test_a_zero_beep_never_sounds_and_the_shortest_one_does(beep_ms, beeps):
    with gate_rig(fast_config(beep_deny_ms=beep_ms)) as rig:
        rig.gate.deny("expired")
        wait_until(lambda: not rig.devices.red.value, what="the red light to end")

        assert len(rig.stretches("buzzer")) == beeps


def test_the_door_open_at_start_is_logged(caplog):
    with caplog.at_level(logging.WARNING), gate_rig(door_closed=False):
        assert "door is open at start" in caplog.text


class StuckOff:
    """A relay output whose switch-off, once `stuck`, hangs on the guard thread until released
    (a hung driver)."""

    stuck = False

    def __init__(self, device: Any) -> None:
        self._device = device
        self.release = threading.Event()

    def on(self) -> None:
        self._device.on()

    def off(self) -> None:
        if self.stuck and on_guard_thread():
            self.release.wait()
        self._device.off()


def test_a_guard_stuck_in_the_pin_driver_is_reported_by_close(monkeypatch, caplog):
    monkeypatch.setattr(gate_module, "JOIN_TIMEOUT_S", 0.2)
    with gate_rig() as rig:
        rig.gate.close()
        device = StuckOff(rig.devices.relay)
        relay = Relay(device, max_on_s=10.0, rest_s=0.1)  # type: ignore[arg-type]
        relay.pulse(10.0)
        device.stuck = True
        closing = threading.Thread(target=relay.close)
        closing.start()
        try:
            wait_until(lambda: "relay guard thread did not stop within 0.2 s" in caplog.text)
        finally:
            device.release.set()
            closing.join(5.0)
        assert not closing.is_alive()
        assert not rig.relay_on()
        assert relay.pulse(1.0) is None


class ManualClock:
    """A clock that moves only when the test moves it: the relay's arithmetic, exactly."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_pulse_lasts_pulse_ms_and_a_cut_rests_relay_rest_ms_by_the_clock():
    clock = ManualClock()
    cfg = fast_config(fail_mode="safe", pulse_ms=100, max_open_s=0.5, relay_rest_ms=150, grant_window_s=5.0)
    with gate_rig(cfg, clock=clock) as rig:
        start = clock.now
        rig.gate.grant("manual")
        rig.gate.set_fault("camera")
        clock.now = start + 0.09995
        rig.gate.clear_fault("camera")  # the hold ends; the pulse has a moment left
        assert rig.relay_on()

        rig.gate.set_fault("verifier")
        cut_at = start + 0.5
        clock.now = cut_at
        wait_until(lambda: not rig.relay_on(), what="the guard to cut the held strike")
        clock.now = cut_at + 0.01

        assert rig.gate.grant("manual") == cut_at + 0.15  # on again when the rest ends
        assert not rig.relay_on()


def test_the_guard_sleeps_through_a_hold_instead_of_spinning():
    reads = 0

    def clock() -> float:
        nonlocal reads
        if on_guard_thread():
            reads += 1
        return time.monotonic()

    with gate_rig() as rig:
        rig.gate.close()
        relay = Relay(rig.devices.relay, max_on_s=0.3, rest_s=0.1, clock=clock)
        try:
            relay.hold()
            wait_until(lambda: relay.cuts == 1, what="the hold to be cut")
        finally:
            relay.close()
        assert reads < 50  # a few per wake-up: it wakes for the hold, the cut and the rest's end
