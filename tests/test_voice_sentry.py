"""The voice wired to decisions: the hot loop's decisions and the staff button produce the right
prompts through the record path, a player stuck on a prompt never holds the hot loop up, and the
daemon renders its prompts at first start and plays them (real espeak-ng, aplay on ALSA's null device).
"""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from gate_helpers import wait_until
from test_sentry import FrameList, Recorder, devices, fast_config, running  # noqa: F401 (a fixture)
from test_voice import HeldSink, names, tool

from edge_sentry.camera.synthetic import Cue, Scene
from edge_sentry.codes import es1
from edge_sentry.config import from_mapping
from edge_sentry.daemon import Daemon
from edge_sentry.decoder import Decoder
from edge_sentry.demo import DemoIssuer, press_button
from edge_sentry.errors import CameraError
from edge_sentry.sentry import Sentry
from edge_sentry.verifier import Verifier
from edge_sentry.voice import Prompt, Voice
from edge_sentry.voice.player import SimulatedSink


def frame_of(text: str) -> Any:
    return Scene([Cue(text=text, start=0, end=1)], duration=1).render_at(0.5)


class GatedFrames(FrameList):
    """Prepared frames handed out only as far as the test allows (`allowed`)."""

    def __init__(self, frames: list[Any], allowed: int) -> None:
        super().__init__(frames)
        self.allowed = allowed

    def read(self, timeout: float) -> Any:
        if self.position >= self.allowed:
            time.sleep(min(timeout, 0.01))
            return None
        return super().read(timeout)


def voiced_sentry(config: Any, frames: list[Any] | FrameList, gate_devices: Any, issuer: DemoIssuer,
                  voice: Voice) -> tuple[Sentry, Recorder]:  # fmt: skip
    """A sentry whose record path is the daemon's: every event to the recorder, then to the voice."""
    recorder = Recorder()

    def record(event: dict[str, Any]) -> dict[str, Any]:
        recorder(event)
        voice.announce(event)
        return event

    verifier = Verifier(config.es1, config.gate, config.device, issuer.trust)
    source = frames if isinstance(frames, FrameList) else FrameList(frames)
    sentry = Sentry(config, source, Decoder(config.decoder), verifier, gate_devices, record,
                    presentation_gap_s=0.2)  # fmt: skip
    return sentry, recorder


def test_decisions_and_the_staff_button_are_spoken(tmp_path: Path, devices):  # noqa: F811
    config = fast_config()
    issuer = DemoIssuer.create()
    expired = es1.issue(issuer.key, issuer="demo-issuer", lifetime_s=600, iat=1_700_000_000)
    sink = SimulatedSink()
    voice = Voice(from_mapping({"device": {"state_dir": str(tmp_path)}}), sink=sink)
    voice.start()
    sentry, recorder = voiced_sentry(config, [frame_of(expired)], devices, issuer, voice)
    try:
        with running(sentry):
            wait_until(lambda: sink.prompts() == ["expired"], what="the expired code's prompt")
            press_button(devices.staff, 0.05)
            wait_until(lambda: len(sink.prompts()) == 2, what="the staff entry's prompt")
    finally:
        voice.stop()
    assert recorder.scans() == [("scan", "deny", "expired"), ("manual", "accept", "ok")]
    assert sink.prompts() == ["expired", "staff-entry"]


def test_a_valid_code_is_welcomed_in_chinese(tmp_path: Path, devices):  # noqa: F811
    config = fast_config()
    issuer = DemoIssuer.create()
    valid = es1.issue(issuer.key, issuer="demo-issuer", lifetime_s=60)
    sink = SimulatedSink()
    mapping = {"device": {"state_dir": str(tmp_path)}, "voice": {"language": "zh"}}
    voice = Voice(from_mapping(mapping), sink=sink)
    voice.start()
    sentry, _ = voiced_sentry(config, [frame_of(valid)], devices, issuer, voice)
    try:
        with running(sentry):
            wait_until(lambda: sink.played, what="the welcome")
    finally:
        voice.stop()
    (played,) = sink.played
    assert played.name.startswith("zh-welcome-")


