"""The hot loop: frame -> decode -> verify -> gate -> event.

One thread runs it. It never waits on disk or network: events go to `record`, which hands them to the
outbox's bounded in-memory queue and returns at once. Any exception while handling one frame is counted
and the loop goes on; a camera that stops delivering, or a verifier that cannot be used, puts the gate in
its configured fail mode until it recovers.

While the camera aiming page is open (`viewfinder.py`), a frame due for it is handed over after the
gate acted: a downscaled copy a few times a second; while it is closed, one integer is read.

A code held in front of the camera shows up in many consecutive frames: it is decided once, and decided
again only after it has been out of sight for `presentation_gap_s`. Passing the phone back to a friend
takes longer than that, so anti-passback still catches it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import priority
from .camera.base import Frame, FrameSource
from .config import Config
from .errors import CameraError
from .gate import Gate
from .gpio import GateDevices
from .privacy import Sealer
from .verifier import Decision
from .viewfinder import Viewfinder
from .vocabulary import Event, Mode, Reason, Refusal, Verdict

log = logging.getLogger(__name__)

Record = Callable[[dict[str, Any]], dict[str, Any] | None]

# Gate events that the scan events already say: a scan's grant or deny is not recorded twice.
_COVERED_BY_SCAN = {"deny", "grant-refused"}
# Grants that let a person in without a scan: each is a scan event of that mode (docs/protocol.md 4.1).
_PERSON_MODES = {Mode.MANUAL, Mode.EXIT, Mode.ASSISTED}


class Decodes(Protocol):
    def decode(self, y: Any) -> list[Any]: ...


class Verifies(Protocol):
    def verify(self, text: str, now: float) -> Decision: ...

    def record_assisted(self, decision: Decision, now: float) -> None: ...

    def withdraw(self, decision: Decision) -> None: ...


@dataclass
class LoopStats:
    """Counters and recent latencies, read by health reports and the benchmarks."""

    frames: int = 0
    frames_with_codes: int = 0
    decisions: int = 0
    frame_errors: int = 0
    camera_faults: int = 0
    decode_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2048))
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2048))
    priority: int = 0  # the loop's real-time priority while it runs (0: ordinary scheduling)


class Sentry:
    """Owns the gate and turns what the camera sees into decisions and events."""

    def __init__(
        self,
        config: Config,
        source: FrameSource,
        decoder: Decodes,
        verifier: Verifies,
        devices: GateDevices,
        record: Record,
        *,
        presentation_gap_s: float = 1.5,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        on_progress: Callable[[], None] | None = None,
        max_wait_s: float | None = None,
        sealer: Sealer | None = None,
        refusal: Callable[[], str | None] | None = None,
        viewfinder: Viewfinder | None = None,
    ):
        self.config = config
        self.source = source
        self.decoder = decoder
        self.verifier = verifier
        self.record = record
        self.stats = LoopStats()
        self._gap = presentation_gap_s
        self._wall = wall_clock
        self._clock = clock
        self._on_progress = on_progress or (lambda: None)
        # The longest one camera read may hold a turn of the loop: a read waiting out a long
        # `camera.timeout_s` on a dead camera must not starve the watchdog fed once per turn.
        self._max_wait_s = max_wait_s
        self.sealer = sealer
        # Why a valid code must not open the gate right now (None: it may); read per decision.
        self.refusal = refusal or (lambda: None)
        # The camera aiming page's hand-off (display.aim); None when the page is off.
        self.viewfinder = viewfinder
        self._last_seen: dict[bytes, float] = {}
        # The verifier's passback window is plain state, written by `verify` on this loop and by
        # `record_assisted` on whichever thread delivers a staff press: one at a time.
        self._verifier_lock = threading.Lock()
        self._camera_faulted = False
        self._verifier_faulted = False
        self.gate = Gate(config.gate, devices, self._on_gate_event, clock=clock)

    # -- events ---------------------------------------------------------------------------------

    def _base(self, name: str) -> dict[str, Any]:
        device = self.config.device
        return {
            "event": name,
            "t": int(self._wall() * 1000),
            "site": device.site,
            "device": device.id,
            "entrance": device.entrance,
        }

    def _scan_event(
        self,
        decision: Decision | None,
        mode: str,
        latency_ms: float | None,
        *,
        granted: bool | None = None,
    ) -> dict[str, Any]:
        """A scan event (docs/protocol.md 4.1); never the code text, never the subject in clear."""
        if granted is None:
            granted = mode != Mode.SCAN or (decision is not None and decision.accepted)
        reason: str
        if decision is None:
            reason = Reason.OK if mode != Mode.SCAN else Reason.MALFORMED
        else:
            reason = Reason.OK if mode == Mode.ASSISTED else decision.reason
        event = self._base(Event.SCAN)
        event.update(
            mode=mode,
            scheme=decision.scheme if decision else None,
            verdict=Verdict.ACCEPT if granted else Verdict.DENY,
            reason=reason,
            issuer=decision.issuer if decision else None,
            latency_ms=round(latency_ms, 3) if latency_ms is not None else None,
        )
        # Sealed to the health authority, bound to this event's place and time; absent without a key.
        if self.sealer is not None and decision is not None and decision.sub is not None:
            event["subject"] = self.sealer.seal(decision.sub, event)
        return event

    def _on_gate_event(self, name: str, details: dict[str, Any]) -> None:
        """Gate callbacks arrive on gpiozero's threads: keep this short and never raise."""
        try:
            if name == "grant":
                mode = details.get("mode", Mode.SCAN)
                if mode == Mode.SCAN:
                    return  # the hot loop records the scan with its latency
                if mode not in _PERSON_MODES:
                    # A remote pulse or a self-test: a gate event, not somebody's entry.
                    event = self._base(Event.GATE_PULSE)
                    event.update(mode=mode)
                    self.record(event)
                    return
                context = details.get("context")
                decision = context if isinstance(context, Decision) else None
                self.record(self._scan_event(decision, mode, None))
                if mode == Mode.ASSISTED and decision is not None:
                    with self._verifier_lock:
                        self.verifier.record_assisted(decision, self._wall())
                return
            if name in _COVERED_BY_SCAN:
                return
            event = self._base(name)
            event.update({k: v for k, v in details.items() if k != "context"})
            self.record(event)
        except Exception:
            log.exception("could not record gate event %s", name)

    # -- the hot path ---------------------------------------------------------------------------

    def process(self, frame: Frame) -> int:
        """Decide on every new code in one frame; return how many decisions were made."""
        started = self._clock()
        found = self.decoder.decode(frame.y)
        self.stats.decode_ms.append((self._clock() - started) * 1000)
        self.stats.frames += 1
        decided = self._decide_new(found, frame, started) if found else 0
        self._forget_old(started)
        # After the gate acted, and only while an aiming page is open: one integer read otherwise.
        viewfinder = self.viewfinder
        if viewfinder is not None and viewfinder.watched and viewfinder.due(frame):
            viewfinder.offer(frame, [code.position for code in found])
        return decided

    def _decide_new(self, found: list[Any], frame: Frame, started: float) -> int:
        """Decide on the codes of `found` not already decided in this presentation."""
        self.stats.frames_with_codes += 1
        decided = 0
        for code in found:
            text: str = code.text
            key = hashlib.sha256(text.encode()).digest()
            last = self._last_seen.get(key)
            self._last_seen[key] = started
            if last is not None and started - last < self._gap:
                continue  # the same presentation, still in front of the camera
            self._decide(text, frame)
            decided += 1
        return decided

    def _decide(self, text: str, frame: Frame) -> None:
        self.gate.verifying()
        try:
            with self._verifier_lock:
                decision = self.verifier.verify(text, now=self._wall())
        except Exception as exc:
            # Only the type: an exception's message could quote the code text.
            log.error("verifier failed: %s", type(exc).__name__)
            if not self._verifier_faulted:
                self._verifier_faulted = True
                self.gate.set_fault("verifier")
            # Recorded as a malformed code's denial, so shown as one at the gate too.
            self.gate.deny(Reason.MALFORMED)
            self.record(self._scan_event(None, Mode.SCAN, (self._clock() - frame.t) * 1000))
            return
        if self._verifier_faulted:
            self._verifier_faulted = False
            self.gate.clear_fault("verifier")
        if decision.scheme == "vc1":
            # A venue poster in view: never a reason to open the gate; the self-test reads it.
            self.gate.verifying(False)
            event = self._base(Event.VENUE_CODE)
            event.update(reason=decision.reason)
            self.record(event)
            return
        refused: str | None = None
        if decision.accepted:
            refused = self.refusal()
            t_relay = None if refused is not None else self.gate.grant(Mode.SCAN, decision)
            if t_relay is None:
                # The code is good, the entry is not: a policy (stale trust list, unsynchronised
                # clock) or a secure fault says no, and staff decide instead.
                refused = refused or Refusal.FAULT
                self.gate.deny(decision.reason)
                t_relay = self._clock()
                with self._verifier_lock:
                    self.verifier.withdraw(decision)
        elif decision.reason == Reason.ASSIST:
            self.gate.await_assist(decision)
            t_relay = self._clock()
        else:
            self.gate.deny(decision.reason)
            t_relay = self._clock()
        latency = (t_relay - frame.t) * 1000
        self.stats.decisions += 1
        self.stats.latency_ms.append(latency)
        event = self._scan_event(decision, Mode.SCAN, latency, granted=False if refused else None)
        if refused is not None:
            event["refused"] = refused
        self.record(event)

    def _forget_old(self, now: float) -> None:
        """Drop codes out of sight for a whole gap: the map holds only what is in view now."""
        if self._last_seen:
            for k in [k for k, seen in self._last_seen.items() if now - seen >= self._gap]:
                del self._last_seen[k]

    # -- the loop -------------------------------------------------------------------------------

    def _camera_fault(self, why: str) -> None:
        if not self._camera_faulted:
            self._camera_faulted = True
            self.stats.camera_faults += 1
            log.warning("camera fault: %s", why)
            self.gate.set_fault("camera")
            event = self._base(Event.CAMERA_FAULT)
            event.update(cause=why)
            self.record(event)

    def _camera_ok(self) -> None:
        if self._camera_faulted:
            self._camera_faulted = False
            log.info("camera recovered")
            self.gate.clear_fault("camera")
            self.record(self._base(Event.CAMERA_RECOVERED))

    def _heartbeat(self) -> None:
        """One turn of the loop (a frame, a camera timeout or a camera error): feed the watchdog.

        Liveness, not frames: a dead camera is a fault the loop rides out, buttons working, and a
        restart for it would only take the buttons away every watchdog period. Fed from this thread
        alone, so a read or a decode that never returns stops the feeding by itself, with no
        heartbeat to age and no second thread to trust. The gate's own threads are checked too:
        without its relay guard nobody can enter, and a restart brings them back.
        """
        if self.gate.alive:
            self._on_progress()

    def run(self, stop: threading.Event, duration: float | None = None) -> None:
        """Handle frames until `stop` is set or `duration` seconds have passed."""
        cam = self.config.camera
        wait_s = cam.timeout_s if self._max_wait_s is None else min(cam.timeout_s, self._max_wait_s)
        deadline = None if duration is None else self._clock() + duration
        with priority.realtime(self.config.gate.realtime_priority) as got:
            self.stats.priority = got
            self._loop(stop, wait_s, deadline)
        self.stats.priority = 0

    def _loop(self, stop: threading.Event, wait_s: float, deadline: float | None) -> None:
        """The loop itself: a turn per frame, camera timeout or camera error."""
        cam = self.config.camera
        last_frame = self._clock()
        started = False
        while not stop.is_set():
            self._heartbeat()
            now = self._clock()
            if deadline is not None and now >= deadline:
                break
            try:
                if not started:
                    # A camera that cannot open is a fault to wait out, not a reason to exit:
                    # the staff and exit buttons must keep working meanwhile.
                    self.source.start()
                    started = True
                frame = self.source.read(timeout=wait_s)
            except Exception as exc:
                # Camera libraries fail with their own types too (an OSError on a replay folder,
                # a RuntimeError from libcamera): any of them is a camera fault, never the loop's end.
                cause = str(exc) if isinstance(exc, CameraError) else f"{type(exc).__name__}: {exc}"
                self._camera_fault(cause)
                stop.wait(min(wait_s, 1.0))
                continue
            if frame is None:
                if self._clock() - last_frame >= cam.fault_after_s:
                    self._camera_fault(f"no frame for {cam.fault_after_s:g} s")
                continue
            last_frame = self._clock()
            self._camera_ok()
            try:
                self.process(frame)
            except Exception as exc:
                self.stats.frame_errors += 1
                log.warning("frame %d could not be handled: %s", frame.index, type(exc).__name__)

    def close(self) -> None:
        self.gate.close()
        self.source.stop()
