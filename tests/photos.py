"""The real QR photographs (zxing-cpp's test samples) and camera-like frames built from them.

A photo alone is not what the sentry sees: it sees a 1280x720 view of an entrance with the code
somewhere in it. `camera_view` places a photo, scaled to a size a phone shows at a gate, into such a
view. The set is not part of the repository (read-only, Apache-2.0, see its NOTICE): the environment
variable EDGE_SENTRY_QR_PHOTOS names its folder, and nothing else does. `available()` lets tests and
benchmarks skip, with `MISSING` as the reason, when the variable is unset or its folder is absent.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edge_sentry.camera.synthetic import entrance_background

ENV = "EDGE_SENTRY_QR_PHOTOS"
# No default folder: a checkout must not depend on what happens to lie beside it.
PHOTO_DIR: Path | None = Path(os.environ[ENV]) if os.environ.get(ENV) else None
IMAGE_SUFFIXES = (".webp", ".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Photo:
    """One sample: its name (`folder/file`), the grayscale image and the text its code holds."""

    name: str
    image: Image.Image
    text: str

    @property
    def is_rendering(self) -> bool:
        # The PNG samples are symbols drawn edge to edge (one pixel per module, no quiet zone), not
        # photographs; on a phone they would have the quiet zone every app draws.
        return self.name.endswith(".png")


def _missing_reason() -> str:
    if PHOTO_DIR is None:
        return f"QR photo set not available: {ENV} is not set (set it to the photo set's folder)"
    return f"QR photo set not available: {ENV}={PHOTO_DIR} is not a folder"


#: Why the photos cannot be used here (the skip reason); read only when `available()` is False.
MISSING = _missing_reason()


def available() -> bool:
    return PHOTO_DIR is not None and PHOTO_DIR.is_dir()


@functools.cache
def load() -> tuple[Photo, ...]:
    """Every sample with an expected text, sorted by name."""
    photos: list[Photo] = []
    if PHOTO_DIR is None:
        return ()
    for path in sorted(PHOTO_DIR.glob("*/*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        expected = path.with_suffix(".txt")
        if not expected.exists():
            continue
        with open(expected, encoding="utf-8", newline="") as fh:
            text = fh.read()
        image = Image.open(path).convert("L")
        photos.append(Photo(f"{path.parent.name}/{path.name}", image, text))
    return tuple(photos)


@functools.cache
def _background(seed: int, width: int, height: int) -> np.ndarray:
    return entrance_background(width, height, seed)


def camera_view(
    photo: Photo, height_px: int, seed: int = 0, width: int = 1280, height: int = 720
) -> np.ndarray:
    """A `width` x `height` frame with `photo` scaled to `height_px` tall, placed by `seed`."""
    rng = np.random.default_rng(seed)
    image = photo.image
    if photo.is_rendering:
        margin = 4  # one pixel per module in these samples: the standard four-module quiet zone
        padded = Image.new("L", (image.width + 2 * margin, image.height + 2 * margin), 255)
        padded.paste(image, (margin, margin))
        image = padded
    h = min(height_px, height)
    w = min(width, round(image.width * h / image.height))
    scaled = np.asarray(image.resize((w, h), Image.BILINEAR))
    frame = _background(seed % 4, width, height).copy()
    x = int(rng.integers(0, width - w + 1))
    y = int(rng.integers(0, height - h + 1))
    frame[y : y + h, x : x + w] = scaled
    return frame
