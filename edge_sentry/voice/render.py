"""Rendering prompts to WAV files once, with espeak-ng, into a cache in the state folder.

Speech is synthesised ahead of time (at install with `edge-sentry voice render`, or by the voice
thread at the first start that finds a prompt missing), never while a visitor waits: playing a
ready file is all that happens at a decision. Each file is named by its language, its prompt and a
digest of everything that shapes the sound (voice, amplitude, speed, text), so a changed text or
volume renders a new file and the old one is pruned; an unchanged one is never rendered twice.

espeak-ng (Debian's `espeak-ng` package) speaks English (`en`) and Mandarin (`cmn`) with no model
files to fetch. Its amplitude (`-a`, 0-200, 100 its normal) carries `voice.volume`, so no mixer
and no further audio tool is needed.

What it must never do: run on the hot loop's thread; leave a half-written file under a final name
(a file is written beside its name and renamed once espeak-ng finished and it reads as a WAV).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

from ..errors import VoiceError
from ..files import fsync_dir
from .prompts import TEXTS, VOICES, Prompt, text

log = logging.getLogger(__name__)

ENGINE = "espeak-ng"
#: The cache's folder under `device.state_dir`.
CACHE_FOLDER = "voice"
#: Words per minute: English a little slower than espeak-ng's 175, for a noisy entrance and visitors
#: for whom it is a second language; its Mandarin voice is slow enough at the default.
SPEED_WPM = {"en": 150, "zh": 175}
RENDER_TIMEOUT_S = 30.0
#: The short silence the self-test plays to prove the device opens, without a word at the gate.
SILENCE = "silence.wav"
#: The cache's file names (a rendered prompt, the silence); wipe recognises the sentry's files by it.
FILE_NAME = re.compile(
    r"^(?:(?P<language>[a-z]{2})-(?P<prompt>[a-z-]+)-(?P<digest>[0-9a-f]{16})|silence)\.wav(\.tmp)?$"
)


def amplitude(volume: int) -> int:
    """espeak-ng's amplitude for `voice.volume` (0-100): 0-200, so 50 is espeak-ng's normal."""
    return max(0, min(200, volume * 2))


def wav_duration(path: Path) -> float:
    """The length of a WAV file in seconds; VoiceError when it is not a readable, non-empty WAV."""
    try:
        with wave.open(str(path), "rb") as wav:
            frames, rate = wav.getnframes(), wav.getframerate()
    except (OSError, EOFError, wave.Error) as exc:
        raise VoiceError(f"{path}: not a readable WAV file ({exc})") from None
    if frames <= 0 or rate <= 0:
        raise VoiceError(f"{path}: an empty WAV file")
    return frames / rate


@dataclass(frozen=True)
class Rendered:
    """One prompt's file, and whether this call made it (False: it was in the cache)."""

    language: str
    prompt: Prompt
    path: Path
    seconds: float
    made: bool


class PromptCache:
    """The rendered prompts of every language at one volume, in `folder`."""

    def __init__(self, folder: Path, *, volume: int, engine: str | None = None):
        self.folder = folder
        self.amplitude = amplitude(volume)
        self._engine = engine

    def engine(self) -> str:
        """The espeak-ng program, or VoiceError saying how to install it."""
        found = self._engine or shutil.which(ENGINE)
        if found is None or not os.access(found, os.X_OK):
            raise VoiceError(f"{ENGINE} not found: install Debian's espeak-ng package to render prompts")
        return found

    def path(self, language: str, prompt: Prompt) -> Path:
        speech = (ENGINE, VOICES[language], self.amplitude, SPEED_WPM[language], text(language, prompt))
        shaped = "|".join(str(part) for part in speech)
        digest = hashlib.sha256(shaped.encode()).hexdigest()[:16]
        return self.folder / f"{language}-{prompt.value}-{digest}.wav"

    def missing(self, language: str) -> list[Prompt]:
        return [p for p in Prompt if not self.path(language, p).is_file()]

    def render(self, language: str, prompt: Prompt, *, force: bool = False) -> Rendered:
        """The prompt's file, rendered now unless a readable one is cached (or `force`)."""
        final = self.path(language, prompt)
        if not force and final.is_file():
            with contextlib.suppress(VoiceError):
                return Rendered(language, prompt, final, wav_duration(final), made=False)
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = final.with_name(final.name + ".tmp")
        command = [
            self.engine(), "-v", VOICES[language], "-a", str(self.amplitude), "-s", str(SPEED_WPM[language]),
            "-w", str(partial), text(language, prompt),
        ]  # fmt: skip
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S, check=False
            )
            if done.returncode != 0:
                said = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
                raise VoiceError(f"{ENGINE} could not render {language}/{prompt}: {said}")
            seconds = wav_duration(partial)
            with open(partial, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(partial, final)
            fsync_dir(self.folder)
        except subprocess.TimeoutExpired:
            raise VoiceError(f"{ENGINE} took over {RENDER_TIMEOUT_S:g} s on {language}/{prompt}") from None
        except OSError as exc:
            raise VoiceError(f"cannot render {language}/{prompt} into {self.folder}: {exc}") from None
        finally:
            with contextlib.suppress(OSError):
                partial.unlink()
        return Rendered(language, prompt, final, seconds, made=True)

    def render_all(self, language: str, *, force: bool = False) -> list[Rendered]:
        """Every prompt of `language`; VoiceError at the first that cannot be rendered."""
        return [self.render(language, prompt, force=force) for prompt in Prompt]

    def silence(self) -> Path:
        """A fifth of a second of silence (written once): what the self-test plays."""
        path = self.folder / SILENCE
        if not path.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(SILENCE + ".tmp")
            with wave.open(str(partial), "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(22050)
                wav.writeframes(b"\0\0" * (22050 // 5))
            os.replace(partial, path)
        return path

    def prune(self) -> list[Path]:
        """Remove rendered files no current prompt of any language names (an old text or volume)."""
        keep = {self.path(language, prompt).name for language in TEXTS for prompt in Prompt}
        keep.add(SILENCE)
        removed = []
        with contextlib.suppress(FileNotFoundError):
            for entry in sorted(self.folder.iterdir()):
                if FILE_NAME.match(entry.name) and entry.name not in keep and entry.is_file():
                    with contextlib.suppress(OSError):
                        entry.unlink()
                        removed.append(entry)
        return removed
