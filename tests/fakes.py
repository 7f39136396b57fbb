"""Test doubles of the machine's clock, shared by the tests that must not wait on real time."""

from __future__ import annotations


class FakeClock:
    """A clock that moves only when the code under test sleeps or the test sets `now`.

    Call it for the time; give `sleep` where the code sleeps (each sleep is recorded, then the clock
    moves by it), so pacing and expiry are asserted on the clock, never on wall-clock speed.
    """

    def __init__(self, now: float = 100.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
