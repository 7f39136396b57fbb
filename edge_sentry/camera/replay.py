"""A camera that replays image files: one image, or a folder of them in name order, at a given fps.

Used on a bench and in tests to feed the sentry real pictures. Every image is decoded and converted
to luminance once, at `start`, so a frame costs nothing but the wait for its turn; the arrays are
read-only because the same one is handed out on every loop.

Bad files: a single image that cannot be read is a CameraError naming it. In a folder, an unreadable
image is skipped with a warning naming it, as long as one image is left: a replay rig should not
stop over one broken file, but a replay with nothing to show is a setup error. Files whose suffix is
not an image suffix (the `.txt` beside a sample, say) are not images of the replay and are ignored.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..errors import CameraError
from .base import Frame, FrameSource
from .pacing import FrameTicker

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".pgm")


def load_luminance(path: Path) -> np.ndarray:
    """The image at `path` as a read-only uint8 luminance array; OSError or ValueError if unreadable."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            # Photos from phones are stored sideways with an EXIF rotation: show them as taken.
            upright = ImageOps.exif_transpose(image)
            y = np.array(upright.convert("L"))
    y.setflags(write=False)
    return y


def image_files(path: Path) -> list[Path]:
    """The images a replay of `path` plays: the file itself, or a folder's images by name."""
    if path.is_dir():
        return sorted(
            (
                p
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            ),
            key=lambda p: p.name,
        )
    if not path.exists():
        raise CameraError(f"replay path {str(path)!r} does not exist")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise CameraError(f"replay file {str(path)!r} is not a supported image ({', '.join(IMAGE_SUFFIXES)})")
    return [path]


class ReplaySource(FrameSource):
    """Images as frames at `fps`, looping, or ending (`exhausted`) after the last one.

    Paced (the default), frames fall due in real time like a camera's and a slow reader skips to the
    newest (see `pacing`); unpaced, `read` returns every image in turn at once, for tests and tools.
    """

    name = "replay"

    def __init__(
        self,
        path: str | Path,
        *,
        fps: float = 15.0,
        loop: bool = True,
        paced: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = Path(path)
        self.fps = fps
        self.loop = loop
        self.paced = paced
        self._ticker = FrameTicker(fps, paced=paced, clock=clock, sleep=sleep)
        self._images: list[np.ndarray] = []
        self.files: list[Path] = []
        self._started = False

    @property
    def exhausted(self) -> bool:
        """True once a non-looping replay has shown its last image."""
        return self._ticker.exhausted

    def start(self) -> None:
        paths = image_files(self.path)
        if not paths:
            raise CameraError(
                f"replay folder {str(self.path)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})"
            )
        images, files, failures = [], [], []
        for p in paths:
            try:
                images.append(load_luminance(p))
                files.append(p)
            except (
                OSError,
                ValueError,
                Image.DecompressionBombWarning,
                Image.DecompressionBombError,
            ) as exc:
                failures.append((p, exc))
        if not images:
            first, why = failures[0]
            raise CameraError(f"cannot read replay image {str(first)!r}: {why}")
        for skipped, why in failures:
            log.warning("replay: skipping unreadable image %s: %s", skipped, why)
        self._images, self.files = images, files
        self._started = True
        self._ticker.start()
        log.info("replay camera: %d images from %s at %.1f fps", len(images), self.path, self.fps)

    def read(self, timeout: float) -> Frame | None:
        if not self._started:
            raise CameraError("replay camera read before start")
        tick = self._ticker.next(timeout)
        if tick is None:
            return None
        index, t = tick
        if not self.loop and index >= len(self._images):
            self._ticker.end()
            return None
        self._ticker.taken(index)
        return Frame(y=self._images[index % len(self._images)], t=t, index=index)

    def stop(self) -> None:
        self._started = False
        self._images = []
