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
