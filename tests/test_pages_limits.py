"""The pages' limits: what one client, or many, can make the sentry's process hold.

The pages share the sentry's process, its memory (MemoryMax=300M) and its file descriptors, so
nothing a client sends may grow either beyond a small, fixed amount: a request body is refused from
its headers, connections and event streams are capped, a reader that stops reading is dropped.
"""

from __future__ import annotations

import socket
import threading

from pages_helpers import PATIENCE_S, page_config, page_server

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