def test_a_player_stuck_on_a_prompt_never_holds_the_hot_loop(tmp_path: Path, devices):  # noqa: F811
    """Every decision is made and recorded while the sink has not finished its first prompt."""
    config = fast_config()
    issuer = DemoIssuer.create()
    codes = [es1.issue(issuer.key, issuer="demo-issuer", lifetime_s=60) for _ in range(4)]
    codes += [es1.issue(issuer.key, issuer="demo-issuer", lifetime_s=600, iat=1_700_000_000)]
    sink = HeldSink()
    voice = Voice(from_mapping({"device": {"state_dir": str(tmp_path)}}), sink=sink)
    voice.start()
    # The first code alone until its prompt plays; then the rest while the sink holds it.
    source = GatedFrames([frame_of(c) for c in codes], allowed=1)
    sentry, recorder = voiced_sentry(config, source, devices, issuer, voice)
    try:
        with running(sentry):
            wait_until(lambda: sink.started, timeout=20, what="the first prompt playing")
            source.allowed = len(codes)
            wait_until(lambda: len(recorder.scans()) == len(codes), timeout=20, what="every decision")
            assert sink.finished == []  # the first prompt is still playing
            assert sentry.stats.decisions == len(codes)
            sink.release.set()
            wait_until(lambda: len(sink.finished) == 2, timeout=20, what="the latest prompt")
    finally:
        sink.release.set()
        voice.stop()
    # The first welcome played, the rest were replaced while it held, the latest (expired) won.
    assert [n.split("-")[1] for n in names(sink.started)] == ["welcome", "expired"]
    assert voice.player.stats.dropped == len(codes) - 2


def test_the_daemon_renders_its_prompts_at_first_start_and_plays_them(tmp_path: Path):
    tool("espeak-ng", "espeak-ng")
    tool("aplay", "alsa-utils")
    mapping = {
        "device": {"state_dir": str(tmp_path / "state")},
        "outbox": {"path": str(tmp_path / "outbox")},
        "gpio": {"pin_factory": "mock"},
        "voice": {"output": "aplay", "device": "null", "language": "zh"},
    }
    daemon = Daemon(from_mapping(mapping), stream=io.StringIO(), clock_probe=lambda: True)
    done = threading.Event()
    runner = threading.Thread(target=lambda: (daemon.run(duration=30), done.set()), name="test-daemon")
    runner.start()
    try:
        # The demo's valid code comes at 1 s: its welcome is played once the prompts are rendered.
        wait_until(lambda: daemon.voice is not None and daemon.voice.player.stats.played >= 1,
                   timeout=25, what="a prompt played")  # fmt: skip
    finally:
        daemon.stop_event.set()
        runner.join(10)
    assert done.is_set()
    voice = daemon.voice
    assert voice is not None and voice.output == "aplay"
    assert voice.cache.missing("zh") == []
    assert sorted(p.name.split("-")[0] for p in voice.cache.folder.glob("*.wav")) == ["zh"] * len(Prompt)
    assert voice.player.stats.failed == 0
    assert not voice.player.alive  # stopped with the daemon


def test_a_start_that_fails_stops_the_voice_again(tmp_path: Path):
    mapping = {
        "device": {"state_dir": str(tmp_path / "state")},
        "camera": {"scene": str(tmp_path / "no-such-scene.toml")},
        "gpio": {"pin_factory": "mock"},
        "outbox": {"path": str(tmp_path / "outbox")},
        "voice": {"output": "simulated"},
    }
    daemon = Daemon(from_mapping(mapping), stream=io.StringIO(), clock_probe=lambda: True)
    with pytest.raises(CameraError):
        daemon.run(duration=1.0)
    assert daemon.voice is not None and not daemon.voice.player.alive
    assert not [t for t in threading.enumerate() if t.name == "edge-sentry-voice"]


def test_a_silent_gate_has_no_voice_thread(tmp_path: Path):
    mapping = {
        "device": {"state_dir": str(tmp_path / "state")},
        "gpio": {"pin_factory": "mock"},
        "outbox": {"path": str(tmp_path / "outbox")},
        "voice": {"enabled": False},
    }
    daemon = Daemon(from_mapping(mapping), stream=io.StringIO(), clock_probe=lambda: True)
    daemon.run(duration=0.5)
    assert daemon.voice is None
