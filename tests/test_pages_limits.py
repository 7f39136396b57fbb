"""The pages' limits: what one client, or many, can make the sentry's process hold.

The pages share the sentry's process, its memory (MemoryMax=300M) and its file descriptors, so
nothing a client sends may grow either beyond a small, fixed amount: a request body is refused from
its headers, connections and event streams are capped, a reader that stops reading is dropped.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
from gate_helpers import wait_until
from pages_helpers import PATIENCE_S, EventStream, page_config, page_server, running_daemon
from test_pages_aim import fed
from test_pages_events import full_scan
from test_pages_server import get

from edge_sentry.pages import aim, views
from edge_sentry.pages.listener import MAX_CONNECTIONS
from edge_sentry.pages.views import MAX_STREAMS
from edge_sentry.viewfinder import Viewfinder
from edge_sentry.vocabulary import Reason

BIG_BODY = 48 * 1024 * 1024


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def test_a_large_request_body_is_refused_from_its_headers_before_it_is_read(tmp_path):
    with page_server(page_config(tmp_path)) as (server, _hub):
        assert server.address is not None
        before = rss_kib()
        peak = [before]
        client = socket.create_connection(server.address, timeout=PATIENCE_S)
        client.sendall(
            f"POST /staff HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {BIG_BODY}\r\n\r\n".encode()
        )
        sent = [0]
        sending = threading.Event()

        def send_body() -> None:
            chunk = b"a" * (1 << 20)
            sending.set()
            try:
                while sent[0] < BIG_BODY:
                    client.sendall(chunk)
                    sent[0] += len(chunk)
                    peak[0] = max(peak[0], rss_kib())
            except OSError:
                pass  # the server closed the connection: what it should do

        sender = threading.Thread(target=send_body, name="test-big-body", daemon=True)
        sender.start()
        sending.wait(PATIENCE_S)
        reply = client.recv(200)
        sender.join(PATIENCE_S)
        peak[0] = max(peak[0], rss_kib())
        client.close()
    assert reply.startswith(b"HTTP/1.1 400 "), reply
    assert sent[0] < BIG_BODY  # the body was never taken in whole
    assert peak[0] - before < 16 * 1024, f"the process grew by {(peak[0] - before) // 1024} MiB"


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed this connection (EOF or a reset), waiting for it at most PATIENCE_S."""
    sock.settimeout(PATIENCE_S)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_connections_past_the_cap_are_closed_and_the_pages_still_serve(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="edge_sentry.pages.listener")
    with page_server(page_config(tmp_path)) as (server, _hub):
        assert server.address is not None
        held = [socket.create_connection(server.address, timeout=PATIENCE_S) for _ in range(MAX_CONNECTIONS)]
        try:
            wait_until(lambda: server.connections == MAX_CONNECTIONS, PATIENCE_S, "every connection taken")
            extra = [socket.create_connection(server.address, timeout=PATIENCE_S) for _ in range(5)]
            assert all(closed_by_server(sock) for sock in extra)
            for sock in extra:
                sock.close()
            held.pop().close()
            wait_until(lambda: server.connections < MAX_CONNECTIONS, PATIENCE_S, "a connection closed")
            assert get(server.address, "/health")[0] == 503  # served: no health report yet
        finally:
            for sock in held:
                sock.close()
    refusals = [r.getMessage() for r in caplog.records if "limit" in r.getMessage()]
    assert refusals == [
        f"page connections at their limit ({MAX_CONNECTIONS}): a new one closed at once "
        "(1 since the last such line)"
    ]


_OUT_OF_DESCRIPTORS = """
import json, logging, os, sys, time
from pages_helpers import page_config, page_server
from edge_sentry.pages import listener
from edge_sentry.service import Notifier

listener.ACCEPT_PAUSE_S = 0.02  # many pauses in a short test
records = []
handler = logging.Handler()
handler.emit = lambda record: records.append([record.name, record.levelname, record.getMessage()])
logging.getLogger().addHandler(handler)
logging.getLogger().setLevel(logging.INFO)
notifier = Notifier()
with page_server(page_config(__import__("pathlib").Path(sys.argv[1]))) as (server, hub):
    filler = []
    try:
        while True:
            filler.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        for fd in filler[-4:]:  # four left for the client's connections
            os.close(fd)
        del filler[-4:]
    print(server.address[1], flush=True)
    sys.stdin.readline()  # the client has opened its connections
    (acceptor,) = server._http._acceptors
    while acceptor.paused < 20:  # twenty failed attempts at least
        time.sleep(0.01)
    notifier.send("WATCHDOG=1")
    print("out of descriptors", flush=True)
    sys.stdin.readline()  # the client has closed them
    while server.connections:
        time.sleep(0.01)
    for fd in filler:
        os.close(fd)
print(json.dumps(records), flush=True)
"""


