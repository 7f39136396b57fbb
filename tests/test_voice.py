"""The gate's voice on its own: which prompt an outcome calls for, real espeak-ng rendering into the
cache (WAV headers and lengths, both languages, re-rendered when text or volume change), the player's
one-place hand-over (latest wins, never blocks), a real `aplay` on ALSA's null device, the config
keys, the output choice, the self-test part and wipe.

espeak-ng and aplay come from Debian's `espeak-ng` and `alsa-utils` (scripts/setup --dev installs
them); without them these tests fail with that advice rather than skip.
"""

from __future__ import annotations

import array
import logging
import shutil
import threading
import wave
from pathlib import Path
from typing import Any

import pytest
from gate_helpers import wait_until

from edge_sentry import selftest
from edge_sentry.config import from_mapping
from edge_sentry.errors import ConfigError, VoiceError
from edge_sentry.vocabulary import Event, Mode, Reason
from edge_sentry.voice import Prompt, Voice, display_language, prompt_for, voice_language
from edge_sentry.voice import prompts as prompts_module
from edge_sentry.voice.announcer import choose_output
from edge_sentry.voice.player import AplaySink, Player, SimulatedSink
from edge_sentry.voice.prompts import TEXTS
from edge_sentry.voice.render import PromptCache, wav_duration


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: install the Debian package `{package}` "
                    "(scripts/setup --dev does)", pytrace=False)  # fmt: skip
    return found


def scan(verdict: str, reason: str = "ok", mode: str = "scan") -> dict[str, Any]:
    return {"event": "scan", "verdict": verdict, "reason": reason, "mode": mode}


def voice_config(tmp_path: Path, **voice: Any) -> Any:
    return from_mapping({"device": {"state_dir": str(tmp_path / "state")}, "voice": voice})


def peak(path: Path) -> int:
    with wave.open(str(path), "rb") as wav:
        samples = array.array("h", wav.readframes(wav.getnframes()))
    return max((abs(s) for s in samples), default=0)


# -- which prompt ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reason, prompt",
    [
        (Reason.EXPIRED, Prompt.EXPIRED),
        (Reason.NOT_YET_VALID, Prompt.EXPIRED),
        (Reason.PASSBACK, Prompt.USED),
        (Reason.STALE, Prompt.SCREENSHOT),
        (Reason.ASSIST, Prompt.ASK_STAFF),
        (Reason.OK, Prompt.ASK_STAFF),  # a valid code a policy withholds
        (Reason.MALFORMED, Prompt.INVALID),
        (Reason.UNSUPPORTED, Prompt.INVALID),
        (Reason.UNKNOWN_KEY, Prompt.INVALID),
        (Reason.BAD_SIGNATURE, Prompt.INVALID),
        (Reason.REVOKED, Prompt.INVALID),
        (Reason.STATUS, Prompt.INVALID),
        (Reason.WRONG_VENUE, Prompt.INVALID),
    ],
)
def test_each_deny_reason_has_the_prompt_of_its_family(reason, prompt):
    assert prompt_for(scan("deny", reason)) == prompt


def test_every_reason_of_the_contract_is_covered():
    assert {prompt_for(scan("deny", r)) for r in Reason} <= set(Prompt)


@pytest.mark.parametrize(
    "mode, prompt",
    [(Mode.SCAN, Prompt.WELCOME), (Mode.ASSISTED, Prompt.WELCOME), (Mode.MANUAL, Prompt.STAFF_ENTRY),
     (Mode.EXIT, Prompt.GOODBYE)],
)  # fmt: skip
def test_grants_are_welcomed_by_mode(mode, prompt):
    assert prompt_for(scan("accept", "ok", mode)) == prompt


def test_only_alarms_a_visitor_can_act_on_are_spoken():
    assert prompt_for({"event": Event.DOOR_HELD}) == Prompt.CLOSE_DOOR
    assert prompt_for({"event": Event.TAILGATE}) == Prompt.ONE_AT_A_TIME
    for quiet in (Event.DOOR_FORCED, Event.START, Event.TRUST_UPDATED, Event.CAMERA_FAULT, "gate-pulse"):
        assert prompt_for({"event": quiet}) is None
    assert prompt_for({"event": 7}) is None and prompt_for({}) is None


