"""The hot loop end to end: synthetic camera, real zxing-cpp, real verifier, gate on gpiozero mock pins."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from gate_helpers import wait_until
from gpiozero.pins.mock import MockFactory

from edge_sentry.camera.base import Frame, FrameSource
from edge_sentry.camera.synthetic import Cue, Scene, SyntheticSource
from edge_sentry.codes import es1
from edge_sentry.config import Config, from_mapping
from edge_sentry.decoder import Decoder
from edge_sentry.demo import EXPECTED, DemoIssuer, DemoSource, press_button, shut_simulated_door
from edge_sentry.gpio import GateDevices, build_devices
from edge_sentry.sentry import Sentry
from edge_sentry.verifier import Verifier

SCALE = 0.25  # the demo pass at four times its speed: about 5 s


def fast_config(**gate: Any) -> Config:
    settings = {
        "pulse_ms": 100,
        "max_open_s": 0.5,
        "relay_rest_ms": 100,
        "grant_window_s": 0.5,
        "held_open_s": 0.5,
        "assist_window_s": 1.0,
        "light_ms": 100,
        "beep_accept_ms": 20,
        "beep_deny_ms": 50,
        **gate,
    }
    # Timings below the schema's floors, so the gate is built from a replaced section directly.
    config = from_mapping({"camera": {"fps": 15, "fault_after_s": 0.3, "timeout_s": 0.1}})
    return dataclasses.replace(config, gate=dataclasses.replace(config.gate, **settings))


class Recorder:
    """The record sink: keeps every event, thread-safe (gate events come from gpiozero's threads)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.events.append(event)
        return event

    def named(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e["event"] == name]

    def scans(self) -> list[tuple[str, str, str]]:
        return [(e["mode"], e["verdict"], e["reason"]) for e in self.named("scan")]


class FrameList(FrameSource):
    """A simulated camera that hands out prepared frames, then nothing (like an unplugged camera)."""

    def __init__(self, frames: list[np.ndarray]):
        self.frames = frames
        self.position = 0

    def start(self) -> None:
        self.position = 0

    def read(self, timeout: float) -> Frame | None:
        if self.position >= len(self.frames):
            time.sleep(min(timeout, 0.01))
            return None
        y = self.frames[self.position]
        self.position += 1
        return Frame(y=y, t=time.monotonic(), index=self.position - 1)

    def stop(self) -> None:
        pass


@pytest.fixture
def devices() -> Iterator[GateDevices]:
    built = build_devices(Config().gpio, MockFactory())
    shut_simulated_door(built)
    yield built
    built.close()


def make_sentry(
    config: Config, source: FrameSource, devices: GateDevices, issuer: DemoIssuer, **kw: Any
) -> tuple[Sentry, Recorder]:
    recorder = Recorder()
    verifier = Verifier(config.es1, config.gate, config.device, issuer.trust)
    sentry = Sentry(config, source, Decoder(config.decoder), verifier, devices, recorder, **kw)
    return sentry, recorder


def run_for(sentry: Sentry, seconds: float) -> None:
    try:
        sentry.run(threading.Event(), duration=seconds)
    finally:
        sentry.close()


@contextmanager
def running(sentry: Sentry) -> Iterator[None]:
    """The hot loop on its own thread for the length of the block, then stopped and closed."""
    stop = threading.Event()
    runner = threading.Thread(target=sentry.run, args=(stop,), name="test-hot-loop")
    runner.start()
    try:
        yield
    finally:
        stop.set()
        runner.join(5)
        sentry.close()


def relay_pulses(devices: GateDevices) -> int:
    return sum(1 for s in devices.relay.pin.states if s.state)


def test_demo_pass_gives_every_verdict_and_the_staff_entry(devices):
    config = fast_config()
    issuer = DemoIssuer.create()
    source = DemoSource(
        config, issuer, time_scale=SCALE, on_staff=lambda: press_button(devices.staff, 0.05)
    )
    sentry, recorder = make_sentry(config, source, devices, issuer, presentation_gap_s=0.2)
    with running(sentry):
        # One pass ends with the staff entry; stop there, before the next pass begins.
        wait_until(lambda: any(m == "manual" for m, _, _ in recorder.scans()), timeout=30)

    scans = recorder.scans()
    expected = [("scan", *EXPECTED[step]) for step in EXPECTED] + [("manual", "accept", "ok")]
    assert scans == expected
    assert relay_pulses(devices) == 2  # the valid code and the staff button; nothing else
    scan = recorder.named("scan")[0]
    assert scan["scheme"] == "es1" and scan["issuer"] == "demo-issuer"
    assert 0 < scan["latency_ms"] < 1000
    assert scan["site"] == config.device.site and scan["entrance"] == config.device.entrance


def test_scan_events_never_carry_the_code_text_or_subject(devices):
    config = fast_config()
    issuer = DemoIssuer.create()
    text = es1.issue(issuer.key, issuer="demo-issuer", lifetime_s=60)
    frame = Scene([Cue(text=text, start=0, end=1)], duration=1).render_at(0.5)
    sentry, recorder = make_sentry(config, FrameList([frame]), devices, issuer)
    run_for(sentry, 0.5)
    (event,) = recorder.named("scan")
    assert event["verdict"] == "accept"
    assert text not in repr(event)
    assert "subject" not in event and "sub" not in event


def test_a_code_held_in_view_is_decided_once(devices):
    config = fast_config()
    issuer = DemoIssuer.create()
    text = es1.issue(issuer.key, issuer="demo-issuer", lifetime_s=60)
    frame = Scene([Cue(text=text, start=0, end=1)], duration=1).render_at(0.5)
    sentry, recorder = make_sentry(config, FrameList([frame] * 8), devices, issuer)
    run_for(sentry, 0.8)
    assert recorder.scans() == [("scan", "accept", "ok")]
    assert sentry.stats.frames == 8


def test_a_bad_frame_is_counted_and_the_loop_goes_on(devices):
    config = fast_config()
    issuer = DemoIssuer.create()
    text = es1.issue(issuer.key, issuer="demo-issuer", lifetime_s=60)
    good = Scene([Cue(text=text, start=0, end=1)], duration=1).render_at(0.5)
    bad = np.zeros((10, 10, 3), dtype=np.float32)  # not a luminance plane
    sentry, recorder = make_sentry(config, FrameList([bad, good]), devices, issuer)
    run_for(sentry, 0.5)
    assert sentry.stats.frame_errors == 1
    assert recorder.scans() == [("scan", "accept", "ok")]


@pytest.mark.parametrize("fail_mode, relay_on", [("secure", False), ("safe", True)])
def test_a_silent_camera_puts_the_gate_in_its_fail_mode(devices, fail_mode, relay_on):
    config = fast_config(fail_mode=fail_mode)
    issuer = DemoIssuer.create()
    sentry, recorder = make_sentry(config, FrameList([]), devices, issuer)
    with running(sentry):
        wait_until(lambda: recorder.named("camera-fault"), what="camera-fault")
        time.sleep(0.05)
        assert devices.relay.value == relay_on
        assert sentry.gate.state.value == "fault"
    assert not devices.relay.value  # closing leaves the strike locked


def test_secure_fault_still_lets_staff_grant(devices):
    config = fast_config(fail_mode="secure")
    issuer = DemoIssuer.create()
    sentry, recorder = make_sentry(config, FrameList([]), devices, issuer)
    with running(sentry):
        wait_until(lambda: recorder.named("camera-fault"), what="camera-fault")
        press_button(devices.staff, 0.05)
        wait_until(lambda: recorder.scans(), what="manual scan")
        assert recorder.scans() == [("manual", "accept", "ok")]


def test_paper_code_waits_for_staff_and_is_logged_assisted(devices):
    config = fast_config()
    issuer = DemoIssuer.create()
    text = es1.issue(issuer.key, issuer="demo-issuer", lifetime_s=86400, paper=True)
    frame = Scene([Cue(text=text, start=0, end=1)], duration=1).render_at(0.5)
    sentry, recorder = make_sentry(config, FrameList([frame]), devices, issuer)
    with running(sentry):
        wait_until(lambda: recorder.scans(), what="the paper code's decision")
        assert recorder.scans() == [("scan", "deny", "assist")]
        assert not devices.relay.value
        press_button(devices.staff, 0.05)
        wait_until(lambda: len(recorder.scans()) == 2, what="the assisted grant")
        assert recorder.scans()[1] == ("assisted", "accept", "ok")
        assert recorder.named("scan")[1]["scheme"] == "es1"


def test_venue_poster_in_view_never_opens_the_gate(devices):
    from edge_sentry.codes import keys, vc1

    root = keys.generate()
    config = fast_config()
    issuer = DemoIssuer.create()
    device = config.device
    text = vc1.issue(root, site=device.site, venue=device.venue, entrance=device.entrance,
                     name=device.venue_name)
    frame = Scene([Cue(text=text, start=0, end=1)], duration=1).render_at(0.5)
    recorder = Recorder()
    verifier = Verifier(config.es1, config.gate, device, issuer.trust, root.public_key())
    sentry = Sentry(config, FrameList([frame]), Decoder(config.decoder), verifier, devices,
                    recorder)
    with running(sentry):
        wait_until(lambda: recorder.named("venue-code"), what="the venue code")
        assert sentry.gate.state.value == "idle"  # nothing left showing "verifying"
    assert recorder.scans() == []
    assert [e["reason"] for e in recorder.named("venue-code")] == ["ok"]
    assert relay_pulses(devices) == 0


def test_synthetic_frames_through_replaced_decoder_settings(devices):
    """The decoder settings come from config: a scale-1 decoder reads the same demo code."""
    config = dataclasses.replace(fast_config(), decoder=dataclasses.replace(Config().decoder, scale=1))
    issuer = DemoIssuer.create()
    text = es1.issue(issuer.key, issuer="demo-issuer", lifetime_s=60)
    scene = Scene([Cue(text=text, start=0, end=10, rotation=20, blur=0.5)], duration=10)
    source = SyntheticSource(scene, fps=15, paced=False)
    sentry, recorder = make_sentry(config, source, devices, issuer)
    run_for(sentry, 0.5)
    assert recorder.scans()[:1] == [("scan", "accept", "ok")]


class BrokenCamera(FrameSource):
    """A camera whose library fails with its own exception type, not a CameraError."""

    def __init__(self, fail_in: str):
        self.fail_in = fail_in
        self.reads = 0

    def start(self) -> None:
        if self.fail_in == "start":
            raise PermissionError("replay folder not readable")

    def read(self, timeout: float) -> Frame | None:
        self.reads += 1
        raise RuntimeError("driver gone")

    def stop(self) -> None:
        pass


@pytest.mark.parametrize("fail_in", ["start", "read"])
def test_a_camera_failing_with_any_exception_is_a_fault_not_the_end_of_the_loop(devices, fail_in):
    config = fast_config(fail_mode="secure")
    issuer = DemoIssuer.create()
    sentry, recorder = make_sentry(config, BrokenCamera(fail_in), devices, issuer)
    stop = threading.Event()
    runner = threading.Thread(target=sentry.run, args=(stop,), name="test-hot-loop")
    runner.start()
    try:
        wait_until(lambda: recorder.named("camera-fault"), what="camera-fault")
        assert runner.is_alive()  # still looping: the buttons keep working
        press_button(devices.staff, 0.05)
        wait_until(lambda: recorder.scans(), what="manual scan")
        assert recorder.scans() == [("manual", "accept", "ok")]
    finally:
        stop.set()
        runner.join(5)
        sentry.close()
    assert not runner.is_alive()


class WatchedVerifier:
    """The real verifier, noting whether `record_assisted` (a button's thread) ever runs while
    `verify` (the hot loop) is inside the passback window; the `slow` text's check takes a while."""

    def __init__(self, inner: Verifier, slow: str, *, fail_assisted: bool = False):
        self.inner = inner
        self.slow = slow
        self.fail_assisted = fail_assisted
        self.inside = False
        self.entered_slow = threading.Event()
        self.overlaps: list[bool] = []

    def verify(self, text: str, now: float) -> Any:
        self.inside = True
        try:
            if text == self.slow:
                self.entered_slow.set()
                time.sleep(0.5)
            return self.inner.verify(text, now)
        finally:
            self.inside = False

    def record_assisted(self, decision: Any, now: float) -> None:
        self.overlaps.append(self.inside)
        if self.fail_assisted:
            raise KeyError("dictionary is empty")
        self.inner.record_assisted(decision, now)


def paper_then_slow_code(issuer: DemoIssuer) -> tuple[list[np.ndarray], str]:
    paper = es1.issue(issuer.key, issuer="demo-issuer", lifetime_s=86400, paper=True)
    slow = es1.issue(issuer.key, issuer="demo-issuer", lifetime_s=60)
    frames = [Scene([Cue(text=t, start=0, end=1)], duration=1).render_at(0.5) for t in (paper, slow)]
    return frames, slow


def test_an_assisted_grant_never_touches_the_passback_window_while_the_hot_loop_verifies(devices):
    config = fast_config(assist_window_s=5.0)
    issuer = DemoIssuer.create()
    frames, slow = paper_then_slow_code(issuer)
    verifier = WatchedVerifier(Verifier(config.es1, config.gate, config.device, issuer.trust), slow)
    recorder = Recorder()
    sentry = Sentry(config, FrameList(frames), Decoder(config.decoder), verifier, devices, recorder)
    with running(sentry):
        assert verifier.entered_slow.wait(5)
        press_button(devices.staff, 0.05)
        wait_until(lambda: ("assisted", "accept", "ok") in recorder.scans(), what="the assisted grant")
    assert verifier.overlaps == [False]


def test_an_assisted_entry_is_recorded_even_if_the_passback_window_fails(devices):
    config = fast_config(assist_window_s=5.0)
    issuer = DemoIssuer.create()
    frames, _ = paper_then_slow_code(issuer)
    inner = Verifier(config.es1, config.gate, config.device, issuer.trust)
    verifier = WatchedVerifier(inner, slow="", fail_assisted=True)
    recorder = Recorder()
    sentry = Sentry(config, FrameList(frames[:1]), Decoder(config.decoder), verifier, devices, recorder)
    with running(sentry):
        wait_until(lambda: recorder.scans(), what="the paper code's decision")
        press_button(devices.staff, 0.05)
        wait_until(lambda: len(recorder.scans()) == 2, what="the assisted scan event")
    assert recorder.scans()[1] == ("assisted", "accept", "ok")


class FailingVerifier:
    def verify(self, text: str, now: float) -> Any:
        raise RuntimeError("trust list in an impossible state")

    def record_assisted(self, decision: Any, now: float) -> None:
        pass


def test_a_verifier_failure_denies_visibly_and_leaves_nothing_verifying(devices):
    config = fast_config(fail_mode="secure")
    issuer = DemoIssuer.create()
    text = es1.issue(issuer.key, issuer="demo-issuer", lifetime_s=60)
    frame = Scene([Cue(text=text, start=0, end=1)], duration=1).render_at(0.5)
    recorder = Recorder()
    sentry = Sentry(config, FrameList([frame]), Decoder(config.decoder), FailingVerifier(), devices,
                    recorder)
    with running(sentry):
        wait_until(lambda: recorder.scans(), what="the failed decision")
        assert recorder.scans() == [("scan", "deny", "malformed")]
        assert any(s.state for s in devices.red.pin.states)  # the person at the gate sees a refusal
        sentry.gate.clear_fault("verifier")
        assert sentry.gate.state.value == "idle"
    assert relay_pulses(devices) == 0


def test_a_refused_entry_does_not_count_as_a_passback_on_the_next_try(devices):
    """Accepted but refused (a policy said no): nobody went in, so showing it again is no passback."""
    config = fast_config()
    issuer = DemoIssuer.create()
    text = es1.issue(issuer.key, issuer="demo-issuer", lifetime_s=60)
    code = Scene([Cue(text=text, start=0, end=1)], duration=1).render_at(0.5)
    blank = Scene([], duration=1).render_at(0.5)
    refusals = ["clock-unsynced"]
    sentry, recorder = make_sentry(
        config, FrameList([code, blank, code]), devices, issuer, presentation_gap_s=0.0,
        refusal=lambda: refusals.pop() if refusals else None,
    )
    run_for(sentry, 0.6)
    assert recorder.scans() == [("scan", "deny", "ok"), ("scan", "accept", "ok")]
    assert recorder.named("scan")[0]["refused"] == "clock-unsynced"
    assert relay_pulses(devices) == 1
