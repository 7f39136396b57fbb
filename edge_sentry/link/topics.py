"""MQTT topic names of docs/protocol.md section 6.2 (a contract): building them and reading them back.

Every topic a device uses sits under `sentry/v1/{site}/{device}`; the one site-wide topic is
`sentry/v1/{site}/all/config/desired`. Site and device ids come from the config, so they are checked
here once: a `/`, `+` or `#` inside an id would silently widen a subscription or an ACL grant, and an
empty id would collide with another level. This module is pure: no I/O, no logging.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import TopicError

ROOT = "sentry/v1"
SITE_WIDE = "all"  # the device-id slot that addresses every device of a site

STATE = "state"
SCAN = "scan"
EVENT = "event"
HEALTH = "health"
CONFIG_DESIRED = "config/desired"
CONFIG_REPORTED = "config/reported"
TRUST = "trust"
CMD = "cmd"
SITE_CONFIG_DESIRED = "all/config/desired"  # kind that parse() gives the site-wide desired config

# Kinds under the device prefix that take no further name.
FIXED_KINDS = (STATE, SCAN, EVENT, HEALTH, CONFIG_DESIRED, CONFIG_REPORTED, TRUST)

_FORBIDDEN = ("/", "+", "#", "\0")


class TopicParts(NamedTuple):
    """What an incoming topic addresses: `kind` is one of the constants above; `name` is the
    command name for `cmd`, None otherwise."""

    kind: str
    name: str | None = None


def check_segment(value: str, what: str = "topic segment") -> str:
    """Return `value` if it can be one topic level: non-empty, without `/ + #` or NUL."""
    if not isinstance(value, str) or not value:
        raise TopicError(f"{what} must be a non-empty string")
    bad = [c for c in _FORBIDDEN if c in value]
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise TopicError(f"{what} {value!r} must not contain {shown}")
    return value


def check_publish_topic(topic: str) -> str:
    """Return `topic` if a client may publish to it: no wildcards, no empty or NUL levels."""
    if not isinstance(topic, str) or not topic:
        raise TopicError("topic must be a non-empty string")
    for level in topic.split("/"):
        check_segment(level, f"level of topic {topic!r}")
    return topic


def check_filter(topic_filter: str) -> str:
    """Return `topic_filter` if it is a valid subscription filter (`+` whole levels, `#` last)."""
    if not isinstance(topic_filter, str) or not topic_filter:
        raise TopicError("topic filter must be a non-empty string")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if level in ("+", "#"):
            if level == "#" and i != len(levels) - 1:
                raise TopicError(f"'#' must be the last level of {topic_filter!r}")
            continue
        check_segment(level, f"level of filter {topic_filter!r}")
    return topic_filter


class Topics:
    """The topics of one device; built from `device.site` and `device.id` of the config."""

    def __init__(self, site: str, device: str) -> None:
        self.site = check_segment(site, "site id")
        self.device = check_segment(device, "device id")
        if device == SITE_WIDE:
            raise TopicError(f"device id {SITE_WIDE!r} is reserved for site-wide topics")
        self.site_prefix = f"{ROOT}/{site}"
        self.prefix = f"{self.site_prefix}/{device}"

    def __repr__(self) -> str:
        return f"Topics({self.site!r}, {self.device!r})"

    # -- building -----------------------------------------------------------------------------

    def device_topic(self, kind: str) -> str:
        """`{prefix}/{kind}` for a relative kind such as `state` or `cmd/selftest`."""
        levels = kind.split("/") if isinstance(kind, str) else [kind]
        for level in levels:
            check_segment(level, "topic kind level")
        return f"{self.prefix}/{kind}"

    @property
    def state(self) -> str:
        return f"{self.prefix}/{STATE}"

    @property
    def scan(self) -> str:
        return f"{self.prefix}/{SCAN}"

    @property
    def event(self) -> str:
        return f"{self.prefix}/{EVENT}"

    @property
    def health(self) -> str:
        return f"{self.prefix}/{HEALTH}"

    @property
    def config_desired(self) -> str:
        return f"{self.prefix}/{CONFIG_DESIRED}"

    @property
    def config_reported(self) -> str:
        return f"{self.prefix}/{CONFIG_REPORTED}"

    @property
    def trust(self) -> str:
        return f"{self.prefix}/{TRUST}"

    def cmd(self, name: str) -> str:
        return f"{self.prefix}/{CMD}/{check_segment(name, 'command name')}"

    @property
    def cmd_filter(self) -> str:
        """Every command addressed to this device."""
        return f"{self.prefix}/{CMD}/+"

    @property
    def site_config_desired(self) -> str:
        return f"{self.site_prefix}/{SITE_CONFIG_DESIRED}"

    def resolve(self, kind_or_topic: str) -> str:
        """A full topic: absolute topics (starting with `sentry/v1/`) are kept as they are, anything
        else is a kind relative to this device's prefix. Wildcards are allowed (for filters)."""
        topic = kind_or_topic if kind_or_topic.startswith(ROOT + "/") else f"{self.prefix}/{kind_or_topic}"
        return check_filter(topic)

    # -- reading ------------------------------------------------------------------------------

    def parse(self, topic: str) -> TopicParts:
        """What an incoming topic of this device (or of its site's `all`) addresses.

        Raises TopicError for a topic of another device or site, or one that names no known kind.
        """
        site_wide = f"{self.site_prefix}/{SITE_WIDE}/"
        if topic.startswith(site_wide):
            if topic[len(site_wide):] == CONFIG_DESIRED:
                return TopicParts(SITE_CONFIG_DESIRED)
            raise TopicError(f"unknown site-wide topic {topic!r}")
        if not topic.startswith(self.prefix + "/"):
            raise TopicError(f"topic {topic!r} is not under {self.prefix!r} or its site's {SITE_WIDE!r}")
        rest = topic[len(self.prefix) + 1:]
        if rest in FIXED_KINDS:
            return TopicParts(rest)
        head, _, name = rest.partition("/")
        if head == CMD and name:
            return TopicParts(CMD, check_segment(name, "command name"))
        raise TopicError(f"unknown topic {topic!r}")
