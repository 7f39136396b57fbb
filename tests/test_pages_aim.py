"""The camera aiming page without a browser: its meters, its picture messages, and its endpoints
(off: 404; on: pictures only while a stream is open, none of them carrying a code's text)."""

from __future__ import annotations

import base64
import http.client
import io
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from codes_helpers import ISSUER, trust_doc
from gate_helpers import wait_until
from pages_helpers import PATIENCE_S, EventStream, page_config, page_server, running_daemon
from PIL import Image

from edge_sentry.camera.base import Frame
from edge_sentry.camera.synthetic import Scene
from edge_sentry.codes import es1, keys
from edge_sentry.pages import aim, meters, picture
from edge_sentry.pages.server import PageServer
from edge_sentry.viewfinder import Snapshot, Viewfinder

# -- meters ---------------------------------------------------------------------------------------


def test_a_flat_picture_has_no_sharpness_and_a_checkerboard_much():
    flat = np.full((90, 160), 120, np.uint8)
    board = ((np.indices((90, 160)).sum(axis=0) // 4) % 2 * 200 + 20).astype(np.uint8)
    assert meters.sharpness(flat) == 0.0
    assert meters.sharpness(board) > 1000


def test_blurring_lowers_sharpness():
    board = ((np.indices((90, 160)).sum(axis=0) // 4) % 2 * 200 + 20).astype(np.uint8)
    soft = np.asarray(Image.fromarray(board).resize((40, 23)).resize((160, 90), Image.Resampling.BILINEAR))
    assert meters.sharpness(soft) < meters.sharpness(board) / 2


def test_sharpness_at_a_code_looks_only_inside_its_box():
    y = np.full((100, 100), 100, np.uint8)
    y[10:40, 10:40] = ((np.indices((30, 30)).sum(axis=0) // 3) % 2 * 200).astype(np.uint8)
    assert meters.region_sharpness(y, [(10, 10), (39, 10), (39, 39), (10, 39)]) > 1000
    assert meters.region_sharpness(y, [(60, 60), (90, 60), (90, 90), (60, 90)]) == 0.0
    assert meters.region_sharpness(y, [(-5, -5), (1, -5), (1, 1), (-5, 1)]) == 0.0  # off the picture


@pytest.mark.parametrize(
    ("level", "verdict"), [(10, "dark"), (120, "good"), (230, "bright")]
)
def test_exposure_reads_the_mean_and_says_dark_good_or_bright(level, verdict):
    reading = meters.exposure(np.full((90, 160), level, np.uint8))
    assert reading["mean"] == level and reading["verdict"] == verdict


def test_exposure_counts_clipped_pixels_and_calls_burnt_highlights_bright():
    y = np.full((100, 100), 120, np.uint8)
    y[:10] = 255  # 10 % burnt white
    y[10:12] = 0  # 2 % crushed black
    reading = meters.exposure(y)
    assert reading["white"] == pytest.approx(0.10) and reading["black"] == pytest.approx(0.02)
    assert reading["verdict"] == "bright"


# -- picture messages -----------------------------------------------------------------------------


def test_a_picture_message_is_a_jpeg_its_boxes_in_picture_pixels_and_the_meters():
    y = np.full((360, 640), 90, np.uint8)
    codes = (((100, 50), (300, 50), (300, 250), (100, 250)),)
    message = picture.message(Snapshot(seq=3, y=y, step=2, codes=codes, t=1.0, fps=14.96))
    image = Image.open(io.BytesIO(base64.b64decode(message["jpeg"])))
    assert (image.format, image.mode, image.size) == ("JPEG", "L", (640, 360))
    assert message["boxes"] == [[[50, 25], [150, 25], [150, 125], [50, 125]]]
    assert message["codes"] == 1 and message["fps"] == 15.0 and message["seq"] == 3
    assert message["exposure"]["verdict"] == "good" and message["sharpness"] == 0.0
    assert set(message) == {"event", "seq", "width", "height", "jpeg", "boxes", "codes", "fps", "exposure",
                            "sharpness", "code_sharpness"}  # fmt: skip


# -- endpoints ------------------------------------------------------------------------------------


def get(address: tuple[str, int], path: str, host: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_with_aiming_off_both_paths_answer_404_saying_how_to_turn_it_on(tmp_path):
    with page_server(page_config(tmp_path), aim.routes(None)) as (server, _hub):
        assert server.address is not None
        for path in ("/aim", "/aim/stream"):
            status, body = get(server.address, path)
            assert status == 404 and b"display.aim = true" in body


def test_the_daemon_with_aiming_off_hands_nothing_over(tmp_path):
    with running_daemon(page_config(tmp_path)) as daemon:
        assert isinstance(daemon.pages, PageServer) and daemon.pages.address is not None
        assert daemon.viewfinder is None and daemon.sentry is not None and daemon.sentry.viewfinder is None
        assert get(daemon.pages.address, "/aim")[0] == 404


@contextmanager
def fed(viewfinder: Viewfinder, y: np.ndarray, fps: float = 30.0) -> Iterator[None]:
    """A stand-in hot loop: offers `y` to the viewfinder `fps` times a second, as Sentry.process does."""
    stop = threading.Event()

    def run() -> None:
        index = 0
        while not stop.wait(1 / fps):
            frame = Frame(y=y, t=time.monotonic(), index=index)
            index += 1
            if viewfinder.watched and viewfinder.due(frame):
                viewfinder.offer(frame, [((100, 100), (300, 100), (300, 300), (100, 300))])

    thread = threading.Thread(target=run, name="test-feeder")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def test_pictures_flow_only_while_a_stream_is_open(tmp_path):
    viewfinder = Viewfinder(10.0)
    y = Scene([], duration=1).render_at(0.0)
    with page_server(page_config(tmp_path), aim.routes(viewfinder)) as (server, _hub), fed(viewfinder, y):
        assert server.address is not None
        status, body = get(server.address, "/aim")
        assert status == 200 and b'id="view"' in body and b"Harbour Arena" in body
        assert b"http://" not in body and b"https://" not in body  # nothing fetched from outside
        assert get(server.address, "/static/aim.js")[0] == 200
        time.sleep(0.3)  # the camera runs; nobody watches
        assert viewfinder.copies == 0 and not viewfinder.watched
        stream = EventStream(*server.address, "/aim/stream")
        try:
            first, second = stream.next(), stream.next()
            assert viewfinder.watched
        finally:
            stream.close()
        assert first["event"] == "aim" and second["seq"] > first["seq"]
        assert first["boxes"] == [[[50, 50], [150, 50], [150, 150], [50, 150]]]
        assert (first["width"], first["height"]) == (640, 360)
        wait_until(lambda: not viewfinder.watched, timeout=PATIENCE_S)
        copies = viewfinder.copies
        time.sleep(0.3)
        assert viewfinder.copies == copies and viewfinder.latest is None


def test_the_stream_obeys_the_loopback_host_rule_and_a_cap_on_viewers(tmp_path):
    viewfinder = Viewfinder(4.0)
    with page_server(page_config(tmp_path), aim.routes(viewfinder)) as (server, _hub):
        assert server.address is not None
        host = f"attacker.example:{server.address[1]}"
        assert get(server.address, "/aim/stream", host=host)[0] == 403
        assert get(server.address, "/aim", host=host)[0] == 403
        assert not viewfinder.watched
        streams = [EventStream(*server.address, "/aim/stream") for _ in range(aim.MAX_VIEWERS)]
        try:
            wait_until(lambda: viewfinder.viewers == aim.MAX_VIEWERS, timeout=PATIENCE_S)
            assert get(server.address, "/aim/stream")[0] == 503
        finally:
            for stream in streams:
                stream.close()
        wait_until(lambda: viewfinder.viewers == 0, timeout=PATIENCE_S)


def test_stopping_the_server_ends_open_streams_and_the_hand_off(tmp_path):
    viewfinder = Viewfinder(4.0)
    with page_server(page_config(tmp_path), aim.routes(viewfinder)) as (server, _hub):
        assert server.address is not None
        stream = EventStream(*server.address, "/aim/stream")
        wait_until(lambda: viewfinder.watched, timeout=PATIENCE_S)
    assert not viewfinder.watched
    with pytest.raises(EOFError):
        stream.next()
    stream.close()


def _scene(path: Path, text: str) -> Path:
    cue = {"text": text, "start": 0, "end": 600, "size": 0.45}
    path.write_text(json.dumps({"duration": 600, "cues": [cue]}))
    return path


def test_the_daemon_sends_its_cameras_pictures_with_the_code_boxed_and_never_its_text(tmp_path):
    key = keys.generate()
    text = es1.issue(key, issuer=ISSUER, lifetime_s=3600, iat=int(datetime.now(UTC).timestamp()))
    (tmp_path / "trust.json").write_text(json.dumps(trust_doc(key)))
    config = page_config(tmp_path, trust={"file": str(tmp_path / "trust.json")},
                         camera={"scene": str(_scene(tmp_path / "scene.json", text)), "fps": 15},
                         display={"aim": True, "aim_fps": 5})  # fmt: skip
    with running_daemon(config) as daemon:
        assert isinstance(daemon.pages, PageServer) and daemon.pages.address is not None
        viewfinder = daemon.viewfinder
        assert viewfinder is not None and daemon.sentry is not None and daemon.sentry.viewfinder is viewfinder
        assert viewfinder.copies == 0
        stream = EventStream(*daemon.pages.address, "/aim/stream")
        try:
            pictures = stream.until(lambda m: m["codes"] == 1 and m["fps"] is not None)
        finally:
            stream.close()
        wait_until(lambda: not viewfinder.watched, timeout=PATIENCE_S)
    boxed = pictures[-1]
    xs = [x for x, _ in boxed["boxes"][0]]
    assert 320 - 0.225 * 360 <= min(xs) < max(xs) <= 320 + 0.225 * 360  # around the centred code
    assert 1 < boxed["fps"] < 100 and boxed["exposure"]["mean"] > 0 and boxed["sharpness"] > 0
    raw = b"".join(stream.raw)
    assert text.encode() not in raw and text.split(":", 1)[1][:40].encode() not in raw


def test_a_pushed_config_cannot_turn_the_aiming_page_on():
    from edge_sentry.config import from_mapping
    from edge_sentry.errors import ConfigRejected
    from edge_sentry.link import desired

    assert desired.matches("display.aim", desired.LOCAL_ONLY)
    local = from_mapping({"display": {"listen": "127.0.0.1:8080"}})
    with pytest.raises(ConfigRejected) as exc:
        desired.build(local, {}, {"display": {"aim": True}})
    assert exc.value.problems == [("display.aim", "is set on the device only; it cannot be changed remotely")]

