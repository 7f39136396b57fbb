"""The pages' state and the hand-off from the sentry's threads to the pages' event loop.

`publish` is called by the hot loop right after the gate acts (and by the gate's, the outbox's and
the health reporter's threads): it filters the event through the allow-list (`events.page_event`),
appends the result to a bounded deque and sets an event. That is all the caller pays: no I/O, no
lock shared with the server, no exception out of it. The `edge-sentry-pages-handoff` thread, woken
by that event, passes the deque's contents to the server's loop (`call_soon_threadsafe`). Waking the
loop straight from the hot loop would cost the hot loop the loop's whole turn: the wake-up is a
write to the loop's self-pipe, which lets go of the GIL, the woken loop takes it and the hot loop
waits while the event is encoded and sent. Woken through the hand-off thread, that turn runs when
the hot loop next lets go of the GIL by itself (waiting for the next frame, mostly), a millisecond
or so later. Everything else (the recent decisions, the day's counts, the alarms, the latest health
report, the open `/events` streams) lives on the loop's thread alone, so it needs no lock.

A stream whose reader does not keep up (its queue full) is ended rather than let grow: the browser's
EventSource connects again and starts from the current state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from ..vocabulary import Event, Mode, Verdict
from .events import page_event

log = logging.getLogger(__name__)

RECENT = 20
STREAM_QUEUE = 256
#: Page events waiting for the loop: past this many (the pages' thread stalled) the oldest go.
PENDING = 1024
JOIN_TIMEOUT_S = 2.0

#: Events that staff see in the alarm list (the door's plain openings and closings are not alarms).
ALARMS = frozenset(
    {
        Event.DOOR_FORCED,
        Event.DOOR_HELD,
        Event.TAILGATE,
        Event.ASSIST_EXPIRED,
        Event.FAULT,
        Event.CAMERA_FAULT,
        Event.TRUST_INVALID,
        Event.TRUST_STALE,
        Event.CLOCK_UNSYNCED,
        Event.OUTBOX_FULL,
        Event.DISK_LOW,
    }
)

#: Conditions that stay until another event ends them: what staff must still see to.
_RAISES: dict[str, str] = {Event.DOOR_FORCED: "door", Event.DOOR_HELD: "door", Event.CAMERA_FAULT: "camera"}
_CLEARS: dict[str, str] = {Event.DOOR_CLOSED: "door", Event.CAMERA_RECOVERED: "camera"}


def _encode(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class Stream:
    """One open `/events` response: its queue of encoded messages; None in it ends the stream."""

    def __init__(self, size: int = STREAM_QUEUE) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(size)

    def offer(self, line: str | None) -> bool:
        """Queue one message; False (and the stream told to end) when the reader lags too far."""
        try:
            self.queue.put_nowait(line)
            return True
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)
            return False


class PageHub:
    """What the pages show, kept on the pages' loop; fed from any thread through `publish`."""

    def __init__(self, *, wall_clock: Callable[[], float] = time.time) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: deque[tuple[Callable[[dict[str, Any]], None], dict[str, Any]]] = deque(maxlen=PENDING)
        self._wake = threading.Event()
        self._handoff: threading.Thread | None = None
        # One drain at a time waits in the loop's queue, so a stalled loop gathers no pile of them.
        self._drain_scheduled = False
        self._wall = wall_clock
        self._streams: set[Stream] = set()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.alarms: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.open_conditions: dict[str, dict[str, Any]] = {}
        self.faults: dict[str, dict[str, Any]] = {}
        self.health: dict[str, Any] | None = None
        self.day = self._day(self._wall() * 1000)
        self.counts = self._zero()

    # -- any thread -----------------------------------------------------------------------------

    def publish(self, event: dict[str, Any]) -> None:
        """Hand a recorded event to the pages; never blocks, never raises."""
        if self._loop is None:
            return
        try:
            page = page_event(event)
        except Exception:  # an event of an odd shape is not worth a page, nor the caller's trouble
            return
        if page is not None:
            self._pending.append((self.take, page))
            self._wake.set()

    def publish_health(self, report: dict[str, Any]) -> None:
        """The latest health report (from the health reporter's thread); never blocks."""
        if self._loop is None:
            return
        self._pending.append((self.take_health, dict(report)))
        self._wake.set()

    def _pass_on(self) -> None:
        """The hand-off thread: wake the loop for what `publish` left, until detached."""
        while True:
            self._wake.wait()
            self._wake.clear()
            loop = self._loop
            if loop is None:
                return
            if self._drain_scheduled:
                continue  # the drain already waiting will take this too
            self._drain_scheduled = True
            with contextlib.suppress(RuntimeError):  # a closed loop: the server is stopping
                loop.call_soon_threadsafe(self._drain)

    # -- the loop's thread ----------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending.clear()
        self._drain_scheduled = False
        self._handoff = threading.Thread(target=self._pass_on, name="edge-sentry-pages-handoff", daemon=True)
        self._handoff.start()

    def detach(self) -> None:
        """Stop taking events, end every open stream and join the hand-off thread."""
        self._loop = None
        self._wake.set()
        if self._handoff is not None:
            self._handoff.join(JOIN_TIMEOUT_S)
            self._handoff = None
        for stream in list(self._streams):
            stream.offer(None)
        self._streams.clear()

    def _drain(self) -> None:
        self._drain_scheduled = False  # first: whatever comes from here on schedules another
        while self._pending:
            take, item = self._pending.popleft()
            try:
                take(item)
            except Exception:
                log.exception("a page event could not be taken")

    def take(self, page: dict[str, Any]) -> None:
        """Fold one page event into the state and send it to every open stream."""
        self._roll_day(page["t"])
        name = page["event"]
        if name == Event.SCAN:
            self.recent.appendleft(page)
            self._count(page)
        else:
            self._condition(name, page)
            if name in ALARMS:
                self.alarms.appendleft(page)
                self.counts["alarms"][name] = self.counts["alarms"].get(name, 0) + 1
        self._send(_encode(page))

    def take_health(self, report: dict[str, Any]) -> None:
        self.health = report
        self._send(_encode({"event": "health", "t": report.get("t"), "report": report}))

    def snapshot(self) -> dict[str, Any]:
        """The staff view's whole state at this moment (also sent first on a `?state=1` stream)."""
        self._roll_day(self._wall() * 1000)
        return {
            "event": "state",
            "t": int(self._wall() * 1000),
            "day": self.day,
            "recent": list(self.recent),
            "counts": {
                **self.counts,
                "reasons": dict(self.counts["reasons"]),
                "alarms": dict(self.counts["alarms"]),
            },
            "alarms": list(self.alarms),
            "open": list(self.open_conditions.values()) + list(self.faults.values()),
            "health": self.health,
        }

    def open_stream(self, *, with_state: bool) -> Stream:
        stream = Stream()
        if with_state:
            stream.offer(_encode(self.snapshot()))
        self._streams.add(stream)
        return stream

    def close_stream(self, stream: Stream) -> None:
        self._streams.discard(stream)

    @property
    def streams(self) -> int:
        return len(self._streams)

    # -- state ----------------------------------------------------------------------------------

    def _send(self, line: str) -> None:
        for stream in list(self._streams):
            if not stream.offer(line):
                log.info("a page's event stream lagged behind and was ended")
                self._streams.discard(stream)

    @staticmethod
    def _day(t_ms: float) -> str:
        return time.strftime("%Y-%m-%d", time.localtime(t_ms / 1000))

    @staticmethod
    def _zero() -> dict[str, Any]:
        keys = ("decisions", Verdict.ACCEPT, Verdict.DENY, Mode.MANUAL, Mode.EXIT, Mode.ASSISTED)
        counts: dict[str, Any] = {str(k): 0 for k in keys}
        counts["reasons"] = Counter()
        counts["alarms"] = {}
        return counts

    def _roll_day(self, t_ms: float) -> None:
        day = self._day(t_ms)
        if day > self.day:
            self.day = day
            self.counts = self._zero()

    def _count(self, page: dict[str, Any]) -> None:
        counts = self.counts
        counts["decisions"] += 1
        verdict = page["verdict"]
        if verdict in (Verdict.ACCEPT, Verdict.DENY):
            counts[verdict] += 1
        if page["mode"] in (Mode.MANUAL, Mode.EXIT, Mode.ASSISTED):
            counts[page["mode"]] += 1
        if verdict == Verdict.DENY:
            counts["reasons"][page.get("refused") or page["reason"]] += 1

    def _condition(self, name: str, page: dict[str, Any]) -> None:
        if name in _RAISES:
            self.open_conditions[_RAISES[name]] = page
        elif name in _CLEARS:
            self.open_conditions.pop(_CLEARS[name], None)
        elif name == Event.FAULT:
            self.faults[str(page.get("cause", ""))] = page
        elif name == Event.FAULT_CLEARED:
            self.faults.pop(str(page.get("cause", "")), None)
