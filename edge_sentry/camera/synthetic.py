"""A scripted camera: a view of an entrance where phones showing entry codes come and go.

The demo and the tests need frames that look enough like a camera's to exercise the decoder honestly
(a textured background, a bright phone screen, blur, sensor noise, a tilted hand), at 15-30 fps on a
Pi. So everything expensive is done once: the background, each cue's phone (code, rotation, blur)
and a few noise planes are rendered up front; a frame is a copy of the background with the active
phones blended in and a noise plane added. The scene's content (which codes, when) is its caller's
business; this module only provides the machinery: `Cue`, `Scene` (built in code or read from a TOML
or JSON file) and `SyntheticSource`.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import segno
from PIL import Image, ImageDraw, ImageFilter

from ..errors import CameraError
from .base import Frame, FrameSource
from .pacing import FrameTicker

log = logging.getLogger(__name__)

# Luminance of the parts of a phone as a camera sees them: a screen is bright but not white, its
# dark modules are not black (glare), the bezel is darker than the entrance behind it.
_SCREEN = 226
_DARK_MODULE = 38
_BEZEL = 30
_NOISE_PLANES = 4
_QUIET_ZONE = 4


@dataclass(frozen=True)
class Cue:
    """One code shown on a phone from `start` to `end` seconds of scene time.

    `x`, `y`: the phone's centre as fractions of the frame's width and height (the phone may stand
    partly outside the frame). `size`: the side of the code, quiet zone included, as a fraction of
    the frame height. `rotation`: degrees, counter-clockwise. `blur`: gaussian radius in pixels (an
    out-of-focus hand). `noise`: sensor noise sigma, in grey levels, over the whole frame while the
    cue is shown (a dim entrance).
    """

    text: str
    start: float
    end: float
    x: float = 0.5
    y: float = 0.5
    size: float = 0.35
    rotation: float = 0.0
    blur: float = 0.0
    noise: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text:
            raise ValueError("text must be a non-empty string")
        if not 0 <= self.start < self.end:
            raise ValueError(f"needs 0 <= start < end, not start={self.start!r} end={self.end!r}")
        if not 0.02 <= self.size <= 2.0:
            raise ValueError(f"size must be between 0.02 and 2 (of the frame height), not {self.size!r}")
        if self.blur < 0 or self.noise < 0:
            raise ValueError("blur and noise must not be negative")

    def shown_at(self, t: float) -> bool:
        """Whether the code is on screen at scene time `t` (start included, end excluded)."""
        return self.start <= t < self.end


@dataclass(frozen=True)
class Scene:
    """A timeline of cues over `duration` seconds (kept as a tuple, so a scene never changes).

    `noise` is the sensor noise when no cue asks for more. `seed` fixes the background and the noise:
    a scene renders the same frames every time.
    """

    cues: Sequence[Cue]
    duration: float
    seed: int = 0
    noise: float = 2.0
    _renderers: dict[tuple[int, int], SceneRenderer] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "cues", tuple(self.cues))
        if not self.duration > 0:
            raise ValueError(f"duration must be positive, not {self.duration!r}")
        if self.noise < 0:
            raise ValueError("noise must not be negative")
        for i, cue in enumerate(self.cues):
            if not isinstance(cue, Cue):
                raise ValueError(f"cues[{i}] is not a Cue")
            if cue.start >= self.duration:
                raise ValueError(f"cues[{i}] starts at or after the end of the scene")

    def active(self, t: float) -> list[Cue]:
        """The cues on screen at scene time `t`."""
        return [cue for cue in self.cues if cue.shown_at(t)]

    def renderer(self, width: int = 1280, height: int = 720) -> SceneRenderer:
        """The (cached) renderer of this scene at one frame size."""
        key = (width, height)
        if key not in self._renderers:
            self._renderers[key] = SceneRenderer(self, width, height)
        return self._renderers[key]

    def render_at(self, t: float, width: int = 1280, height: int = 720) -> np.ndarray:
        """The frame at scene time `t`, without any pacing: for tests and benchmarks."""
        return self.renderer(width, height).render(t)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Scene:
        """A scene from `{"duration", "seed"?, "noise"?, "cues": [{cue fields}, ...]}`.

        Raises ValueError naming the key at fault (`cues[2].sise: unknown key`): a typo in a scene
        file must not silently fall back to a default.
        """
        if not isinstance(data, Mapping):
            raise ValueError("a scene must be a table with 'duration' and 'cues'")
        known = {"duration", "seed", "noise", "cues"}
        for key in data:
            if key not in known:
                raise ValueError(f"{key}: unknown key")
        if "duration" not in data:
            raise ValueError("duration: is required")
        raw_cues = data.get("cues", [])
        if not isinstance(raw_cues, list):
            raise ValueError("cues: must be a list of tables")
        cue_keys = {f.name for f in fields(Cue)}
        cues = []
        for i, raw in enumerate(raw_cues):
            if not isinstance(raw, Mapping):
                raise ValueError(f"cues[{i}]: must be a table")
            for key in raw:
                if key not in cue_keys:
                    raise ValueError(f"cues[{i}].{key}: unknown key")
            try:
                cues.append(Cue(**raw))
            except TypeError as exc:
                raise ValueError(f"cues[{i}]: {exc}") from None
            except ValueError as exc:
                raise ValueError(f"cues[{i}]: {exc}") from None
        options = {k: data[k] for k in ("seed", "noise") if k in data}
        return cls(cues=cues, duration=data["duration"], **options)

    @classmethod
    def load(cls, path: str | Path) -> Scene:
        """Read a scene file (`.toml` or `.json`); any problem is a CameraError naming the file."""
        path = Path(path)
        try:
            raw = path.read_bytes()
            parse = json.loads if path.suffix.lower() == ".json" else tomllib.loads
            return cls.from_mapping(parse(raw.decode("utf-8")))
        except OSError as exc:
            raise CameraError(f"cannot read scene file {str(path)!r}: {exc.strerror}") from None
        except (ValueError, TypeError) as exc:
            # json, tomllib and unicode errors are ValueErrors too: one message shape for all.
            raise CameraError(f"scene file {str(path)!r}: {exc}") from None


def entrance_background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A dim view of an entrance: lit ceiling, a bright doorway in a dark frame, a floor, a sign.

    Not flat grey on purpose: edges, text-like marks and grain are what make a frame without a code
    cost the decoder something, as a real one does.
    """
    rng = np.random.default_rng(seed)
    img = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(img)
    w, h = width, height
    floor_y = int(h * rng.uniform(0.74, 0.82))
    door_l, door_r = int(w * rng.uniform(0.32, 0.40)), int(w * rng.uniform(0.60, 0.68))
    door_t = int(h * rng.uniform(0.06, 0.12))
    draw.rectangle((door_l, door_t, door_r, floor_y), fill=int(rng.uniform(150, 185)))
    bar = max(2, w // 60)
    draw.rectangle((door_l - bar, door_t - bar, door_l, floor_y), fill=35)
    draw.rectangle((door_r, door_t - bar, door_r + bar, floor_y), fill=35)
    draw.rectangle((door_l - bar, door_t - bar, door_r + bar, door_t), fill=35)
    sign_l, sign_t = int(w * rng.uniform(0.05, 0.15)), int(h * rng.uniform(0.15, 0.30))
    sign_w, sign_h = int(w * 0.14), int(h * 0.16)
    draw.rectangle((sign_l, sign_t, sign_l + sign_w, sign_t + sign_h), fill=200)
    for row in range(4):
        y0 = sign_t + int(sign_h * (0.15 + 0.2 * row))
        length = int(sign_w * rng.uniform(0.5, 0.85))
        draw.rectangle(
            (sign_l + sign_w // 10, y0, sign_l + sign_w // 10 + length, y0 + sign_h // 14), fill=60
        )

    base = np.asarray(img, dtype=np.float32)
    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    xx = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    wall = 100 - 40 * yy + 12 * xx
    out = np.where(base > 0, base, wall)
    floor = (yy[:, 0] * h) >= floor_y
    out[floor] = 58 + 8 * np.sin(np.arange(w, dtype=np.float32) * 0.05)[None, :]
    # Tile joints closing up towards the horizon, as a floor seen in perspective.
    for k in range(1, 8):
        row = floor_y + int((h - floor_y) * (k / 8) ** 1.6)
        out[row : row + 2, :] -= 18
    blotch = rng.normal(0.0, 8.0, (h // 24 + 2, w // 24 + 2)).astype(np.float32)
    out += np.asarray(Image.fromarray(blotch, mode="F").resize((w, h), Image.Resampling.BILINEAR))
    out += rng.normal(0.0, 3.0, (h, w)).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def code_matrix(text: str) -> np.ndarray:
    """The QR symbol of `text` as a boolean module matrix (True = dark), without quiet zone."""
    try:
        qr = segno.make(text, micro=False)
    except segno.DataOverflowError as exc:
        raise ValueError(f"text does not fit in a QR code: {exc}") from None
    return np.array(qr.matrix, dtype=bool)


@dataclass(frozen=True)
class _Sprite:
    """A cue's phone, ready to blend: premultiplied luminance and the background's remaining weight."""

    premultiplied: np.ndarray  # uint16: phone * alpha
    keep: np.ndarray  # uint16: 255 - alpha
    cx: float
    cy: float


def _phone(cue: Cue, height: int) -> tuple[Image.Image, Image.Image]:
    """The phone as an image and its alpha mask, upright and sharp."""
    matrix = np.pad(code_matrix(cue.text), _QUIET_ZONE)
    n = matrix.shape[0]
    side = max(n, round(cue.size * height))
    # Draw modules at an integer multiple, then area-average down: edges come out anti-aliased, as
    # through a lens, and a module need not be a whole number of pixels.
    k = max(1, math.ceil(4 * side / n))
    big = np.where(np.repeat(np.repeat(matrix, k, axis=0), k, axis=1), _DARK_MODULE, _SCREEN)
    code = Image.fromarray(big.astype(np.uint8)).resize((side, side), Image.Resampling.BOX)

    screen_w = round(side * 1.12)
    screen_h = round(screen_w * 2.0)
    bezel = max(2, round(screen_w * 0.04))
    phone_w, phone_h = screen_w + 2 * bezel, screen_h + 2 * bezel
    radius = round(phone_w * 0.12)
    phone = Image.new("L", (phone_w, phone_h), _BEZEL)
    draw = ImageDraw.Draw(phone)
    draw.rounded_rectangle(
        (bezel, bezel, bezel + screen_w - 1, bezel + screen_h - 1),
        radius=max(1, radius - bezel),
        fill=_SCREEN,
    )
    # An app's header bar and a few lines of text under the code, as a wallet app shows them.
    draw.rectangle((bezel, bezel + radius // 2, bezel + screen_w - 1, bezel + screen_h // 10), fill=190)
    code_top = bezel + (screen_h - side) * 45 // 100
    phone.paste(code, (bezel + (screen_w - side) // 2, code_top))
    line_h = max(2, screen_h // 60)
    for i, frac in enumerate((0.7, 0.5, 0.6)):
        y0 = code_top + side + line_h * (2 + 3 * i)
        x0 = bezel + (screen_w - side) // 2
        draw.rectangle((x0, y0, x0 + int(side * frac), y0 + line_h), fill=120)
    mask = Image.new("L", (phone_w, phone_h), 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, phone_w - 1, phone_h - 1), radius=radius, fill=255)
    return phone, mask


def _draw_sprite(cue: Cue, width: int, height: int) -> _Sprite:
    phone, mask = _phone(cue, height)
    # Phone and mask as one two-band image: rotated and blurred together, in one pass each. Blurring
    # the mask too makes an out-of-focus phone's outline melt into the background as well.
    both = Image.merge("LA", (phone, mask))
    if cue.rotation % 360:
        both = both.rotate(cue.rotation, resample=Image.Resampling.BICUBIC, expand=True)
    if cue.blur > 0:
        both = both.filter(ImageFilter.GaussianBlur(cue.blur))
    luma, alpha = (np.asarray(band, dtype=np.uint16) for band in both.split())
    return _Sprite(premultiplied=luma * alpha, keep=255 - alpha, cx=cue.x * width, cy=cue.y * height)


@functools.lru_cache(maxsize=4)
def _shared_background(width: int, height: int, seed: int) -> np.ndarray:
    background = entrance_background(width, height, seed)
    background.flags.writeable = False
    return background


@functools.lru_cache(maxsize=8)
def _noise_planes(width: int, height: int, seed: int, sigma: float) -> tuple[np.ndarray, ...]:
    """A few int8 planes of gaussian noise: consecutive frames rotate through them."""
    rng = np.random.default_rng(seed + 1)
    planes = []
    for _ in range(_NOISE_PLANES):
        plane = np.clip(np.round(rng.standard_normal((height, width), dtype=np.float32) * sigma), -127, 127)
        planes.append(plane.astype(np.int8))
        planes[-1].flags.writeable = False
    return tuple(planes)


class SceneRenderer:
    """Renders one scene at one frame size, making each expensive part once.

    The background and the noise planes are shared by every scene of the same size and seed (the demo
    makes a new scene for each pass). Drawing fresh noise per frame would cost more than the rest of
    the frame, so a few planes are made up front. A cue's phone (its QR symbol, rotation and blur,
    tens of milliseconds) is drawn the first time the cue shows and kept; `prepare` draws them all.
    """

    def __init__(self, scene: Scene, width: int, height: int) -> None:
        self.scene = scene
        self.width = width
        self.height = height
        self.background = _shared_background(width, height, scene.seed)
        self._sprites: dict[Cue, _Sprite] = {}
        self._noise = {
            sigma: _noise_planes(width, height, scene.seed, sigma)
            for sigma in {scene.noise, *(cue.noise for cue in scene.cues)} - {0.0}
        }

    def prepare(self) -> None:
        """Draw every cue's phone now rather than when it first shows; ValueError for a bad text."""
        for cue in self.scene.cues:
            self._sprite(cue)

    def _sprite(self, cue: Cue) -> _Sprite:
        sprite = self._sprites.get(cue)
        if sprite is None:
            sprite = self._sprites[cue] = _draw_sprite(cue, self.width, self.height)
        return sprite

    def _blend(self, out: np.ndarray, sprite: _Sprite) -> None:
        sh, sw = sprite.keep.shape
        top, left = round(sprite.cy - sh / 2), round(sprite.cx - sw / 2)
        y0, x0 = max(0, top), max(0, left)
        y1, x1 = min(self.height, top + sh), min(self.width, left + sw)
        if y0 >= y1 or x0 >= x1:
            return
        sy, sx = slice(y0 - top, y1 - top), slice(x0 - left, x1 - left)
        region = out[y0:y1, x0:x1].astype(np.uint16)
        region *= sprite.keep[sy, sx]
        region += sprite.premultiplied[sy, sx]
        region += 127
        region //= 255
        out[y0:y1, x0:x1] = region

    def render(self, t: float, frame: int | None = None) -> np.ndarray:
        """A new frame (uint8, height x width) of the scene at scene time `t`.

        `frame` picks the noise plane, so that consecutive frames differ; by default it follows `t`.
        """
        out = self.background.copy()
        active = self.scene.active(t)
        for cue in active:
            self._blend(out, self._sprite(cue))
        sigma = max([self.scene.noise, *(cue.noise for cue in active)])
        if sigma > 0:
            plane = round(t * 997) if frame is None else frame
            noisy = out.astype(np.int16)
            noisy += self._noise[sigma][plane % _NOISE_PLANES]
            np.clip(noisy, 0, 255, out=noisy)
            out = noisy.astype(np.uint8)
        return out


class SyntheticSource(FrameSource):
    """Frames of a scene at `fps`, looping over its duration or ending (`exhausted`) after one pass.

    Paced (the default), frames fall due in real time like a camera's (see `pacing`); unpaced, `read`
    returns the next frame at once, frame `n` showing scene time `n / fps`: for tests and benchmarks.
    """

    name = "synthetic"

    def __init__(
        self,
        scene: Scene,
        *,
        width: int = 1280,
        height: int = 720,
        fps: float = 15.0,
        loop: bool = True,
        paced: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.scene = scene
        self.width = width
        self.height = height
        self.fps = fps
        self.loop = loop
        self.paced = paced
        self._ticker = FrameTicker(fps, paced=paced, clock=clock, sleep=sleep)
        self._clock = clock
        self._renderer: SceneRenderer | None = None

    @property
    def exhausted(self) -> bool:
        """True once a non-looping scene has played to its end."""
        return self._ticker.exhausted

    def start(self) -> None:
        try:
            self._renderer = self.scene.renderer(self.width, self.height)
        except ValueError as exc:
            raise CameraError(f"synthetic scene cannot be rendered: {exc}") from None
        self._ticker.start()
        log.info(
            "synthetic camera: %d cues over %.1f s at %.1f fps",
            len(self.scene.cues),
            self.scene.duration,
            self.fps,
        )

    def read(self, timeout: float) -> Frame | None:
        if self._renderer is None:
            raise CameraError("synthetic camera read before start")
        tick = self._ticker.next_due(timeout)
        if tick is None:
            return None
        index, due = tick
        scene_t = index / self.fps
        if not self.loop and scene_t >= self.scene.duration:
            self._ticker.end()  # the demo chains pass after pass on this
            return None
        self._ticker.taken(index)
        drawing_from = self._clock() if due is not None else 0.0
        try:
            y = self._renderer.render(scene_t % self.scene.duration, frame=index)
        except ValueError as exc:  # a cue whose text cannot be drawn as a QR code
            raise CameraError(f"synthetic scene cannot be rendered: {exc}") from None
        return Frame(y=y, t=self._stamp(due, drawing_from), index=index)

    def _stamp(self, due: float | None, drawing_from: float) -> float:
        """When the frame's pixels were ready, as a camera stamps a frame once read out.

        Drawing stands for the read-out, so its time (tens of milliseconds for a cue's first frame,
        which makes its code) is not counted in the latency of the decision on that frame. Paced,
        the frame falls due on the schedule and is ready a drawing later: `due` plus the drawing's
        time, so a late reader's frame is as old as a free-running camera's would be, and the pacing
        never sees this stamp. Unpaced, there is no schedule: the clock is read once, now.
        """
        ready = self._clock()
        return ready if due is None else due + (ready - drawing_from)

    def stop(self) -> None:
        self._renderer = None
