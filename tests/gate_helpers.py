"""Shared by the gate and GPIO tests: a gate on a fresh gpiozero MockFactory, events, polling waits.

Each test gets its own MockFactory, so no pin, reservation or callback leaks from one test to the
next, and the process-wide `Device.pin_factory` is never set. The door and buttons are driven
through the real MockPins exactly as a wire would drive them (see `edge_sentry.gpio` for levels).
Timings are short and assertions tolerant: they check what the pulses do, not how fast CI is.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPin

from edge_sentry.config import GateConfig, GpioConfig
from edge_sentry.gate import Gate
from edge_sentry.gpio import GateDevices, build_devices

# Generous: a loaded CI machine can stall a thread for tens of milliseconds.
TOLERANCE_S = 0.08
OUTPUTS = ("relay", "green", "red", "buzzer")


def fast_config(**overrides: Any) -> GateConfig:
    """Gate timings scaled down so that a test of every pulse and window takes well under 2 s."""
    base = dataclasses.replace(
        GateConfig(),
        pulse_ms=100,
        max_open_s=0.5,
        relay_rest_ms=150,
        grant_window_s=0.6,
        held_open_s=0.3,
        assist_window_s=0.4,
        light_ms=150,
        beep_accept_ms=50,
        beep_deny_ms=200,
    )
    return dataclasses.replace(base, **overrides)


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0, what: str = "") -> None:
    """Poll `predicate` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.002)


@dataclass
class Events:
    """A thread-safe record of what the gate emitted, as (monotonic time, name, detail)."""

    items: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, name: str, detail: dict[str, Any]) -> None:
        with self.lock:
            self.items.append((time.monotonic(), name, detail))

    def names(self) -> list[str]:
        with self.lock:
            return [name for _, name, _ in self.items]

    def of(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [detail for _, n, detail in self.items if n == name]

    def wait_for(self, name: str, count: int = 1, timeout: float = 3.0) -> dict[str, Any]:
        """Wait until `name` was emitted `count` times; return the detail of the last one."""
        wait_until(lambda: len(self.of(name)) >= count, timeout, f"{count} x {name!r}")
        return self.of(name)[count - 1]


@dataclass
class Rig:
    """A gate with its devices on a private MockFactory, and handles to drive its pins."""

    factory: MockFactory
    gpio: GpioConfig
    devices: GateDevices
    events: Events
    gate: Gate
    since: float = 0.0

    def pin(self, key: str) -> MockPin:
        return self.factory.pin(getattr(self.gpio, key))

    def open_door(self) -> None:
        self.pin("door").drive_high()  # the contact opens: the pull-up wins

    def close_door(self) -> None:
        self.pin("door").drive_low()  # the contact closes: the pin is joined to ground

    def press(self, key: str) -> None:
        """A short press and release of the staff or exit button."""
        self.pin(key).drive_low()
        self.pin(key).drive_high()

    def relay_on(self) -> bool:
        return bool(self.devices.relay.value)

    def stretches(self, key: str = "relay") -> list[float]:
        """How long each active stretch of an output lasted (a running one counts up to now)."""
        return [end - start for start, end in self.intervals(key)]

    def gaps(self, key: str = "relay") -> list[float]:
        """How long an output stayed inactive between two active stretches."""
        return [nxt[0] - prev[1] for prev, nxt in pairwise(self.intervals(key))]

    def intervals(self, key: str = "relay") -> list[tuple[float, float]]:
        """(start, end) monotonic times of each active stretch of an output since the reset."""
        level = self.gpio.relay_active_high if key == "relay" else True
        return level_intervals(self.pin(key), self.since, level)

    def reset_history(self) -> None:
        """Forget the outputs' pin histories, so a test sees only what it caused."""
        for key in OUTPUTS:
            self.pin(key).clear_states()
        self.since = time.monotonic()


def level_intervals(pin: MockPin, since: float, level: bool = True) -> list[tuple[float, float]]:
    """(start, end) of each stretch at `level` in a MockPin's history, which began at `since`.

    MockPin stores each change as (seconds since the previous change, new state); a stretch still
    running ends now. The first stretch may have begun before `since`.
    """
    spans: list[tuple[float, float]] = []
    t = since
    started: float | None = None
    for entry in list(pin.states):
        t += entry.timestamp
        at_level = bool(entry.state) == level
        if at_level and started is None:
            started = t
        elif not at_level and started is not None:
            spans.append((started, t))
            started = None
    if started is not None:
        spans.append((started, time.monotonic()))
    return spans


@contextmanager
def gate_rig(
    cfg: GateConfig | None = None,
    gpio: GpioConfig | None = None,
    *,
    door_closed: bool = True,
    also_emit: Callable[[str, dict[str, Any]], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Rig]:
    """Build devices on a fresh MockFactory, start a gate on them, and tear everything down.

    Every event lands in `rig.events`, then goes to `also_emit` when one is given.
    """
    factory = MockFactory()
    gpio = gpio or GpioConfig(pin_factory="mock")
    devices = build_devices(gpio, factory)
    if door_closed:
        factory.pin(gpio.door).drive_low()
    events = Events()

    def emit(name: str, detail: dict[str, Any]) -> None:
        events(name, detail)
        if also_emit is not None:
            also_emit(name, detail)

    gate = Gate(cfg or fast_config(), devices, emit, clock=clock)
    rig = Rig(factory, gpio, devices, events, gate)
    rig.reset_history()
    try:
        yield rig
    finally:
        gate.close()
        devices.close()
        factory.reset()
