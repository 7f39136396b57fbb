"""The decoder on real photographs and synthetic phones, with the real zxing-cpp: what it reads."""

from __future__ import annotations

import dataclasses

import numpy as np
import photos
import pytest
import smallcodes
import zxingcpp

from edge_sentry.camera.synthetic import Cue, Scene, entrance_background
from edge_sentry.config import DecoderConfig
from edge_sentry.decoder import FIRST_PASS_SIDE, Decoded, Decoder, check_frame

needs_photos = pytest.mark.skipif(not photos.available(), reason=photos.MISSING)
SIZES = (300, 430)  # pixels tall: a phone at arm's length and one held close


def photo_frames() -> list[tuple[str, np.ndarray, str]]:
    return [
        (f"{p.name}@{size}", photos.camera_view(p, size, seed=i * 7 + size), p.text)
        for i, p in enumerate(photos.load())
        for size in SIZES
    ]


def texts(codes: list[Decoded]) -> list[str]:
    return [c.text for c in codes]


@needs_photos
def test_reads_every_real_photo_that_zxing_defaults_read_and_nothing_else() -> None:
    decoder = Decoder()
    by_default, by_pipeline = set(), set()
    for name, y, expected in photo_frames():
        default = [b.text for b in zxingcpp.read_barcodes(y)]
        ours = texts(decoder.decode(y))
        assert set(ours) <= {expected}, f"{name}: read a text that is not in the photo"
        if expected in default:
            by_default.add(name)
        if expected in ours:
            by_pipeline.add(name)
    assert len(by_default) >= 0.9 * len(SIZES) * len(photos.load())  # the set is a real challenge
    assert by_pipeline >= by_default, f"missed: {sorted(by_default - by_pipeline)}"


@needs_photos
def test_a_code_too_dense_for_the_first_pass_is_found_by_its_texture() -> None:
    # A version-40 symbol at ~2.3 pixels per module: nothing of it survives 2x subsampling.
    dense = next(p for p in photos.load() if p.name == "qrcode-5/16.png")
    y = photos.camera_view(dense, 430, seed=5)
    assert texts(Decoder(proposals=False).decode(y)) == []
    decoder = Decoder()
    assert texts(decoder.decode(y)) == [dense.text]
    assert decoder.stats["proposal"] == 1


@needs_photos
def test_half_seen_codes_are_retried_at_full_resolution() -> None:
    decoder = Decoder(proposals=False)
    first_pass_only = Decoder(dataclasses.replace(DecoderConfig(), retry_full=False))
    recovered = []
    for name, y, expected in photo_frames():
        before = decoder.stats["partial"]
        found = texts(decoder.decode(y))
        if decoder.stats["partial"] > before:
            assert found == [expected]
            assert texts(first_pass_only.decode(y)) == []
            recovered.append(name)
    assert recovered, "no photo needed the retry: the test no longer covers it"


def test_position_gives_the_corners_of_the_code_in_frame_pixels() -> None:
    scene = Scene([Cue("ES1:POSITION-TEST", 0, 1, x=0.3, y=0.6, size=0.3)], duration=1)
    (code,) = Decoder().decode(scene.render_at(0.5))
    xs = [p[0] for p in code.position]
    ys = [p[1] for p in code.position]
    assert abs(sum(xs) / 4 - 0.3 * 1280) < 20 and abs(sum(ys) / 4 - 0.6 * 720) < 20
    # The symbol without its quiet zone: a little under 0.3 of the frame height on each side.
    assert 0.2 * 720 < max(xs) - min(xs) < 0.3 * 720
    assert code.raw == b"ES1:POSITION-TEST"


def test_every_code_in_a_frame_is_reported_once() -> None:
    cues = [
        Cue("ES1:LEFT", 0, 1, x=0.15, y=0.45, size=0.28),
        Cue("ES1:MIDDLE", 0, 1, x=0.5, y=0.5, size=0.28, rotation=20),
        Cue("HC1:RIGHT", 0, 1, x=0.85, y=0.45, size=0.28),
    ]
    y = Scene(cues, duration=1).render_at(0.5)
    assert sorted(texts(Decoder().decode(y))) == ["ES1:LEFT", "ES1:MIDDLE", "HC1:RIGHT"]
    twice = Scene([Cue("ES1:SAME", 0, 1, x=0.25), Cue("ES1:SAME", 0, 1, x=0.75)], duration=1)
    assert texts(Decoder().decode(twice.render_at(0.5))) == ["ES1:SAME"]


def test_frames_without_a_code_give_nothing() -> None:
    rng = np.random.default_rng(3)
    decoder = Decoder()
    assert decoder.decode(entrance_background(1280, 720, seed=4)) == []
    assert decoder.decode(rng.integers(0, 256, (720, 1280), dtype=np.uint8)) == []
    assert decoder.decode(np.full((720, 1280), 128, np.uint8)) == []
    assert decoder.decode(np.zeros((21, 21), np.uint8)) == []


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((720, 1280), np.float32),
        np.zeros((720, 1280, 3), np.uint8),
        np.zeros((10, 1280), np.uint8),
        np.zeros((0, 0), np.uint8),
        [[0, 1], [1, 0]],
    ],
    ids=["float32", "colour", "too-small", "empty", "not-an-array"],
)
def test_a_frame_of_the_wrong_kind_is_a_value_error(frame: object) -> None:
    with pytest.raises(ValueError, match="frame"):
        Decoder().decode(frame)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        check_frame(frame)


