"""The aiming page's meters, computed from a picture's pixels: exposure and sharpness.

A technician turns the lens and moves the camera until the meters say the picture is bright enough
without burning out and sharp where the codes will be. The synthetic and replayed cameras carry no
exposure metadata, and a Pi camera's (`ExposureTime`, `AnalogueGain`) says what the sensor did, not
whether the picture can be read: so everything here is measured on the Y plane the decoder reads.

Pure: numpy on the downscaled plane the viewfinder hands over (640 px wide at most), on the pages'
side, never on the hot loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Grey levels at or below / at or above which a pixel counts as clipped (crushed black, burnt white).
BLACK = 3
WHITE = 252
#: Mean luminance outside which the exposure reads as too dark / too bright for a phone's screen to
#: stand out from the scene (a screen is the brightest thing in a dim entrance).
DARK_MEAN = 40
BRIGHT_MEAN = 200
#: A share of burnt-white pixels past which the phone screens themselves lose their modules.
CLIPPED_LIMIT = 0.05


def exposure(y: np.ndarray) -> dict[str, Any]:
    """Mean luminance (0-255), the shares of crushed-black and burnt-white pixels, and a word for it."""
    count = max(1, y.size)
    mean = float(y.mean()) if y.size else 0.0
    black = int(np.count_nonzero(y <= BLACK)) / count
    white = int(np.count_nonzero(y >= WHITE)) / count
    if white > CLIPPED_LIMIT or mean > BRIGHT_MEAN:
        verdict = "bright"
    elif mean < DARK_MEAN:
        verdict = "dark"
    else:
        verdict = "good"
    return {"mean": round(mean, 1), "black": round(black, 4), "white": round(white, 4), "verdict": verdict}


def sharpness(y: np.ndarray) -> float:
    """The variance of the 4-neighbour Laplacian: higher as edges get crisper (0 for a flat picture).

    Depends on the scene as much as the focus, so it is a figure to push up while turning the lens,
    not one to compare between entrances.
    """
    if y.shape[0] < 3 or y.shape[1] < 3:
        return 0.0
    p = y.astype(np.int32)
    lap = 4 * p[1:-1, 1:-1] - p[:-2, 1:-1] - p[2:, 1:-1] - p[1:-1, :-2] - p[1:-1, 2:]
    return round(float(lap.var()), 1)


def region_sharpness(y: np.ndarray, corners: Sequence[Sequence[float]]) -> float:
    """`sharpness` inside the box around `corners` (x, y in `y`'s pixels): the focus where a code is."""
    xs = [p[0] for p in corners]
    ys = [p[1] for p in corners]
    h, w = y.shape
    left, right = max(0, int(min(xs))), min(w, int(max(xs)) + 1)
    top, bottom = max(0, int(min(ys))), min(h, int(max(ys)) + 1)
    if right - left < 3 or bottom - top < 3:
        return 0.0
    return sharpness(y[top:bottom, left:right])
