"""Door supervision through the contact's mock pin: forced, held, tailgate, and closing the gate."""

from __future__ import annotations

import time

import pytest
from gate_helpers import TOLERANCE_S, fast_config, gate_rig, wait_until

from edge_sentry.gate import GateState


def test_door_opened_without_a_grant_is_forced_and_alarms_until_it_closes():
    with gate_rig() as rig:
        rig.open_door()

        assert rig.events.names() == ["door-opened", "door-forced"]
        assert rig.gate.state is GateState.ALARM
        assert rig.gate.snapshot()["alarms"] == ["door-forced"]
        rig.close_door()
        assert rig.events.names()[-1] == "door-closed"
        assert rig.gate.state is GateState.IDLE
        assert not rig.relay_on()


def test_door_held_open_too_long_alarms_once_per_opening():
    with gate_rig(fast_config(held_open_s=0.3, grant_window_s=2.0)) as rig:
        rig.gate.grant()
        rig.open_door()

        held = rig.events.wait_for("door-held")
        assert held["open_s"] == pytest.approx(0.3, abs=TOLERANCE_S)
        assert rig.gate.state is GateState.ALARM
        time.sleep(0.5)
        assert len(rig.events.of("door-held")) == 1
        rig.close_door()
        assert rig.gate.state is GateState.IDLE
        assert rig.events.of("door-closed")[0]["open_s"] == pytest.approx(0.8, abs=0.2)
        assert "door-forced" not in rig.events.names()

        rig.gate.grant()  # a new opening is timed afresh
        rig.open_door()
        assert rig.events.wait_for("door-held", 2)["open_s"] == pytest.approx(0.3, abs=TOLERANCE_S)


def test_door_closing_in_time_raises_no_held_alarm():
    with gate_rig(fast_config(held_open_s=0.3)) as rig:
        rig.gate.grant()
        rig.open_door()
        time.sleep(0.1)
        rig.close_door()
        time.sleep(0.4)

        assert rig.events.names() == ["grant", "door-opened", "door-closed"]


def test_second_opening_within_one_grant_window_is_a_tailgate():
    with gate_rig(fast_config(grant_window_s=1.0)) as rig:
        rig.gate.grant()
        rig.open_door()
        rig.close_door()
        rig.open_door()

        assert rig.events.names() == [
            "grant",
            "door-opened",
            "door-closed",
            "door-opened",
            "tailgate",
        ]
        assert rig.gate.state is GateState.OPEN  # not an alarm: the door was released just now


def test_two_grants_let_two_openings_through_without_tailgate():
    with gate_rig(fast_config(grant_window_s=1.0)) as rig:
        rig.gate.grant()
        rig.gate.grant()
        for _ in range(2):
            rig.open_door()
            rig.close_door()

        assert "tailgate" not in rig.events.names()
        assert "door-forced" not in rig.events.names()


def test_opening_after_the_grant_window_is_forced_not_tailgate():
    with gate_rig(fast_config(grant_window_s=0.2)) as rig:
        rig.gate.grant()
        wait_until(lambda: rig.gate.state is GateState.IDLE, what="the window to end")
        rig.open_door()

        assert rig.events.names()[-1] == "door-forced"
        assert "tailgate" not in rig.events.names()


def test_door_closing_ends_the_open_state_and_the_pulse():
    with gate_rig(fast_config(pulse_ms=1000, max_open_s=2.0, grant_window_s=2.0)) as rig:
        rig.gate.grant()
        assert rig.gate.state is GateState.OPEN
        rig.open_door()
        time.sleep(0.1)
        closed_at = time.monotonic()
        rig.close_door()

        assert rig.gate.state is GateState.IDLE
        assert not rig.relay_on()
        (pulse,) = rig.intervals()
        assert pulse[1] == pytest.approx(closed_at, abs=TOLERANCE_S)  # long before its 1 s


def test_door_closing_keeps_the_pulse_when_another_grant_waits():
    with gate_rig(fast_config(pulse_ms=500, max_open_s=2.0, grant_window_s=2.0)) as rig:
        rig.gate.grant()
        rig.gate.grant()
        rig.open_door()
        rig.close_door()

        assert rig.relay_on()
        assert rig.gate.state is GateState.OPEN


def test_door_open_at_start_is_timed_but_not_called_forced():
    with gate_rig(fast_config(held_open_s=0.2), door_closed=False) as rig:
        assert rig.events.names() == ["door-opened"]
        assert rig.gate.state is GateState.OPEN
        rig.events.wait_for("door-held")
        rig.close_door()
        assert rig.gate.state is GateState.IDLE
        assert "door-forced" not in rig.events.names()


def test_a_repeated_level_is_one_opening_not_two():
    with gate_rig() as rig:
        rig.gate.grant()
        rig.open_door()
        rig.open_door()  # the same level again: no edge, nothing new

        assert rig.events.names() == ["grant", "door-opened"]