def test_every_prompt_is_written_in_both_languages():
    for language in ("en", "zh"):
        assert set(TEXTS[language]) == set(Prompt)
        assert all(TEXTS[language][p].strip() for p in Prompt)


# -- rendering with espeak-ng ---------------------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "zh"])
def test_espeak_ng_renders_every_prompt_to_a_playable_wav(tmp_path, language):
    tool("espeak-ng", "espeak-ng")
    cache = PromptCache(tmp_path / "voice", volume=75)
    rendered = cache.render_all(language)
    assert [r.prompt for r in rendered] == list(Prompt) and all(r.made for r in rendered)
    for r in rendered:
        assert r.path.read_bytes()[:4] == b"RIFF" and r.path.read_bytes()[8:12] == b"WAVE"
        with wave.open(str(r.path), "rb") as wav:
            assert (wav.getnchannels(), wav.getsampwidth(), wav.getcomptype()) == (1, 2, "NONE")
            assert wav.getframerate() >= 16000
            seconds = wav.getnframes() / wav.getframerate()
        assert 0.4 < seconds < 8.0, (r.prompt, seconds)  # a short sentence, not silence or a speech
        assert r.seconds == pytest.approx(seconds)
        assert peak(r.path) > 1000  # something is said
    assert not list((tmp_path / "voice").glob("*.tmp"))


def test_the_two_languages_sound_different(tmp_path):
    tool("espeak-ng", "espeak-ng")
    cache = PromptCache(tmp_path / "voice", volume=75)
    en = cache.render("en", Prompt.WELCOME).path.read_bytes()
    zh = cache.render("zh", Prompt.WELCOME).path.read_bytes()
    assert en != zh


def test_a_cached_prompt_is_not_rendered_again_but_a_changed_text_or_volume_is(tmp_path, monkeypatch):
    tool("espeak-ng", "espeak-ng")
    folder = tmp_path / "voice"
    first = PromptCache(folder, volume=75).render("en", Prompt.USED)
    again = PromptCache(folder, volume=75).render("en", Prompt.USED)
    assert not again.made and again.path == first.path
    louder = PromptCache(folder, volume=100).render("en", Prompt.USED)
    assert louder.made and louder.path != first.path
    assert peak(louder.path) > peak(first.path)  # the volume is in the sound itself
    texts = {**TEXTS, "en": {**TEXTS["en"], Prompt.USED: "This code has been used already."}}
    monkeypatch.setattr(prompts_module, "TEXTS", texts)
    changed = PromptCache(folder, volume=100)
    reworded = changed.render("en", Prompt.USED)
    assert reworded.made and reworded.path not in (first.path, louder.path)
    removed = changed.prune()
    assert set(removed) == {first.path, louder.path}
    assert reworded.path.is_file()


def test_volume_zero_renders_silence(tmp_path):
    tool("espeak-ng", "espeak-ng")
    assert peak(PromptCache(tmp_path / "voice", volume=0).render("en", Prompt.GOODBYE).path) == 0


def test_a_damaged_cached_file_is_rendered_again(tmp_path):
    tool("espeak-ng", "espeak-ng")
    cache = PromptCache(tmp_path / "voice", volume=75)
    path = cache.path("en", Prompt.INVALID)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"RIFF\x00\x00")  # a file cut short
    redone = cache.render("en", Prompt.INVALID)
    assert redone.made and wav_duration(path) > 0.4


def test_without_espeak_ng_rendering_says_what_to_install(tmp_path):
    cache = PromptCache(tmp_path / "voice", volume=75, engine=str(tmp_path / "no-espeak"))
    with pytest.raises(VoiceError, match="espeak-ng"):
        cache.render("en", Prompt.WELCOME)
    assert not (tmp_path / "voice").exists() or not list((tmp_path / "voice").iterdir())


