"""QR codes from a Y plane: the only module that talks to zxing-cpp.

At a gate almost every frame holds no code, and the hot path must keep up with the camera on a Pi core
several times slower than a desktop. So the decoder spends little on the common frame, and more only
where the frame itself shows evidence of a code:

1. decode a 2x subsampled view (`y[::2, ::2]`: no copy), QR only, without zxing's own downscaling
   and inverted passes: a phone held up to the camera is read here, from a quarter of the pixels.
   A frame whose subsampled view would be under 360 px on its short side (a small picture that a
   code fills) is read whole instead, at no more cost than the subsampled camera frame;
2. if that pass half-saw a symbol (zxing's `return_errors` reports one that failed to decode), decode
   the full-resolution region around it;
3. if it read nothing, look for the texture of a code too fine for the subsampled view (edge density
   in both directions, block by block: text and stripes change in one direction only) and decode the
   full-resolution regions of the strongest one or two;
4. with step 3, read the same code-like regions light on dark (a wallet app in dark mode): first
   subsampled as in step 1 (before step 3's crops: a quarter of their pixels), then at full
   resolution once step 3 has failed too. Edge density does not depend on polarity, so the inverted
   reads are paid only where a code's texture is and step 1 read nothing. A small frame read whole
   is read whole inverted when it shows such a texture.
The whole frame is never retried blindly: a frame without a code costs step 1 and a small numpy map.
`thorough` is the other read, off the hot path (`scan`): zxing-cpp's own defaults, QR only, with
inversion, for image files where the pipeline found nothing.

Measured by `benchmarks/bench_decode.py` on 1280x720 frames (ratios within one run on this machine;
see benchmarks/README.md for the table):
- real photos in a camera view: as many codes as zxing-cpp's defaults (122 of 126) in ~0.05x their
  time and 0.45-0.55x a QR-only full-frame read; synthetic phones: 40 of 40 in ~0.3x;
- frames without a code: 0.2-0.3x the QR-only full-frame read, and no text ever read;
- step 1 alone reads 101 of the 126 photos, with step 2 109, with step 3 all 122;
- one full-resolution pass (scale 1) costs ~0.5x QR-only on every frame, over the no-code budget;
  scale 3 (before the first pass kept 360 px a side) lost 4 photos and 3 phones; a box-filtered
  view reads no more for ~1.7x the time;
  `GlobalHistogram` reads 76 of 126; zxing's `try_invert` costs ~25% more on every frame, where
  step 4 costs only the frames with a code's texture and nothing read; `try_rotate` changes nothing
  for QR, at any of the four right-angle turns;
- small pictures a code fills (100-400 px, half light on dark) and light-on-dark phones: as many as
  zxing-cpp's defaults (21 of 24, 20 of 20); the phones in ~0.6x a QR-only read (which reads them
  through its own inverted pass), the small pictures, read whole, in ~1.5x (half a millisecond).
Hence DecoderConfig's defaults: scale 2, retry_full (regions only), LocalAverage, no invert.

Frames are validated first (a wrong dtype or shape is the caller's bug: ValueError); after that,
nothing zxing does with a valid frame escapes `decode`: a failure is logged, counted in `stats` and
gives []. Never logs a code's text.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import zxingcpp

from .config import DecoderConfig

log = logging.getLogger(__name__)

Point = tuple[int, int]
_QR = zxingcpp.BarcodeFormat.QRCode
MIN_SIDE = 21  # the smallest QR symbol is 21 modules: anything smaller cannot hold one
# The short side below which a subsampled first pass is not worth it (see Decoder.first_scale): a
# 1280x720 camera frame at scale 2 is just at it.
FIRST_PASS_SIDE = 360
# A frame read whole is held to this share of the proposal threshold before its inverted read
# (measured on generated small codes and crops of empty entrances: all of the one, 1 in 9 of the other).
COARSE_TEXTURE = 2 / 3
# `thorough`: zxing-cpp's defaults (binarizer, downscaling, rotation, inversion), QR only.
_THOROUGH: dict[str, Any] = {"formats": _QR, "try_invert": True, "text_mode": zxingcpp.TextMode.Plain}


@dataclass(frozen=True, slots=True)
class Decoded:
    """One code read from a frame.

    `position`: its corners (top-left, top-right, bottom-right, bottom-left of the symbol as
    encoded) as (x, y) pixels in the frame given to `decode`. `raw`: the bytes the symbol holds.
    """

    text: str
    position: tuple[Point, Point, Point, Point]
    raw: bytes


@dataclass(frozen=True, slots=True)
class _Region:
    top: int
    bottom: int
    left: int
    right: int

    @property
    def area(self) -> int:
        return (self.bottom - self.top) * (self.right - self.left)

    def overlap(self, other: _Region) -> int:
        """Pixels shared with `other`."""
        h = min(self.bottom, other.bottom) - max(self.top, other.top)
        w = min(self.right, other.right) - max(self.left, other.left)
        return max(0, h) * max(0, w)

    @classmethod
    def around(cls, points: tuple[Point, ...]) -> _Region:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        return cls(min(ys), max(ys), min(xs), max(xs))


def check_frame(y: object) -> np.ndarray:
    """The frame if it is a 2-D uint8 array big enough for a QR code; ValueError otherwise."""
    if not isinstance(y, np.ndarray):
        raise ValueError(f"a frame must be a numpy array, not {type(y).__name__}")
    if y.ndim != 2:
        raise ValueError(f"a frame must be a 2-D Y plane, not an array of shape {y.shape}")
    if y.dtype != np.uint8:
        raise ValueError(f"a frame must be uint8, not {y.dtype}")
    if min(y.shape) < MIN_SIDE:
        raise ValueError(f"a frame of {y.shape[1]}x{y.shape[0]} is too small to hold a QR code")
    return y


def _distinct(found: list[Decoded]) -> list[Decoded]:
    """Identical texts once, the first read kept."""
    unique: dict[str, Decoded] = {}
    for code in found:
        unique.setdefault(code.text, code)
    return list(unique.values())


def _absdiff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Both uint8 differences wrap; the smaller one is the true |a - b|. No widening copy needed.
    smaller: np.ndarray = np.minimum(a - b, b - a)
    return smaller


def _block_sums(values: np.ndarray, block: int) -> np.ndarray:
    rows, cols = values.shape[0] // block, values.shape[1] // block
    by_rows = values.reshape(rows, block, values.shape[1]).sum(axis=1, dtype=np.uint32)
    sums: np.ndarray = by_rows.reshape(rows, cols, block).sum(axis=2)
    return sums


def edge_density(y: np.ndarray, step: int, block: int = 8) -> np.ndarray:
    """Mean |gradient| per block of `y` sampled every `step` pixels, in the weaker of the two directions.

    A QR symbol changes in both directions everywhere; a sign's text, a striped jumper or a door
    frame mostly changes in one. Taking the weaker direction keeps those from looking like codes.
    """
    d = np.ascontiguousarray(y[::step, ::step])
    h = (d.shape[0] - 1) // block * block
    w = (d.shape[1] - 1) // block * block
    if h == 0 or w == 0:
        return np.zeros((0, 0), np.float32)
    here = d[:h, :w]
    across = _block_sums(_absdiff(here, d[:h, 1 : w + 1]), block)
    down = _block_sums(_absdiff(here, d[1 : h + 1, :w]), block)
    density: np.ndarray = np.minimum(across, down).astype(np.float32) / (block * block)
    return density


def _run(mask: np.ndarray, i: int) -> tuple[int, int]:
    """The run of True values in the 1-D `mask` that contains index `i`, as [start, end)."""
    gaps = np.flatnonzero(~mask)
    k = int(np.searchsorted(gaps, i))
    start = int(gaps[k - 1]) + 1 if k > 0 else 0
    end = int(gaps[k]) if k < len(gaps) else len(mask)
    return start, end


def code_like_boxes(density: np.ndarray, threshold: float, limit: int) -> list[tuple[int, int, int, int]]:
    """Boxes `(top, bottom, left, right)` in cells around the strongest code-like textures.

    Each box starts at the strongest remaining cell above `threshold` and grows, row band and column
    band in turn, over neighbouring cells above half of it: a code's border cells are only partly
    code and score lower, and a box cut at the threshold alone would crop the symbol. A box must
    hold two cells above the threshold: one is a corner of a sign, not a code.
    """
    seeds = density > threshold
    grow = density > threshold / 2
    boxes: list[tuple[int, int, int, int]] = []
    while len(boxes) < limit and seeds.any():
        r, c = np.unravel_index(int(np.argmax(np.where(seeds, density, -1.0))), density.shape)
        box = (int(r), int(r) + 1, int(c), int(c) + 1)
        for _ in range(8):
            left, right = _run(np.asarray(grow[box[0] : box[1]].any(axis=0)), int(c))
            top, bottom = _run(np.asarray(grow[:, left:right].any(axis=1)), int(r))
            if (top, bottom, left, right) == box:
                break
            box = (top, bottom, left, right)
        top, bottom, left, right = box
        if seeds[top:bottom, left:right].sum() >= 2:
            boxes.append(box)
        seeds[top:bottom, left:right] = False
        seeds[r, c] = False
    return boxes


class Decoder:
    """Reads QR codes from Y planes with the pipeline of the module docstring.

    DecoderConfig: `scale` is step 1's subsampling (1: a single full-frame pass, retried inverted
    only on a code-like texture); `retry_full` turns steps 2 to 4 on (full resolution, regions
    only); `binarizer`, `try_invert` and `try_rotate` go to zxing-cpp. Beyond the config, measured
    like the rest: `proposals` turns steps 3 and 4 on, `proposal_threshold` is the edge density
    (grey levels per pixel) that marks a texture as code-like, `max_regions` bounds the crops per
    frame, `downscale` is step 1's view: "stride" (subsampled, no copy) or "box" (averaged, a copy).

    `stats` counts frames by how they ended ("scaled", "partial", "proposal", "inverted", "none";
    "full" when read whole; "error"), and the crops decoded after step 1 ("regions"): health reports
    and the benchmark read it.
    """

    def __init__(
        self,
        cfg: DecoderConfig | None = None,
        *,
        proposals: bool = True,
        proposal_threshold: float = 30.0,
        max_regions: int = 2,
        downscale: str = "stride",
    ) -> None:
        cfg = cfg or DecoderConfig()
        if cfg.scale < 1:
            raise ValueError("scale must be at least 1")
        if downscale not in ("stride", "box"):
            raise ValueError("downscale must be 'stride' or 'box'")
        if not hasattr(zxingcpp.Binarizer, cfg.binarizer):
            raise ValueError(f"zxing-cpp has no binarizer {cfg.binarizer!r}")
        self.cfg = cfg
        self.scale = int(cfg.scale)
        self.proposals = proposals
        self.proposal_threshold = proposal_threshold
        self.max_regions = max_regions
        self.downscale = downscale
        self._options = {
            "formats": _QR,
            "try_rotate": cfg.try_rotate,
            "try_invert": cfg.try_invert,
            "try_downscale": False,
            "binarizer": getattr(zxingcpp.Binarizer, cfg.binarizer),
            "text_mode": zxingcpp.TextMode.Plain,
        }
        self.stats: Counter[str] = Counter()

    def decode(self, y: np.ndarray) -> list[Decoded]:
        """Every distinct code in the frame (identical texts once); [] when there is none."""
        y = check_frame(y)
        try:
            found = self._decode(y)
        except Exception as exc:  # zxing or numpy on a valid frame: never the hot path's problem
            self.stats["error"] += 1
            log.warning("decoder failed on a %dx%d frame: %s", y.shape[1], y.shape[0], type(exc).__name__)
            return []
        return _distinct(found)

    def first_scale(self, y: np.ndarray) -> int:
        """Step 1's subsampling for this frame: `scale`, less where the view would be too small.

        Below FIRST_PASS_SIDE pixels on its short side a subsampled view leaves a code that fills a
        small picture too few pixels per module, and reading such a frame whole costs no more than
        the subsampled pass over a full camera frame.
        """
        s = self.scale
        while s > 1 and min(y.shape) // s < FIRST_PASS_SIDE:
            s -= 1
        return s

    def thorough(self, y: np.ndarray) -> list[Decoded]:
        """zxing-cpp's own thorough read (its defaults: downscaled and inverted passes), QR only.

        Several times the pipeline's cost: for image files off the hot path, never for camera
        frames. Failures are handled as in `decode`.
        """
        y = check_frame(y)
        try:
            found = self._read(y, 0, 0, 1, errors=False, options=_THOROUGH)[0]
        except Exception as exc:  # as in decode: a valid image never raises out of here
            self.stats["error"] += 1
            log.warning(
                "thorough read failed on a %dx%d image: %s", y.shape[1], y.shape[0], type(exc).__name__
            )
            return []
        return _distinct(found)

    def _decode(self, y: np.ndarray) -> list[Decoded]:
        s = self.first_scale(y)
        if s == 1:
            found = self._read(y, 0, 0, 1, errors=False)[0]
            stage = "full" if found else "none"
            # A code filling a small picture has coarse modules, fewer edges per pixel than one
            # seen small in a camera view: a lower bar for its texture. The whole frame is read
            # light on dark (a box around coarse modules can cut the symbol), and a false alarm
            # costs one more read of this small frame.
            if (
                not found
                and self.cfg.retry_full
                and self.proposals
                and self._boxes(y, 1, COARSE_TEXTURE * self.proposal_threshold)
            ):
                self.stats["regions"] += 1
                found = self._read(np.invert(y), 0, 0, 1, errors=False)[0]
                stage = "inverted" if found else stage
            self.stats[stage] += 1
            return found
        view, offset = self._scaled(y, s)
        found, partial = self._read(view, 0, 0, s, errors=True, offset=offset)
        stage = "scaled" if found else "none"
        if self.cfg.retry_full:
            # Crops of codes already read, or already tried, are not decoded again.
            tried = [_Region.around(code.position) for code in found]
            limit = len(tried) + self.max_regions
            if self._retry(y, self._regions_around(y, partial, s), tried, limit, found):
                stage = "partial" if stage == "none" else stage
            # Step 3 only on a frame with nothing read: a half-seen symbol can be a mistaken one (a
            # corner read as a Micro QR) beside a code too fine for the first pass.
            if not found and self.proposals:
                boxes = self._boxes(y, s, self.proposal_threshold)
                small = [region for region in boxes if region.area <= y.size // 2]
                # Light on dark at the first pass's scale before the full-resolution crops: a
                # quarter of their pixels, and where a dark-mode phone's code is read.
                if self._retry_inverted(y, found, boxes, (s,)):
                    stage = "inverted"
                elif self._retry(y, small, tried, limit, found):
                    stage = "proposal"
                elif self._retry_inverted(y, found, small, (1,)):
                    stage = "inverted"
        self.stats[stage] += 1
        return found

    def _retry_inverted(
        self, y: np.ndarray, found: list[Decoded], boxes: list[_Region], steps: tuple[int, ...]
    ) -> bool:
        """Step 4: the code-like textures read light on dark, each subsampled by `steps` in turn.

        Only where the texture says a code is there and step 1 read nothing: edge density does not
        depend on polarity, and a frame without a code-like texture never pays for this. Adds what
        it reads to `found`; True once something was read.
        """
        for region in boxes:
            crop = y[region.top : region.bottom, region.left : region.right]
            for step in steps:
                if min(crop.shape) // step < MIN_SIDE:
                    continue
                self.stats["regions"] += 1
                view = np.invert(crop[::step, ::step])
                more = self._read(view, region.top, region.left, step, errors=False)[0]
                if more:
                    found.extend(more)
                    return True
        return False

    def _retry(
        self,
        y: np.ndarray,
        regions: list[_Region],
        tried: list[_Region],
        limit: int,
        found: list[Decoded],
    ) -> bool:
        """Decode `regions` at full resolution until `tried` holds `limit`; add codes to `found`."""
        added = False
        for region in regions:
            if len(tried) >= limit:
                break
            if any(region.overlap(other) > region.area // 2 for other in tried):
                continue
            tried.append(region)
            more = self._read_region(y, region)
            found.extend(more)
            added = added or bool(more)
        return added

    def _scaled(self, y: np.ndarray, s: int) -> tuple[np.ndarray, float]:
        """The first pass's view at scale `s` and where its pixel centres fall in frame pixels."""
        if self.downscale == "stride":
            return y[::s, ::s], 0.0
        h, w = y.shape[0] // s * s, y.shape[1] // s * s
        sums = np.zeros((h // s, w // s), np.uint16)
        for dy in range(s):
            for dx in range(s):
                sums += y[dy:h:s, dx:w:s]
        return ((sums + s * s // 2) // (s * s)).astype(np.uint8), (s - 1) / 2

    def _read(
        self,
        image: np.ndarray,
        top: int,
        left: int,
        scale: int,
        *,
        errors: bool,
        offset: float = 0.0,
        options: dict[str, Any] | None = None,
    ) -> tuple[list[Decoded], list[_Region]]:
        """Decode `image`, with positions in frame coordinates; also the regions of failed finds."""
        found, partial = [], []
        for barcode in zxingcpp.read_barcodes(image, return_errors=errors, **(options or self._options)):
            corners = [
                barcode.position.top_left,
                barcode.position.top_right,
                barcode.position.bottom_right,
                barcode.position.bottom_left,
            ]
            tl, tr, br, bl = (
                (round(left + p.x * scale + offset), round(top + p.y * scale + offset)) for p in corners
            )
            points = (tl, tr, br, bl)
            if barcode.valid:
                found.append(Decoded(barcode.text, points, bytes(barcode.bytes)))
            else:
                partial.append(_Region.around(points))
        return found, partial

    def _read_region(self, y: np.ndarray, region: _Region) -> list[Decoded]:
        if min(region.bottom - region.top, region.right - region.left) < MIN_SIDE:
            return []
        self.stats["regions"] += 1
        crop = y[region.top : region.bottom, region.left : region.right]
        return self._read(crop, region.top, region.left, 1, errors=False)[0]

    def _clip(self, y: np.ndarray, top: float, bottom: float, left: float, right: float) -> _Region:
        """A crop inside the frame whose corners sit on the 8-pixel grid.

        zxing's LocalAverage binarizer thresholds 8x8 blocks; a crop on the same grid as the frame
        binarizes exactly as the frame would, and a code at the limit of resolution decodes in the
        crop whenever it decodes in the whole frame (measured: off-grid crops lost a few).
        """
        h, w = y.shape
        return _Region(
            max(0, int(top) // 8 * 8),
            min(h, -(-int(bottom + 1) // 8) * 8),
            max(0, int(left) // 8 * 8),
            min(w, -(-int(right + 1) // 8) * 8),
        )

    def _regions_around(self, y: np.ndarray, partial: list[_Region], s: int) -> list[_Region]:
        """Full-resolution crops around half-seen symbols, with room for corners zxing misjudged."""
        regions = []
        for p in sorted(partial, key=lambda r: -r.area):
            margin = 0.3 * max(p.bottom - p.top, p.right - p.left) + 4 * s
            regions.append(
                self._clip(y, p.top - margin, p.bottom + margin, p.left - margin, p.right + margin)
            )
        return regions

    def _boxes(self, y: np.ndarray, s: int, threshold: float) -> list[_Region]:
        """Crops around the strongest code-like textures (edge density over `threshold`), at most
        `max_regions`, of any size."""
        step = 2 * s
        cell = 8 * step
        density = edge_density(y, step)
        regions = []
        for top, bottom, left, right in code_like_boxes(density, threshold, self.max_regions):
            top, bottom, left, right = top * cell, bottom * cell, left * cell, right * cell
            margin = cell + 0.15 * max(bottom - top, right - left)
            regions.append(self._clip(y, top - margin, bottom + margin, left - margin, right + margin))
        return regions
