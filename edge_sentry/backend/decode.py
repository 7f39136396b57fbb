"""One MQTT message of a sentry to the rows the back end stores: records, rejects, a device status.

Everything in a payload is the sender's word, and only the topic is vouched for (the broker's ACL
lets a device publish under its own `sentry/v1/{site}/{device}/` alone): so the site and device of
every row come from the topic, and an event that names another site or device is a reject
(`provenance`), never a record of either. An event whose `t` lies further ahead of its arrival than
`max_future_s` is a reject too (`clock-skew`): a sentry with a runaway clock would otherwise write
into the future of every report. Bad input of any kind is a reject with a reason, never an
exception: one bad event of a batch leaves the others stored.

A reject's `key` is a digest of its topic and bytes, so the same rejected message delivered again
is stored once. Pure: no I/O, never logs (a batch may carry sealed subjects).
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2

from ..errors import EventRefused, PayloadError
from ..fleet.tail import printable
from ..link import payloads, topics
from ..vocabulary import Event, Mode, Rejection, Verdict

SCAN, EVENT = "scan", "event"
STATUS_KINDS = (topics.STATE, topics.HEALTH)
MAX_INT = 2**63 - 1  # a PostgreSQL bigint
MAX_DETAIL = 200  # characters of a reject's detail
# Characters of a text column (entrance, event, reason...): a sender's longer text would otherwise
# outgrow PostgreSQL's btree index entries (~2.7 KB) and fail its whole batch at every delivery.
MAX_TEXT = 200

# Columns of a record beside id, site, device, kind, event, seq, t and the arrival time.
SCAN_TEXT = ("entrance", "scheme", "verdict", "reason", "issuer", "refused")
IDENTITY = ("id", "seq", "t", "site", "device", "event")


@dataclass(frozen=True)
class Record:
    """A scan or an event, as the `events` table holds it; `details` is the rest of the map as
    JSON text (byte strings other than the subject as hex)."""

    id: str
    site: str
    device: str
    kind: str
    event: str
    seq: int
    t_ms: int
    arrived_ms: int
    entrance: str | None = None
    mode: str | None = None
    scheme: str | None = None
    verdict: str | None = None
    reason: str | None = None
    issuer: str | None = None
    refused: str | None = None
    latency_ms: float | None = None
    subject: bytes | None = None
    details: str = "{}"


@dataclass(frozen=True)
class Reject:
    """A message, or one event of a batch, that is not stored as a record."""

    key: str
    arrived_ms: int
    topic: str
    site: str | None
    device: str | None
    reason: str
    detail: str
    event_id: str | None
    body: bytes


@dataclass(frozen=True)
class Status:
    """The latest retained `state` or `health` of a device; `body` None: the retained message was
    cleared."""

    site: str
    device: str
    kind: str
    arrived_ms: int
    t_ms: int | None
    online: bool | None
    body: str | None


@dataclass
class Decoded:
    """What one message gives."""

    records: list[Record] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    status: Status | None = None


def where(topic: str) -> tuple[str, str, str] | None:
    """(site, device, kind) of `sentry/v1/{site}/{device}/{kind}` with a one-level kind."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != topics.ROOT or not all(parts[2:]):
        return None
    return parts[2], parts[3], parts[4]


def decode_message(topic: str, payload: bytes, content_type: str | None, arrived_ms: int, *,
                   max_future_s: float, max_payload: int = payloads.DEFAULT_MAX_PAYLOAD) -> Decoded:
    """The rows of one message; never raises for anything the payload holds.

    Whatever the checks below miss still ends as a `malformed` reject rather than an exception: a
    message that raised would never be acknowledged, and the broker would hand it to every ingester
    of the group again and again, stopping the fleet's ingestion.
    """
    try:
        return _decode_message(topic, payload, content_type, arrived_ms, max_future_s=max_future_s,
                               max_payload=max_payload)
    except Exception as exc:
        place = where(topic)
        return Decoded(rejects=[_reject(topic, payload, arrived_ms, place, Rejection.MALFORMED,
                                        f"could not be read ({type(exc).__name__})")])


