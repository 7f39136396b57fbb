"""The page server: `/events`, `/health`, `/staff/state`, mounting, a taken port, and the daemon
serving real decisions without a trace of personal data."""

from __future__ import annotations

import http.client
import io
import json
import logging
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from gate_helpers import wait_until
from pages_helpers import PATIENCE_S, EventStream, page_config, page_server, running_daemon
from test_pages_events import full_scan
from test_privacy_scan import _needles, dcc_cases, es1_cases
from tornado.web import RequestHandler

from edge_sentry import privacy
from edge_sentry.codes.trust import TrustList
from edge_sentry.errors import PagesUnavailable
from edge_sentry.pages.context import PageContext, Routes
from edge_sentry.pages.hub import RECENT, PageHub
from edge_sentry.pages.server import PageServer
from edge_sentry.vocabulary import Event, Mode, Reason, Verdict


def get(address: tuple[str, int], path: str, host: str | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        response = conn.getresponse()
        body = response.read()
        kind = response.getheader("Content-Type", "")
        return response.status, json.loads(body) if kind.startswith("application/json") else body
    finally:
        conn.close()


def test_each_decision_is_one_data_line_of_json_with_its_message(tmp_path):
    with page_server(page_config(tmp_path)) as (server, hub):
        assert server.address is not None
        stream = EventStream(*server.address)
        try:
            assert stream.response.getheader("Content-Type") == "text/event-stream; charset=utf-8"
            hub.publish(full_scan())
            assert stream.next() == {
                "event": "scan", "t": 1_795_000_000_000, "verdict": "deny", "reason": "expired",
                "mode": "scan", "message": {"en": "Code expired: refresh it", "zh": "此码已过期：请刷新"},
            }  # fmt: skip
            hub.publish({"event": Event.DOOR_HELD, "t": 9, "open_s": 21.0, "site": "s1"})
            assert stream.next() == {"event": "door-held", "t": 9, "open_s": 21.0}
        finally:
            stream.close()
    data = [line for line in stream.raw if line.startswith(b"data: ")]
    assert len(data) == 2 and all(line.endswith(b"}\n") for line in data)


def test_a_stream_asked_for_the_state_starts_with_it(tmp_path):
    with page_server(page_config(tmp_path)) as (server, hub):
        assert server.address is not None
        hub.publish(full_scan())
        wait_until(lambda: len(hub.recent) == 1, PATIENCE_S, "the scan taken")  # the hand-off is not instant
        first = EventStream(*server.address)  # after the scan was taken: a plain stream never sees it
        staff = EventStream(*server.address, "/events?state=1")
        try:
            state = staff.next()
            assert state["event"] == "state" and [e["reason"] for e in state["recent"]] == ["expired"]
            hub.publish(full_scan(reason=Reason.STALE))
            assert first.next()["reason"] == "stale" and staff.next()["reason"] == "stale"
        finally:
            first.close()
            staff.close()


def test_health_is_unavailable_until_the_first_report_then_the_latest_one(tmp_path):
    with page_server(page_config(tmp_path)) as (server, hub):
        assert server.address is not None
        assert get(server.address, "/health") == (503, {"error": "no health report yet"})
        stream = EventStream(*server.address)
        hub.publish_health({"t": 5, "gate": "idle", "fps": 15.0})
        assert stream.next() == {"event": "health", "t": 5, "report": {"t": 5, "gate": "idle", "fps": 15.0}}
        stream.close()
        assert get(server.address, "/health") == (200, {"t": 5, "gate": "idle", "fps": 15.0})


def test_the_staff_state_holds_the_last_twenty_decisions_and_the_days_counts(tmp_path):
    with page_server(page_config(tmp_path)) as (server, hub):
        assert server.address is not None
        now = int(datetime.now(UTC).timestamp() * 1000)
        for i in range(RECENT + 5):
            hub.publish(full_scan(t=now + i, reason=Reason.PASSBACK))
        hub.publish(full_scan(t=now + 100, verdict=Verdict.ACCEPT, reason=Reason.OK, mode=Mode.MANUAL))
        hub.publish({"event": Event.DOOR_FORCED, "t": now + 101})
        stream = EventStream(*server.address, "/events?state=1")  # the stream is after them all
        stream.next()
        stream.close()
        status, state = get(server.address, "/staff/state")
    assert status == 200
    assert len(state["recent"]) == RECENT and state["recent"][0]["mode"] == "manual"
    assert state["counts"]["decisions"] == RECENT + 6 and state["counts"]["deny"] == RECENT + 5
    assert state["counts"]["manual"] == 1 and state["counts"]["reasons"] == {"passback": RECENT + 5}
    assert [a["event"] for a in state["alarms"]] == ["door-forced"]
    assert [c["event"] for c in state["open"]] == ["door-forced"]


def test_on_loopback_a_request_for_another_host_name_is_refused(tmp_path):
    with page_server(page_config(tmp_path)) as (server, _hub):
        assert server.address is not None
        status, _body = get(server.address, "/staff/state", host=f"attacker.example:{server.address[1]}")
        assert status == 403
        assert get(server.address, "/staff/state", host=f"localhost:{server.address[1]}")[0] == 200


def test_pages_are_plain_files_of_the_package_with_no_outside_reference(tmp_path):
    with page_server(page_config(tmp_path)) as (server, _hub):
        assert server.address is not None
        for path in ("/", "/staff"):
            status, body = get(server.address, path)
            assert status == 200 and b"Harbour Arena" in body
            assert b"http://" not in body and b"https://" not in body and b"//cdn" not in body
        status, _ = get(server.address, "/static/display.js")
        assert status == 200


def test_another_handler_module_mounts_beside_the_pages(tmp_path):
    class Hello(RequestHandler):
        def initialize(self, context: PageContext) -> None:
            self.context = context

        def get(self) -> None:
            self.finish({"entrance": self.context.config.device.entrance_name})

    def routes(context: PageContext) -> Routes:
        return [("/hello", Hello, {"context": context})]

    server = PageServer(page_config(tmp_path), PageHub())
    server.mount(routes)
    server.start()
    try:
        assert server.address is not None
        assert get(server.address, "/hello") == (200, {"entrance": "North gate"})
        assert get(server.address, "/")[0] == 200
        with pytest.raises(RuntimeError):
            server.mount(routes)
    finally:
        server.stop()


def test_a_taken_port_is_a_clear_error_and_leaves_nothing_running(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = PageServer(page_config(tmp_path, display={"listen": f"127.0.0.1:{port}"}), PageHub())
        with pytest.raises(PagesUnavailable, match=f"cannot listen on 127.0.0.1:{port}"):
            server.start()
        server.stop()


def test_the_daemon_runs_and_decides_without_its_pages_when_the_port_is_taken(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="edge_sentry.daemon")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = page_config(tmp_path, display={"listen": f"127.0.0.1:{port}"}, log={"format": "json"})
        out = io.StringIO()
        with running_daemon(config, log=out) as daemon:
            assert daemon.pages is None
            while '"event":"scan"' not in out.getvalue():  # the demo's first code, decided all the same
                daemon.stop_event.wait(0.05)
    assert f"pages not served, the sentry runs without them: cannot listen on 127.0.0.1:{port}" in caplog.text


def _scene(tmp_path: Path, texts: list[str]) -> Path:
    cues = [{"text": t, "start": 0.3 + i * 1.2, "end": 0.3 + i * 1.2 + 0.8} for i, t in enumerate(texts)]
    path = tmp_path / "scene.json"
    path.write_text(json.dumps({"duration": cues[-1]["end"] + 600, "cues": cues}))
    return path


def test_the_daemons_pages_carry_its_decisions_and_never_a_code_subject_or_personal_field(tmp_path):
    """Real codes, sealed subjects (an authority key is set) and a DCC holder's names: the stream,
    the staff state and the health report hold none of them, in any spelling."""
    cases = es1_cases() + dcc_cases()
    trust = TrustList.empty()
    for case in cases:
        for entry in case.trust_entries:
            trust = trust.with_entry(entry, issued=datetime.now(UTC))
    (tmp_path / "trust.json").write_text(trust.to_json())
    privacy.save_key_pair(X25519PrivateKey.generate(), tmp_path / "a.key.pem", tmp_path / "a.pub.pem")
    config = page_config(
        tmp_path,
        trust={"file": str(tmp_path / "trust.json")},
        camera={"scene": str(_scene(tmp_path, [c.text for c in cases])), "fps": 15},
        privacy={"authority_key": str(tmp_path / "a.pub.pem")},
        log={"format": "json"},
    )
    out = io.StringIO()
    with running_daemon(config, log=out) as daemon:
        assert daemon.pages is not None and daemon.pages.address is not None
        stream = EventStream(*daemon.pages.address, "/events?state=1")
        seen = stream.until(lambda m: m["event"] == "state")[-1]["recent"][::-1]
        while len(seen) < len(cases):
            message = stream.next()
            if message["event"] == "scan":
                seen.append(message)
        stream.close()
        _status, state = get(daemon.pages.address, "/staff/state")
        _status, health = get(daemon.pages.address, "/health")
        daemon.outbox.flush(5.0)  # type: ignore[union-attr]
        stored = daemon.outbox.pending(100)  # type: ignore[union-attr]
    assert any("subject" in e for e in stored if e["event"] == "scan")  # there was a subject to leak
    expected = [("accept", "ok"), ("deny", "expired"), ("deny", "passback"), ("deny", "unknown-key")]
    assert [(m["verdict"], m["reason"]) for m in seen] == expected + [("accept", "ok")] * (len(cases) - 4)
    everything = b"".join(stream.raw) + json.dumps([state, health], ensure_ascii=False).encode()
    for case in cases:
        texts, raw = _needles(case)
        for needle in raw + [t.encode() for t in texts]:
            assert needle not in everything
    for word in (b'"subject"', b'"issuer"', b'"scheme"', b"venue-co", b"elsewhere", b'"id"'):
        assert word not in everything


def test_stopping_the_server_ends_the_open_streams(tmp_path):
    with page_server(page_config(tmp_path)) as (server, _hub):
        assert server.address is not None
        stream = EventStream(*server.address, "/events?state=1")
        assert stream.next()["event"] == "state"
        server.stop()
        with pytest.raises(EOFError):
            stream.next()
        stream.close()
