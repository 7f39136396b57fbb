"""The frame-source interface every camera implementation keeps.

A source is configured once, then yields frames whose `y` is the luminance plane the decoder analyses
(a view, never a colour-converted copy). Every blocking call takes a timeout so that a dead camera turns
into a `camera-fault`, never a hung hot path.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from types import TracebackType

import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured frame.

    `y` is a 2-D uint8 array (height x width), possibly a strided view into the camera's buffer.
    `t` is the capture time on `time.monotonic()`: the start of the frame -> relay latency.
    `index` counts frames from 0 since the source started.
    """

    y: np.ndarray
    t: float
    index: int


class FrameSource(abc.ABC):
    """A camera: `start`, then `read(timeout)` until `stop`."""

    name: str = "camera"

    @abc.abstractmethod
    def start(self) -> None:
        """Open the device or files; raise CameraError when that cannot be done."""

    @abc.abstractmethod
    def read(self, timeout: float) -> Frame | None:
        """The next frame, or None when none arrived within `timeout` seconds."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Release the device; safe to call twice."""

    def __enter__(self) -> FrameSource:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
