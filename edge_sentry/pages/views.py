"""The visitor display (`/`), the staff view (`/staff`, `/staff/state`), `/events` and `/health`.

Every response is built from the hub's state, which holds page events only (events.py): nothing
here reads a recorded event, so nothing here can leak one. Handlers run on the pages' own loop and
never touch the gate. `routes` is what the server mounts; another page (the camera aiming page,
aim.py) is a module with routes of its own, mounted beside this one.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tornado.http1connection import HTTP1Connection
from tornado.iostream import StreamClosedError
from tornado.web import RequestHandler

from .context import PageContext, Routes
from .hosts import host_allowed
from .hub import Stream
from .texts import LANGUAGES, UI

#: A comment line this often keeps proxies and the browser from thinking a quiet stream is dead, and
#: lets the server notice a reader that went away.
KEEPALIVE_S = 15.0
#: How soon (ms) a browser's EventSource connects again after the stream ends.
RETRY_MS = 1000
#: Open `/events` streams at once (a display, a staff view or two, their reloads); one more is
#: answered 503, and the page tries again later.
MAX_STREAMS = 16
#: How long one message may take to leave: a reader that stops reading is dropped after this,
#: rather than holding its connection and the messages queued for it.
SEND_TIMEOUT_S = 10.0


class PageHandler(RequestHandler):
    """Common to every page: no caching, no framing, no sniffing, and only requests addressed to the
    sentry itself (hosts.py: a page on another site that a DNS answer points at the sentry must not
    read the staff view)."""

    context: PageContext

    def initialize(self, context: PageContext) -> None:
        self.context = context

    def prepare(self) -> None:
        if not host_allowed(self.request.host, self._came_in_on(), self.context.config.display.hosts):
            self.set_status(403)
            self.finish({"error": "this sentry's pages answer only to its own address or display.hosts"})

    def _came_in_on(self) -> str | None:
        """The local address this request's connection came in on (None when unknown)."""
        connection = self.request.connection
        if isinstance(connection, HTTP1Connection) and connection.stream.socket is not None:
            return str(connection.stream.socket.getsockname()[0])
        return None

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'",
        )

    def settings_json(self, **extra: Any) -> str:
        """The page's settings (and a page's `extra` ones) as JSON for a `<script
        type="application/json">` (not run as code): `</` escaped so a name with `</script>` in it
        cannot end the element."""
        config = self.context.config
        settings: dict[str, Any] = {
            "language": config.display.language,
            "languages": list(LANGUAGES),
            "venue": config.device.venue_name,
            "entrance": config.device.entrance_name,
            "result_ms": int(config.display.result_s * 1000),
            "assist_ms": int(config.gate.assist_window_s * 1000),
            "ui": UI,
            **extra,
        }
        return json.dumps(settings, ensure_ascii=False).replace("</", "<\\/")

    async def start_event_stream(self) -> None:
        """Begin a server-sent events response: its type, the browser's reconnection delay, and
        each message one small write that leaves at once rather than wait for the last one's ACK."""
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        connection = self.request.connection
        if isinstance(connection, HTTP1Connection):
            connection.stream.set_nodelay(True)
        await self.send_event(f"retry: {RETRY_MS}\n\n")

    async def send_event(self, text: str) -> None:
        """Write one message of a stream and wait until it has left, `SEND_TIMEOUT_S` at most
        (TimeoutError past that: a reader that stopped reading)."""
        self.write(text)
        await asyncio.wait_for(self.flush(), SEND_TIMEOUT_S)

    def drop_connection(self) -> None:
        """End a stream now, without waiting for a last write that may never leave (its reader
        stopped, or the stream was ended for it): the browser's EventSource connects again."""
        connection = self.request.connection
        if isinstance(connection, HTTP1Connection):
            connection.close()


class DisplayPage(PageHandler):
    def get(self) -> None:
        self.render("display.html", settings=self.settings_json(), lang=self.context.config.display.language)


class StaffPage(PageHandler):
    def get(self) -> None:
        self.render("staff.html", settings=self.settings_json(), lang=self.context.config.display.language)


class StaffState(PageHandler):
    def get(self) -> None:
        self.finish(self.context.hub.snapshot())


class Health(PageHandler):
    def get(self) -> None:
        report = self.context.hub.health
        if report is None:
            self.set_status(503)
            self.finish({"error": "no health report yet"})
            return
        self.finish(report)


class Events(PageHandler):
    """Server-sent events: one `data:` line of JSON per page event, as soon as the hub has it.
    `?state=1` sends the hub's whole state first (the staff view's starting point).

    A stream ends with its connection closed when its reader stops reading: a message that takes
    longer than `SEND_TIMEOUT_S` to leave, or the hub dropping a stream that lagged too far."""

    events: Stream | None = None

    async def get(self) -> None:
        hub = self.context.hub
        if hub.streams >= MAX_STREAMS:
            self.set_status(503)
            self.set_header("Retry-After", "5")  # as long as stream.js waits before it tries again
            self.finish({"error": "too many open event streams"})
            return
        self.events = stream = hub.open_stream(with_state=self.get_argument("state", "") == "1")
        try:
            await self.start_event_stream()
            while True:
                try:
                    line = await asyncio.wait_for(stream.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    await self.send_event(": keep-alive\n\n")
                    continue
                if line is None:
                    break
                await self.send_event(f"data: {line}\n\n")
        except (StreamClosedError, TimeoutError):
            pass
        finally:
            hub.close_stream(stream)
        self.drop_connection()  # ended by the hub or by a reader that stopped

    def on_connection_close(self) -> None:
        if self.events is not None:
            self.events.offer(None)


def routes(context: PageContext) -> Routes:
    """The pages of this module, for `PageServer.mount`."""
    arg = {"context": context}
    return [
        (r"/", DisplayPage, arg),
        (r"/staff", StaffPage, arg),
        (r"/staff/state", StaffState, arg),
        (r"/events", Events, arg),
        (r"/health", Health, arg),
    ]
