"""The camera aiming page for technicians: `/aim` and its picture stream `/aim/stream`.

Served only while `display.aim = true` (the daemon then hands `routes` a `Viewfinder`); otherwise
both paths answer 404 saying how to turn the page on. The stream is server-sent events, like
`/events`: one `data:` line per new picture (`picture.py`: a greyscale JPEG, the codes' corner
points, frame rate, exposure and sharpness), so the browser's EventSource reconnects by itself and
the page needs no second channel for its meters.

Frames leave the sentry only here, and only while a stream is open: opening one is what makes the
hot loop hand pictures over (`Viewfinder.watch`), and its end, however it ends (the page closed, the
connection dropped, the server stopping), stops them (`unwatch`). Each stream looks at the
viewfinder's slot at its own pace and sends the newest picture it has not sent; a slow reader skips
pictures instead of queueing them. Every picture is encoded once, on a worker thread that exists
only while somebody watches, whatever the number of pages open.

What it must never do: make the hot loop wait (it never wakes this side: the streams look at the
slot), send a code's text (only corner points reach here), or serve more than MAX_VIEWERS streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

from tornado.iostream import StreamClosedError

from ..viewfinder import Viewfinder
from . import picture
from .context import PageContext, Routes, RouteSource
from .views import KEEPALIVE_S, PageHandler

log = logging.getLogger(__name__)

#: Open aiming streams at most: each is a picture stream out of the device; a technician needs one.
MAX_VIEWERS = 4
OFF_MESSAGE = "The camera aiming page is off: set display.aim = true in the sentry's config and restart it."


class AimFeed:
    """The pages' side of the viewfinder: the newest snapshot encoded once for every open stream.

    Lives on the pages' loop; `open` and `close` bracket each stream.
    """

    def __init__(self, viewfinder: Viewfinder) -> None:
        self.viewfinder = viewfinder
        self.streams = 0
        self._encoded: tuple[int, str] | None = None
        self._encoding: asyncio.Lock | None = None
        self._worker: ThreadPoolExecutor | None = None

    @property
    def interval(self) -> float:
        return self.viewfinder.interval

    def open(self) -> bool:
        """A stream starts: False (and nothing changed) when MAX_VIEWERS are open already."""
        if self.streams >= MAX_VIEWERS:
            return False
        if self.streams == 0:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="edge-sentry-aim")
            self._encoding = asyncio.Lock()
        self.streams += 1
        self.viewfinder.watch()
        return True

    def close(self) -> None:
        """A stream ended: after the last one, no picture is taken, kept or encoded."""
        self.viewfinder.unwatch()
        self.streams -= 1
        if self.streams == 0:
            self._encoded = None
            if self._worker is not None:
                self._worker.shutdown(wait=False)  # an encoding under way finishes on its own
                self._worker = None

    async def latest(self) -> tuple[int, str] | None:
        """(seq, message line) of the newest picture; None until the hot loop has handed one over."""
        snapshot = self.viewfinder.latest
        worker, encoding = self._worker, self._encoding
        if snapshot is None or worker is None or encoding is None:
            return None
        async with encoding:  # two streams waiting on one new picture encode it once
            encoded = self._encoded
            if encoded is None or encoded[0] != snapshot.seq:
                line = await asyncio.get_running_loop().run_in_executor(worker, picture.encode, snapshot)
                encoded = self._encoded = (snapshot.seq, line)
            return encoded


class AimHandler(PageHandler):
    feed: AimFeed | None

    def initialize(self, context: PageContext, feed: AimFeed | None = None) -> None:
        super().initialize(context)
        self.feed = feed

    def refuse_off(self) -> bool:
        """Answer 404 with how to turn the page on, when it is off; True if so."""
        if self.feed is not None:
            return False
        self.set_status(404)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(OFF_MESSAGE + "\n")
        return True


class AimPage(AimHandler):
    def get(self) -> None:
        if self.refuse_off():
            return
        assert self.feed is not None
        settings = self.settings_json(aim_fps=round(1 / self.feed.interval, 2))
        self.render("aim.html", settings=settings)


class AimStream(AimHandler):
    """Server-sent events: `{"event": "aim", ...}` per new picture while the connection is open."""

    def initialize(self, context: PageContext, feed: AimFeed | None = None) -> None:
        super().initialize(context, feed)
        self.closed = asyncio.Event()

    async def get(self) -> None:
        if self.refuse_off():
            return
        feed = self.feed
        assert feed is not None
        if not feed.open():
            self.set_status(503)
            self.finish({"error": f"{MAX_VIEWERS} aiming pages are open already"})
            return
        try:
            await self._send(feed)
        except (StreamClosedError, TimeoutError):  # gone, or stopped reading (views.SEND_TIMEOUT_S)
            pass
        finally:
            feed.close()
        self.drop_connection()

    async def _send(self, feed: AimFeed) -> None:
        await self.start_event_stream()
        loop = asyncio.get_running_loop()
        sent, quiet_since = 0, loop.time()
        # Looked at twice per picture interval: a picture waits half an interval at most.
        poll = feed.interval / 2
        while not self.closed.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closed.wait(), poll)
            if self.closed.is_set():
                break
            latest = await feed.latest()
            if latest is not None and latest[0] != sent:
                sent = latest[0]
                # A slow reader holds up its own stream only, and skips pictures; one that stops
                # reading is dropped, and its viewer's place with it.
                await self.send_event(f"data: {latest[1]}\n\n")
                quiet_since = loop.time()
            elif loop.time() - quiet_since >= KEEPALIVE_S:
                await self.send_event(": keep-alive\n\n")
                quiet_since = loop.time()

    def on_connection_close(self) -> None:
        self.closed.set()

    def on_finish(self) -> None:
        self.closed.set()


def routes(viewfinder: Viewfinder | None) -> RouteSource:
    """The aiming page's routes for `PageServer.mount`; with no viewfinder (display.aim off) they
    answer 404."""

    def source(context: PageContext) -> Routes:
        arg = {"context": context, "feed": AimFeed(viewfinder) if viewfinder is not None else None}
        return [(r"/aim", AimPage, arg), (r"/aim/stream", AimStream, arg)]

    return source
