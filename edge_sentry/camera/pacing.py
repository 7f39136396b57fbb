"""The frame clock shared by the simulated sources (replay and synthetic).

A simulated source must behave like a camera, not like a file reader: frames fall due at a fixed
rate whether or not anyone reads them, so a slow reader gets the newest frame that is already due
(the ones in between are dropped, as a real sensor drops them) and never a growing backlog.
`read(timeout)` may sleep, but never longer than its timeout.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Pacer:
    """Frame `n` falls due at `t0 + n / fps`; `wait` hands out due frames in order, skipping late ones.

    `clock` and `sleep` are injectable so that tests can drive the pacing with a fake clock instead
    of asserting wall-clock speeds.
    """

    def __init__(
        self,
        fps: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, not {fps!r}")
        self.fps = float(fps)
        self._clock = clock
        self._sleep = sleep
        self._t0 = 0.0
        self._next = 0

    def start(self) -> None:
        """Frame 0 is due now."""
        self._t0 = self._clock()
        self._next = 0

    def due(self, index: int) -> float:
        """The capture time of frame `index` on the source's clock."""
        return self._t0 + index / self.fps

    def wait(self, timeout: float) -> tuple[int, float] | None:
        """Sleep until the next frame is due; return `(index, due_time)`, or None after `timeout`."""
        now = self._clock()
        # The newest frame already due, but never one handed out before: a late reader skips ahead.
        index = max(self._next, math.floor((now - self._t0) * self.fps + 1e-9))
        due = self.due(index)
        if due > now:
            if due - now > timeout:
                if timeout > 0:
                    self._sleep(timeout)
                return None
            self._sleep(due - now)
        self._next = index + 1
        return index, due


class FrameTicker:
    """Which frame a simulated source hands out next, and its timestamp.

    Paced, frames follow the `Pacer`; unpaced, each `next` is the following frame at once (tests and
    benchmarks). Once the source says its material has ended (`end`), every later `next` waits out its
    timeout as a silent camera would, so a reader polling in a loop does not spin.
    """

    def __init__(
        self,
        fps: float,
        *,
        paced: bool,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.paced = paced
        self._pacer = Pacer(fps, clock, sleep)
        self._clock = clock
        self._sleep = sleep
        self._count = 0
        self.exhausted = False

    def start(self) -> None:
        self._count = 0
        self.exhausted = False
        self._pacer.start()

    def next(self, timeout: float) -> tuple[int, float] | None:
        """`(index, timestamp)` of the next frame, or None when none is due within `timeout`.

        For a source whose frames are ready the moment they fall due (images held in memory): the
        timestamp is the due time, or now when unpaced.
        """
        tick = self.next_due(timeout)
        if tick is None:
            return None
        index, due = tick
        return index, self._clock() if due is None else due

    def next_due(self, timeout: float) -> tuple[int, float | None] | None:
        """`(index, due time)` of the next frame, or None when none is due within `timeout`.

        For a source that takes time to make a frame once it is due, and stamps it when ready. The due
        time is None unpaced: with no schedule, the frame is ready when made, and reading the clock
        only then keeps a caller's clock at one reading per frame.
        """
        if self.exhausted:
            if timeout > 0:
                self._sleep(timeout)
            return None
        if self.paced:
            return self._pacer.wait(timeout)
        return self._count, None

    def taken(self, index: int) -> None:
        """Frame `index` was handed out: an unpaced source goes on from the one after it."""
        self._count = index + 1

    def end(self) -> None:
        """The material has ended (said at once, so that a caller chaining sources loses no time)."""
        self.exhausted = True