def test_out_of_file_descriptors_the_pages_pause_accepting_log_once_and_the_watchdog_is_fed(tmp_path):
    """The process's descriptors used up by connections: no busy accept loop, no line per attempt."""
    notify = tmp_path / "n"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify))
    env = dict(os.environ, NOTIFY_SOCKET=str(notify), PYTHONPATH=str(Path(__file__).parent))
    command = [sys.executable, "-c", _OUT_OF_DESCRIPTORS, str(tmp_path)]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    clients: list[socket.socket] = []
    try:
        assert child.stdin is not None and child.stdout is not None
        port = int(child.stdout.readline())
        clients = [socket.create_connection(("127.0.0.1", port), timeout=PATIENCE_S) for _ in range(20)]
        child.stdin.write("opened\n")
        child.stdin.flush()
        assert child.stdout.readline() == "out of descriptors\n"
        receiver.settimeout(PATIENCE_S)
        assert receiver.recv(100) == b"WATCHDOG=1"
        for sock in clients:
            sock.close()
        child.stdin.write("closed\n")
        child.stdin.flush()
        records = json.loads(child.stdout.readline())
        assert child.wait(PATIENCE_S) == 0
    finally:
        for sock in clients:
            sock.close()
        receiver.close()
        if child.poll() is None:
            child.kill()
            child.wait()
    said = [message for _name, level, message in records if level in ("WARNING", "ERROR", "CRITICAL")]
    assert said == ["cannot accept page connections (Too many open files): paused 0.02 s each time "
                    "(1 since the last such line)"]  # fmt: skip


def test_an_event_stream_past_the_cap_is_refused_and_the_others_go_on(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="edge_sentry.pages")
    with page_server(page_config(tmp_path)) as (server, hub):
        assert server.address is not None
        streams = [EventStream(*server.address) for _ in range(MAX_STREAMS)]
        try:
            for _ in range(5):
                assert get(server.address, "/events") == (503, {"error": "too many open event streams"})
            assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # a refusal is no news
            hub.publish(full_scan())
            assert all(stream.next()["reason"] == "expired" for stream in streams)
            streams.pop().close()
            wait_until(lambda: hub.streams < MAX_STREAMS, PATIENCE_S, "a stream closed")
            streams.append(EventStream(*server.address))
            hub.publish(full_scan(reason=Reason.STALE))
            assert streams[-1].next()["reason"] == "stale"
        finally:
            for stream in streams:
                stream.close()


def test_a_reader_that_stops_reading_is_dropped_and_its_connection_closed(tmp_path, monkeypatch):
    monkeypatch.setattr(views, "SEND_TIMEOUT_S", 0.2)  # the test need not wait ten seconds
    with page_server(page_config(tmp_path)) as (server, hub):
        assert server.address is not None
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        stalled.connect(server.address)
        stalled.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        wait_until(lambda: hub.streams == 1, PATIENCE_S, "the stream open")
        report = {"t": 1, "note": "x" * 100_000}  # never read: more than every buffer on the way holds
        for _ in range(100):
            hub.publish_health(report)
        wait_until(lambda: hub.streams == 0 and server.connections == 0, PATIENCE_S, "the reader dropped")
        fresh = EventStream(*server.address)
        hub.publish(full_scan())
        assert fresh.next()["reason"] == "expired"  # the pages go on for everyone else
        fresh.close()
        stalled.settimeout(PATIENCE_S)
        while stalled.recv(1 << 16):  # what was on its way, then the end
            pass
        stalled.close()


def test_with_its_pages_full_the_sentry_keeps_deciding_and_feeding_the_watchdog(tmp_path, monkeypatch):
    folder = tempfile.mkdtemp(prefix="notify-")  # short: a socket path has ~100 bytes at most
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(os.path.join(folder, "n"))
    receiver.settimeout(PATIENCE_S)
    monkeypatch.setenv("NOTIFY_SOCKET", os.path.join(folder, "n"))
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    out = io.StringIO()
    held: list[socket.socket] = []
    try:
        with running_daemon(page_config(tmp_path, log={"format": "json"}), log=out) as daemon:
            assert daemon.pages is not None and daemon.pages.address is not None
            held = [socket.create_connection(daemon.pages.address) for _ in range(MAX_CONNECTIONS + 1)]
            assert closed_by_server(held[-1])
            decided = out.getvalue().count('"event":"scan"')
            while out.getvalue().count('"event":"scan"') == decided:  # the demo's next code
                assert receiver.recv(100)  # fed all the while
            while receiver.recv(100) != b"WATCHDOG=1":
                pass
            assert daemon.pages.connections == MAX_CONNECTIONS
    finally:
        for sock in held:
            sock.close()
        receiver.close()
        shutil.rmtree(folder)


def test_tornados_line_per_bad_request_is_logged_once_a_minute_however_many(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("tornado.general"), "filters", [])  # a fresh count for this test
    caplog.set_level(logging.INFO, logger="tornado.general")
    with page_server(page_config(tmp_path)) as (server, _hub):
        assert server.address is not None
        for _ in range(10):
            with socket.create_connection(server.address, timeout=PATIENCE_S) as client:
                client.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000\r\n\r\n")
                assert client.recv(200).startswith(b"HTTP/1.1 400 ")
    lines = [r.getMessage() for r in caplog.records if r.name == "tornado.general"]
    assert len(lines) == 1 and "Content-Length too long" in lines[0], lines


def test_an_aiming_page_that_stops_reading_is_dropped_and_the_pictures_stop(tmp_path, monkeypatch):
    """Its viewer's place and the hot loop's hand-off are not held by a reader that went quiet."""
    monkeypatch.setattr(views, "SEND_TIMEOUT_S", 0.2)
    viewfinder = Viewfinder(30.0)
    noise = np.random.default_rng(7).integers(0, 256, (720, 1280), dtype=np.uint8)  # large pictures
    with page_server(page_config(tmp_path), aim.routes(viewfinder)) as (server, _hub), fed(viewfinder, noise):
        assert server.address is not None
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        stalled.connect(server.address)
        stalled.sendall(b"GET /aim/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        wait_until(lambda: viewfinder.watched, PATIENCE_S, "the stream open")
        wait_until(lambda: not viewfinder.watched and server.connections == 0, PATIENCE_S, "the drop")
        stalled.close()