def test_a_y_plane_view_with_row_padding_is_read_in_place() -> None:
    # picamera2's YUV420 lores buffer: rows padded to the stride, U and V below the Y plane.
    y = Scene([Cue("ES1:VIEW", 0, 1, size=0.4)], duration=1).render_at(0.5, 640, 360)
    buffer = np.zeros((360 * 3 // 2, 704), np.uint8)
    buffer[:360, :640] = y
    view = buffer[:360, :640]
    assert not view.flags.c_contiguous
    assert texts(Decoder(DecoderConfig(scale=1)).decode(view)) == ["ES1:VIEW"]
    assert texts(Decoder().decode(view)) == ["ES1:VIEW"]


def test_a_failure_inside_zxing_never_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> list[object]:
        raise RuntimeError("internal error")

    decoder = Decoder()
    monkeypatch.setattr(zxingcpp, "read_barcodes", broken)
    assert decoder.decode(entrance_background(1280, 720)) == []
    assert decoder.stats["error"] == 1


def test_scale_one_reads_the_full_frame_in_one_pass() -> None:
    y = Scene([Cue("ES1:FULL", 0, 1, size=0.2)], duration=1).render_at(0.5)
    decoder = Decoder(DecoderConfig(scale=1))
    assert texts(decoder.decode(y)) == ["ES1:FULL"]
    assert decoder.stats == {"full": 1}


def test_small_and_light_on_dark_pictures_are_read_wherever_zxing_defaults_read_them() -> None:
    decoder = Decoder()
    by_default, by_pipeline = set(), set()
    for code in smallcodes.small_codes():
        ours = texts(decoder.decode(code.y))
        assert set(ours) <= {code.text}, f"{code.name}: read a text that is not in the picture"
        if code.text in [b.text for b in zxingcpp.read_barcodes(code.y)]:
            by_default.add(code.name)
        if code.text in ours:
            by_pipeline.add(code.name)
    assert len(by_default) >= 0.8 * len(smallcodes.small_codes())  # the set is readable at all
    assert by_pipeline >= by_default, f"missed: {sorted(by_default - by_pipeline)}"
    assert any(name.endswith("-inv") for name in by_pipeline)
    assert decoder.stats["inverted"] > 0


def test_a_small_picture_is_read_at_full_resolution() -> None:
    # An ES1-sized code at ~3.5 pixels per module: its 2x subsampled view does not decode.
    rng = np.random.default_rng(5)
    text = "ES1:" + "".join(rng.choice(list(smallcodes.BASE45), size=230))
    y = smallcodes.render(text, 240, np.random.default_rng(5), inverted=False, fill=0.95, blur=0.0, noise=1.0)
    decoder = Decoder()
    assert decoder.first_scale(y) == 1
    assert decoder.first_scale(np.zeros((720, 1280), np.uint8)) == 2
    assert decoder.first_scale(np.zeros((2 * FIRST_PASS_SIDE - 2, 1280), np.uint8)) == 1
    assert texts(decoder.decode(y)) == [text]
    assert texts(decoder.decode(np.ascontiguousarray(y[::2, ::2]))) == []  # what scale 2 would see


def test_a_light_on_dark_phone_in_a_camera_view_is_read_inverted() -> None:
    scene = Scene([Cue("ES1:" + "DARK-MODE " * 20, 0, 1, x=0.4, size=0.4, rotation=10)], duration=1, seed=3)
    y = np.invert(scene.render_at(0.5))
    assert texts(Decoder(proposals=False).decode(y)) == []
    decoder = Decoder()
    assert texts(decoder.decode(y)) == ["ES1:" + "DARK-MODE " * 20]
    assert decoder.stats["inverted"] == 1


@pytest.mark.parametrize("size", [(720, 1280), (300, 300)], ids=["camera-frame", "small-picture"])
def test_the_inverted_read_is_not_tried_on_a_frame_without_a_code_like_texture(size: tuple[int, int]) -> None:
    h, w = size
    decoder = Decoder()
    frames = [
        np.ascontiguousarray(entrance_background(1280, 720, seed=seed)[:h, :w]) for seed in range(4)
    ] + [np.full(size, 128, np.uint8)]
    for y in frames:
        assert decoder.decode(y) == []
    # Every frame ended at the normal reads: no crop, normal or inverted, was decoded after them.
    assert decoder.stats["regions"] == 0 and decoder.stats["inverted"] == 0
    assert decoder.stats["none"] == len(frames)


def test_the_inverted_read_is_tried_only_after_the_normal_reads_fail() -> None:
    y = Scene([Cue("ES1:NORMAL", 0, 1, size=0.2)], duration=1).render_at(0.5)
    decoder = Decoder()
    assert texts(decoder.decode(y)) == ["ES1:NORMAL"]
    assert decoder.stats["inverted"] == 0 and decoder.stats["regions"] == 0


def test_the_thorough_read_finds_what_the_pipeline_leaves() -> None:
    # A light-on-dark code of coarse modules filling a large picture: too few edges per pixel for
    # the texture test, so the pipeline never tries it inverted; zxing's thorough read does.
    y = smallcodes.render("ES1:HELLO", 900, np.random.default_rng(1), inverted=True, fill=0.9, blur=1.0)
    decoder = Decoder()
    assert texts(decoder.decode(y)) == []
    assert texts(decoder.thorough(y)) == ["ES1:HELLO"]
    assert texts(decoder.thorough(np.full((300, 300), 200, np.uint8))) == []
