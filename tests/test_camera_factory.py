"""open_source: the source named by camera.source, and picamera2 imported only when it is named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from edge_sentry.camera import ReplaySource, Scene, SyntheticSource, open_source
from edge_sentry.config import CameraConfig
from edge_sentry.errors import CameraError


def test_synthetic_with_a_scene_given_by_the_caller() -> None:
    scene = Scene([], duration=3)
    source = open_source(CameraConfig(source="synthetic", fps=20, width=640, height=360), scene)
    assert isinstance(source, SyntheticSource)
    assert source.scene is scene and source.fps == 20
    with source:
        assert source.read(timeout=1).y.shape == (360, 640)


def test_synthetic_from_a_scene_file(tmp_path: Path) -> None:
    path = tmp_path / "scene.toml"
    path.write_text('duration = 4\n[[cues]]\ntext = "ES1:FILE"\nstart = 0\nend = 2\n')
    source = open_source(CameraConfig(source="synthetic", scene=str(path)))
    assert isinstance(source, SyntheticSource) and source.scene.cues[0].text == "ES1:FILE"


def test_the_demo_scene_must_be_given(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="demo"):
        open_source(CameraConfig(source="synthetic", scene="demo"))


def test_a_bad_scene_file_is_a_camera_error(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="cannot read scene file"):
        open_source(CameraConfig(source="synthetic", scene=str(tmp_path / "missing.toml")))


def test_replay_of_a_folder(tmp_path: Path) -> None:
    Image.new("L", (40, 30), 99).save(tmp_path / "a.png")
    source = open_source(CameraConfig(source="replay", path=str(tmp_path), loop=False))
    assert isinstance(source, ReplaySource) and source.loop is False
    with source:
        assert int(source.read(timeout=1).y[0, 0]) == 99


def test_replay_needs_a_path() -> None:
    with pytest.raises(CameraError, match=r"camera\.path"):
        open_source(CameraConfig(source="replay"))


def test_an_unknown_source_is_a_camera_error() -> None:
    with pytest.raises(CameraError, match=r"camera\.source"):
        open_source(CameraConfig(source="webcam"))


def run_python(code: str) -> str:
    """Run `code` in a fresh interpreter: only there does sys.modules show what an import pulled."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_picamera2_is_not_imported_unless_chosen(tmp_path: Path) -> None:
    Image.new("L", (40, 30)).save(tmp_path / "a.png")
    out = run_python(
        "import sys\n"
        "from edge_sentry.camera import open_source, Scene\n"
        "from edge_sentry.config import CameraConfig\n"
        "open_source(CameraConfig(source='synthetic'), Scene([], duration=1)).start()\n"
        f"open_source(CameraConfig(source='replay', path={str(tmp_path)!r})).start()\n"
        "print(sorted(m for m in sys.modules if 'picamera2' in m))\n"
    )
    assert out == "[]"


def test_picamera2_chosen_without_picamera2_installed_is_a_clear_camera_error() -> None:
    out = run_python(
        "import sys\n"
        "sys.modules['picamera2'] = None  # as on a machine without it\n"
        "from edge_sentry.camera import open_source\n"
        "from edge_sentry.config import CameraConfig\n"
        "from edge_sentry.errors import CameraError\n"
        "source = open_source(CameraConfig(source='picamera2'))\n"
        "print(type(source).__name__, 'edge_sentry.camera.pi_camera' in sys.modules)\n"
        "try:\n"
        "    source.start()\n"
        "except CameraError as exc:\n"
        "    print(exc)\n"
    )
    chosen, message = out.split("\n")
    assert chosen == "Picamera2Source True"
    assert message.startswith("picamera2 is not installed:")


def test_picamera2_stream_sizes_are_checked_before_the_camera_is_touched() -> None:
    with pytest.raises(CameraError, match="must not exceed"):
        open_source(CameraConfig(source="picamera2", width=640, height=360, lores_width=1280))
    with pytest.raises(CameraError, match="even"):
        open_source(CameraConfig(source="picamera2", lores_width=641))
