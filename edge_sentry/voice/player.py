"""Playing prompts beside the hot loop: a one-place hand-over, a player thread, and the sinks.

The hot loop (and the gate's callback threads) hand a prompt over with `Player.offer`, which takes
a lock held only by O(1) steps and returns at once: it never waits for a prompt to end, for a
device, or for the player thread. The hand-over holds one prompt: a newer outcome replaces one that
has not started yet (the replaced one is counted as dropped), so a burst of decisions never builds a
backlog of stale sentences and the latest outcome is what the visitor hears next.

Sinks, chosen by `voice.output` like the pin factory: `AplaySink` runs `aplay` (Debian's
`alsa-utils`) on the configured ALSA device with a timeout per prompt; `SimulatedSink` records what
it would have played (the demo, tests, a machine without a speaker). A sink that fails (no aplay, no
device, a busy device) is logged once per distinct problem and the gate goes on, silent.

What it must never do: block `offer`; hold its lock while a prompt plays; let a player problem
reach the caller of `offer`.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import VoiceError
from .prompts import Prompt
from .render import FILE_NAME

log = logging.getLogger(__name__)

APLAY = "aplay"
#: Time allowed beyond a prompt's own length before its aplay is cut (device opening, buffering).
PLAY_MARGIN_S = 3.0
_JOIN_S = 2.0


class Sink(Protocol):
    """Where a rendered prompt is played."""

    def play(self, path: Path, timeout_s: float) -> None:
        """Play the WAV file to its end; VoiceError when it cannot."""

    def interrupt(self) -> None:
        """Cut a prompt that is playing (at a stop); never raises."""


class SimulatedSink:
    """Records what it would play, in order; plays nothing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._played: list[Path] = []

    def play(self, path: Path, timeout_s: float) -> None:
        with self._lock:
            self._played.append(path)

    def interrupt(self) -> None:
        pass

    @property
    def played(self) -> list[Path]:
        with self._lock:
            return list(self._played)

    def prompts(self) -> list[str]:
        """What was played, by prompt name (from the rendered files' names)."""
        names = []
        for path in self.played:
            found = FILE_NAME.match(path.name)
            names.append(found["prompt"] if found else path.name)
        return names


class AplaySink:
    """`aplay -q -D DEVICE FILE` per prompt, cut after its timeout; one prompt at a time."""

    def __init__(self, device: str, program: str = APLAY):
        self.device = device
        self.program = program
        self._lock = threading.Lock()  # one aplay at a time: an ALSA hw device takes one opener
        self._current: subprocess.Popen[bytes] | None = None

    def play(self, path: Path, timeout_s: float) -> None:
        with self._lock:
            try:
                process = subprocess.Popen(
                    [self.program, "-q", "-D", self.device, str(path)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                )  # fmt: skip
            except FileNotFoundError:
                raise VoiceError(
                    f"{self.program} not found: install Debian's alsa-utils package to play prompts"
                ) from None
            except OSError as exc:
                raise VoiceError(f"cannot start {self.program}: {exc}") from None
            self._current = process
            try:
                _, err = process.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                raise VoiceError(
                    f"{self.program} on {self.device!r} took over {timeout_s:.1f} s: cut"
                ) from None
            finally:
                self._current = None
            if process.returncode != 0:
                said = err.decode(errors="replace").strip().splitlines()
                last = said[-1] if said else f"exit {process.returncode}"
                raise VoiceError(f"{self.program} could not play on {self.device!r}: {last}")

    def interrupt(self) -> None:
        process = self._current
        if process is not None and process.poll() is None:
            with contextlib.suppress(OSError):
                process.kill()


@dataclass
class PlayerStats:
    offered: int = 0
    played: int = 0
    dropped: int = 0  # replaced before they began: a newer outcome came first
    failed: int = 0  # the sink refused, or the prompt had no file


class Player:
    """The `edge-sentry-voice` thread: prepares, then plays whatever `offer` left in its slot."""

    def __init__(
        self,
        sink: Sink,
        locate: Callable[[Prompt], tuple[Path, float] | None],
        *,
        prepare: Callable[[], object] | None = None,
    ):
        """`locate(prompt)` gives the prompt's file and length, or None when it has none (not
        rendered); `prepare` runs first on the thread (rendering what is missing)."""
        self.sink = sink
        self.stats = PlayerStats()
        self._locate = locate
        self._prepare = prepare
        self._cond = threading.Condition(threading.Lock())
        self._slot: Prompt | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._problem: str | None = None

    def offer(self, prompt: Prompt) -> None:
        """Hand a prompt over and return at once; replaces one still waiting (latest wins)."""
        with self._cond:
            self.stats.offered += 1
            if self._slot is not None:
                self.stats.dropped += 1
            self._slot = prompt
            self._cond.notify()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="edge-sentry-voice", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = _JOIN_S) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify()
        self.sink.interrupt()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _take(self) -> Prompt | None:
        with self._cond:
            while self._slot is None and not self._stop.is_set():
                self._cond.wait(1.0)
            prompt, self._slot = self._slot, None
            return prompt

    def _run(self) -> None:
        if self._prepare is not None:
            try:
                self._prepare()
            except Exception:
                log.exception("voice: preparing the prompts failed")
        while not self._stop.is_set():
            prompt = self._take()
            if prompt is None or self._stop.is_set():
                continue
            self.play_now(prompt)

    def play_now(self, prompt: Prompt) -> bool:
        """Play one prompt on the calling thread (the player's, or `voice play`); never raises."""
        try:
            found = self._locate(prompt)
            if found is None:
                raise VoiceError(f"prompt {prompt} is not rendered (edge-sentry voice render)")
            path, seconds = found
            self.sink.play(path, seconds + PLAY_MARGIN_S)
        except VoiceError as exc:
            self.stats.failed += 1
            self._report(str(exc))
            return False
        except Exception as exc:
            self.stats.failed += 1
            self._report(f"playing failed: {type(exc).__name__}: {exc}")
            return False
        self.stats.played += 1
        if self._problem is not None:
            log.info("voice: playing again (after: %s)", self._problem)
            self._problem = None
        return True

    def _report(self, problem: str) -> None:
        """Once per distinct problem: a device that stays missing must not flood the journal."""
        if problem != self._problem:
            log.warning("voice: %s; the gate works on without sound", problem)
            self._problem = problem
