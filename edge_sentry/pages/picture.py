"""A viewfinder snapshot as the aiming page receives it: a JPEG, the codes' boxes and the meters.

One message per snapshot, made once whoever watches (`pages/aim.py` shares it between the open
pages), on a worker thread of the pages, never on the hot loop. The picture stays grey (the Y plane
is all the sentry reads) and the boxes travel as corner points the page draws over it.

What it must never do: put a code's text in the message. The snapshot carries none (only corner
points, `viewfinder.py`), and the message is built from named fields only.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from PIL import Image

from ..viewfinder import Snapshot
from .meters import exposure, region_sharpness, sharpness

#: JPEG quality: the meters are computed on the plane itself, the picture only has to show the scene.
QUALITY = 70


def jpeg(snapshot: Snapshot, quality: int = QUALITY) -> bytes:
    """The snapshot's plane as a greyscale JPEG."""
    out = io.BytesIO()
    Image.fromarray(snapshot.y, mode="L").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def boxes(snapshot: Snapshot) -> list[list[list[float]]]:
    """Each code's four corners in the picture's pixels (the frame's divided by the snapshot's step)."""
    step = snapshot.step
    return [[[x / step, y / step] for x, y in corners] for corners in snapshot.codes]


def message(snapshot: Snapshot, quality: int = QUALITY) -> dict[str, Any]:
    """The aiming page's message for one snapshot: `{"event": "aim", ...}` (docs/protocol.md 4.4)."""
    height, width = snapshot.y.shape
    drawn = boxes(snapshot)
    return {
        "event": "aim",
        "seq": snapshot.seq,
        "width": width,
        "height": height,
        "jpeg": base64.b64encode(jpeg(snapshot, quality)).decode("ascii"),
        "boxes": drawn,
        "codes": len(drawn),
        "fps": None if snapshot.fps is None else round(snapshot.fps, 1),
        "exposure": exposure(snapshot.y),
        "sharpness": sharpness(snapshot.y),
        "code_sharpness": [region_sharpness(snapshot.y, box) for box in drawn],
    }


def encode(snapshot: Snapshot) -> str:
    """`message` as one line of JSON, ready for a `data:` line."""
    return json.dumps(message(snapshot), separators=(",", ":"))
