"""Scans and events as they reach the broker, as lines for a terminal or for a script.

A `scan` message is a CBOR array of scan events (a batch from a sentry's outbox), an `event` message
one map (docs/protocol.md section 6.2). Each event becomes one line: the daemon's own human format
(`eventlog.EventLog`) behind the device id, or one JSON object. A sealed subject is never printed,
in any form: it is the one field meant for the health authority alone, and a terminal's scrollback
or a piped log outlives the outbox's retention. The line says `subject=sealed` instead, so an
operator can still see that sealing is on. Pure: no I/O.

Every value in an event is the sender's choice, so a line must never raise and never carry what a
terminal would obey: control characters (escape sequences that move the cursor, retitle the window,
rewrite what was printed) and invisible format characters (bidirectional overrides) are shown as
escapes; integers too long to print, infinities and a time no clock can show are given as text; a
verdict or an event name that is not a text is shown as one. One bad event never stops the others.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping
from typing import Any

from ..codes.cose import shown
from ..errors import PayloadError
from ..eventlog import EventLog
from ..link import payloads, topics
from .client import Message, split_topic

KINDS = (topics.SCAN, topics.EVENT)
SEALED = "sealed"

_HUMAN = EventLog("human")
_MAX_INT = 2**63  # beyond a 64-bit integer no contract field means anything
_MAX_T_MS = 253_402_300_799_999  # the last millisecond of the year 9999, the last a clock shows
_UNSAFE = frozenset(("Cc", "Cf", "Zl", "Zp"))  # controls, format characters, line/paragraph breaks
_TEXT_FIELDS = ("device", "event", "verdict", "reason")


def events_of(message: Message, site: str, max_payload: int = payloads.DEFAULT_MAX_PAYLOAD,
              ) -> tuple[list[dict[str, Any]], str | None]:
    """The events one message carries, each labelled with the site and device of its topic, and a
    problem to report when the message could not be read (never quoting the payload).

    The broker's ACL vouches for the topic and nothing vouches for the payload: a sentry whose card
    was copied could name another venue's device in its events, so what an event says of its own
    site or device never labels it; a disagreement is reported as a problem instead.
    """
    where = split_topic(site, message.topic)
    if where is None or where[1] not in KINDS:
        return [], None
    device, kind = where
    expect = list if kind == topics.SCAN else dict
    try:
        body = payloads.decode(message.payload, message.content_type, max_size=max_payload, expect=expect)
    except PayloadError as exc:
        return [], escaped(f"unreadable {kind} message from {device}: {exc}")
    items = body if isinstance(body, list) else [body]
    events = [dict(item) for item in items if isinstance(item, Mapping)]
    problems = []
    if len(events) != len(items):
        problems.append(f"{len(items) - len(events)} entries of a {kind} batch from {device} are not events")
    claims_other = 0
    for event in events:
        claims_other += event.get("device", device) != device or event.get("site", site) != site
        event["device"] = device
        event["site"] = site
    if claims_other:
        problems.append(
            f"{claims_other} events from {device} name another site or device; shown as {device}'s"
        )
    return events, escaped("; ".join(problems)) if problems else None


def redacted(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event with its subject replaced by the word `sealed`."""
    out = dict(event)
    if out.get("subject") is not None:
        out["subject"] = SEALED
    return out


def human_line(event: Mapping[str, Any]) -> str:
    """`gate-1  12:00:01.234 scan  ACCEPT ok  mode=scan ... subject=sealed`."""
    sealed = event.get("subject") is not None
    shown_event = printable(redacted(event), escape=True)
    for key in _TEXT_FIELDS:  # the formatter calls text methods on these
        if key in shown_event and not isinstance(shown_event[key], str):
            shown_event[key] = str(shown_event[key])
    t = shown_event.get("t")
    if isinstance(t, bool) or not isinstance(t, int | float) or not 0 <= t <= _MAX_T_MS:
        shown_event.pop("t", None)  # shown as --:--:--
    line = f"{shown_event.get('device', '?')}  {_HUMAN.format(shown_event)}"  # EventLog drops the subject
    if sealed:
        line += f" subject={SEALED}"
    return line


def json_line(event: Mapping[str, Any]) -> str:
    """One JSON object; byte strings other than the subject (none in the contract) as hex. Texts are
    left to JSON's own escapes (ASCII only), so a script reads them as they were sent."""
    return json.dumps(printable(redacted(event), escape=False), separators=(",", ":"))


def printable(value: Any, *, escape: bool) -> Any:
    """`value` made of JSON's types only, none of which raises when printed: byte strings as hex,
    integers beyond 64 bits and non-finite numbers as texts, anything else by its type's name; with
    `escape`, every text (keys too) `escaped`."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return escaped(value) if escape else value
    if isinstance(value, int):
        return value if -_MAX_INT <= value <= _MAX_INT else shown(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {_key(k, escape): printable(v, escape=escape) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(item, escape=escape) for item in value]
    return f"<{type(value).__name__}>"  # a CBOR tag or an undefined: its own text may raise


def _key(key: Any, escape: bool) -> str:
    out = printable(key, escape=escape)
    return out if isinstance(out, str) else json.dumps(out)


def escaped(text: str) -> str:
    """`text` with every character a terminal could act on written as a Python-style escape."""
    if all(unicodedata.category(ch) not in _UNSAFE for ch in text):
        return text
    return "".join(_escape(ch) if unicodedata.category(ch) in _UNSAFE else ch for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
