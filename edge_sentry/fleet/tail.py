"""Scans and events as they reach the broker, as lines for a terminal or for a script.

A `scan` message is a CBOR array of scan events (a batch from a sentry's outbox), an `event` message
one map (docs/protocol.md section 6.2). Each event becomes one line: the daemon's own human format
(`eventlog.EventLog`) behind the device id, or one JSON object. A sealed subject is never printed,
in any form: it is the one field meant for the health authority alone, and a terminal's scrollback
or a piped log outlives the outbox's retention. The line says `subject=sealed` instead, so an
operator can still see that sealing is on. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import PayloadError
from ..eventlog import EventLog
from ..link import payloads, topics
from .client import Message, split_topic

KINDS = (topics.SCAN, topics.EVENT)
SEALED = "sealed"

_HUMAN = EventLog("human")


def events_of(message: Message, site: str, max_payload: int = payloads.DEFAULT_MAX_PAYLOAD,
              ) -> tuple[list[dict[str, Any]], str | None]:
    """The events one message carries, each with its `device` (taken from the topic when the event
    does not name it), and a problem to report when the message could not be read (never quoting
    the payload)."""
    where = split_topic(site, message.topic)
    if where is None or where[1] not in KINDS:
        return [], None
    device, kind = where
    expect = list if kind == topics.SCAN else dict
    try:
        body = payloads.decode(message.payload, message.content_type, max_size=max_payload, expect=expect)
    except PayloadError as exc:
        return [], f"unreadable {kind} message from {device}: {exc}"
    items = body if isinstance(body, list) else [body]
    events = [dict(item) for item in items if isinstance(item, Mapping)]
    problem = None
    if len(events) != len(items):
        problem = f"{len(items) - len(events)} entries of a {kind} batch from {device} are not events"
    for event in events:
        event.setdefault("device", device)
    return events, problem


def redacted(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event with its subject replaced by the word `sealed`."""
    out = dict(event)
    if out.get("subject") is not None:
        out["subject"] = SEALED
    return out


def human_line(event: Mapping[str, Any]) -> str:
    """`gate-1  12:00:01.234 scan  ACCEPT ok  mode=scan ... subject=sealed`."""
    line = f"{event.get('device', '?')}  {_HUMAN.format(dict(event))}"  # EventLog drops the subject
    if event.get("subject") is not None:
        line += f" subject={SEALED}"
    return line


def json_line(event: Mapping[str, Any]) -> str:
    """One JSON object; byte strings other than the subject (none in the contract) as hex."""
    return json.dumps(redacted(event), separators=(",", ":"), default=_jsonable)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    return str(value)
