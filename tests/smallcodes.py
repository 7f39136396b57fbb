"""Small and light-on-dark QR images, made here: the inputs a fast first pass used to miss.

A code filling most of a small picture (100-400 px a side, as a screenshot or a cropped photo is) and a
code shown light on dark (a wallet app in dark mode), each put through what a phone camera does: a
slight perspective, blur, sensor noise and JPEG. Built from fixed seeds, so every run sees the same
pixels. Shared by tests/test_decoder.py, tests/test_cli_run_scan.py and benchmarks/bench_decode.py.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import segno
from PIL import Image, ImageFilter

BASE45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


@dataclass(frozen=True)
class SmallCode:
    """One generated image (2-D uint8) and the text of its code."""

    name: str
    y: np.ndarray
    text: str
    inverted: bool


def _text(rng: np.random.Generator) -> str:
    # An ES1-sized text (~230 characters) or a short one, Base45 as the codes are.
    length = int(rng.integers(200, 260)) if rng.random() < 0.6 else int(rng.integers(20, 60))
    return "ES1:" + "".join(rng.choice(list(BASE45), size=length))


def _perspective(image: Image.Image, rng: np.random.Generator, amount: float) -> Image.Image:
    w, h = image.size
    j = rng.uniform(0.0, amount, size=(4, 2)) * (w, h)
    # Pillow's QUAD maps the output rectangle onto this quadrilateral of the input.
    quad = (j[0, 0], j[0, 1], j[3, 0], h - j[3, 1], w - j[2, 0], h - j[2, 1], w - j[1, 0], j[1, 1])
    fill = image.getpixel((0, 0))
    return image.transform((w, h), Image.QUAD, quad, Image.BILINEAR, fillcolor=fill)


def render(
    text: str,
    side: int,
    rng: np.random.Generator,
    *,
    inverted: bool,
    fill: float = 0.85,
    blur: float = 0.6,
    noise: float = 4.0,
    quality: int = 70,
) -> np.ndarray:
    """`text` as a code filling `fill` of a `side`-pixel square picture, photographed."""
    matrix = np.array(segno.make(text, error="m", micro=False).matrix, dtype=bool)
    code = np.where(matrix, 20, 235).astype(np.uint8)
    inner = max(matrix.shape[0], int(side * fill))
    symbol = Image.fromarray(code).resize((inner, inner), Image.NEAREST)
    canvas = Image.new("L", (side, side), 235)
    canvas.paste(symbol, ((side - inner) // 2, (side - inner) // 2))
    picture = _perspective(canvas, rng, 0.04)
    if blur:
        picture = picture.filter(ImageFilter.GaussianBlur(blur))
    pixels = np.asarray(picture, np.float32)
    if inverted:
        pixels = 255.0 - pixels
    pixels = np.clip(pixels + rng.normal(0.0, noise, pixels.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))


def small_codes(count: int = 24, seed: int = 19) -> list[SmallCode]:
    """`count` images of 100-400 px a side, every other one light on dark."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        text = _text(rng)
        side = int(rng.integers(100, 401))
        inverted = i % 2 == 1
        y = render(
            text,
            side,
            rng,
            inverted=inverted,
            fill=float(rng.uniform(0.75, 0.95)),
            blur=float(rng.uniform(0.0, 0.8)),
            noise=float(rng.uniform(1.0, 5.0)),
            quality=int(rng.integers(50, 90)),
        )
        out.append(SmallCode(f"small-{i:02d}-{side}{'-inv' if inverted else ''}", y, text, inverted))
    return out
