"""The gate state machine: relay, lights, buzzer, door contact, staff and exit buttons.

The hot path calls `grant` / `deny` right after a verdict; gpiozero calls the door and button
handlers on its own threads; a timer thread ends grant windows, assist windows and held doors.
Nothing here waits on disk or network: events go to `emit`, which should only hand them on
(to a queue), never block.

Locking: one lock guards all gate state. `emit` is never called with that lock held: events are
queued under the lock and delivered afterwards, in order, by one thread at a time, so an `emit`
that calls back into the gate cannot deadlock (its own events are delivered once it returns).
The relay has its own guard thread and lock (`Relay`), taken only inside the gate lock, never the
other way round, so the `max_open_s` bound holds even if the gate logic above it is wrong.

Clock: `clock` must advance with real time (threads wait on the deadlines it gives); it is
injectable so that `grant`'s return value is comparable with the camera's frame timestamps.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpiozero import DeviceClosed, OutputDevice

from .config import GateConfig
from .gpio import GateDevices
from .vocabulary import Event, Mode

log = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any]], None]

JOIN_TIMEOUT_S = 2.0
# Grants decided by a person at the gate (staff, someone leaving): they still open the gate in a
# secure fault, when nothing automatic can be trusted to.
PERSON_MODES = frozenset({Mode.MANUAL, Mode.EXIT, Mode.ASSISTED})


class GateState(enum.StrEnum):
    """What the gate is doing, most urgent first when several hold (alarm > fault > open ...)."""

    ALARM = "alarm"
    FAULT = "fault"
    OPEN = "open"
    VERIFYING = "verifying"
    IDLE = "idle"


class Relay:
    """The only code that switches the strike relay; no stretch "on" outlasts `max_on_s`.

    Callers say what they want (a pulse until some time, or held on while in safe fail mode) and
    the relay follows, but a guard thread cuts any stretch at `max_on_s` and then keeps the relay
    off for `rest_s`, whatever is asked: a strike held energised too long overheats, and a storm
    of overlapping grants or a fault that never clears must not be able to cook it. If the guard
    thread is gone, the relay refuses to switch on at all rather than run unguarded.
    """

    def __init__(
        self,
        device: OutputDevice,
        *,
        max_on_s: float,
        rest_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._device = device
        self._max_on = max_on_s
        self._rest = rest_s
        self._clock = clock
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._guarded = True
        self._pulse_until = -math.inf
        self._held = False
        self._on_since: float | None = None
        self._rest_until = -math.inf
        self.activations = 0
        self.cuts = 0
        self.longest_on_s = 0.0
        device.off()
        self._thread = threading.Thread(target=self._guard, name="edge-sentry-relay-guard", daemon=True)
        self._thread.start()

    @property
    def is_on(self) -> bool:
        with self._cond:
            return self._on_since is not None

    @property
    def guarded(self) -> bool:
        """Whether the guard thread still runs; without it the relay stays off for good."""
        return self._thread.is_alive()

    def pulse(self, seconds: float) -> float | None:
        """Keep the relay on until `seconds` from now (overlapping pulses extend each other).

        Returns the clock value at which the relay is on: right after switching it, now if it was
        already on, or the end of an enforced rest (the relay comes on then, for the whole pulse);
        None if closed.
        """
        with self._cond:
            now = self._clock()
            # a pulse asked for during a rest is served whole once the rest is over
            start = now if self._on_since is not None else max(now, self._rest_until)
            self._pulse_until = max(self._pulse_until, start + seconds)
            t_on = self._settle(now)
            self._cond.notify()
            return t_on

    def cancel_pulse(self) -> None:
        """End any pulse now (the person has passed); a safe-mode hold is left alone."""
        with self._cond:
            self._pulse_until = -math.inf
            self._settle(self._clock())
            self._cond.notify()

    def hold(self) -> None:
        """Keep the strike released until `release()`, in stretches of at most `max_on_s`."""
        with self._cond:
            self._held = True
            self._settle(self._clock())
            self._cond.notify()

    def release(self) -> None:
        """Stop holding; a pulse still running finishes its time."""
        with self._cond:
            self._held = False
            self._settle(self._clock())
            self._cond.notify()

    def close(self) -> None:
        """Switch off for good and join the guard thread."""
        self._stop.set()
        with self._cond:
            self._cond.notify()
        self._thread.join(JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            log.error("relay guard thread did not stop within %.1f s", JOIN_TIMEOUT_S)
        with self._cond:
            self._guarded = False
            self._pulse_until = -math.inf
            self._held = False
            self._settle(self._clock())

    def _settle(self, now: float) -> float | None:
        """Bring the pin in line with what is wanted at `now`; return when it is (will be) on."""
        wanted = self._guarded and (self._held or now < self._pulse_until)
        if self._on_since is not None:
            if not wanted:
                self._switch_off(now)
            elif now - self._on_since >= self._max_on:
                self._switch_off(now)
                self._rest_until = now + self._rest
                self.cuts += 1
                log.warning("relay on for %.2f s: cut, resting %.2f s", self._max_on, self._rest)
            else:
                return now
        if not wanted:
            return None
        if now < self._rest_until:
            return self._rest_until
        self._device.on()
        t_on = self._clock()
        # the stretch is counted from before the switch, so the bound errs on the short side
        self._on_since = now
        self.activations += 1
        return t_on

    def _switch_off(self, now: float) -> None:
        # a closed device has released its pin, which leaves the strike de-energised anyway
        with contextlib.suppress(DeviceClosed):
            self._device.off()
        if self._on_since is not None:
            self.longest_on_s = max(self.longest_on_s, now - self._on_since)
        self._on_since = None

    def _next_wake(self, now: float) -> float | None:
        if self._on_since is not None:
            end = self._on_since + self._max_on
            return end if self._held else min(end, self._pulse_until)
        if self._held or self._pulse_until > now:
            return self._rest_until
        return None

    def _guard(self) -> None:
        with self._cond:
            try:
                while not self._stop.is_set():
                    now = self._clock()
                    self._settle(now)
                    wake = self._next_wake(now)
                    self._cond.wait(None if wake is None else max(0.0, wake - self._clock()))
            except Exception:
                log.exception("relay guard failed: the relay stays off from now on")
            finally:
                self._guarded = False
                if self._on_since is not None:
                    self._switch_off(self._clock())


@dataclass
class _Assist:
    context: object
    until: float


class Gate:
    """The entrance's gate: grants and denials, door supervision, staff and exit buttons, faults.

    Events emitted as (name, detail):
    - "grant" {"mode", "t_relay", "context"}; "grant-refused" {"mode", "reason", "context"};
    - "deny" {"reason"};
    - "door-opened" {}; "door-closed" {"open_s"}; "door-forced" {}; "door-held" {"open_s"};
      "tailgate" {};
    - "assist-expired" {"context"};
    - "fault" {"cause", "fail_mode"}; "fault-cleared" {"cause"}.

    The gate attaches itself to the door and button devices; `close()` detaches it, switches the
    relay and indicators off and joins its threads. Closing the devices is left to their owner.
    """

    def __init__(
        self,
        cfg: GateConfig,
        devices: GateDevices,
        emit: Emit,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cfg = cfg
        self._dev = devices
        self._emit = emit
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._closed = False
        self._pending: deque[tuple[str, dict[str, Any]]] = deque()
        self._delivering = False
        self._deadlines: dict[str, float] = {}
        self._faults: set[str] = set()
        self._alarms: set[str] = set()
        self._verifying = False
        self._window_until: float | None = None
        self._credits = 0  # grants whose person has not opened the door yet
        self._door_open = False
        self._opened_at = 0.0
        self._assist: _Assist | None = None
        self._counters: Counter[str] = Counter()
        self._relay = Relay(
            devices.relay,
            max_on_s=cfg.max_open_s,
            rest_s=cfg.relay_rest_ms / 1000,
            clock=clock,
        )
        self._timers = threading.Thread(target=self._run_timers, name="edge-sentry-gate-timers", daemon=True)
        self._timers.start()
        devices.door.when_deactivated = self._on_door_opened
        devices.door.when_activated = self._on_door_closed
        devices.staff.when_pressed = self._on_staff
        devices.exit.when_pressed = self._on_exit
        with self._lock:
            # A door already open at start is recorded and timed (door-held), but not called
            # forced: nobody saw it open, it may have been open through a restart.
            if not devices.door.is_active and not self._door_open:
                log.warning("door is open at start")
                self._door_opened_locked(self._clock(), classify=False)
        self._deliver()

    # -- the hot path -------------------------------------------------------------------------

    def verifying(self, active: bool = True) -> None:
        """Show that a code is being checked (cleared by grant, deny, await_assist or False)."""
        with self._lock:
            self._verifying = active and not self._closed

    def grant(self, mode: str = Mode.SCAN, context: object | None = None) -> float | None:
        """Release the strike for one person; return the clock value once the relay is on.

        The relay is switched before anything else (lights, buzzer, events), so the returned
        value ends the frame -> relay latency. Returns None when the grant is refused: in a secure
        fault for any mode but a person's (`manual`, `exit`, `assisted`), after `close()`, or if
        the relay guard is gone. A refusal emits "grant-refused" and shows nothing: the caller
        knows why it asked and follows up with `deny(...)`.
        """
        with self._lock:
            t_relay = self._grant_locked(mode, context)
        self._deliver()
        return t_relay

    def deny(self, reason: str) -> None:
        """Red light and long beep; the relay is not touched."""
        with self._lock:
            if self._closed:
                return
            self._verifying = False
            self._counters["denies"] += 1
            self._show_deny()
            self._queue("deny", reason=reason)
        self._deliver()

    def await_assist(self, context: object) -> None:
        """A valid paper code needs staff: a staff press within the assist window grants it.

        The press grants with mode "assisted" and carries `context` back in the grant event so
        the caller can complete the scan event; if the window passes, "assist-expired" carries
        it instead. A newer request replaces (and expires) an older one still waiting.
        """
        with self._lock:
            if self._closed:
                return
            self._verifying = False
            if self._assist is not None:
                self._expire_assist()
            self._assist = _Assist(context, self._clock() + self._cfg.assist_window_s)
            self._set_deadline("assist", self._assist.until)
        self._deliver()

    # -- faults -------------------------------------------------------------------------------

    def set_fault(self, cause: str) -> None:
        """Enter fail mode for `cause` (several causes may be active; repeats are ignored).

        "secure": scan grants are refused, staff and exit buttons still open; a pulse already
        running finishes. "safe": the strike is held released (in bounded stretches) until the
        last cause clears.
        """
        with self._lock:
            if self._closed or cause in self._faults:
                return
            self._faults.add(cause)
            self._counters["faults"] += 1
            self._queue(Event.FAULT, cause=cause, fail_mode=self._cfg.fail_mode)
            if self._cfg.fail_mode == "safe" and len(self._faults) == 1:
                self._relay.hold()
        self._deliver()

    def clear_fault(self, cause: str) -> None:
        """End fail mode for `cause`; the gate leaves fail mode when no cause is left."""
        with self._lock:
            if cause not in self._faults:
                return
            self._faults.discard(cause)
            self._queue(Event.FAULT_CLEARED, cause=cause)
            if self._cfg.fail_mode == "safe" and not self._faults:
                self._relay.release()
        self._deliver()

    # -- reading ------------------------------------------------------------------------------

    @property
    def state(self) -> GateState:
        with self._lock:
            return self._state_locked(self._clock())

    def snapshot(self) -> dict[str, Any]:
        """A plain dict for health reports: state, faults, alarms, counters, relay figures."""
        with self._lock:
            now = self._clock()
            return {
                "state": str(self._state_locked(now)),
                "fail_mode": self._cfg.fail_mode,
                "faults": sorted(self._faults),
                "alarms": sorted(self._alarms),
                "door_open": self._door_open,
                "relay_on": self._relay.is_on,
                "grants_waiting": self._credits if self._window_active(now) else 0,
                "assist_waiting": self._assist is not None,
                "counters": dict(self._counters),
                "relay": {
                    "activations": self._relay.activations,
                    "cuts": self._relay.cuts,
                    "longest_on_s": round(self._relay.longest_on_s, 3),
                },
            }

    @property
    def alive(self) -> bool:
        """Whether the timer and relay-guard threads still run (they end only on `close` or a bug).

        Lock-free, cheap enough for every turn of the hot loop, which feeds the watchdog only while
        this holds: a gate that can no longer time its windows or switch its relay needs a restart.
        """
        return self._timers.is_alive() and self._relay.guarded

    def close(self) -> None:
        """Detach from the devices, switch relay and indicators off, join the threads."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            self._wake.notify_all()
            self._assist = None
            self._credits = 0
        self._detach()
        self._timers.join(JOIN_TIMEOUT_S)
        if self._timers.is_alive():
            log.error("gate timer thread did not stop within %.1f s", JOIN_TIMEOUT_S)
        self._relay.close()
        with self._lock:
            for key in ("green", "red", "buzzer"):
                self._indicator(key, on=False)
        self._deliver()

    def _detach(self) -> None:
        # only the handlers this gate set (gpiozero warns about clearing one that is not set,
        # which happens when the owner closed the devices first)
        attached = [
            (self._dev.door, "when_activated"),
            (self._dev.door, "when_deactivated"),
            (self._dev.staff, "when_pressed"),
            (self._dev.exit, "when_pressed"),
        ]
        for device, handler in attached:
            if getattr(device, handler) is not None:
                setattr(device, handler, None)

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals (all *_locked methods run with the lock held) --------------------------------

    def _grant_locked(self, mode: str, context: object | None) -> float | None:
        if self._closed:
            return None
        if self._faults and self._cfg.fail_mode == "secure" and mode not in PERSON_MODES:
            self._refuse_locked(mode, "fault", context)
            return None
        t_relay = self._relay.pulse(self._cfg.pulse_ms / 1000)
        if t_relay is None:
            log.error("grant %s refused: the relay guard is not running", mode)
            self._refuse_locked(mode, "relay", context)
            return None
        self._verifying = False
        self._credits += 1
        self._window_until = max(t_relay, self._clock()) + self._cfg.grant_window_s
        self._set_deadline("grant-window", self._window_until)
        self._show_accept()
        self._counters[f"grants_{mode}"] += 1
        self._queue("grant", mode=mode, t_relay=t_relay, context=context)
        return t_relay

    def _refuse_locked(self, mode: str, reason: str, context: object | None) -> None:
        self._verifying = False
        self._counters["grants_refused"] += 1
        self._queue("grant-refused", mode=mode, reason=reason, context=context)

    def _on_staff(self) -> None:
        with self._lock:
            assist = self._assist
            if assist is not None and self._clock() < assist.until:
                self._assist = None
                self._deadlines.pop("assist", None)
                self._grant_locked(Mode.ASSISTED, assist.context)
            else:
                self._grant_locked(Mode.MANUAL, None)
        self._deliver()

    def _on_exit(self) -> None:
        self.grant(Mode.EXIT)

    def _on_door_opened(self) -> None:
        with self._lock:
            if not self._closed:
                self._door_opened_locked(self._clock(), classify=True)
        self._deliver()

    def _door_opened_locked(self, now: float, *, classify: bool) -> None:
        if self._door_open:
            return
        self._door_open = True
        self._opened_at = now
        self._counters["door_openings"] += 1
        self._set_deadline(Event.DOOR_HELD, now + self._cfg.held_open_s)
        self._queue(Event.DOOR_OPENED)
        if not classify:
            return
        if self._window_active(now):
            if self._credits > 0:
                self._credits -= 1
            else:
                # the door already opened once for the grants of this window: someone follows
                self._counters["tailgates"] += 1
                self._queue(Event.TAILGATE)
        elif self._faults and self._cfg.fail_mode == "safe":
            pass  # the gate is deliberately released: opening it is not forcing it
        else:
            self._alarms.add(Event.DOOR_FORCED)
            self._counters["door_forced"] += 1
            self._queue(Event.DOOR_FORCED)

    def _on_door_closed(self) -> None:
        with self._lock:
            if self._closed or not self._door_open:
                return
            open_s = self._clock() - self._opened_at
            self._door_open = False
            self._deadlines.pop(Event.DOOR_HELD, None)
            self._alarms.clear()  # both door alarms end with the door shut
            self._queue(Event.DOOR_CLOSED, open_s=round(open_s, 3))
            if self._credits == 0:
                # nobody else is waiting to pass: lock again now rather than at the pulse's end
                self._relay.cancel_pulse()
        self._deliver()

    def _expire_assist(self) -> None:
        if self._assist is None:
            return
        self._counters["assists_expired"] += 1
        self._queue(Event.ASSIST_EXPIRED, context=self._assist.context)
        self._assist = None
        self._deadlines.pop("assist", None)

    def _expire(self, name: str, now: float) -> None:
        if name.endswith("-off"):
            self._indicator(name.removesuffix("-off"), on=False)
        elif name == "grant-window":
            self._counters["grants_unused"] += self._credits
            self._credits = 0
            self._window_until = None
        elif name == Event.DOOR_HELD:
            if self._door_open and Event.DOOR_HELD not in self._alarms:
                self._alarms.add(Event.DOOR_HELD)
                self._counters["door_held"] += 1
                self._queue(Event.DOOR_HELD, open_s=round(now - self._opened_at, 3))
        elif name == "assist" and self._assist is not None:
            self._expire_assist()

    def _window_active(self, now: float) -> bool:
        return self._window_until is not None and now < self._window_until

    def _state_locked(self, now: float) -> GateState:
        if self._alarms:
            return GateState.ALARM
        if self._faults:
            return GateState.FAULT
        if self._door_open or self._relay.is_on or (self._credits and self._window_active(now)):
            return GateState.OPEN
        if self._verifying:
            return GateState.VERIFYING
        return GateState.IDLE

    def _show_accept(self) -> None:
        self._signal("green", "red", self._cfg.beep_accept_ms)

    def _show_deny(self) -> None:
        self._signal("red", "green", self._cfg.beep_deny_ms)

    def _signal(self, light: str, other: str, beep_ms: int) -> None:
        # Switched here and ended by the timer thread: gpiozero's blink() would start (and join)
        # a thread per call, milliseconds the hot path cannot spare.
        now = self._clock()
        self._indicator(other, on=False)
        self._indicator(light, on=True)
        self._set_deadline(f"{light}-off", now + self._cfg.light_ms / 1000)
        if beep_ms > 0:
            self._indicator("buzzer", on=True)
            self._set_deadline("buzzer-off", now + beep_ms / 1000)

    def _indicator(self, key: str, *, on: bool) -> None:
        device = getattr(self._dev, key)
        if on:
            device.on()
        else:
            self._deadlines.pop(f"{key}-off", None)
            with contextlib.suppress(DeviceClosed):  # closed by its owner: dark anyway
                device.off()

    def _set_deadline(self, name: str, at: float) -> None:
        self._deadlines[name] = at
        self._wake.notify()

    def _queue(self, name: str, **detail: Any) -> None:
        self._pending.append((name, detail))

    # -- threads ------------------------------------------------------------------------------

    def _run_timers(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._wait_and_expire()
            self._deliver()

    def _wait_and_expire(self) -> None:
        """Wait (the lock is free while waiting) until a deadline passes, then act on it."""
        while not self._stop.is_set():
            now = self._clock()
            due = sorted((at, name) for name, at in self._deadlines.items() if at <= now)
            if due:
                for _, name in due:
                    if self._deadlines.get(name, math.inf) > now:
                        continue  # an earlier expiry in this batch moved or dropped it
                    del self._deadlines[name]
                    try:
                        self._expire(name, now)
                    except Exception:  # one failing device must not stop every later timer
                        log.exception("gate timer %s failed", name)
                return
            soonest = min(self._deadlines.values(), default=None)
            self._wake.wait(None if soonest is None else soonest - now)

    def _deliver(self) -> None:
        """Hand queued events to `emit` in order, outside the lock, by one thread at a time."""
        with self._lock:
            if self._delivering:
                return
            self._delivering = True
        try:
            while True:
                with self._lock:
                    if not self._pending:
                        self._delivering = False
                        return
                    name, detail = self._pending.popleft()
                try:
                    self._emit(name, detail)
                except Exception:
                    log.exception("emit of gate event %s failed", name)
        except BaseException:
            with self._lock:
                self._delivering = False
            raise
