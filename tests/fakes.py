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


class FakeDevice:
    """A machine's clocks as the outbox sees them: the wall clock, CLOCK_BOOTTIME, the boot id and
    whether NTP has synchronized the wall clock (`synced`, set by the test).

    `wait` lets time pass (both clocks move), `step_wall` steps the wall clock alone (NTP's first
    answer, an operator), `reboot` starts a new boot: a new boot id, CLOCK_BOOTTIME from a few
    seconds, the wall clock wherever the test says (a Pi without a real-time clock boots on the
    time it last saved).
    """

    def __init__(self, wall: float = 1_760_000_000.0, up: float = 30.0) -> None:
        self.wall = FakeClock(wall)
        self.boottime = FakeClock(up)
        self.boots = 1
        self.synced = False

    def boot_id(self) -> str:
        return f"boot-{self.boots}"

    def wait(self, seconds: float) -> None:
        self.wall.now += seconds
        self.boottime.now += seconds

    def step_wall(self, seconds: float) -> None:
        self.wall.now += seconds

    def reboot(self, wall: float | None = None, up: float = 5.0) -> None:
        self.boots += 1
        self.boottime.now = up
        if wall is not None:
            self.wall.now = wall

    def clocks(self) -> dict:
        """The Outbox keywords that put it on these clocks."""
        return {"clock": self.wall, "monotonic": self.boottime, "boot_id": self.boot_id,
                "wall_synced": lambda: self.synced}
