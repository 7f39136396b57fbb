"""The hot loop's hand-off to the camera aiming page: nothing while nobody watches, a downscaled copy
at the page's rate while somebody does, corner points and never a code's text."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from edge_sentry.camera.base import Frame
from edge_sentry.camera.synthetic import Cue, Scene
from edge_sentry.codes import es1
from edge_sentry.codes.trust import TrustList
from edge_sentry.config import Config
from edge_sentry.decoder import Decoded, Decoder
from edge_sentry.demo import DemoIssuer, shut_simulated_door
from edge_sentry.gpio import build_devices
from edge_sentry.sentry import Sentry
from edge_sentry.verifier import Verifier
from edge_sentry.viewfinder import MAX_WIDTH, Snapshot, Viewfinder

CORNERS = ((500, 200), (780, 210), (770, 490), (490, 480))


class SpyPlane:
    """Stands in for a camera's Y plane and notes every look at it: shape, slicing, copying."""

    def __init__(self, height: int = 720, width: int = 1280) -> None:
        self.plane = np.arange(height * width, dtype=np.uint32).reshape(height, width).astype(np.uint8)
        self.looks: list[str] = []

    @property
    def shape(self) -> tuple[int, ...]:
        self.looks.append("shape")
        return self.plane.shape

    def __getitem__(self, key: Any) -> np.ndarray:
        self.looks.append("slice")
        return self.plane[key]


class FoundCodes:
    """A decoder that 'reads' one code at fixed corners in every frame, without touching the frame."""

    def __init__(self, text: str = "ES1:NOT-A-REAL-CODE") -> None:
        self.text = text

    def decode(self, y: Any) -> list[Decoded]:
        return [Decoded(self.text, CORNERS, self.text.encode())]


@pytest.fixture
def sentry_with() -> Any:
    built: list[Any] = []

    def make(viewfinder: Viewfinder | None, decoder: Any = None, verifier: Any = None) -> Sentry:
        devices = build_devices(Config().gpio, MockFactory())
        shut_simulated_door(devices)
        config = Config()
        # An empty trust list: the stand-in decoder's text is denied once, as malformed.
        verifier = verifier or Verifier(config.es1, config.gate, config.device, TrustList.empty())
        sentry = Sentry(config, None, decoder or FoundCodes(), verifier, devices,  # type: ignore[arg-type]
                        lambda e: e, viewfinder=viewfinder, presentation_gap_s=3600)  # fmt: skip
        built.append((sentry, devices))
        return sentry

    yield make
    for sentry, devices in built:
        sentry.gate.close()
        devices.close()


def frames(spy: Any, n: int, fps: float = 15.0, t0: float = 100.0) -> list[Frame]:
    return [Frame(y=spy, t=t0 + i / fps, index=i) for i in range(n)]


def test_nobody_watching_the_hot_loop_never_looks_at_the_frame_for_the_page(sentry_with):
    viewfinder = Viewfinder(4.0)
    sentry = sentry_with(viewfinder)
    spy = SpyPlane()
    for frame in frames(spy, 30):
        sentry.process(frame)
    assert spy.looks == [] and viewfinder.copies == 0 and viewfinder.latest is None


def test_while_watched_a_downscaled_copy_is_handed_over_at_the_pages_rate(sentry_with):
    viewfinder = Viewfinder(4.0)
    sentry = sentry_with(viewfinder)
    spy = SpyPlane()
    viewfinder.watch()
    seqs = []
    for frame in frames(spy, 30):  # 2 s of a 15 fps camera
        sentry.process(frame)
        if viewfinder.latest is not None and viewfinder.latest.seq not in seqs:
            seqs.append(viewfinder.latest.seq)
    assert viewfinder.copies == 8 and len(seqs) == 8  # 4 a second
    snapshot = viewfinder.latest
    assert snapshot is not None
    assert snapshot.y.shape == (360, MAX_WIDTH) and snapshot.step == 2
    assert np.array_equal(snapshot.y, spy.plane[::2, ::2]) and not np.shares_memory(snapshot.y, spy.plane)
    assert snapshot.y.base is not None and snapshot.y.base.shape == (360, 1280)  # rows copied, columns a view
    assert snapshot.codes == (CORNERS,)
    assert snapshot.fps == pytest.approx(15.0)


def test_the_copy_survives_the_camera_reusing_its_buffer():
    buffer = np.full((720, 1280), 50, np.uint8)
    viewfinder = Viewfinder(4.0)
    viewfinder.watch()
    frame = Frame(y=buffer, t=1.0, index=0)
    assert viewfinder.due(frame)
    viewfinder.offer(frame, [])
    buffer[:] = 200  # the next capture lands in the same buffer
    snapshot = viewfinder.latest
    assert snapshot is not None and int(snapshot.y.max()) == 50


def test_the_last_viewer_leaving_drops_the_picture_and_stops_the_copies(sentry_with):
    viewfinder = Viewfinder(4.0)
    sentry = sentry_with(viewfinder)
    spy = SpyPlane()
    viewfinder.watch()
    viewfinder.watch()
    sentry.process(frames(spy, 1)[0])
    viewfinder.unwatch()
    assert viewfinder.watched and viewfinder.latest is not None  # one page still open
    viewfinder.unwatch()
    assert not viewfinder.watched and viewfinder.latest is None
    spy.looks.clear()
    for frame in frames(spy, 30, t0=200.0):
        sentry.process(frame)
    assert spy.looks == [] and viewfinder.copies == 1


def test_a_snapshot_holds_corner_points_never_a_codes_text():
    assert {f.name for f in dataclasses.fields(Snapshot)} == {"seq", "y", "step", "codes", "t", "fps"}


def test_the_real_decoders_corners_box_the_synthetic_cameras_code(sentry_with):
    issuer = DemoIssuer.create()
    text = es1.issue(issuer.key, issuer="demo-issuer", lifetime_s=3600)
    y = Scene([Cue(text=text, start=0, end=1, x=0.5, y=0.5, size=0.4)], duration=1).render_at(0.5)
    viewfinder = Viewfinder(4.0)
    config = Config()
    verifier = Verifier(config.es1, config.gate, config.device, issuer.trust)
    sentry = sentry_with(viewfinder, Decoder(config.decoder), verifier)
    viewfinder.watch()
    assert sentry.process(Frame(y=y, t=1.0, index=0)) == 1
    snapshot = viewfinder.latest
    assert snapshot is not None and len(snapshot.codes) == 1
    xs = [x for x, _ in snapshot.codes[0]]
    ys = [y_ for _, y_ in snapshot.codes[0]]
    # The code (with its quiet zone) is 0.4 of 720 px high around the phone's screen: its symbol's
    # corners lie inside that square around the frame's centre column.
    assert 640 - 0.2 * 720 <= min(xs) < max(xs) <= 640 + 0.2 * 720
    assert max(xs) - min(xs) > 0.25 * 720 and max(ys) - min(ys) > 0.25 * 720
    assert text not in repr(snapshot.codes)


@pytest.mark.parametrize(("fps", "width"), [(0.0, 640), (4.0, 0)])
def test_a_viewfinder_needs_a_positive_rate_and_width(fps, width):
    with pytest.raises(ValueError):
        Viewfinder(fps, max_width=width)
