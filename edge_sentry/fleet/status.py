"""What a site's sentries last said about themselves, from their retained topics, as rows and a table.

Each sentry keeps three retained messages (docs/protocol.md section 6): `state` (its birth, or its Last
Will: online, firmware, config and trust versions), `health` (machine figures, backlog, link and
gate state) and `config/reported` (the outcome of the last desired config). A `Snapshot` is fed
those messages in arrival order and keeps the latest of each per device; `rows()` flattens them
into one record per device with fixed keys (None where a sentry did not say), which is what
`fleet status --json` prints and what the push commands read versions and liveness from.

A field is shown only as reported: a Last Will carries no versions, a health report off a Pi has
no temperature, and a made-up value would hide exactly what an operator is looking for. Pure: no
I/O; the clock is a parameter.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import PayloadError
from ..link import payloads, topics
from .client import Message, split_topic

KINDS = (topics.STATE, topics.HEALTH, topics.CONFIG_REPORTED)

#: Keys of every row, in the order of the table's columns (JSON output keeps this order too).
ROW_KEYS = (
    "device",
    "online",
    "last_seen",
    "firmware",
    "config_version",
    "site_config_version",
    "config_status",
    "config_errors",
    "trust_version",
    "outbox_depth",
    "outbox_oldest_age_s",
    "alarms",
    "gate",
    "link",
    "cpu_temp_c",
    "throttled",
    "throttled_since_boot",
    "boot_id",
    "reason",
)


@dataclass
class Device:
    """The latest retained documents of one sentry (None: not seen)."""

    name: str
    state: dict[str, Any] | None = None
    health: dict[str, Any] | None = None
    reported: dict[str, Any] | None = None

    @property
    def online(self) -> bool | None:
        """True or False as the sentry (or its Last Will) said; None when it said nothing."""
        if self.state is None or not isinstance(self.state.get("online"), bool):
            return None
        online: bool = self.state["online"]
        return online

    def versions(self, source: str) -> list[int]:
        """Every version of `source` ("device" or "site") that this sentry reports as applied or
        decided on: a push must go above all of them, or the sentry ignores it."""
        state_key, report_key = (
            ("config_version", "version") if source == "device" else ("site_config_version", "site_version")
        )
        found = []
        for doc, key in ((self.state, state_key), (self.reported, report_key)):
            value = doc.get(key) if doc else None
            if isinstance(value, int) and not isinstance(value, bool):
                found.append(value)
        return found

    @property
    def trust_version(self) -> int | None:
        value = (self.state or {}).get("trust_version")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class Snapshot:
    """The retained view of one site, built message by message; `problems` lists messages that
    could not be read (by topic, never by content)."""

    site: str
    max_payload: int = payloads.DEFAULT_MAX_PAYLOAD
    devices: dict[str, Device] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def device(self, name: str) -> Device:
        if name not in self.devices:
            self.devices[name] = Device(name)
        return self.devices[name]

    def feed(self, message: Message) -> tuple[str, str, dict[str, Any] | None] | None:
        """Take one message; return (device, kind, decoded map) for a message on a sentry's topic
        (the map None when it was cleared or unreadable, or of a kind that is not read here), None
        for any other topic. `event` messages are decoded for the caller but not kept: they are
        not retained, so they say nothing about the sentry's present."""
        where = split_topic(self.site, message.topic)
        if where is None or where[0] == topics.SITE_WIDE:
            return None
        name, kind = where
        if kind not in KINDS and kind != topics.EVENT:
            return name, kind, None
        if not message.payload:  # a cleared retained message: the sentry was removed
            if name in self.devices and kind in KINDS:
                setattr(self.devices[name], _slot(kind), None)
            return name, kind, None
        try:
            doc = payloads.decode(message.payload, message.content_type, max_size=self.max_payload)
        except PayloadError as exc:
            self.problems.append(f"{message.topic}: {exc}")
            return name, kind, None
        if kind in KINDS:
            setattr(self.device(name), _slot(kind), doc)
        return name, kind, doc

    def feed_all(self, messages: Iterable[Message]) -> Snapshot:
        for message in messages:
            self.feed(message)
        return self

    def rows(self) -> list[dict[str, Any]]:
        """One record per device, sorted by device id."""
        return [row(self.devices[name]) for name in sorted(self.devices)]


def _slot(kind: str) -> str:
    return {topics.STATE: "state", topics.HEALTH: "health", topics.CONFIG_REPORTED: "reported"}[kind]


def _map(value: Any) -> Mapping[str, Any]:
    """A sub-map of a report, or an empty one where the sentry sent something else."""
    return value if isinstance(value, Mapping) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _flags(value: Any) -> list[str] | None:
    """Names of the set flags of a `{flag: bool}` map (None when the map is absent)."""
    if not isinstance(value, Mapping):
        return None
    return sorted(str(k) for k, v in value.items() if v is True)


