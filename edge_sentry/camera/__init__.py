"""Camera sources behind one interface (`FrameSource`), chosen by `camera.source`, never guessed.

`picamera2` is the Pi camera; `replay` plays image files; `synthetic` renders a scripted scene (the
demo and the tests). The picamera2 module, and picamera2 itself, are imported only when that source
is chosen, so the sentry runs anywhere without libcamera.
"""

from __future__ import annotations

from ..config import CameraConfig
from ..errors import CameraError
from .base import Frame, FrameSource
from .replay import ReplaySource
from .synthetic import Cue, Scene, SyntheticSource

__all__ = ["Cue", "Frame", "FrameSource", "ReplaySource", "Scene", "SyntheticSource", "open_source"]


def open_source(cfg: CameraConfig, scene: Scene | None = None) -> FrameSource:
    """The source `cfg` asks for, not yet started; CameraError on settings it cannot work with.

    `scene` is the synthetic source's scene when the caller built it (the demo does); without it,
    `camera.scene` must be the path of a scene file (TOML or JSON).
    """
    if not cfg.fps > 0:
        raise CameraError(f"camera.fps must be positive, not {cfg.fps!r}")
    if cfg.source == "synthetic":
        if scene is None:
            if cfg.scene == "demo":
                raise CameraError(
                    "camera.scene is 'demo' but no demo scene was given: pass one to open_source, "
                    "or set camera.scene to a scene file"
                )
            scene = Scene.load(cfg.scene)
        return SyntheticSource(
            scene, width=cfg.width, height=cfg.height, fps=cfg.fps, loop=cfg.loop
        )
    if cfg.source == "replay":
        if not cfg.path:
            raise CameraError("camera.path is required when camera.source is 'replay'")
        return ReplaySource(cfg.path, fps=cfg.fps, loop=cfg.loop)
    if cfg.source == "picamera2":
        from .pi_camera import Picamera2Source

        return Picamera2Source(cfg)
    raise CameraError(
        f"camera.source must be one of 'picamera2', 'replay', 'synthetic', not {cfg.source!r}"
    )
