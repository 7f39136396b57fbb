"""The picamera2 source against a stand-in for picamera2's API (there is no camera here).

What it asks of picamera2 (streams, timeouts, releases) and what it makes of the answers.
"""

from __future__ import annotations

import sys
import time
import types

import numpy as np
import pytest

from edge_sentry.camera.pi_camera import Picamera2Source, frame_time
from edge_sentry.config import CameraConfig
from edge_sentry.errors import CameraError

W, H, STRIDE = 640, 360, 704


class Request:
    def __init__(self, camera: FakePicamera2, stamp_ns: int) -> None:
        self.camera = camera
        self.stamp_ns = stamp_ns
        self.released = False

    def make_array(self, name: str) -> np.ndarray:
        if self.camera.broken:
            raise RuntimeError("buffer gone")
        if name == "main":
            return np.full((720, 1280, 3), 7, np.uint8)
        # YUV420 as picamera2 shapes it: (height * 3/2, stride), Y rows first.
        planes = np.full((H * 3 // 2, STRIDE), 200, np.uint8)
        planes[:H, :W] = np.arange(W, dtype=np.uint8)[None, :]
        self.camera.arrays.append(planes)
        return planes

    def get_metadata(self) -> dict[str, int]:
        return {"SensorTimestamp": self.stamp_ns}

    def release(self) -> None:
        self.released = True


class FakePicamera2:
    """The part of picamera2's Picamera2 the source uses, recording how it is used."""

    def __init__(self, camera_num: int = 0) -> None:
        self.jobs: list[object] = []
        self.requests: list[Request] = []
        self.arrays: list[np.ndarray] = []
        self.stalled = False
        self.broken = False
        self.closed = False
        self.config: dict[str, object] = {}
        self.stamp_ns = time.monotonic_ns()

    def create_video_configuration(self, **kwargs: object) -> dict[str, object]:
        return kwargs

    def configure(self, config: dict[str, object]) -> None:
        self.config = config

    def camera_configuration(self) -> dict[str, object]:
        return self.config

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def capture_request(self, wait: object = None) -> object:
        assert wait is False, "the source must never block inside picamera2 without a timeout"
        job = object()
        self.jobs.append(job)
        return job

    def wait(self, job: object, timeout: float | None = None) -> Request:
        assert timeout is not None and timeout > 0
        if self.stalled:
            raise TimeoutError
        request = Request(self, self.stamp_ns)
        self.requests.append(request)
        return request


@pytest.fixture
def camera(monkeypatch: pytest.MonkeyPatch) -> FakePicamera2:
    fake = FakePicamera2()
    module = types.ModuleType("picamera2")
    module.Picamera2 = lambda camera_num=0: fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    return fake


def started(cfg: CameraConfig | None = None) -> Picamera2Source:
    source = Picamera2Source(cfg or CameraConfig(source="picamera2", lores_width=W, lores_height=H))
    source.start()
    return source


def test_streams_are_configured_once_main_for_stills_lores_yuv420(camera: FakePicamera2) -> None:
    started(CameraConfig(source="picamera2", fps=25, lores_width=W, lores_height=H))
    assert camera.config["main"] == {"size": (1280, 720), "format": "RGB888"}
    assert camera.config["lores"] == {"size": (W, H), "format": "YUV420"}
    assert camera.config["controls"] == {"FrameRate": 25}


def test_a_frame_is_a_view_of_the_y_plane_and_the_request_goes_back(camera: FakePicamera2) -> None:
    source = started()
    frame = source.read(timeout=1)
    assert frame.y.shape == (H, W) and frame.y.dtype == np.uint8
    assert np.shares_memory(frame.y, camera.arrays[0])  # no copy of the plane
    assert (frame.y == np.arange(W, dtype=np.uint8)[None, :]).all()  # no U/V rows, no padding
    assert camera.requests[0].released
    assert [source.read(timeout=1).index for _ in range(2)] == [1, 2]


def test_the_frame_time_is_the_sensor_timestamp(camera: FakePicamera2) -> None:
    camera.stamp_ns = time.monotonic_ns() - 20_000_000  # exposed 20 ms before we got it
    frame = started().read(timeout=1)
    assert frame.t == camera.stamp_ns / 1e9


def test_a_timestamp_on_another_clock_is_replaced_by_the_arrival_time() -> None:
    assert frame_time(None, 12.5) == 12.5
    assert frame_time(0, 12.5) == 12.5
    assert frame_time(1_000_000 * 10**9, 12.5) == 12.5
    assert frame_time(12_490_000_000, 12.5) == pytest.approx(12.49)


def test_a_late_frame_is_none_and_its_request_is_still_collected(camera: FakePicamera2) -> None:
    source = started()
    camera.stalled = True
    assert source.read(timeout=0.05) is None
    assert source.read(timeout=0.05) is None
    assert len(camera.jobs) == 1  # the same pending job, not a new request per call
    camera.stalled = False
    assert source.read(timeout=1) is not None
    assert len(camera.jobs) == 1 and camera.requests[0].released


def test_a_failed_capture_is_a_camera_error_and_releases_the_request(camera: FakePicamera2) -> None:
    source = started()
    camera.broken = True
    with pytest.raises(CameraError, match="buffer gone"):
        source.read(timeout=1)
    assert camera.requests[0].released


def test_a_still_is_the_main_stream(camera: FakePicamera2) -> None:
    source = started()
    image = source.still(timeout=1)
    assert image.shape == (720, 1280, 3)
    assert camera.requests[-1].released
    camera.stalled = True
    with pytest.raises(CameraError, match="no still"):
        source.still(timeout=0.01)


def test_stop_closes_the_camera_and_may_be_called_twice(camera: FakePicamera2) -> None:
    source = started()
    source.stop()
    source.stop()
    assert camera.closed
    with pytest.raises(CameraError, match="before start"):
        source.read(timeout=1)


def test_a_camera_that_cannot_be_opened_is_a_camera_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_camera(camera_num: int = 0) -> None:
        raise RuntimeError("Camera(s) not found")

    module = types.ModuleType("picamera2")
    module.Picamera2 = no_camera  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    with pytest.raises(CameraError, match="cannot be opened: Camera\\(s\\) not found"):
        started()
