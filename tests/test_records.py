"""Event ids are RFC 9562 UUIDv7s that never go backwards; stamping copies, never mutates."""

from __future__ import annotations

import uuid

import pytest
from fakes import FakeClock

from edge_sentry.records import EventIdGenerator, event_id_ms, new_event_id, stamp, uuid7_from_parts


def test_new_event_id_is_a_version_7_rfc_9562_uuid():
    parsed = uuid.UUID(new_event_id())
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_the_first_48_bits_are_the_unix_milliseconds_of_the_clock():
    make = EventIdGenerator(FakeClock(1_760_000_000.123))
    event_id = make()
    assert event_id_ms(event_id) == 1_760_000_000_123
    assert int(event_id.replace("-", ""), 16) >> 80 == 1_760_000_000_123


def test_ids_within_one_millisecond_still_sort_in_issue_order():
    make = EventIdGenerator(FakeClock(1_760_000_000.0))
    ids = [make() for _ in range(5000)]  # more than the 12-bit counter holds in one millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids)


def test_a_clock_stepping_back_does_not_make_ids_go_backwards():
    clock = FakeClock(1_760_000_100.0)
    make = EventIdGenerator(clock)
    first = make()
    clock.now -= 3600
    second = make()
    assert second > first
    assert event_id_ms(second) >= event_id_ms(first)


def test_layout_puts_version_and_variant_bits_where_rfc_9562_says():
    event_id = uuid7_from_parts(0x0123456789AB, 0xABC, (1 << 62) - 1)
    assert event_id == "01234567-89ab-7abc-bfff-ffffffffffff"
    assert event_id_ms(event_id) == 0x0123456789AB


@pytest.mark.parametrize("text", ["", "not-a-uuid", str(uuid.uuid4())])
def test_event_id_ms_refuses_what_is_not_a_uuid7(text):
    with pytest.raises(ValueError):
        event_id_ms(text)


def test_stamp_returns_a_copy_and_keeps_a_time_the_caller_set():
    event = {"event": "scan", "t": 42}
    stamped = stamp(event, "id-1", 7, 99)
    assert stamped == {"event": "scan", "t": 42, "id": "id-1", "seq": 7}
    assert event == {"event": "scan", "t": 42}
    assert stamp({"event": "scan"}, "id-2", 8, 99)["t"] == 99
