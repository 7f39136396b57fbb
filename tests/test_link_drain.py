"""The drain's plan, without a broker: runs of scans as one `scan` array, other events alone on
`event`, halving to fit the broker's Maximum Packet Size, and what cannot be sent left out, named by
id and seq only."""

from __future__ import annotations

from typing import Any

import cbor2

from edge_sentry.link.drain import Message, Skipped, plan
from edge_sentry.link.outgoing import packet_size, publish_properties
from edge_sentry.link.payloads import CBOR
from edge_sentry.link.topics import Topics

TOPICS = Topics("arena", "gate-1")
PROPS = publish_properties(CBOR)


def scan(seq: int, **extra: Any) -> dict[str, Any]:
    return {"event": "scan", "id": f"e-{seq}", "seq": seq, "verdict": "accept", **extra}


def other(seq: int) -> dict[str, Any]:
    return {"event": "door-held", "id": f"e-{seq}", "seq": seq, "held_s": 31}


def messages(items: list[Message | Skipped]) -> list[Message]:
    return [i for i in items if isinstance(i, Message)]


def test_runs_of_scans_go_as_one_array_and_other_events_alone_in_order():
    events = [scan(1), scan(2), other(3), scan(4), other(5), other(6), scan(7)]
    out = plan(events, TOPICS, None, PROPS)
    assert all(isinstance(i, Message) for i in out)
    shape = [(m.topic, m.ids) for m in messages(out)]
    assert shape == [
        (TOPICS.scan, ("e-1", "e-2")),
        (TOPICS.event, ("e-3",)),
        (TOPICS.scan, ("e-4",)),
        (TOPICS.event, ("e-5",)),
        (TOPICS.event, ("e-6",)),
        (TOPICS.scan, ("e-7",)),
    ]
    first, alone = messages(out)[:2]
    assert cbor2.loads(first.body) == events[:2]  # an array on `scan`
    assert cbor2.loads(alone.body) == events[2]  # one map on `event`


def test_nothing_to_send_plans_nothing():
    assert plan([], TOPICS, None, PROPS) == []


def test_a_run_too_big_for_the_broker_is_halved_until_each_message_fits():
    events = [scan(n, pad="x" * 100) for n in range(1, 61)]
    limit = 4000
    out = messages(plan(events, TOPICS, limit, PROPS))
    assert len(out) > 1
    assert all(packet_size(m.topic, m.body, 1, PROPS) <= limit for m in out)
    assert [i for m in out for i in m.ids] == [e["id"] for e in events]  # in order, each once
    assert messages(plan(events, TOPICS, None, PROPS))[0].ids == tuple(e["id"] for e in events)


def test_an_event_too_big_even_alone_is_left_out_where_it_was_and_the_rest_still_goes():
    events = [scan(1, pad="x" * 100), scan(2, pad="x" * 5000), scan(3, pad="x" * 100), other(4)]
    out = plan(events, TOPICS, 4000, PROPS)
    skipped = [i for i in out if isinstance(i, Skipped)]
    assert [(s.id, s.seq, s.why) for s in skipped] == [("e-2", 2, "oversized")]
    assert "4000" in skipped[0].detail and "x" * 10 not in skipped[0].detail  # no content
    assert [i for m in messages(out) for i in m.ids] == ["e-1", "e-3", "e-4"]
    assert [type(i).__name__ for i in out] == ["Message", "Skipped", "Message", "Message"]


def test_an_event_that_cannot_be_encoded_is_left_out_and_its_run_still_goes():
    events = [scan(1), scan(2, bad=object()), scan(3), {**other(4), "bad": object()}, scan(5)]
    out = plan(events, TOPICS, None, PROPS)
    skipped = [i for i in out if isinstance(i, Skipped)]
    assert [(s.id, s.seq, s.why) for s in skipped] == [("e-2", 2, "unencodable"), ("e-4", 4, "unencodable")]
    assert [(m.topic, m.ids) for m in messages(out)] == [(TOPICS.scan, ("e-1", "e-3")),
                                                        (TOPICS.scan, ("e-5",))]
    assert cbor2.loads(messages(out)[0].body) == [events[0], events[2]]


def test_the_plan_is_pure_the_same_events_give_the_same_messages():
    events = [scan(1), other(2), scan(3, pad="x" * 3000), scan(4, pad="x" * 3000)]
    assert plan(events, TOPICS, 4000, PROPS) == plan(events, TOPICS, 4000, PROPS)
    assert len(messages(plan(events, TOPICS, 4000, PROPS))) == 4  # the 2-scan run halved
