"""The gate's answers: a grant pulses the relay first, a deny never touches it; buttons, assist."""

from __future__ import annotations

import time

import pytest
from gate_helpers import TOLERANCE_S, Rig, fast_config, gate_rig, wait_until

from edge_sentry.config import GpioConfig
from edge_sentry.gate import GateState


def test_accept_pulses_the_relay_for_pulse_ms_with_green_light_and_short_beep():
    with gate_rig(fast_config(pulse_ms=100, light_ms=150, beep_accept_ms=50)) as rig:
        asked = time.monotonic()
        rig.gate.grant()
        wait_until(lambda: not rig.relay_on(), what="the pulse to end")
        wait_until(lambda: not rig.devices.green.value and not rig.devices.buzzer.value)

        rig.pin("relay").assert_states([False, True, False])
        assert len(rig.pin("relay").states) == 3  # exactly one pulse
        assert rig.stretches("relay") == pytest.approx([0.1], abs=TOLERANCE_S)
        assert rig.intervals("relay")[0][0] == pytest.approx(asked, abs=TOLERANCE_S)
        assert rig.stretches("green") == pytest.approx([0.15], abs=TOLERANCE_S)
        assert rig.stretches("buzzer") == pytest.approx([0.05], abs=TOLERANCE_S)
        assert rig.stretches("red") == []


def test_grant_returns_the_clock_right_after_the_relay_and_before_lights_or_events():
    seen: list[tuple[float, bool, bool, int]] = []
    rigs: list[Rig] = []

    def clock() -> float:
        """Note, at every clock read the gate makes, what the relay, green and events were."""
        t = time.monotonic()
        if rigs:
            relay, green = rigs[0].devices.relay.value, rigs[0].devices.green.value
            seen.append((t, bool(relay), bool(green), len(rigs[0].events.items)))
        return t

    with gate_rig(clock=clock) as rig:
        rigs.append(rig)
        before = time.monotonic()
        t_relay = rig.gate.grant("scan", context="frame-7")

        assert t_relay is not None and t_relay >= before
        reading = next(s for s in seen if s[0] == t_relay)
        relay_on, green_on, events_so_far = reading[1:]
        assert relay_on and not green_on and events_so_far == 0
        detail = rig.events.wait_for("grant")
        assert detail == {"mode": "scan", "t_relay": t_relay, "context": "frame-7"}


def test_deny_lights_red_and_beeps_long_but_never_touches_the_relay():
    with gate_rig(fast_config(light_ms=150, beep_deny_ms=200)) as rig:
        rig.gate.deny("expired")
        wait_until(lambda: not rig.devices.red.value and not rig.devices.buzzer.value)

        assert rig.events.of("deny") == [{"reason": "expired"}]
        assert rig.pin("relay").states == [rig.pin("relay").states[0]]  # no change at all
        assert not rig.relay_on()
        assert rig.stretches("red") == pytest.approx([0.15], abs=TOLERANCE_S)
        assert rig.stretches("buzzer") == pytest.approx([0.2], abs=TOLERANCE_S)
        assert rig.stretches("green") == []
        assert rig.gate.state is GateState.IDLE


def test_active_low_relay_is_driven_low_to_release():
    gpio = GpioConfig(pin_factory="mock", relay_active_high=False)
    with gate_rig(gpio=gpio) as rig:
        assert rig.pin("relay").state is True  # idle: energising level not applied
        rig.gate.grant()
        assert rig.pin("relay").state is False
        wait_until(lambda: rig.pin("relay").state is True, what="the relay to be released")
        assert rig.stretches() == pytest.approx([0.1], abs=TOLERANCE_S)


def test_staff_button_grants_once_logged_as_manual():
    with gate_rig() as rig:
        rig.press("staff")

        grant = rig.events.wait_for("grant")
        assert grant["mode"] == "manual" and grant["context"] is None
        wait_until(lambda: not rig.relay_on())
        assert rig.stretches() == pytest.approx([0.1], abs=TOLERANCE_S)
        assert rig.events.names().count("grant") == 1


