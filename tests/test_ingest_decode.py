"""One message to rows: the topic vouches for site and device, the payload for nothing; bad input is
a reject with a reason, never an exception, and one bad event leaves the rest of its batch."""

from __future__ import annotations

import json

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from ingest_helpers import DEVICE, SITE, alarm, batch, now_ms, scan, topic

from edge_sentry.backend.decode import decode_message
from edge_sentry.link import payloads
from edge_sentry.privacy import Sealer, open_subject

MAX_FUTURE_S = 300


def decode(kind: str, body: object, *, arrived: int | None = None, raw: bytes | None = None, **where: str):
    data = raw if raw is not None else payloads.encode(body)  # type: ignore[arg-type]
    return decode_message(topic(kind, **where), data, None, now_ms() if arrived is None else arrived,
                          max_future_s=MAX_FUTURE_S)


def test_a_scan_batch_becomes_records_with_the_topics_site_and_device() -> None:
    events = batch(3)
    out = decode("scan", events)
    assert [r.id for r in out.records] == [e["id"] for e in events]
    first = out.records[0]
    assert (first.site, first.device, first.kind, first.event) == (SITE, DEVICE, "scan", "scan")
    assert (first.entrance, first.mode, first.verdict, first.reason, first.scheme) == (
        "north", "scan", "accept", "ok", "es1")
    assert first.subject == b"\x01sealed-bytes" and first.latency_ms == 41.5
    assert out.rejects == [] and out.status is None


def test_an_event_message_is_one_record_whose_other_fields_are_kept_as_details() -> None:
    out = decode("event", alarm("door-held", open_s=31.5))
    (record,) = out.records
    assert (record.kind, record.event, record.entrance) == ("event", "door-held", "north")
    assert json.loads(record.details) == {"open_s": 31.5}


def test_an_event_whose_site_or_device_is_not_its_topics_is_a_provenance_reject() -> None:
    forged = [scan(1), scan(2, device="gate-2"), scan(3, site="other")]
    out = decode("scan", forged)
    assert [r.id for r in out.records] == [forged[0]["id"]]
    assert [(r.reason, r.event_id, r.device) for r in out.rejects] == [
        ("provenance", forged[1]["id"], DEVICE), ("provenance", forged[2]["id"], DEVICE)]


def test_an_event_without_site_or_device_takes_the_topics() -> None:
    event = alarm("trust-invalid")
    del event["site"], event["device"]
    (record,) = decode("event", event).records
    assert (record.site, record.device) == (SITE, DEVICE)


def test_an_event_too_far_ahead_of_its_arrival_is_a_clock_skew_reject() -> None:
    arrived = now_ms()
    within = scan(1, t=arrived + MAX_FUTURE_S * 1000)
    ahead = scan(2, t=arrived + MAX_FUTURE_S * 1000 + 1)
    out = decode("scan", [within, ahead], arrived=arrived)
    assert [r.id for r in out.records] == [within["id"]]
    assert [(r.reason, r.event_id) for r in out.rejects] == [("clock-skew", ahead["id"])]


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"\xff\x00garbage", "scan"),
        (b"", "event"),
        (payloads.encode({"not": "an array"}), "scan"),
        (payloads.encode([1, 2]), "event"),
        (b"[1, 2", "scan"),
        (cbor2.dumps([{1: "integer key"}]), "scan"),
    ],
)
def test_a_payload_that_cannot_be_read_is_one_malformed_reject(raw: bytes, kind: str) -> None:
    out = decode(kind, None, raw=raw)
    assert out.records == []
    assert [r.reason for r in out.rejects] == ["malformed"]
    assert out.rejects[0].body == raw


@pytest.mark.parametrize(
    "change",
    [
        {"id": "not-a-uuid"}, {"id": 7}, {"id": ...}, {"seq": -1}, {"seq": "1"}, {"seq": True}, {"t": 2**64},
        {"t": 1.5}, {"mode": "teleport"}, {"verdict": "maybe"}, {"reason": ...}, {"entrance": 3},
        {"latency_ms": "fast"}, {"latency_ms": float("nan")}, {"subject": "clear text"},
        {"issuer": "nul\0inside"}, {"event": "door-forced"},
    ],
)  # fmt: skip
def test_a_scan_with_a_bad_field_is_a_reject_and_the_rest_of_its_batch_is_kept(
        change: dict[str, object]) -> None:
    good, bad = scan(1), {**scan(2), **change}
    bad = {k: v for k, v in bad.items() if v is not ...}
    out = decode("scan", [good, bad, "not a map"])
    assert [r.id for r in out.records] == [good["id"]]
    assert [r.reason for r in out.rejects] == ["bad-field", "bad-field"]


def test_texts_a_database_cannot_hold_are_cleaned_in_details_not_refused() -> None:
    event = alarm("disk-low", path="/var\0lib", note="\ud800")
    out = decode_message(topic("event"), json.dumps(event).encode(), "application/json", now_ms(),
                         max_future_s=MAX_FUTURE_S)
    (record,) = out.records
    assert "\0" not in record.details and "\\u0000" not in record.details
    record.details.encode("utf-8")


@pytest.mark.parametrize(
    "where",
    ["sentry/v1/arena/gate-1/config/reported", "sentry/v1/arena/all/scan", "other/topic",
     "sentry/v1/arena/gate-1/x"],
)
def test_a_topic_outside_the_contract_is_an_unknown_topic_reject(where: str) -> None:
    out = decode_message(where, payloads.encode(batch(1)), None, now_ms(), max_future_s=MAX_FUTURE_S)
    assert out.records == [] and [r.reason for r in out.rejects] == ["unknown-topic"]


def test_state_and_health_become_the_devices_status_and_an_empty_retained_message_clears_it() -> None:
    out = decode("state", {"online": False, "reason": "lost", "t": 5})
    assert out.status is not None
    assert (out.status.kind, out.status.online, out.status.t_ms) == ("state", False, 5)
    assert json.loads(out.status.body or "")["reason"] == "lost"
    cleared = decode("health", None, raw=b"")
    assert cleared.status is not None and cleared.status.body is None


def test_the_same_rejected_bytes_on_the_same_topic_give_the_same_key() -> None:
    raw = b"\xff\x00garbage"
    first, again = decode("scan", None, raw=raw), decode("scan", None, raw=raw, arrived=now_ms() + 5000)
    other_device = decode("scan", None, raw=raw, device="gate-2")
    assert first.rejects[0].key == again.rejects[0].key != other_device.rejects[0].key


@pytest.mark.parametrize("encode", ["cbor", "json"])
def test_a_subject_sealed_by_a_sentry_is_stored_and_still_opens_with_the_authoritys_key(encode: str) -> None:
    """A sentry sends its sealed subject as a map (docs/protocol.md 5), in CBOR or in JSON with hex."""
    key = X25519PrivateKey.generate()
    event = scan(1, subject=...)
    event["subject"] = Sealer(key.public_key()).seal(b"\x42" * 16, event)
    if encode == "json":
        raw = json.dumps([event], default=bytes.hex).encode()
    else:
        raw = payloads.encode([event])
    (record,) = decode("scan", None, raw=raw).records
    assert isinstance(record.subject, bytes)
    stored = {"site": record.site, "device": record.device, "entrance": record.entrance, "t": record.t_ms}
    assert open_subject(cbor2.loads(record.subject), key, stored) == b"\x42" * 16
