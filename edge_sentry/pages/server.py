"""The pages' web server: tornado on a thread and an event loop of its own, beside the hot loop.

`start` binds the listening sockets on the caller's thread, so a port that is taken or an address
that is not this machine's is known at once (`PagesUnavailable`: the daemon logs it and runs
without pages), then serves on the `edge-sentry-pages` thread. Handler modules are mounted with
`mount(routes)` before `start`; each gives its own URL rules for a `PageContext`.

What it must never do: make the gate wait. The only way in from the sentry is the hub's
`publish`, a non-blocking hand-off to this loop; the server holds no lock the gate takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Iterable
from pathlib import Path

from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from ..config import Config, loopback_host, parse_listen
from ..errors import PagesUnavailable
from . import views
from .context import PageContext, RouteSource
from .hub import PageHub
from .listener import BoundedHTTPServer, throttle_tornado_lines

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
JOIN_TIMEOUT_S = 2.0
_CLOSE_TIMEOUT_S = 1.0

#: The pages take no request bodies: a request announcing more than this is refused (400) from its
#: headers, before a byte of its body is read. tornado's default (100 MB, read into memory before any
#: handler runs) is more than the whole service may use (MemoryMax=300M).
MAX_BODY_BYTES = 1024
#: What one connection may hold in its read buffer at once, and the size of a request's headers.
MAX_BUFFER_BYTES = 64 * 1024
MAX_HEADER_BYTES = 8 * 1024
#: A connection with no request in progress is closed after this long; a body that takes longer
#: than BODY_TIMEOUT_S to arrive is given up.
IDLE_TIMEOUT_S = 30.0
BODY_TIMEOUT_S = 10.0


def _log_request(handler: RequestHandler) -> None:
    """Failures only: a kiosk reloading its page, or a stream opening, is not news for the journal;
    nor is a 503, a refusal by design (too many streams, no health report yet) that a client can
    ask for as often as it likes."""
    status = handler.get_status()
    if status >= 500 and status != 503:
        log.warning("%d %s", status, handler.request.path)
    else:
        log.debug("%d %s", status, handler.request.path)


class PageServer:
    """Serves the mounted handler modules on `display.listen` until `stop`."""

    def __init__(self, config: Config, hub: PageHub, routes: Iterable[RouteSource] = (views.routes,)):
        self.config = config
        self.hub = hub
        self._sources: list[RouteSource] = list(routes)
        self._sockets: list[socket.socket] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._http: BoundedHTTPServer | None = None
        self.address: tuple[str, int] | None = None

    def mount(self, source: RouteSource) -> None:
        """Add a handler module's routes (before `start`)."""
        if self._thread is not None:
            raise RuntimeError("mount handler modules before the server starts")
        self._sources.append(source)

    @property
    def url(self) -> str:
        if self.address is None:
            raise RuntimeError("the page server is not running")
        host, port = self.address
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}"

    @property
    def connections(self) -> int:
        """Connections open now (0 before the server starts)."""
        return 0 if self._http is None else self._http.open_connections

    def start(self, timeout: float = 5.0) -> tuple[str, int]:
        """Bind and serve; the (host, port) served (the port the system chose for port 0)."""
        listen = self.config.display.listen
        parsed = parse_listen(listen)
        if parsed is None:
            raise PagesUnavailable(f"display.listen {listen!r} is not HOST:PORT")
        host, port = parsed
        try:
            self._sockets = bind_sockets(port, address=host)
        except OSError as exc:
            raise PagesUnavailable(f"cannot listen on {listen}: {exc.strerror or exc}") from None
        bound = self._sockets[0].getsockname()
        self.address = (str(bound[0]), int(bound[1]))
        context = PageContext(self.config, self.hub, loopback=loopback_host(host))
        rules = [rule for source in self._sources for rule in source(context)]
        app = Application(
            rules,
            static_path=str(STATIC),
            template_path=str(TEMPLATES),
            compress_response=False,
            xsrf_cookies=False,
            log_function=_log_request,
        )
        throttle_tornado_lines()
        self._thread = threading.Thread(target=self._run, args=(app,), name="edge-sentry-pages", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._failed is not None:
            self.stop()
            raise PagesUnavailable(f"the page server did not start: {self._failed!r}")
        return self.address

    def _run(self, app: Application) -> None:
        try:
            asyncio.run(self._serve(app))
        except BaseException as exc:  # never silently: the daemon logged a start, log the end
            self._failed = exc
            log.exception("the page server stopped")
            self._ready.set()

    async def _serve(self, app: Application) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._http = server = BoundedHTTPServer(
            app,
            xheaders=False,
            max_body_size=MAX_BODY_BYTES,
            max_buffer_size=MAX_BUFFER_BYTES,
            max_header_size=MAX_HEADER_BYTES,
            idle_connection_timeout=IDLE_TIMEOUT_S,
            body_timeout=BODY_TIMEOUT_S,
        )
        server.add_sockets(self._sockets)
        self.hub.attach(self._loop)
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            self.hub.detach()  # ends every open /events stream
            server.stop()
            try:
                await asyncio.wait_for(server.close_all_connections(), _CLOSE_TIMEOUT_S)
            except TimeoutError:
                log.warning("page connections still open at stop")

    def stop(self, timeout: float = JOIN_TIMEOUT_S) -> None:
        """Stop serving and join the thread (bounded: a stuck page never holds up the daemon's stop)."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("the page server did not stop within %.1f s", timeout)
        if self._thread is None:
            for sock in self._sockets:
                sock.close()