def _decode_message(topic: str, payload: bytes, content_type: str | None, arrived_ms: int, *,
                    max_future_s: float, max_payload: int) -> Decoded:
    out = Decoded()
    place = where(topic)
    if place is None or place[2] not in (SCAN, EVENT, *STATUS_KINDS) or place[1] == topics.SITE_WIDE:
        out.rejects.append(_reject(topic, payload, arrived_ms, None, Rejection.UNKNOWN_TOPIC,
                                   "not a sentry's scan, event, state or health topic"))
        return out
    site, device, kind = place
    if kind in STATUS_KINDS:
        return _status(out, topic, payload, content_type, arrived_ms, max_payload)
    expect = list if kind == SCAN else dict
    try:
        body = payloads.decode(payload, content_type, max_size=max_payload, expect=expect)
    except PayloadError as exc:
        out.rejects.append(_reject(topic, payload, arrived_ms, place, Rejection.MALFORMED, str(exc)))
        return out
    items = body if isinstance(body, list) else [body]
    limit_ms = arrived_ms + int(max_future_s * 1000)
    for item in items:
        try:
            record = _record(item, site, device, kind, arrived_ms)
        except EventRefused as refused:
            raw = _item_bytes(item)
            event_id = _maybe_uuid(item.get("id")) if isinstance(item, Mapping) else None
            out.rejects.append(_reject(topic, raw, arrived_ms, place, refused.reason, refused.detail,
                                       event_id=event_id))
            continue
        if record.t_ms > limit_ms:
            out.rejects.append(_reject(
                topic, _item_bytes(item), arrived_ms, place, Rejection.CLOCK_SKEW,
                f"t is {(record.t_ms - arrived_ms) / 1000:.0f} s ahead of its arrival "
                f"(at most {max_future_s:g} s)", event_id=record.id))
            continue
        out.records.append(record)
    return out


def _record(item: Any, site: str, device: str, kind: str, arrived_ms: int) -> Record:
    if not isinstance(item, Mapping):
        raise EventRefused(Rejection.BAD_FIELD, f"an entry of a {kind} message is not a map")
    event_id = _uuid(item.get("id"))
    seq, t_ms = _count(item, "seq"), _count(item, "t")
    for name, mine in (("site", site), ("device", device)):
        claimed = item.get(name)
        if claimed is not None and claimed != mine:
            raise EventRefused(Rejection.PROVENANCE,
                           f"the event's {name} is not the topic's {name} {mine!r}")
    name = item.get("event", Event.SCAN if kind == SCAN else None)
    if not column_text(name) or not name:
        raise EventRefused(Rejection.BAD_FIELD,
                           f"event: missing or not a text of at most {MAX_TEXT} characters")
    if kind == SCAN and name != Event.SCAN:
        raise EventRefused(Rejection.BAD_FIELD, "event: a scan message carries scan events only")
    columns: dict[str, Any] = {}
    if name == Event.SCAN:
        columns = _scan_columns(item)
    elif column_text(item.get("entrance")):  # alarms name their entrance too
        columns["entrance"] = item["entrance"]
    rest = {k: v for k, v in item.items() if k not in IDENTITY and k not in columns and k != "subject"}
    return Record(id=event_id, site=site, device=device, kind=SCAN if name == Event.SCAN else EVENT,
                  event=name, seq=seq, t_ms=t_ms, arrived_ms=arrived_ms,
                  details=as_json(rest),
                  **columns)


def _scan_columns(item: Mapping[str, Any]) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for name in SCAN_TEXT:
        value = item.get(name)
        if value is not None and not column_text(value):
            raise EventRefused(Rejection.BAD_FIELD, f"{name}: not a text of at most {MAX_TEXT} characters")
        columns[name] = value
    for name, allowed in (("mode", Mode), ("verdict", Verdict)):
        value = item.get(name)
        if not isinstance(value, str) or value not in set(allowed):
            raise EventRefused(Rejection.BAD_FIELD, f"{name}: missing or not one of the contract's")
        columns[name] = value
    if not columns["reason"]:
        raise EventRefused(Rejection.BAD_FIELD, "reason: missing")
    latency = item.get("latency_ms")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, int | float)
                                or not math.isfinite(latency) or not 0 <= latency <= MAX_INT):
        raise EventRefused(Rejection.BAD_FIELD, "latency_ms: not a number of milliseconds")
    columns["latency_ms"] = float(latency) if latency is not None else None
    columns["subject"] = subject_bytes(item.get("subject"))
    return columns


