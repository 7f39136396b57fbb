"""Payloads: CBOR maps with text keys out; CBOR or hand-typed JSON in, with the size cap checked
before any parsing and every problem reported as one PayloadError (never another exception)."""

from __future__ import annotations

import contextlib
import json

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_sentry.errors import PayloadError
from edge_sentry.link.payloads import (
    CBOR,
    JSON,
    decode,
    encode,
    scan_cbor,
    sniff,
)

SCAN = {"id": "0190", "seq": 7, "t": 1_760_000_000_000, "verdict": "accept", "subject": b"\x01" * 40}


def test_encode_round_trips_through_cbor():
    batch = [SCAN, {**SCAN, "seq": 8}]
    data = encode(batch)
    assert cbor2.loads(data) == batch
    assert decode(data, CBOR, expect=list) == batch
    assert decode(encode(SCAN)) == SCAN


def test_encode_refuses_non_text_keys_and_unencodable_values():
    with pytest.raises(PayloadError, match="text"):
        encode({"a": {1: "x"}})
    with pytest.raises(PayloadError):
        encode({"a": object()})
    with pytest.raises(PayloadError):
        encode("just a string")  # type: ignore[arg-type]


def test_json_typed_by_hand_is_accepted_with_or_without_content_type():
    text = b'  {"deadline": 1760000000, "args": {"ms": 500}}\n'
    assert decode(text, JSON) == {"deadline": 1760000000, "args": {"ms": 500}}
    assert decode(text) == decode(text, JSON)
    assert decode(text, "application/json; charset=utf-8")["args"] == {"ms": 500}
    assert sniff(text) == JSON
    assert sniff(encode({"a": 1})) == CBOR


def test_size_cap_is_checked_before_decoding():
    # Far over the cap and not even valid: the size is the error reported, so nothing was parsed.
    blob = b"\xff" * 5000
    with pytest.raises(PayloadError, match="5000 bytes is over the 4096-byte limit"):
        decode(blob, max_size=4096)
    assert decode(encode({"a": "x" * 100}), max_size=4096) == {"a": "x" * 100}


@pytest.mark.parametrize(
    ("data", "content_type", "message"),
    [
        (b"", None, "empty"),
        (b"{\"a\": 1", JSON, "malformed JSON"),
        (b"{\"a\": 1, \"a\": 2}", JSON, "repeats the key"),
        (b"{\"a\": NaN}", JSON, "NaN"),
        (b"{\"a\": \xff}", JSON, "not UTF-8"),
        (b"[1, 2]", JSON, "must be a map"),
        (b"\xa1\x61", CBOR, "truncated"),
        (b"\xa1\x01\x02", CBOR, "keys must be text"),
        (b"\x82\x01\x02", CBOR, "must be a map, not an array"),
        (b"\x01", CBOR, "must be a map, not int"),
        (b"\xa0\x00", CBOR, "1 bytes after the item"),
        (b"\xd8\x1c\xa0", CBOR, "tag 28 is not accepted"),
        (b"\xa1\x61a\xc1\x00", CBOR, "tag 1 is not accepted"),
        (b"\x9b\x00\x00\x00\xff\xff\xff\xff\xff", CBOR, "truncated container"),
        (b"\x5b\x00\x00\x00\xff\xff\xff\xff\xff", CBOR, "truncated string"),
        (b"\x7f\x61a\xff", CBOR, "indefinite-length strings"),
        (b"\xff", CBOR, "unexpected break"),
        (b"\x1c", CBOR, "reserved"),
    ],
)
def test_malformed_input_gives_a_clear_payload_error(data, content_type, message):
    with pytest.raises(PayloadError, match=message):
        decode(data, content_type)


def test_too_deep_nesting_is_refused_in_both_forms():
    deep_cbor = b"\xa1\x61a" * 20 + b"\x00"
    with pytest.raises(PayloadError, match="nested more than 16"):
        decode(deep_cbor)
    assert decode(b"\xa1\x61a" * 16 + b"\x00") is not None
    deep_json = ('{"a":' * 20 + "0" + "}" * 20).encode()
    with pytest.raises(PayloadError, match="nested more than 16"):
        decode(deep_json)
    abyss = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(PayloadError, match="nested"):
        decode(abyss, max_size=1 << 20, expect=None)
    with pytest.raises(PayloadError, match="nested"):
        scan_cbor(b"\x81" * 100_000 + b"\x00")


def test_expect_selects_the_top_level_type():
    assert decode(encode([{"a": 1}]), expect=list) == [{"a": 1}]
    assert decode(encode({"a": 1}), expect=None) == {"a": 1}
    with pytest.raises(PayloadError, match="must be an array"):
        decode(encode({"a": 1}), expect=list)


def test_indefinite_containers_are_well_formed_cbor():
    assert decode(b"\xbf\x61a\x9f\x01\x02\xff\xff") == {"a": [1, 2]}


def test_bignums_are_the_one_tag_accepted():
    assert decode(encode({"n": 2**70, "m": -(2**70)})) == {"n": 2**70, "m": -(2**70)}


def test_non_bytes_input_is_a_payload_error():
    with pytest.raises(PayloadError):
        decode("{}")  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_nothing_but_payload_error(data):
    for content_type in (None, CBOR, JSON):
        with contextlib.suppress(PayloadError):
            decode(data, content_type, expect=None)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=5))
def test_cbor_and_json_forms_of_a_map_decode_alike(value):
    assert decode(encode(value)) == value
    assert decode(json.dumps(value).encode()) == value


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=5), st.data())
def test_truncated_or_corrupted_cbor_raises_only_payload_error(value, data):
    raw = bytearray(encode(value))
    cut = data.draw(st.integers(0, len(raw)))
    flip = data.draw(st.integers(0, max(0, len(raw) - 1)))
    corrupted = bytearray(raw[:cut])
    if corrupted:
        corrupted[min(flip, len(corrupted) - 1)] ^= 0xFF
    with contextlib.suppress(PayloadError):
        decode(bytes(corrupted), CBOR, expect=None)
