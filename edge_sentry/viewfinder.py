"""The hand-off of camera pictures from the hot loop to the camera aiming page (`/aim`).

Only while an aiming page is open (`watch` / `unwatch`, counted by the pages) does the hot loop hand
anything over, and then only at the page's rate (`display.aim_fps`): after the gate has acted on a
frame, `offer` keeps a downscaled copy of its Y plane (`y[::step, ::step]`, at most MAX_WIDTH pixels
wide) and the corner points of the codes the decoder read, as one `Snapshot` swapped into a slot.
The copy is needed: a camera may hand out views into buffers it reuses (picamera2 does). Only every
`step`-th row is copied, whole (a plain run of bytes: ~15 us for 1280x720, where gathering every
other pixel costs ~70 us), and the columns are skipped by a view of that copy. Encoding, meters
and sending happen on the pages' side (`pages/aim.py`), never here. When nobody watches, the hot
loop reads one integer and keeps no reference to any frame.

What it must never do: make the hot loop wait (`offer` takes no lock and wakes no thread: the pages
look at the slot at their own pace), keep a picture once the last viewer has gone, or carry a
code's text (the decoder's corner points only: a box, never what the code says).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .camera.base import Frame

#: The widest picture handed over: enough to aim a camera by, a quarter of a 1280x720 plane's bytes.
MAX_WIDTH = 640

Point = tuple[int, int]
#: A code's corners as the decoder gives them (top-left, top-right, bottom-right, bottom-left), in
#: the camera frame's pixels.
Corners = tuple[Point, Point, Point, Point]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One picture for the aiming page.

    `y`: the frame's Y plane subsampled by `step` in both directions: a view of a copy of its rows,
    which the snapshot owns.
    `codes`: the corners of each code read in that frame, in the frame's own pixels (divide by
    `step` for the picture's). `t`: the frame's capture time (monotonic). `fps`: camera frames per
    second the hot loop handled since the previous snapshot (None for the first one).
    """

    seq: int
    y: np.ndarray
    step: int
    codes: tuple[Corners, ...]
    t: float
    fps: float | None


class Viewfinder:
    """A one-place slot between the hot loop (`offer`) and the aiming page (`watch`, `latest`)."""

    def __init__(self, fps: float = 4.0, *, max_width: int = MAX_WIDTH) -> None:
        if not fps > 0:
            raise ValueError("fps must be positive")
        if max_width < 1:
            raise ValueError("max_width must be at least 1")
        self.interval = 1.0 / fps
        self.max_width = max_width
        self._viewers = 0
        #: Whether an aiming page is open: the one thing the hot loop reads when nobody watches (a
        #: plain attribute, not a property: no call on every frame).
        self.watched = False
        self._lock = threading.Lock()  # watch and unwatch only; the hot loop never takes it
        self._latest: Snapshot | None = None
        self._seq = 0
        self._due = 0.0
        self._frames = 0
        self._since: float | None = None
        #: Pictures copied since start (for tests and the benchmark: none while nobody watches).
        self.copies = 0

    # -- the pages' side ------------------------------------------------------------------------

    @property
    def viewers(self) -> int:
        return self._viewers

    @property
    def latest(self) -> Snapshot | None:
        """The newest snapshot while somebody watches; None before the first and after the last."""
        return self._latest

    def watch(self) -> None:
        """An aiming page opened: pictures flow from the next frame on."""
        with self._lock:
            if self._viewers == 0:
                self._latest, self._due, self._frames, self._since = None, 0.0, 0, None
            self._viewers += 1
            self.watched = True

    def unwatch(self) -> None:
        """An aiming page closed: after the last one, no picture is copied or kept."""
        with self._lock:
            self._viewers = max(0, self._viewers - 1)
            if self._viewers == 0:
                self.watched = False
                self._latest = None

    # -- the hot loop ---------------------------------------------------------------------------

    def due(self, frame: Frame) -> bool:
        """Whether `frame` is one to hand over (counted towards the frame rate either way); call
        only while `watched`."""
        self._frames += 1
        return frame.t >= self._due

    def offer(self, frame: Frame, codes: Sequence[Corners]) -> None:
        """Keep a downscaled copy of a due frame and its codes' corners (the hot loop, after the
        gate acted, only while `watched` and `due`)."""
        y = frame.y
        step = max(1, -(-y.shape[1] // self.max_width))
        # A copy, since the camera may reuse the buffer `y` views: of whole rows only (runs of bytes,
        # ~5x cheaper than gathering single pixels); the columns are skipped by a view of the copy.
        small = y[::step].copy()[:, ::step]
        fps = None
        if self._since is not None and frame.t > self._since:
            fps = self._frames / (frame.t - self._since)
        self._seq += 1
        self._latest = Snapshot(self._seq, small, step, tuple(codes), frame.t, fps)
        self.copies += 1
        self._frames, self._since = 0, frame.t
        self._due += self.interval
        if self._due <= frame.t:  # behind (the first frame, or after a camera pause): from now on
            self._due = frame.t + self.interval
        if self._viewers == 0:  # the last page closed while this was copied
            self._latest = None