def test_a_voice_without_its_engine_logs_and_the_caller_carries_on(tmp_path, caplog):
    voice = Voice(voice_config(tmp_path, output="aplay", device="null"), engine=str(tmp_path / "none"))
    with caplog.at_level(logging.ERROR):
        assert voice.prepare() == []
    assert "espeak-ng not found" in caplog.text and "works on without sound" in caplog.text
    assert voice.announce(scan("accept")) == Prompt.WELCOME  # handed over all the same
    assert not voice.player.play_now(Prompt.WELCOME)  # nothing to play, and no exception


# -- the player -----------------------------------------------------------------------------------


class HeldSink:
    """A sink whose every prompt lasts until the test lets it end."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started: list[Path] = []
        self.finished: list[Path] = []
        self.lock = threading.Lock()

    def play(self, path: Path, timeout_s: float) -> None:
        with self.lock:
            self.started.append(path)
        self.release.wait(30)
        with self.lock:
            self.finished.append(path)

    def interrupt(self) -> None:
        self.release.set()


def names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_a_newer_prompt_replaces_one_still_waiting_and_offering_never_waits():
    sink = HeldSink()
    player = Player(sink, lambda prompt: (Path(prompt.value), 0.0))
    player.start()
    try:
        player.offer(Prompt.WELCOME)
        wait_until(lambda: sink.started, what="the first prompt playing")
        for _ in range(500):  # all return while the sink holds its prompt
            player.offer(Prompt.EXPIRED)
        player.offer(Prompt.USED)
        assert player.stats.offered == 502 and player.stats.dropped == 500
        sink.release.set()
        wait_until(lambda: len(sink.finished) == 2, what="the latest prompt played")
    finally:
        player.stop()
    assert names(sink.started) == ["welcome", "used"]
    assert player.stats.played == 2


def test_a_failing_sink_is_logged_once_per_problem_and_the_player_goes_on(caplog):
    class Broken:
        def __init__(self) -> None:
            self.calls = 0

        def play(self, path: Path, timeout_s: float) -> None:
            self.calls += 1
            raise VoiceError("aplay could not play on 'hw:9': no such card")

        def interrupt(self) -> None:
            pass

    sink = Broken()
    player = Player(sink, lambda prompt: (Path(prompt.value), 0.0))
    with caplog.at_level(logging.WARNING):
        assert not player.play_now(Prompt.WELCOME)
        assert not player.play_now(Prompt.USED)
    assert sink.calls == 2 and player.stats.failed == 2
    assert caplog.text.count("no such card") == 1


def test_the_simulated_sink_records_what_it_would_play(tmp_path):
    voice = Voice(voice_config(tmp_path, output="simulated"))
    assert isinstance(voice.sink, SimulatedSink) and not voice.renders
    assert voice.prepare() == []  # renders nothing: it needs no files
    assert voice.player.play_now(Prompt.SCREENSHOT)
    assert voice.sink.prompts() == ["screenshot"]


# -- aplay ---------------------------------------------------------------------------------------


def test_aplay_plays_a_rendered_prompt_on_the_null_device(tmp_path):
    tool("espeak-ng", "espeak-ng")
    tool("aplay", "alsa-utils")
    voice = Voice(voice_config(tmp_path, output="aplay", device="null"))
    assert isinstance(voice.sink, AplaySink)
    assert voice.prepare() == list(Prompt)
    assert voice.player.play_now(Prompt.WELCOME)
    assert voice.player.stats.played == 1


def test_aplay_on_a_device_that_does_not_exist_is_a_voice_error(tmp_path):
    tool("aplay", "alsa-utils")
    cache = PromptCache(tmp_path / "voice", volume=50)
    with pytest.raises(VoiceError, match="no-such-pcm"):
        AplaySink("no-such-pcm").play(cache.silence(), 5.0)


def test_without_aplay_playing_says_what_to_install(tmp_path):
    cache = PromptCache(tmp_path / "voice", volume=50)
    with pytest.raises(VoiceError, match="alsa-utils"):
        AplaySink("null", program=str(tmp_path / "no-aplay")).play(cache.silence(), 5.0)


# -- config and choices ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("volume", 101, "must be between 0 and 100"),
        ("volume", "loud", "must be an integer"),
        ("language", "fr", "must be one of"),
        ("output", "pulse", "must be one of"),
        ("device", " ", "must not be empty"),
        ("enabled", "yes", "must be true or false"),
        ("speed", 2, "unknown key"),
    ],
)
def test_bad_voice_keys_are_named_by_their_path(tmp_path, key, value, message):
    with pytest.raises(ConfigError) as caught:
        from_mapping({"voice": {key: value}})
    ((path, said),) = caught.value.problems
    assert path == f"voice.{key}" and message in said


def test_the_voice_speaks_the_displays_language_unless_told_otherwise(tmp_path):
    config = voice_config(tmp_path)
    assert config.voice.language == "" and display_language(config) == "en"
    assert voice_language(config) == "en"
    assert voice_language(voice_config(tmp_path, language="zh")) == "zh"
    chinese_display = from_mapping({"display": {"language": "zh"}, "voice": {"output": "simulated"}})
    assert voice_language(chinese_display) == "zh"
    english_voice = from_mapping({"display": {"language": "zh"}, "voice": {"language": "en"}})
    assert voice_language(english_voice) == "en"


def test_auto_output_asks_the_board(tmp_path):
    pi, pc = tmp_path / "pi-model", tmp_path / "pc-model"
    pi.write_bytes(b"Raspberry Pi 4 Model B Rev 1.5\x00")
    pc.write_bytes(b"QEMU Standard PC\x00")
    auto = from_mapping({}).voice
    assert choose_output(auto, pi) == "aplay"
    assert choose_output(auto, pc) == "simulated"
    assert choose_output(auto, tmp_path / "absent") == "simulated"
    assert choose_output(from_mapping({"voice": {"output": "simulated"}}).voice, pi) == "simulated"


def test_the_wiring_keys_cannot_be_pushed(tmp_path):
    from edge_sentry.link.desired import LOCAL_ONLY

    assert {"voice.output", "voice.device"} <= LOCAL_ONLY
    assert "voice.volume" not in LOCAL_ONLY and "voice.language" not in LOCAL_ONLY


# -- self-test and wipe ---------------------------------------------------------------------------


def test_the_voice_self_test(tmp_path):
    tool("espeak-ng", "espeak-ng")
    tool("aplay", "alsa-utils")
    config = voice_config(tmp_path, output="aplay", device="null")
    missing = selftest.check_voice(selftest.Rig(config))
    assert missing["status"] == "fail" and "edge-sentry voice render" in missing["detail"]
    Voice(config).prepare()
    passed = selftest.check_voice(selftest.Rig(config))
    assert passed["status"] == "pass", passed
    broken = voice_config(tmp_path, output="aplay", device="no-such-pcm")
    assert selftest.check_voice(selftest.Rig(broken))["status"] == "fail"
    assert selftest.check_voice(selftest.Rig(voice_config(tmp_path, enabled=False)))["status"] == "skip"
    assert selftest.check_voice(selftest.Rig(voice_config(tmp_path, output="simulated")))["status"] == "skip"


def test_wipe_removes_the_rendered_prompts(tmp_path):
    import argparse
    import io
    import sys

    from edge_sentry.cli import wipe

    tool("espeak-ng", "espeak-ng")
    config = voice_config(tmp_path, output="aplay", device="null")
    voice = Voice(config)
    voice.cache.render("en", Prompt.WELCOME)
    voice.cache.silence()
    stranger = voice.cache.folder / "notes.txt"
    stranger.write_text("kept")
    parser = argparse.ArgumentParser()
    wipe.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["wipe", "--yes"])
    old_stdin, sys.stdin = sys.stdin, io.StringIO("")
    try:
        assert args.func(args, config) == 0
    finally:
        sys.stdin = old_stdin
    assert [p.name for p in voice.cache.folder.iterdir()] == ["notes.txt"]
