"""The pages' HTTP server with a cap on connections and an accept loop that survives running out of
file descriptors.

The pages share the sentry's process with the gate, the outbox and the voice, and so its file
descriptors: a client that opens connections and keeps them open must not use them up. Past
`max_connections` open ones, a new connection is accepted and closed at once (the browser's
EventSource connects again later by itself). tornado's own accept loop has no such cap, and when
`accept()` fails for want of descriptors (EMFILE, ENFILE) its error goes up from the loop's callback
at every turn while the listening socket stays readable: the loop spins and logs each attempt. Here
an accept error stops accepting for `ACCEPT_PAUSE_S` instead, and a run of refusals or failures is
logged once a minute at most, with its count, never once per attempt; so are tornado's own lines
about one connection (`ThrottleByKind`), which a client can cause as often as it connects.

What it must never do: block, or raise out of the loop's callback.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream

log = logging.getLogger(__name__)

#: Open connections the pages serve at once: a kiosk, a staff desk or two and their reloads.
MAX_CONNECTIONS = 64
#: How long accepting stops after `accept()` failed (out of file descriptors, say).
ACCEPT_PAUSE_S = 1.0
#: At most one line per this many seconds for a refusal or an accept error that repeats.
LOG_INTERVAL_S = 60.0
#: Connections taken per wake-up of the listening socket, so a burst cannot hold up the loop.
_ACCEPT_BATCH = 32


class Throttled:
    """Something that may happen thousands of times a second, logged at most once per `interval_s`
    with how often it happened since its last line."""

    def __init__(self, message: str, interval_s: float = LOG_INTERVAL_S) -> None:
        self._message = message + " (%d since the last such line)"
        self._interval_s = interval_s
        self._next = float("-inf")
        self._count = 0

    def happened(self, *args: object) -> None:
        self._count += 1
        now = time.monotonic()
        if now >= self._next:
            log.warning(self._message, *args, self._count)
            self._count = 0
            self._next = now + self._interval_s


class ThrottleByKind(logging.Filter):
    """For tornado's own logger: each kind of line (by its format) at most once per `interval_s`.

    tornado logs one line per connection for a malformed request, a request past the limits, a read
    or write that failed: each a client's doing, and a client can cause as many as it opens
    connections. The first of a kind goes through; the next one after the interval says how many
    were left out in between.
    """

    _KINDS = 256  # distinct formats remembered (tornado has a few dozen)

    def __init__(self, interval_s: float = LOG_INTERVAL_S) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._next: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        kind = str(record.msg)
        now = time.monotonic()
        if now < self._next.get(kind, float("-inf")):
            self._left_out[kind] = self._left_out.get(kind, 0) + 1
            return False
        if len(self._next) >= self._KINDS:
            self._next.clear()
        self._next[kind] = now + self._interval_s
        left_out = self._left_out.pop(kind, 0)
        if left_out:
            record.msg = f"{record.msg} (and {left_out} more like it since the last such line)"
        return True


def throttle_tornado_lines() -> None:
    """Install `ThrottleByKind` on tornado's connection logger, once per process."""
    general = logging.getLogger("tornado.general")
    if not any(isinstance(f, ThrottleByKind) for f in general.filters):
        general.addFilter(ThrottleByKind())


class _Acceptor:
    """Accepts connections on one listening socket for `on_connection`, pausing after an error."""

    def __init__(self, sock: socket.socket, on_connection: Callable[[socket.socket, Any], None]) -> None:
        self.sock = sock
        self.on_connection = on_connection
        self.loop = IOLoop.current()
        self.failures = Throttled("cannot accept page connections (%s): paused %g s each time")
        self.paused = 0
        self._paused: object | None = None
        self._stopped = False
        self.loop.add_handler(sock, self._ready, IOLoop.READ)

    def _ready(self, _fd: Any, _events: int) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                connection, address = self.sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue  # gone while it waited in the queue
            except OSError as exc:
                self._pause(exc)
                return
            self.on_connection(connection, address)

    def _pause(self, exc: OSError) -> None:
        self.failures.happened(exc.strerror or exc, ACCEPT_PAUSE_S)
        self.paused += 1
        self.loop.remove_handler(self.sock)
        self._paused = self.loop.call_later(ACCEPT_PAUSE_S, self._resume)

    def _resume(self) -> None:
        self._paused = None
        if not self._stopped:
            self.loop.add_handler(self.sock, self._ready, IOLoop.READ)

    def stop(self) -> None:
        self._stopped = True
        if self._paused is not None:
            self.loop.remove_timeout(self._paused)
            self._paused = None
        else:
            self.loop.remove_handler(self.sock)


class BoundedHTTPServer(HTTPServer):
    """tornado's HTTP server, serving at most `max_connections` connections at once."""

    max_connections = MAX_CONNECTIONS

    def initialize(self, *args: Any, max_connections: int = MAX_CONNECTIONS, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.max_connections = max_connections
        self.open_connections = 0
        self._acceptors: list[_Acceptor] = []
        self._listening: list[socket.socket] = []
        self.refusals = Throttled("page connections at their limit (%d): a new one closed at once")

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        for sock in sockets:
            self._listening.append(sock)
            self._acceptors.append(_Acceptor(sock, self._take))

    def stop(self) -> None:
        for acceptor in self._acceptors:
            acceptor.stop()
        for sock in self._listening:
            sock.close()
        self._acceptors.clear()
        self._listening.clear()
        super().stop()

    def _take(self, connection: socket.socket, address: Any) -> None:
        if self.open_connections >= self.max_connections:
            self.refusals.happened(self.max_connections)
            connection.close()
            return
        try:
            stream = IOStream(
                connection, max_buffer_size=self.max_buffer_size, read_chunk_size=self.read_chunk_size
            )
        except OSError:
            connection.close()
            return
        self.handle_stream(stream, address)

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        self.open_connections += 1
        super().handle_stream(stream, address)

    def on_close(self, server_conn: object) -> None:
        self.open_connections -= 1
        super().on_close(server_conn)
