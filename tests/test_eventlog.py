"""The event log: one line per event, JSON or human, never a subject."""

from __future__ import annotations

import io
import json

from edge_sentry.eventlog import EventLog

SCAN = {
    "event": "scan", "t": 1_795_000_000_123, "mode": "scan", "scheme": "es1", "verdict": "deny",
    "reason": "stale", "issuer": "arena", "latency_ms": 2.5, "id": "0190-abc",
    "subject": {"v": 1, "kid": b"\x01" * 8, "enc": b"\x02" * 32, "ct": b"\x03" * 24},
}


def test_json_lines_keep_every_field_but_the_subject():
    out = io.StringIO()
    EventLog("json", out).write(SCAN)
    (line,) = out.getvalue().splitlines()
    logged = json.loads(line)
    assert "subject" not in logged
    assert {k: v for k, v in SCAN.items() if k != "subject"} == logged
    assert "subject" in SCAN  # the event itself, on its way to the outbox, is untouched


def test_human_lines_say_the_verdict_and_reason():
    out = io.StringIO()
    EventLog("human", out).write(SCAN)
    line = out.getvalue()
    assert "DENY" in line and "stale" in line and "latency=2.5ms" in line
    assert "0202" not in line and "subject" not in line


def test_a_closed_stream_does_not_raise():
    out = io.StringIO()
    log = EventLog("json", out)
    out.close()
    log.write(SCAN)
