"""The frames the decode benchmark measures on: 1280x720 grayscale, as the decoder gets them.

Three sets, each built deterministically (fixed seeds) so two runs measure the same pixels:
- `real_photo_frames`: zxing-cpp's real QR photographs (see tests/photos.py) placed at several sizes
  into a view of an entrance;
- `phone_frames`: the synthetic camera's phones showing ES1- and DCC-sized codes, tilted, blurred
  and noisy, then put through what a cheap camera does to a picture: a perspective warp, uneven
  lighting and JPEG compression;
- `empty_frames`: the same entrances with no code: people, phones showing no code, signs, grain. Not
  a flat grey frame, which would be unrealistically cheap to search;
- `small_frames`: generated pictures of 100-400 px a side that a code fills, half of them light on
  dark (tests/smallcodes.py), as `scan` gets them: not camera frames;
- `inverted_frames`: synthetic phones as in `phone_frames`, the whole view light on dark, as a wallet
  app in dark mode shows a code.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from edge_sentry.camera.synthetic import Cue, Scene, entrance_background

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import photos
import smallcodes

WIDTH, HEIGHT = 1280, 720
PHOTO_SIZES = (270, 350, 430)
BASE45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


@dataclass(frozen=True)
class Sample:
    """A frame and the text of the code in it (None: there is none)."""

    name: str
    y: np.ndarray
    expected: str | None


def real_photo_frames(sizes: tuple[int, ...] = PHOTO_SIZES) -> list[Sample]:
    """Every real photo at every size (pixels tall), each at its own place in the view."""
    out = []
    for i, photo in enumerate(photos.load()):
        for size in sizes:
            frame = photos.camera_view(photo, size, seed=i * 31 + size)
            out.append(Sample(f"{photo.name}@{size}", frame, photo.text))
    return out


def _perspective_coefficients(
    src: list[tuple[float, float]], dst: list[tuple[float, float]]
) -> list[float]:
    """Pillow's PERSPECTIVE coefficients mapping output points `dst` to input points `src`."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.extend([u, v])
    return np.linalg.solve(np.array(rows, float), np.array(rhs, float)).tolist()