def subject_bytes(subject: Any) -> bytes | None:
    """The sealed subject as the column keeps it. A sentry sends it as a map (docs/protocol.md 5),
    stored as its CBOR encoding, which the authority's tools decode again; a byte string is kept as
    it came. Never opened, never checked beyond its type: the back end holds no key."""
    if subject is None or isinstance(subject, bytes):
        return subject
    if isinstance(subject, Mapping):
        try:
            return bytes(cbor2.dumps(subject, canonical=True))
        except Exception:  # decoded from CBOR or JSON, so it encodes; a guard all the same
            pass
    raise EventRefused(Rejection.BAD_FIELD, "subject: not a sealed subject map or a byte string")


def storable_text(value: Any) -> bool:
    """Whether `value` is a text that PostgreSQL and SQLite both take as it is: UTF-8 (JSON may
    decode to lone surrogates) and without NUL (PostgreSQL's text refuses it)."""
    if not isinstance(value, str) or "\0" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def column_text(value: Any) -> bool:
    """A text for a column the back end indexes or groups by: storable and short."""
    return storable_text(value) and len(value) <= MAX_TEXT


def as_json(value: Any) -> str:
    """JSON text of a decoded value that PostgreSQL's jsonb takes: JSON types only (`printable`),
    every text cleaned of NUL and lone surrogates, which jsonb refuses."""
    return json.dumps(_clean(printable(value, escape=False)), separators=(",", ":"))


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value if storable_text(value) else value.replace("\0", "\ufffd").encode(
            "utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _maybe_uuid(value: Any) -> str | None:
    try:
        return _uuid(value)
    except EventRefused:
        return None


def _uuid(value: Any) -> str:
    if not isinstance(value, str):
        raise EventRefused(Rejection.BAD_FIELD, "id: missing or not a text")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise EventRefused(Rejection.BAD_FIELD, "id: not a UUID") from None
    if str(parsed) != value.lower():
        raise EventRefused(Rejection.BAD_FIELD, "id: not a UUID in its canonical form")
    return str(parsed)


def _count(item: Mapping[str, Any], name: str) -> int:
    value = item.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        raise EventRefused(Rejection.BAD_FIELD, f"{name}: missing or not an integer from 0 to 2^63-1")
    return value


def _status(out: Decoded, topic: str, payload: bytes, content_type: str | None, arrived_ms: int,
            max_payload: int) -> Decoded:
    place = where(topic)
    assert place is not None
    site, device, kind = place
    if not payload:
        out.status = Status(site, device, kind, arrived_ms, None, None, None)
        return out
    try:
        body = payloads.decode(payload, content_type, max_size=max_payload, expect=dict)
    except PayloadError as exc:
        out.rejects.append(_reject(topic, payload, arrived_ms, place, Rejection.MALFORMED, str(exc)))
        return out
    t = body.get("t")
    t_ms = t if isinstance(t, int) and not isinstance(t, bool) and 0 <= t <= MAX_INT else None
    online = body.get("online")
    out.status = Status(site, device, kind, arrived_ms, t_ms, online if isinstance(online, bool) else None,
                        as_json(body))
    return out


def _item_bytes(item: Any) -> bytes:
    try:
        return bytes(cbor2.dumps(item))
    except Exception:  # decoded from CBOR or JSON, so it encodes; a guard all the same
        return b""


def _reject(topic: str, body: bytes, arrived_ms: int, place: tuple[str, str, str] | None, reason: str,
            detail: str, *, event_id: str | None = None) -> Reject:
    digest = hashlib.sha256(topic.encode("utf-8", "replace") + b"\0" + body).hexdigest()
    return Reject(key=digest, arrived_ms=arrived_ms, topic=topic,
                  site=place[0] if place else None, device=place[1] if place else None,
                  reason=str(reason), detail=_clean(detail)[:MAX_DETAIL], event_id=event_id, body=body)
