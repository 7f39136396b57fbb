"""The contract's words: each enum holds exactly the documented strings, and a member travels as the
plain string (CBOR, JSON, the event log, log lines), so the wire never changes with the enum."""

from __future__ import annotations

import io
import json
import logging

import cbor2
import pytest

from edge_sentry import vocabulary
from edge_sentry.eventlog import EventLog
from edge_sentry.link import payloads
from edge_sentry.storage import encode_frame
from edge_sentry.vocabulary import (
    CommandStatus,
    ContentType,
    ControlRefusal,
    Event,
    Mode,
    Reason,
    Refusal,
    Rejection,
    Role,
    TrustRejection,
    Verdict,
)

# As the README and docs/protocol.md list them.
CONTRACT: dict[type, set[str]] = {
    Verdict: {"accept", "deny"},
    Reason: {
        "ok", "malformed", "unsupported", "unknown-key", "bad-signature", "expired", "not-yet-valid",
        "stale", "revoked", "status", "passback", "wrong-venue", "assist",
    },
    Mode: {"scan", "manual", "exit", "assisted"},
    Refusal: {"trust-stale", "clock-unsynced", "fault"},
    Event: {
        "scan", "start", "stop", "door-opened", "door-closed", "door-forced", "door-held", "tailgate",
        "assist-expired", "fault", "fault-cleared", "camera-fault", "camera-recovered", "venue-code",
        "gate-pulse", "trust-invalid", "trust-stale", "trust-updated", "trust-rejected",
        "control-rejected", "clock-unsynced", "outbox-full", "disk-low",
    },
    ControlRefusal: {
        "unsigned", "bad-signature", "unknown-operator", "role", "scope", "audience", "stale", "replay",
        "retained", "deadline", "version",
    },
    Role: {"config", "command"},
    CommandStatus: {"ok", "error", "expired", "rejected", "unknown-command"},
    TrustRejection: {
        "no-root-key", "too-large", "malformed", "unsupported-algorithm", "bad-signature", "content-type",
        "invalid", "audience", "old-version",
    },
    Rejection: {"malformed", "bad-field", "provenance", "clock-skew", "unknown-topic"},
    ContentType: {
        "application/vnd.edge-sentry.trust+cbor", "application/vnd.edge-sentry.venue+cbor",
        "application/vnd.edge-sentry.control+cbor",
    },
}  # fmt: skip


@pytest.mark.parametrize("enum", list(CONTRACT), ids=lambda e: e.__name__)
def test_each_enum_holds_exactly_the_documented_strings(enum: type) -> None:
    assert {member.value for member in enum} == CONTRACT[enum]


def test_every_enum_of_the_vocabulary_is_checked_against_the_contract() -> None:
    enums = {
        value for value in vars(vocabulary).values()
        if isinstance(value, type) and issubclass(value, str) and value.__module__ == vocabulary.__name__
    }  # fmt: skip
    assert enums == set(CONTRACT)


def _event(words: bool) -> dict[str, object]:
    pick = (lambda member: member) if words else (lambda member: member.value)
    return {
        "event": pick(Event.SCAN), "t": 1_764_000_000_000, "mode": pick(Mode.SCAN),
        "verdict": pick(Verdict.DENY), "reason": pick(Reason.OK), "refused": pick(Refusal.TRUST_STALE),
        "alarms": [pick(Event.DOOR_HELD)], "status": pick(CommandStatus.UNKNOWN_COMMAND),
    }  # fmt: skip


def test_an_event_with_members_encodes_to_the_same_bytes_as_with_plain_strings() -> None:
    members, plain = _event(words=True), _event(words=False)
    assert cbor2.dumps(members) == cbor2.dumps(plain)
    assert payloads.encode(members) == payloads.encode(plain)
    assert encode_frame(members) == encode_frame(plain)  # the outbox's records
    assert json.dumps(members) == json.dumps(plain)


def test_decoded_events_hold_plain_strings_that_still_equal_the_members() -> None:
    decoded = payloads.decode(payloads.encode(_event(words=True)), payloads.CBOR)
    assert type(decoded["reason"]) is str
    assert decoded["reason"] == Reason.OK and decoded["event"] == Event.SCAN
    assert decoded["mode"] in {Mode.SCAN, Mode.MANUAL}
    assert json.loads(json.dumps(_event(words=True)))["verdict"] == Verdict.DENY


@pytest.mark.parametrize("fmt", ["human", "json"])
def test_the_event_log_prints_values_not_member_names(fmt: str) -> None:
    out = io.StringIO()
    EventLog(fmt, out).write(_event(words=True))
    line = out.getvalue()
    assert "Reason." not in line and "Verdict." not in line and "Event." not in line
    assert "scan" in line and "DENY" in line.upper() and "ok" in line
    assert line == _plain_line(fmt)


def _plain_line(fmt: str) -> str:
    out = io.StringIO()
    EventLog(fmt, out).write(_event(words=False))
    return out.getvalue()


def test_log_lines_show_values(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("edge_sentry.test").info("decision %s %s", Verdict.DENY, Reason.PASSBACK)
    assert caplog.messages == ["decision deny passback"]
    assert f"{Event.DOOR_FORCED}" == "door-forced"