def camera_look(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What a cheap camera does to a view: a tilted viewpoint, uneven light, JPEG blocks."""
    h, w = y.shape
    image = Image.fromarray(y)
    # Sample a slightly skewed quadrilateral inside the frame: the result is the view from a camera
    # looking at the scene a little off-axis, with no empty borders.
    j = rng.uniform(0.0, 0.07, size=(4, 2)) * (w, h)
    quad = [
        (j[0, 0], j[0, 1]),
        (w - j[1, 0], j[1, 1]),
        (w - j[2, 0], h - j[2, 1]),
        (j[3, 0], h - j[3, 1]),
    ]
    corners = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)]
    image = image.transform(
        (w, h), Image.PERSPECTIVE, _perspective_coefficients(quad, corners), Image.BILINEAR
    )
    yy = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :]
    gx, gy = rng.uniform(-0.35, 0.35, size=2)
    light = (1.0 + gx * xx + gy * yy) * (1.0 - 0.25 * (xx**2 + yy**2) / 2)
    lit = np.clip(np.asarray(image, dtype=np.float32) * light, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(lit).save(buf, "JPEG", quality=int(rng.integers(35, 80)))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))


def _code_text(rng: np.random.Generator) -> str:
    # Base45 texts of the two lengths that matter: an ES1 code (~230 characters) and a DCC (~550).
    if rng.random() < 0.7:
        prefix, length = "ES1:", int(rng.integers(200, 260))
    else:
        prefix, length = "HC1:", int(rng.integers(450, 650))
    return prefix + "".join(rng.choice(list(BASE45), size=length))


def phone_frames(count: int = 40, seed: int = 7) -> list[Sample]:
    """Synthetic phones with a code, in all the poses and conditions the synthetic camera offers."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        text = _code_text(rng)
        dense = text.startswith("HC1:")
        cue = Cue(
            text,
            0.0,
            1.0,
            x=float(rng.uniform(0.25, 0.75)),
            y=float(rng.uniform(0.4, 0.6)),
            size=float(rng.uniform(0.38, 0.6) if dense else rng.uniform(0.25, 0.5)),
            rotation=float(rng.uniform(-35, 35)),
            blur=float(rng.uniform(0.0, 1.4)),
            noise=float(rng.uniform(2.0, 8.0)),
        )
        scene = Scene([cue], duration=1.0, seed=int(rng.integers(0, 1000)))
        frame = camera_look(scene.render_at(0.5, WIDTH, HEIGHT), rng)
        out.append(Sample(f"phone-{i:02d}-{'dcc' if dense else 'es1'}", frame, text))
    return out


def _person(draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int) -> None:
    """A visitor walking through: head, shoulders, a striped jumper (fine, high-contrast texture)."""
    cx = int(rng.uniform(0.2, 0.8) * w)
    head = int(h * rng.uniform(0.09, 0.13))
    top = int(h * rng.uniform(0.15, 0.3))
    draw.ellipse(
        (cx - head // 2, top, cx + head // 2, top + int(head * 1.25)),
        fill=int(rng.uniform(110, 170)),
    )
    body_top = top + int(head * 1.35)
    half = int(head * 1.6)
    draw.rounded_rectangle(
        (cx - half, body_top, cx + half, h + 20), radius=head // 2, fill=int(rng.uniform(30, 80))
    )
    if rng.random() < 0.6:
        stripe = max(3, int(rng.integers(4, 12)))
        for y0 in range(body_top + stripe, h, 2 * stripe):
            draw.rectangle(
                (cx - half + 6, y0, cx + half - 6, y0 + stripe - 1), fill=int(rng.uniform(160, 220))
            )


def _blank_phone(draw: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int) -> None:
    """A phone showing a screen of text, not a code: the visitor has not opened the code yet."""
    pw = int(h * rng.uniform(0.25, 0.4))
    ph = 2 * pw
    x0, y0 = int(rng.uniform(0.1, 0.9) * w) - pw // 2, int(rng.uniform(0.1, 0.5) * h)
    draw.rounded_rectangle((x0, y0, x0 + pw, y0 + ph), radius=pw // 8, fill=30)
    draw.rounded_rectangle((x0 + 8, y0 + 8, x0 + pw - 8, y0 + ph - 8), radius=pw // 10, fill=220)
    for row in range(y0 + pw // 4, y0 + ph - 20, max(6, pw // 14)):
        length = int(rng.uniform(0.3, 0.8) * (pw - 40))
        draw.rectangle((x0 + 20, row, x0 + 20 + length, row + max(2, pw // 40)), fill=70)


def empty_frames(count: int = 30, seed: int = 11) -> list[Sample]:
    """Entrances with no code in view: the common case at a gate."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        image = Image.fromarray(entrance_background(WIDTH, HEIGHT, seed=int(rng.integers(0, 1000))))
        draw = ImageDraw.Draw(image)
        what = []
        if i % 3 != 0:
            _person(draw, rng, WIDTH, HEIGHT)
            what.append("person")
        if i % 4 == 1:
            _blank_phone(draw, rng, WIDTH, HEIGHT)
            what.append("phone")
        noise = rng.normal(0.0, rng.uniform(2.0, 6.0), (HEIGHT, WIDTH))
        frame = np.clip(np.asarray(image, np.float32) + noise, 0, 255).astype(np.uint8)
        if i % 2:
            frame = camera_look(frame, rng)
        out.append(Sample(f"empty-{i:02d}-{'+'.join(what) or 'entrance'}", frame, None))
    return out


def small_frames(count: int = 24, seed: int = 19) -> list[Sample]:
    """Small pictures filled by a code, every other one light on dark."""
    return [Sample(c.name, c.y, c.text) for c in smallcodes.small_codes(count, seed)]


def inverted_frames(count: int = 20, seed: int = 23) -> list[Sample]:
    """Phones with a light-on-dark code: `phone_frames` of another seed, every grey level inverted."""
    return [Sample(s.name + "-inv", np.invert(s.y), s.expected) for s in phone_frames(count, seed)]
