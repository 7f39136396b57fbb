"""The gate's voice put together from `[voice]`: which language, which cache, which player.

`Voice.announce(event)` is what the daemon's record path calls for every event, on whichever
thread recorded it (the hot loop after the gate acted, a gate callback, the link): it picks the
prompt (a dictionary lookup) and hands it to the player's one-place slot, nothing more. Rendering
what is missing happens on the voice thread at its start; playing happens there too.

The output is chosen like the pin factory (gpio.make_pin_factory): `voice.output = "auto"` plays
through `aplay` on a Raspberry Pi (told by its device tree, never by whether tests run) and
simulates elsewhere; "aplay" and "simulated" say so outright. Only the real output renders: a
simulated voice records which prompt it would have played, rendered or not.

What it must never do: raise into the caller of `announce`; stop the sentry because the speech
engine or the sound device is missing (logged once, the gate works on silently).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..config import Config, VoiceConfig
from ..errors import VoiceError
from ..gpio import DEVICE_TREE_MODEL, is_raspberry_pi
from .player import AplaySink, Player, SimulatedSink, Sink
from .prompts import TEXTS, Prompt, prompt_for
from .render import CACHE_FOLDER, PromptCache, wav_duration

log = logging.getLogger(__name__)

DEFAULT_LANGUAGE = "en"


def display_language(config: Config) -> str:
    """The visitor display's language (`display.language`), or "en" should it name a language
    without prompts: what visitors read and hear stays one language."""
    language = config.display.language
    return language if language in TEXTS else DEFAULT_LANGUAGE


def voice_language(config: Config) -> str:
    """`voice.language`, or the display's when it is empty."""
    return config.voice.language or display_language(config)


def choose_output(voice: VoiceConfig, model_path: str | Path = DEVICE_TREE_MODEL) -> str:
    """"aplay" or "simulated": "auto" asks the board, so a Pi never gets the silent player."""
    if voice.output != "auto":
        return voice.output
    chosen = "aplay" if is_raspberry_pi(model_path) else "simulated"
    log.info("voice.output auto: using %s", chosen)
    return chosen


def cache_folder(config: Config) -> Path:
    return Path(config.device.state_dir) / CACHE_FOLDER


class Voice:
    """Prompts for one sentry: the cache, the sink, and the player thread."""

    def __init__(
        self,
        config: Config,
        *,
        sink: Sink | None = None,
        engine: str | None = None,
        model_path: str | Path = DEVICE_TREE_MODEL,
    ):
        self.config = config
        self.language = voice_language(config)
        self.cache = PromptCache(cache_folder(config), volume=config.voice.volume, engine=engine)
        self.output = choose_output(config.voice, model_path)
        if sink is None:
            sink = AplaySink(config.voice.device) if self.output == "aplay" else SimulatedSink()
        self.sink = sink
        #: Whether prompts must exist as files to be played: the simulated player needs none.
        self.renders = self.output == "aplay"
        self._seconds: dict[Path, float] = {}
        self.player = Player(sink, self.locate, prepare=self.prepare)

    # -- the hand-over (any thread) -------------------------------------------------------------

    def announce(self, event: dict[str, Any]) -> Prompt | None:
        """Hand the event's prompt (if it has one) to the player; never blocks, never raises."""
        try:
            prompt = prompt_for(event)
            if prompt is not None:
                self.player.offer(prompt)
            return prompt
        except Exception:
            log.exception("voice: could not hand a prompt over")
            return None

    # -- the voice thread -----------------------------------------------------------------------

    def start(self) -> None:
        self.player.start()

    def stop(self) -> None:
        self.player.stop()
        stats = self.player.stats
        log.info("voice: played %d prompts (%d replaced by a newer one, %d failed)",
                 stats.played, stats.dropped, stats.failed)  # fmt: skip

    def prepare(self) -> list[Prompt]:
        """Render this language's missing prompts (real output only); what was rendered. Logged,
        never raised: without them the gate works on silently."""
        if not self.renders:
            return []
        missing = self.cache.missing(self.language)
        made = []
        try:
            for prompt in missing:
                self.cache.render(self.language, prompt)
                made.append(prompt)
            self.cache.prune()
        except VoiceError as exc:
            log.error("voice: %s; the gate works on without sound", exc)
        if made:
            log.info("voice: rendered %d %s prompts into %s", len(made), self.language, self.cache.folder)
        return made

    def locate(self, prompt: Prompt) -> tuple[Path, float] | None:
        """The prompt's file and its length; None when the real output has no file to play."""
        path = self.cache.path(self.language, prompt)
        seconds = self._seconds.get(path)
        if seconds is not None:
            return path, seconds
        if not path.is_file():
            return None if self.renders else (path, 0.0)
        try:
            seconds = wav_duration(path)
        except VoiceError:
            return None if self.renders else (path, 0.0)
        self._seconds[path] = seconds
        return path, seconds

    # -- the self-test --------------------------------------------------------------------------

    def check(self) -> tuple[str, str]:
        """("pass" | "fail" | "skip", detail): prompts rendered and readable, the device takes a
        short silence. A simulated output is a skip: there is no speaker to judge."""
        if not self.config.voice.enabled:
            return "skip", "voice.enabled = false"
        total = len(Prompt)
        bad = []
        for prompt in Prompt:
            try:
                wav_duration(self.cache.path(self.language, prompt))
            except VoiceError:
                bad.append(prompt.value)
        rendered = f"{total - len(bad)} of {total} {self.language} prompts rendered"
        if not self.renders:
            return "skip", f"{rendered}; voice.output is simulated: no speaker to test"
        if bad:
            return "fail", f"{rendered}, missing {', '.join(bad)}: run `edge-sentry voice render`"
        try:
            self.sink.play(self.cache.silence(), 3.0)
        except (VoiceError, OSError) as exc:
            return "fail", f"{rendered}; the speaker did not play: {exc}"
        return "pass", f"{rendered}; {self.config.voice.device!r} played a test sound"
