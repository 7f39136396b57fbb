"""Checks that need a person at the gate: a button pressed, the door opened and shut.

Each prints what to do and waits `--person-timeout` seconds for it. On gpiozero's mock pins nobody
is there, so the test drives the pin itself, as the wire would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from edge_sentry import selftest


def _ask(what: str) -> None:
    print(f"\n>>> {what}", flush=True)


def _simulate(pin: object, level_low_first: bool = True, hold_s: float = 0.2) -> None:
    """Play the person on a mock pin: drive it (low first for a button), then back."""
    if not hasattr(pin, "drive_low"):
        return

    def act() -> None:
        time.sleep(0.2)
        (pin.drive_low if level_low_first else pin.drive_high)()
        time.sleep(hold_s)
        (pin.drive_high if level_low_first else pin.drive_low)()

    threading.Thread(target=act, name="hw-test-person", daemon=True).start()


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _devices(rig: selftest.Rig):
    if rig.devices is None:
        pytest.fail(rig.gpio_problem or "no GPIO devices")
    return rig.devices


@pytest.mark.parametrize("button", ["staff", "exit"])
def test_button_press_is_seen(rig: selftest.Rig, interactive: float, button: str) -> None:
    device = getattr(_devices(rig), button)
    pressed = threading.Event()
    device.when_pressed = lambda *_: pressed.set()
    try:
        _ask(f"Press the {button} button now ({interactive:g} s)")
        _simulate(device.pin)
        assert pressed.wait(interactive), f"no press of the {button} button was seen"
    finally:
        device.when_pressed = None


def test_door_contact_follows_the_door(rig: selftest.Rig, interactive: float) -> None:
    door = _devices(rig).door
    assert door.is_active, "the door must be shut to start this test (the contact reads open)"
    _ask(f"Open the door, then shut it again ({interactive:g} s)")
    _simulate(door.pin, level_low_first=False, hold_s=0.3)
    assert _wait(lambda: not door.is_active, interactive), "the contact never read open"
    assert _wait(lambda: door.is_active, interactive), "the contact never read shut again"
