"""Helpers for the pages' tests: a page server on a port of its own, a daemon running in a thread,
and a reader of the `/events` stream.

Every server here listens on `127.0.0.1:0`, so the system hands it a free port and no two tests (nor
two workers on one machine) ever contend for one; the port is read back from the running server.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge_sentry.config import Config, from_mapping
from edge_sentry.daemon import Daemon
from edge_sentry.pages.context import RouteSource
from edge_sentry.pages.hub import PageHub
from edge_sentry.pages.server import PageServer

ANY_PORT = "127.0.0.1:0"
#: The longest a test waits for something the sentry does at once (a guard against hanging, never
#: an assertion about speed).
PATIENCE_S = 20.0


def page_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    """A local sentry's config (mock pins, folders under tmp_path) serving its pages on a free port."""
    mapping: dict[str, Any] = {
        "device": {
            "state_dir": str(tmp_path / "state"),
            "site": "s1",
            "id": "sentry-1",
            "venue_name": "Harbour Arena",
            "entrance_name": "North gate",
        },
        "gpio": {"pin_factory": "mock"},
        "outbox": {"path": str(tmp_path / "outbox")},
        "display": {"listen": ANY_PORT},
    }
    for name, keys in sections.items():
        mapping[name] = {**mapping.get(name, {}), **keys}
    return from_mapping(mapping)


@contextlib.contextmanager
def page_server(config: Config, *mount: RouteSource) -> Iterator[tuple[PageServer, PageHub]]:
    """A page server alone (no daemon), for publishing page events straight into its hub; `mount`
    adds handler modules' routes (the aiming page's, say)."""
    hub = PageHub()
    server = PageServer(config, hub)
    for source in mount:
        server.mount(source)
    server.start()
    try:
        yield server, hub
    finally:
        server.stop()


@contextlib.contextmanager
def running_daemon(config: Config, *, log: io.StringIO | None = None) -> Iterator[Daemon]:
    """The real daemon, run in a thread until the block ends; yielded once its hot loop runs."""
    daemon = Daemon(config, stream=log if log is not None else io.StringIO(), clock_probe=lambda: True)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            daemon.run()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name="test-daemon", daemon=True)
    thread.start()
    deadline = time.monotonic() + PATIENCE_S
    while daemon.sentry is None or daemon.sentry.stats.frames == 0:  # frames: the hot loop runs
        if failure or time.monotonic() > deadline:
            daemon.stop_event.set()
            thread.join(PATIENCE_S)
            raise RuntimeError(f"the daemon did not start: {failure!r}")
        time.sleep(0.02)
    try:
        yield daemon
    finally:
        daemon.stop_event.set()
        thread.join(PATIENCE_S)
        assert not thread.is_alive(), "the daemon did not stop"
        if failure:
            raise failure[0]


class EventStream:
    """An open `GET /events` (plain HTTP, as a browser's EventSource makes it): its `data:` lines."""

    def __init__(self, host: str, port: int, path: str = "/events") -> None:
        self.conn = http.client.HTTPConnection(host, port, timeout=PATIENCE_S)
        self.conn.request("GET", path, headers={"Accept": "text/event-stream"})
        self.response = self.conn.getresponse()
        self.raw: list[bytes] = []

    def next(self) -> dict[str, Any]:
        """The next message's JSON (keep-alive comments and `retry:` skipped)."""
        while True:
            line = self.response.readline()
            if not line:
                raise EOFError("the stream ended")
            self.raw.append(line)
            if line.startswith(b"data: "):
                decoded: dict[str, Any] = json.loads(line[len(b"data: ") :])
                return decoded

    def until(self, predicate: Any) -> list[dict[str, Any]]:
        """Messages up to and including the first one `predicate` accepts."""
        seen = []
        while True:
            message = self.next()
            seen.append(message)
            if predicate(message):
                return seen

    def close(self) -> None:
        self.conn.close()
