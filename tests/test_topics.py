"""Topic names follow docs/protocol.md 6.2 exactly, ids that would widen a topic are refused, and an
incoming topic reads back as (kind, name)."""

from __future__ import annotations

import pytest

from edge_sentry.errors import TopicError
from edge_sentry.link.topics import (
    CMD,
    CONFIG_DESIRED,
    SITE_CONFIG_DESIRED,
    TopicParts,
    Topics,
    check_filter,
    check_publish_topic,
)

T = Topics("arena", "gate-1")


def test_topic_names_are_the_contract_ones():
    assert T.prefix == "sentry/v1/arena/gate-1"
    assert T.state == "sentry/v1/arena/gate-1/state"
    assert T.scan == "sentry/v1/arena/gate-1/scan"
    assert T.event == "sentry/v1/arena/gate-1/event"
    assert T.health == "sentry/v1/arena/gate-1/health"
    assert T.config_desired == "sentry/v1/arena/gate-1/config/desired"
    assert T.config_reported == "sentry/v1/arena/gate-1/config/reported"
    assert T.trust == "sentry/v1/arena/gate-1/trust"
    assert T.cmd("pulse-gate") == "sentry/v1/arena/gate-1/cmd/pulse-gate"
    assert T.cmd_filter == "sentry/v1/arena/gate-1/cmd/+"
    assert T.site_config_desired == "sentry/v1/arena/all/config/desired"


@pytest.mark.parametrize("bad", ["", "a/b", "a+", "#", "x#y", "nul\0"])
def test_ids_that_would_widen_or_break_a_topic_are_refused(bad):
    with pytest.raises(TopicError):
        Topics(bad, "gate-1")
    with pytest.raises(TopicError):
        Topics("arena", bad)
    with pytest.raises(TopicError):
        T.cmd(bad)


def test_device_id_all_is_reserved_for_the_site():
    with pytest.raises(TopicError, match="reserved"):
        Topics("arena", "all")


@pytest.mark.parametrize(
    ("topic", "parts"),
    [
        ("sentry/v1/arena/gate-1/state", TopicParts("state")),
        ("sentry/v1/arena/gate-1/config/desired", TopicParts(CONFIG_DESIRED)),
        ("sentry/v1/arena/gate-1/trust", TopicParts("trust")),
        ("sentry/v1/arena/gate-1/cmd/selftest", TopicParts(CMD, "selftest")),
        ("sentry/v1/arena/all/config/desired", TopicParts(SITE_CONFIG_DESIRED)),
    ],
)
def test_incoming_topics_parse_into_kind_and_name(topic, parts):
    assert T.parse(topic) == parts


@pytest.mark.parametrize(
    "topic",
    [
        "sentry/v1/arena/gate-2/cmd/selftest",  # another device
        "sentry/v1/other/gate-1/state",  # another site
        "sentry/v1/arena/gate-1/nonsense",
        "sentry/v1/arena/gate-1/cmd/",
        "sentry/v1/arena/gate-1/cmd/a/b",
        "sentry/v1/arena/all/trust",
        "sentry/v1/arena/gate-10/state",  # a prefix of the id is not the id
    ],
)
def test_foreign_or_unknown_topics_are_refused(topic):
    with pytest.raises(TopicError):
        T.parse(topic)


def test_round_trip_of_every_built_topic():
    built = [T.state, T.scan, T.event, T.health, T.config_desired, T.config_reported, T.trust]
    assert [T.parse(t).kind for t in built] == [
        "state", "scan", "event", "health", "config/desired", "config/reported", "trust"
    ]
    assert T.parse(T.cmd("restart")) == TopicParts("cmd", "restart")
    assert T.parse(T.site_config_desired).kind == SITE_CONFIG_DESIRED


def test_resolve_keeps_absolute_topics_and_prefixes_kinds():
    assert T.resolve("health") == T.health
    assert T.resolve("cmd/+") == T.cmd_filter
    assert T.resolve(T.site_config_desired) == T.site_config_desired
    with pytest.raises(TopicError):
        T.resolve("cmd/#/x")


def test_publish_topics_take_no_wildcards_and_filters_take_them_whole():
    assert check_publish_topic("a/b") == "a/b"
    for bad in ("a/+", "a/#", "a//b", ""):
        with pytest.raises(TopicError):
            check_publish_topic(bad)
    assert check_filter("a/+/c/#") == "a/+/c/#"
    for bad in ("a/#/c", "a/b+", "a/#x", ""):
        with pytest.raises(TopicError):
            check_filter(bad)