def test_exit_button_grants_logged_as_exit():
    with gate_rig() as rig:
        rig.press("exit")

        assert rig.events.wait_for("grant")["mode"] == "exit"
        assert rig.relay_on()


def test_staff_press_within_the_assist_window_grants_as_assisted_with_the_context():
    with gate_rig(fast_config(assist_window_s=0.5)) as rig:
        rig.gate.await_assist({"scheme": "es1", "reason": "assist"})
        time.sleep(0.1)
        rig.press("staff")

        grant = rig.events.wait_for("grant")
        assert grant["mode"] == "assisted"
        assert grant["context"] == {"scheme": "es1", "reason": "assist"}
        assert rig.relay_on()
        time.sleep(0.6)  # past the window: the used request must not lapse afterwards
        assert rig.events.of("assist-expired") == []
        rig.press("staff")  # the next press is an ordinary manual entry
        assert rig.events.wait_for("grant", 2)["mode"] == "manual"


def test_assist_request_lapses_after_the_window_and_staff_then_grants_manual():
    with gate_rig(fast_config(assist_window_s=0.2)) as rig:
        started = time.monotonic()
        rig.gate.await_assist("paper-code")

        assert rig.events.wait_for("assist-expired") == {"context": "paper-code"}
        assert time.monotonic() - started == pytest.approx(0.2, abs=TOLERANCE_S)
        assert not rig.relay_on()
        rig.press("staff")
        grant = rig.events.wait_for("grant")
        assert grant["mode"] == "manual" and grant["context"] is None


def test_a_newer_assist_request_replaces_the_older_one():
    with gate_rig(fast_config(assist_window_s=0.5)) as rig:
        rig.gate.await_assist("first")
        rig.gate.await_assist("second")
        rig.press("staff")

        assert rig.events.of("assist-expired") == [{"context": "first"}]
        assert rig.events.wait_for("grant")["context"] == "second"


def test_verifying_is_shown_until_the_verdict():
    with gate_rig() as rig:
        rig.gate.verifying()
        assert rig.gate.state is GateState.VERIFYING
        rig.gate.deny("bad-signature")
        assert rig.gate.state is GateState.IDLE
        rig.gate.verifying()
        rig.gate.grant()
        assert rig.gate.state is GateState.OPEN


def test_a_grant_keeps_the_gate_open_until_its_window_ends_unused():
    with gate_rig(fast_config(grant_window_s=0.4)) as rig:
        rig.gate.grant()
        wait_until(lambda: not rig.relay_on(), what="the pulse to end")
        # the person has not opened the door yet: the grant still stands
        assert rig.gate.state is GateState.OPEN
        wait_until(lambda: rig.gate.state is GateState.IDLE, what="the grant window to end")

        def unused() -> int | None:
            return rig.gate.snapshot()["counters"].get("grants_unused")

        wait_until(lambda: unused() == 1, what="the lapsed grant to be counted")


def test_an_emit_that_calls_back_into_the_gate_does_not_deadlock():
    states: list[str] = []
    rigs: list[Rig] = []

    def emit(name: str, detail: dict) -> None:
        states.append(str(rigs[0].gate.state))
        if name == "deny":
            rigs[0].gate.grant("manual")  # re-entrant: delivered after this call returns

    with gate_rig(also_emit=emit) as rig:
        rigs.append(rig)
        rig.gate.deny("stale")

        assert rig.events.names() == ["deny", "grant"]
        assert states == ["idle", "open"]


def test_a_failing_emit_does_not_stop_the_gate():
    def emit(name: str, detail: dict) -> None:
        raise RuntimeError("sink broken")

    with gate_rig(also_emit=emit) as rig:
        assert rig.gate.grant() is not None
        rig.gate.deny("expired")

        assert rig.events.names() == ["grant", "deny"]
        assert rig.relay_on()
