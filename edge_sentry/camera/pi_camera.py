"""The Raspberry Pi camera through picamera2 (libcamera), imported only when this source is chosen.

Configured once with two streams: `main` at camera.width x height, kept for stills (`still()`), and
`lores` in YUV420 at camera.lores_width x lores_height, which the decoder analyses. A frame's `y` is
the Y plane of the lores buffer: the first `height` rows of picamera2's array, a view with no colour
conversion and no copy beyond the one picamera2 makes when it hands the buffer over (after which the
request goes straight back to the camera).

Every blocking call has a timeout: a request that has not completed in time is kept and waited for
on the next `read`, so a slow camera neither hangs the hot path nor leaks its buffers.
Frame times are the sensor's own timestamps (`SensorTimestamp`, on CLOCK_MONOTONIC like
`time.monotonic()`), so latency is measured from the exposure, not from when Python got round to it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from ..config import CameraConfig
from ..errors import CameraError
from .base import Frame, FrameSource

log = logging.getLogger(__name__)

# A sensor timestamp further than this from the monotonic clock is not on that clock: use the
# arrival time instead.
_MAX_TIMESTAMP_SKEW_S = 5.0


def check_geometry(cfg: CameraConfig) -> None:
    """Reject stream sizes the ISP cannot produce, before touching the camera."""
    if cfg.lores_width > cfg.width or cfg.lores_height > cfg.height:
        raise CameraError(
            f"camera.lores_width x lores_height ({cfg.lores_width}x{cfg.lores_height}) must "
            f"not exceed camera.width x height ({cfg.width}x{cfg.height})"
        )
    if cfg.lores_width % 2 or cfg.lores_height % 2:
        raise CameraError("camera.lores_width and lores_height must be even (YUV420)")


class Picamera2Source(FrameSource):
    """picamera2's main + lores streams; `read` gives the lores Y plane, `still` the main image."""

    name = "picamera2"

    def __init__(self, cfg: CameraConfig, camera_num: int = 0, buffer_count: int = 4) -> None:
        check_geometry(cfg)
        self.cfg = cfg
        self.camera_num = camera_num
        self.buffer_count = buffer_count
        self._camera: Any = None
        self._pending: Any = None  # a capture job that timed out, still owed a request
        self._size = (cfg.lores_width, cfg.lores_height)
        self._count = 0

    def start(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraError(
                f"picamera2 is not installed: {exc} (on Raspberry Pi OS: apt install "
                "python3-picamera2, and a virtual environment with --system-site-packages)"
            ) from None
        cfg = self.cfg
        try:
            camera = Picamera2(self.camera_num)
        except (
            Exception
        ) as exc:  # picamera2 raises RuntimeError, IndexError... for a missing camera
            raise CameraError(f"camera {self.camera_num} cannot be opened: {exc}") from None
        try:
            config = camera.create_video_configuration(
                main={"size": (cfg.width, cfg.height), "format": "RGB888"},
                lores={"size": (cfg.lores_width, cfg.lores_height), "format": "YUV420"},
                controls={"FrameRate": cfg.fps},
                buffer_count=self.buffer_count,
            )
            camera.configure(config)
            # The ISP may round the lores size up to its alignment: index with what it chose.
            lores = (camera.camera_configuration() or {}).get("lores") or {}
            self._size = tuple(lores.get("size", self._size))
            camera.start()
        except Exception as exc:
            camera.close()
            raise CameraError(f"camera {self.camera_num} cannot be configured: {exc}") from None
        self._camera = camera
        self._pending = None
        self._count = 0
        log.info(
            "picamera2: main %dx%d, lores %dx%d YUV420 at %.1f fps",
            cfg.width,
            cfg.height,
            self._size[0],
            self._size[1],
            cfg.fps,
        )

    def _request(self, timeout: float) -> Any:
        """The next completed request, or None after `timeout` (the job is kept for the next call)."""
        job = self._pending or self._camera.capture_request(wait=False)
        try:
            request = self._camera.wait(job, timeout=max(timeout, 0.001))
        except TimeoutError:
            self._pending = job
            return None
        self._pending = None
        return request

    def read(self, timeout: float) -> Frame | None:
        if self._camera is None:
            raise CameraError("picamera2 camera read before start")
        arrived = time.monotonic()
        try:
            request = self._request(timeout)
            if request is None:
                return None
            try:
                arrived = time.monotonic()
                planes = request.make_array("lores")
                metadata = request.get_metadata()
            finally:
                request.release()
        except CameraError:
            raise
        except Exception as exc:
            raise CameraError(f"camera capture failed: {exc}") from None
        width, height = self._size
        # YUV420 comes as (height * 3/2, stride): Y is the first `height` rows, `width` columns.
        y = planes[:height, :width]
        index = self._count
        self._count += 1
        return Frame(y=y, t=frame_time(metadata.get("SensorTimestamp"), arrived), index=index)

    def still(self, timeout: float | None = None) -> np.ndarray:
        """The next frame's main-stream image (height x width x 3) for a snapshot; CameraError on timeout.

        May be called from another thread than `read`: each takes its own request.
        """
        if self._camera is None:
            raise CameraError("picamera2 camera still before start")
        wait = self.cfg.timeout_s if timeout is None else timeout
        try:
            job = self._camera.capture_request(wait=False)
            request = self._camera.wait(job, timeout=wait)
            try:
                still: np.ndarray = request.make_array("main")
                return still
            finally:
                request.release()
        except TimeoutError:
            raise CameraError(f"no still within {wait:g} s") from None
        except Exception as exc:
            raise CameraError(f"still capture failed: {exc}") from None

    def stop(self) -> None:
        camera, self._camera = self._camera, None
        if camera is None:
            return
        for step in (camera.stop, camera.close):
            try:
                step()
            except Exception as exc:  # stopping must always finish: log and go on
                log.warning("picamera2: %s failed: %s", step.__name__, exc)


def frame_time(sensor_ns: int | None, arrived: float) -> float:
    """The capture time on `time.monotonic()`: the sensor's timestamp when it is on that clock."""
    if sensor_ns:
        t = sensor_ns / 1e9
        if abs(arrived - t) <= _MAX_TIMESTAMP_SKEW_S:
            return t
    return arrived