def row(device: Device) -> dict[str, Any]:
    """The flat record of one sentry (keys: ROW_KEYS)."""
    state = device.state or {}
    health = device.health or {}
    reported = device.reported or {}
    outbox = _map(health.get("outbox"))
    throttled = _map(health.get("throttled"))
    seen = [t for t in (_int(state.get("t")), _int(health.get("t"))) if t is not None]
    gate = health.get("gate") if isinstance(health.get("gate"), str) else None
    alarms = []
    if gate in ("alarm", "fault"):
        alarms.append(f"gate-{gate}")
    if outbox.get("disk_error"):
        alarms.append("outbox-disk-error")
    if _flags(throttled.get("now")):
        alarms.append("throttled")
    errors = reported.get("errors")
    if not isinstance(errors, list):
        errors = []
    config_version = _int(state.get("config_version"))
    if config_version is None:
        config_version = _int(health.get("config_version"))
    trust_version = device.trust_version
    if trust_version is None:
        trust_version = _int(health.get("trust_version"))
    return {
        "device": device.name,
        "online": device.online,
        "last_seen": max(seen) if seen else None,
        "firmware": state.get("firmware") if isinstance(state.get("firmware"), str) else None,
        "config_version": config_version,
        "site_config_version": _int(state.get("site_config_version")),
        "config_status": reported.get("status") if isinstance(reported.get("status"), str) else None,
        "config_errors": [
            {"path": e.get("path"), "message": e.get("message")} for e in errors if isinstance(e, Mapping)
        ],
        "trust_version": trust_version,
        "outbox_depth": _int(outbox.get("depth")),
        "outbox_oldest_age_s": _number(outbox.get("oldest_age_s")),
        "alarms": alarms,
        "gate": gate,
        "link": health.get("link") if isinstance(health.get("link"), str) else None,
        "cpu_temp_c": _number(health.get("cpu_temp_c")),
        "throttled": _flags(throttled.get("now")),
        "throttled_since_boot": _flags(throttled.get("since_boot")),
        "boot_id": state.get("boot_id") if isinstance(state.get("boot_id"), str) else None,
        "reason": state.get("reason") if isinstance(state.get("reason"), str) else None,
    }


# -- the table -----------------------------------------------------------------------------------

COLUMNS = ("DEVICE", "ONLINE", "LAST SEEN", "FIRMWARE", "CONFIG", "TRUST", "BACKLOG", "ALARMS",
           "LINK", "TEMP", "THROTTLED")


def age(seconds: float) -> str:
    """12s, 5m, 3h, 2d: how long ago, to the unit an operator reads at a glance."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def cells(record: Mapping[str, Any], now: float) -> list[str]:
    """The table cells of one row; `now` in seconds since 1970."""

    def text(value: Any) -> str:
        return "-" if value is None else str(value)

    online = {True: "yes", False: "NO", None: "?"}[record["online"]]
    if record["online"] is False and record.get("reason"):
        online += f" ({record['reason']})"
    seen = record["last_seen"]
    last_seen = f"{age(now - seen / 1000)} ago" if seen is not None else "-"
    config = text(record["config_version"])
    if record["site_config_version"]:
        config += f" +site {record['site_config_version']}"
    if record["config_status"] == "rejected":
        config += f" REJECTED ({len(record['config_errors'])} errors)"
    backlog = "-"
    if record["outbox_depth"] is not None:
        backlog = str(record["outbox_depth"])
        if record["outbox_depth"] and record["outbox_oldest_age_s"] is not None:
            backlog += f" ({age(record['outbox_oldest_age_s'])})"
    temp = f"{record['cpu_temp_c']:.1f}C" if record["cpu_temp_c"] is not None else "-"
    throttled = "-"
    if record["throttled"] is not None:
        now_flags = ",".join(record["throttled"]) or "no"
        earlier = sorted(set(record["throttled_since_boot"] or []) - set(record["throttled"]))
        throttled = now_flags + (f" (since boot: {','.join(earlier)})" if earlier else "")
    return [
        record["device"],
        online,
        last_seen,
        text(record["firmware"]),
        config,
        text(record["trust_version"]),
        backlog,
        ",".join(record["alarms"]) or "-",
        text(record["link"]),
        temp,
        throttled,
    ]


def table(records: Iterable[Mapping[str, Any]], now: float | None = None) -> str:
    """The rows as a fixed-width text table with a header line."""
    now = time.time() if now is None else now
    lines = [list(COLUMNS)] + [cells(r, now) for r in records]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )
