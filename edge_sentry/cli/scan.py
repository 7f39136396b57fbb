"""`edge-sentry scan IMAGE...`: decode and verify image files as the daemon would, one JSON line each.

Each line is `{"image", "codes": [{"text_sha256", "scheme", "verdict", "reason"}], "ms"}`
(docs/protocol.md 7): the code text is given only as its SHA-256, so the output can be kept or shared. `ms` is
the time spent decoding and verifying that image with the daemon's settings, not reading the file.
When those settings find nothing, a thorough read follows (zxing-cpp's defaults, QR only, with inversion:
an image file is off the hot path, and `scan` must never read less than a stock decoder). Its codes are
marked `"thorough": true` and its time is `thorough_ms`, so `ms` still says what the daemon would spend.
Images are independent: each gets a fresh verifier, so no anti-passback between them. An unreadable
image gets an `error` instead of `codes`, and the command goes on with the next one (exit 1 at the end).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..codes import keys
from ..config import Config
from ..decoder import MIN_SIDE, Decoder
from ..errors import EdgeSentryError
from ..verifier import Verifier
from .verify import load_trust, parse_time

# A decompression bomb must not take the sentry's memory: larger images are refused.
MAX_PIXELS = 40_000_000


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "scan",
        help="decode and verify image files, one JSON line per image",
        description="Decode every QR code in each image and verify it with the daemon's settings.",
    )
    parser.add_argument("--now", metavar="ISO8601", help="decide as at this time (default: now)")
    parser.add_argument("--trust", metavar="FILE", help="trust-list file (default: trust.file)")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.set_defaults(func=handle)


def read_gray(path: str) -> np.ndarray:
    """The image as a 2-D uint8 luminance array; raise ValueError with a one-line reason."""
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ValueError(f"image too large ({image.width}x{image.height})")
            return np.asarray(image.convert("L"))
    except FileNotFoundError:
        raise ValueError("no such file") from None
    except IsADirectoryError:
        raise ValueError("is a directory") from None
    except UnidentifiedImageError:
        raise ValueError("not an image format this sentry reads") from None
    except (OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot read the image: {type(exc).__name__}") from None


def scan_image(
    y: np.ndarray, decoder: Decoder, verifier: Verifier, now: float, *, thorough: bool = False
) -> list[dict[str, Any]]:
    """Every code in `y`, decided at `now`, by its text's hash only; `thorough`: by the thorough read."""
    if min(y.shape) < MIN_SIDE:
        return []  # an icon or a thumbnail: readable, but no QR symbol fits in it
    codes = []
    for found in decoder.thorough(y) if thorough else decoder.decode(y):
        decision = verifier.verify(found.text, now)
        codes.append(
            {
                "text_sha256": hashlib.sha256(found.text.encode()).hexdigest(),
                "scheme": decision.scheme,
                "verdict": decision.verdict,
                "reason": decision.reason,
            }
            | ({"thorough": True} if thorough else {})
        )
    return codes


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def handle(args: argparse.Namespace, config: Config) -> int:
    try:
        now = parse_time(args.now) if args.now is not None else None
        trust = load_trust(args.trust or config.trust.file)
        root_key = keys.load_public_key(config.trust.root_key) if config.trust.root_key else None
    except (EdgeSentryError, OSError) as exc:
        print(f"edge-sentry scan: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    decoder = Decoder(config.decoder)
    failed = False
    for path in args.images:
        try:
            y = read_gray(path)
        except ValueError as exc:
            failed = True
            print(json.dumps({"image": path, "error": str(exc)}))
            continue
        verifier = Verifier.from_config(config, trust, root_key)
        at = time.time() if now is None else now
        started = time.perf_counter()
        codes = scan_image(y, decoder, verifier, at)
        line: dict[str, Any] = {"image": path, "codes": codes, "ms": round(_ms_since(started), 3)}
        if not codes and min(y.shape) >= MIN_SIDE:
            started = time.perf_counter()
            line["codes"] = scan_image(y, decoder, verifier, at, thorough=True)
            line["thorough_ms"] = round(_ms_since(started), 3)
        print(json.dumps(line), flush=True)
    return 1 if failed else 0
