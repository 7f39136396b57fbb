"""The synthetic camera: scenes, cues, rendering, pacing; read back with the real decoder."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from fakes import FakeClock

from edge_sentry.camera.synthetic import Cue, Scene, SyntheticSource
from edge_sentry.decoder import Decoder
from edge_sentry.errors import CameraError


def read_texts(y: np.ndarray) -> list[str]:
    return [code.text for code in Decoder().decode(y)]


def test_a_cue_is_shown_only_within_its_time_window() -> None:
    scene = Scene([Cue("ES1:WINDOW", start=2.0, end=4.0)], duration=6.0)
    background = scene.render_at(0.0)
    for t, shown in [(1.99, False), (2.0, True), (3.0, True), (3.99, True), (4.0, False), (5.0, False)]:
        y = scene.render_at(t)
        changed = np.abs(y.astype(int) - background.astype(int)) > 40
        assert bool(changed.mean() > 0.05) is shown, t
        assert read_texts(y) == (["ES1:WINDOW"] if shown else []), t
    assert [c.text for c in scene.active(3.0)] == ["ES1:WINDOW"]
    assert scene.active(4.0) == []


@pytest.mark.parametrize(
    ("rotation", "blur", "noise"),
    [(0, 0, 0), (30, 0, 0), (-75, 0, 0), (0, 1.2, 0), (0, 0, 8), (20, 1.0, 6)],
)
def test_the_decoder_reads_a_cue_through_rotation_blur_and_noise(
    rotation: float, blur: float, noise: float
) -> None:
    text = "ES1:" + "6BFOXN*TS0BI$ZD4N9:9S6RCVN5+O30K3/XIV0W23NTDEXWK G2EP4J0B3KL6QM5/O" * 3
    cue = Cue(text, 0, 1, x=0.45, y=0.5, size=0.4, rotation=rotation, blur=blur, noise=noise)
    assert read_texts(Scene([cue], duration=1).render_at(0.5)) == [text]


def test_frames_are_uint8_at_the_requested_size_and_the_same_every_time() -> None:
    scene = Scene([Cue("ES1:SIZE", 0, 1, noise=3)], duration=2, seed=9)
    y = scene.render_at(0.5, 640, 360)
    assert y.shape == (360, 640) and y.dtype == np.uint8
    again = Scene([Cue("ES1:SIZE", 0, 1, noise=3)], duration=2, seed=9).render_at(0.5, 640, 360)
    assert np.array_equal(y, again)
    # Not a flat frame: the background has structure and the sensor has grain.
    empty = scene.render_at(1.5, 640, 360)
    assert empty.std() > 10
    assert not np.array_equal(scene.render_at(1.5), scene.render_at(1.52))


def test_a_cue_may_stand_partly_outside_the_frame() -> None:
    scene = Scene([Cue("ES1:EDGE", 0, 1, x=0.02, y=0.98, size=0.5)], duration=1)
    assert scene.render_at(0.5).shape == (720, 1280)


def test_bad_cues_and_scenes_are_refused() -> None:
    with pytest.raises(ValueError, match="start"):
        Cue("ES1:X", 3, 2)
    with pytest.raises(ValueError, match="text"):
        Cue("", 0, 1)
    with pytest.raises(ValueError, match="size"):
        Cue("ES1:X", 0, 1, size=0)
    with pytest.raises(ValueError, match="duration"):
        Scene([], duration=0)
    with pytest.raises(ValueError, match="cues\\[0\\]"):
        Scene([Cue("ES1:X", 5, 6)], duration=5)
    with pytest.raises(ValueError, match="does not fit"):
        Scene([Cue("A" * 5000, 0, 1)], duration=1).render_at(0.5)


def test_a_scene_loads_from_toml_and_json(tmp_path) -> None:
    toml = tmp_path / "scene.toml"
    toml.write_text(
        'duration = 8\nseed = 3\n\n[[cues]]\ntext = "ES1:FROM-TOML"\nstart = 1\nend = 3\n'
        "x = 0.4\nrotation = 10.0\n"
    )
    scene = Scene.load(toml)
    assert scene.duration == 8 and scene.seed == 3
    assert scene.cues == (Cue("ES1:FROM-TOML", 1, 3, x=0.4, rotation=10.0),)
    assert read_texts(scene.render_at(2.0)) == ["ES1:FROM-TOML"]

    data = {"duration": 5, "cues": [{"text": "HC1:FROM-JSON", "start": 0, "end": 5}]}
    path = tmp_path / "scene.json"
    path.write_text(json.dumps(data))
    assert Scene.load(path).cues[0].text == "HC1:FROM-JSON"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            'duration = 5\n[[cues]]\ntext = "A"\nstart = 0\nend = 1\nsise = 0.3\n',
            r"cues\[0\]\.sise: unknown key",
        ),
        ('[[cues]]\ntext = "A"\nstart = 0\nend = 1\n', "duration: is required"),
        ("duration = 5\n[[cues]]\nstart = 0\nend = 1\n", r"cues\[0\]"),
        ('duration = 5\n[[cues]]\ntext = "A"\nstart = 2\nend = 1\n', r"cues\[0\]: needs 0 <= start < end"),
        ("duration = [", "scene.toml"),
    ],
)
def test_a_bad_scene_file_is_a_camera_error_naming_the_problem(tmp_path, content, message) -> None:
    path = tmp_path / "scene.toml"
    path.write_text(content)
    with pytest.raises(CameraError, match=message):
        Scene.load(path)


def test_a_missing_scene_file_is_a_camera_error(tmp_path) -> None:
    with pytest.raises(CameraError, match="cannot read scene file"):
        Scene.load(tmp_path / "nope.toml")


def test_unpaced_frames_step_through_scene_time_and_loop() -> None:
    scene = Scene([Cue("ES1:LOOP", 0.0, 0.5)], duration=1.0)
    with SyntheticSource(scene, fps=4, paced=False) as source:
        frames = [source.read(timeout=0) for _ in range(10)]
    assert [f.index for f in frames] == list(range(10))
    # Frame n shows scene time n / fps, wrapped at the scene's duration: the cue is in 0.0-0.5 s.
    shown = [bool(read_texts(f.y)) for f in frames]
    assert shown == [True, True, False, False] * 2 + [True, True]


def test_a_scene_that_does_not_loop_ends() -> None:
    scene = Scene([], duration=1.0)
    source = SyntheticSource(scene, fps=4, loop=False, paced=False)
    source.start()
    assert [source.read(timeout=0).index for _ in range(4)] == [0, 1, 2, 3]
    assert not source.exhausted
    assert source.read(timeout=0) is None
    assert source.exhausted
    assert source.read(timeout=0) is None


def test_paced_frames_fall_due_at_the_frame_rate() -> None:
    clock = FakeClock()
    source = SyntheticSource(Scene([], duration=10), fps=10, clock=clock, sleep=clock.sleep)
    source.start()
    first = source.read(timeout=1.0)
    assert (first.index, first.t) == (0, 100.0) and clock.sleeps == []
    second = source.read(timeout=1.0)
    assert second.index == 1 and second.t == pytest.approx(100.1)
    assert clock.sleeps == [pytest.approx(0.1)]
    # Not due within the timeout: None, after waiting out exactly the timeout.
    assert source.read(timeout=0.04) is None
    assert clock.sleeps[-1] == pytest.approx(0.04)
    assert source.read(timeout=1.0).index == 2


def test_a_late_reader_gets_the_newest_frame_not_a_backlog() -> None:
    clock = FakeClock()
    source = SyntheticSource(Scene([], duration=10), fps=10, clock=clock, sleep=clock.sleep)
    source.start()
    assert source.read(timeout=1).index == 0
    clock.now += 0.75  # the reader was busy for 7.5 frame intervals
    frame = source.read(timeout=1)
    assert frame.index == 7 and frame.t == pytest.approx(100.7)
    assert source.read(timeout=1).index == 8


def slowly_drawn(clock: FakeClock, *, paced: bool, drawing_s: float = 0.03) -> SyntheticSource:
    """A started source whose every frame takes `drawing_s` of the clock to draw."""
    source = SyntheticSource(Scene([], duration=10), fps=10, paced=paced, clock=clock, sleep=clock.sleep)
    source.start()
    assert source._renderer is not None
    draw = source._renderer.render

    def slow_draw(t: float, frame: int | None = None) -> Any:
        clock.now += drawing_s
        return draw(t, frame=frame)

    source._renderer.render = slow_draw  # type: ignore[method-assign]
    return source


def test_a_frame_is_stamped_once_drawn_and_the_pacing_keeps_its_schedule() -> None:
    """The stamp is when the pixels are ready, as a camera's is once read out: a decision's latency
    counts from there, not from before the drawing; frames still fall due every 1/fps."""
    clock = FakeClock()
    source = slowly_drawn(clock, paced=True)
    first = source.read(timeout=1.0)
    assert (first.index, first.t, clock.now) == (0, pytest.approx(100.03), pytest.approx(100.03))
    second = source.read(timeout=1.0)
    assert clock.sleeps == [pytest.approx(0.07)]  # due at 100.1, not a drawing later
    assert (second.index, second.t) == (1, pytest.approx(100.13)) and second.t >= clock.now - 1e-9
    clock.now += 0.6  # a late reader: its frame has waited, as a real camera's would have
    late = source.read(timeout=1.0)
    assert (late.index, late.t) == (7, pytest.approx(100.73))


def test_an_unpaced_frame_is_stamped_once_drawn() -> None:
    clock = FakeClock()
    source = slowly_drawn(clock, paced=False)
    stamps = [source.read(timeout=0).t for _ in range(3)]
    assert stamps == pytest.approx([100.03, 100.06, 100.09])


def test_reading_before_start_is_a_camera_error() -> None:
    with pytest.raises(CameraError, match="before start"):
        SyntheticSource(Scene([], duration=1)).read(timeout=0)


def test_a_cue_that_cannot_be_drawn_is_a_camera_error_when_it_shows() -> None:
    scene = Scene([Cue("A" * 5000, 1, 2)], duration=3)
    with SyntheticSource(scene, fps=2, paced=False) as source:
        assert source.read(timeout=0) is not None and source.read(timeout=0) is not None
        with pytest.raises(CameraError, match="does not fit in a QR code"):
            source.read(timeout=0)
