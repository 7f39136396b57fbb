"""The replay camera: image files as frames, in name order, looped and paced like a camera."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeClock
from PIL import Image

from edge_sentry.camera.replay import ReplaySource
from edge_sentry.camera.synthetic import Cue, Scene
from edge_sentry.decoder import Decoder
from edge_sentry.errors import CameraError


def write_images(folder: Path, names: list[str]) -> None:
    """Small images whose grey level tells them apart: image k is k * 40 + 20 everywhere."""
    folder.mkdir(exist_ok=True)
    for k, name in enumerate(names):
        Image.new("RGB", (32, 24), (k * 40 + 20,) * 3).save(folder / name)


def level(frame) -> int:
    return int(frame.y[0, 0])


def test_a_folder_plays_in_name_order_and_loops(tmp_path: Path) -> None:
    write_images(tmp_path, ["b.png", "c.jpg", "a.bmp"])  # written in another order than played
    (tmp_path / "notes.txt").write_text("not an image")
    with ReplaySource(tmp_path, fps=10, paced=False) as source:
        frames = [source.read(timeout=0) for _ in range(7)]
    assert [f.index for f in frames] == list(range(7))
    assert [p.name for p in source.files] == ["a.bmp", "b.png", "c.jpg"]
    # a.bmp was written third (level 100), b.png first (20), c.jpg second (60, give or take JPEG).
    assert [round(level(f), -1) for f in frames] == [100, 20, 60, 100, 20, 60, 100]


def test_frames_are_read_only_grayscale_arrays(tmp_path: Path) -> None:
    write_images(tmp_path, ["x.webp"])
    with ReplaySource(tmp_path / "x.webp", paced=False) as source:
        frame = source.read(timeout=0)
    assert frame.y.shape == (24, 32) and frame.y.dtype == np.uint8
    assert not frame.y.flags.writeable


def test_a_replay_that_does_not_loop_ends(tmp_path: Path) -> None:
    write_images(tmp_path, ["1.png", "2.png"])
    source = ReplaySource(tmp_path, loop=False, paced=False)
    source.start()
    assert [source.read(timeout=0).index for _ in range(2)] == [0, 1]
    assert not source.exhausted
    assert source.read(timeout=0) is None
    assert source.exhausted


def test_paced_replay_hands_out_frames_at_the_frame_rate(tmp_path: Path) -> None:
    write_images(tmp_path, ["1.png", "2.png", "3.png"])
    clock = FakeClock()
    source = ReplaySource(tmp_path, fps=5, clock=clock, sleep=clock.sleep)
    source.start()
    frames = [source.read(timeout=1) for _ in range(4)]
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [f.t for f in frames] == pytest.approx([100.0, 100.2, 100.4, 100.6])
    assert [level(f) for f in frames] == [20, 60, 100, 20]
    assert source.read(timeout=0.1) is None  # the next frame is 0.2 s away
    clock.now += 1.0  # a slow reader (now 51.7): frames in between are dropped, as by a camera
    assert source.read(timeout=1).index == 8  # due at 51.6, the newest at 51.7


def test_the_end_of_a_replay_is_told_at_once_then_reads_wait_out_their_timeout(tmp_path: Path) -> None:
    write_images(tmp_path, ["1.png"])
    clock = FakeClock()
    source = ReplaySource(tmp_path, fps=5, loop=False, clock=clock, sleep=clock.sleep)
    source.start()
    assert source.read(timeout=1).index == 0
    clock.now += 0.2  # the last image has had its frame interval
    clock.sleeps.clear()
    assert source.read(timeout=0.5) is None
    assert source.exhausted and clock.sleeps == []
    assert source.read(timeout=0.5) is None
    assert clock.sleeps == [0.5]  # a reader polling an ended replay does not spin


def test_replayed_photos_are_decoded(tmp_path: Path) -> None:
    scene = Scene([Cue("ES1:REPLAYED", 0, 1)], duration=2)
    Image.fromarray(scene.render_at(0.5)).save(tmp_path / "0-code.png")
    Image.fromarray(scene.render_at(1.5)).save(tmp_path / "1-empty.png")
    decoder = Decoder()
    with ReplaySource(tmp_path, paced=False) as source:
        found = [[c.text for c in decoder.decode(source.read(timeout=0).y)] for _ in range(2)]
    assert found == [["ES1:REPLAYED"], []]


def test_an_unreadable_image_is_a_camera_error_naming_it(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    with pytest.raises(CameraError, match=r"cannot read replay image .*broken\.png"):
        ReplaySource(broken).start()


def test_an_unreadable_image_among_others_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_images(tmp_path, ["a.png", "c.png"])
    (tmp_path / "b.png").write_text("not a picture")
    with caplog.at_level(logging.WARNING), ReplaySource(tmp_path, paced=False) as source:
        assert [p.name for p in source.files] == ["a.png", "c.png"]
        assert [level(source.read(timeout=0)) for _ in range(2)] == [20, 60]
    assert any("b.png" in r.getMessage() for r in caplog.records)


def test_a_folder_of_unreadable_images_is_a_camera_error(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_text("no")
    (tmp_path / "b.jpg").write_text("nor this")
    with pytest.raises(CameraError, match=r"a\.jpg"):
        ReplaySource(tmp_path).start()


@pytest.mark.parametrize(
    ("name", "message"),
    [("missing.png", "does not exist"), ("clip.gif", "not a supported image"), ("empty", "no images")],
)
def test_nothing_to_replay_is_a_camera_error(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "empty").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "clip.gif")
    with pytest.raises(CameraError, match=message):
        ReplaySource(tmp_path / name).start()


def test_reading_before_start_is_a_camera_error(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="before start"):
        ReplaySource(tmp_path).read(timeout=0)
