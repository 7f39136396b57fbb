"""`fleet report`'s figures: per site and entrance, over a period, from the back end's tables.

Counts come from the hourly rollup (`event_hours`, kept by the ingester in the events' own
transaction), so a report reads thousands of rows, not millions; the part of the period that does
not fill a whole hour at either end is counted from `events` itself (through the `t_ms` index), so
the figures are exact at any edge. The period is half-open, `since <= t < until`, on the sentries'
`t` for events, on the ingester's arrival for rejects and for the devices' state and health (a Last
Will carries no `t`).

What counts as what (docs/protocol.md section 7.1): `scans` is every scan event whatever its mode,
`manual`, `exit` and `assisted` the scans of those modes (the camera's own are `scans` less these),
`accept` and `deny` the scans by verdict, `reasons` the deny reasons. A device's uptime and outage
are the minutes of the period its `state` history says it was online or offline (before its first
known state it is neither); its backlog the deepest outbox its health reported in an hour that
overlaps the period. A device's figures go to the entrance its events named most recently. Rejects
carry the topic's site but no entrance (the event was not usable), so they have rows of their own
with `entrance` null.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..vocabulary import Event, Mode, Verdict
from . import schema
from .base import Store

ALARMS = (Event.DOOR_FORCED, Event.DOOR_HELD, Event.TAILGATE)
H = schema.HOUR_MS
_KEYS = "site, coalesce(entrance, ''), event, coalesce(mode, ''), coalesce(verdict, ''), coalesce(reason, '')"
_ROLLUP_KEYS = "site, entrance, event, mode, verdict, reason"
# Whole hours from the rollup: the counts, and the scans per hour; the ragged ends from `events`, by hour.
_COUNTS = (f"SELECT {_ROLLUP_KEYS}, sum(n) FROM event_hours WHERE hour_ms >= ? AND hour_ms < ? "
           f"GROUP BY {_ROLLUP_KEYS}")
_HOURLY = ("SELECT hour_ms, site, entrance, sum(n) FROM event_hours WHERE hour_ms >= ? AND hour_ms < ? "
           "AND event = 'scan' GROUP BY hour_ms, site, entrance")
_EDGE = (f"SELECT t_ms - t_ms % {H}, {_KEYS}, count(*) FROM events WHERE t_ms >= ? AND t_ms < ? "
         f"GROUP BY t_ms - t_ms % {H}, {_KEYS}")
_STATES = "SELECT site, device, arrived_ms, online FROM device_states WHERE arrived_ms < ? " \
          "ORDER BY site, device, arrived_ms"
_BACKLOG = "SELECT site, device, max(backlog_max) FROM device_hours WHERE hour_ms >= ? AND hour_ms < ? " \
           "GROUP BY site, device"
_ENTRANCES = "SELECT site, device, entrance, last_ms FROM device_entrances"
_REJECTS = "SELECT site, reason, count(*) FROM rejects WHERE arrived_ms >= ? AND arrived_ms < ? " \
           "GROUP BY site, reason"

Place = tuple[str | None, str | None]


@dataclass
class Line:
    """One site and entrance (docs/protocol.md section 7.1 names each figure)."""

    site: str | None
    entrance: str | None
    scans: int = 0
    accept: int = 0
    deny: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    manual: int = 0
    exit: int = 0
    assisted: int = 0
    alarms: Counter[str] = field(default_factory=Counter)
    uptime_min: float = 0.0
    outage_min: float = 0.0
    backlog_max: int | None = None
    rejected: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {
            "site": self.site, "entrance": self.entrance, "scans": self.scans, "accept": self.accept,
            "deny": self.deny, "reasons": dict(sorted(self.reasons.items())), "manual": self.manual,
            "exit": self.exit, "assisted": self.assisted,
            "alarms": {str(name): self.alarms[name] for name in ALARMS},
            "uptime_min": round(self.uptime_min, 1), "outage_min": round(self.outage_min, 1),
            "backlog_max": self.backlog_max, "rejected": dict(sorted(self.rejected.items())),
        }  # fmt: skip


@dataclass
class Report:
    since_ms: int
    until_ms: int
    lines: list[Line]
    hourly: dict[Place, Counter[int]]  # scans per hour (start, ms) per site and entrance
    retention_events: int = 0
    retention_rejects: int = 0

    def deny_reasons(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for line in self.lines:
            total.update(line.reasons)
        return total


def build(store: Store, since_ms: int, until_ms: int) -> Report:
    """The report of `since_ms <= t < until_ms` (StoreError when the database cannot be read)."""
    lines: dict[Place, Line] = {}
    hourly: dict[Place, Counter[int]] = {}

    def line(site: str | None, entrance: str | None) -> Line:
        key = (site, entrance or None)
        if key not in lines:
            lines[key] = Line(key[0], key[1])
        return lines[key]

    whole, edges = _spans(since_ms, until_ms)
    counts = store.rows(_COUNTS, whole) if whole else []
    hours = store.rows(_HOURLY, whole) if whole else []
    for span in edges:
        for hour, *row in store.rows(_EDGE, span):
            counts.append(tuple(row))
            if row[2] == Event.SCAN:
                hours.append((hour, row[0], row[1], row[-1]))
    for site, entrance, event, mode, verdict, reason, n in counts:
        if event == Event.SCAN:
            _scan(line(str(site), str(entrance)), str(mode), str(verdict), str(reason), int(str(n)))
        elif event in ALARMS:  # the other events (door opened, start, ...) are no figure of the report
            line(str(site), str(entrance)).alarms[str(event)] += int(str(n))
    for hour, site, entrance, n in hours:
        target = line(str(site), str(entrance))
        hourly.setdefault((target.site, target.entrance), Counter())[int(str(hour))] += int(str(n))
    _devices(store, since_ms, until_ms, line)
    for site, reason, n in store.rows(_REJECTS, (since_ms, until_ms)):
        line(None if site is None else str(site), None).rejected[str(reason)] += int(str(n))
    counters = store.counters()
    return Report(since_ms, until_ms, [lines[k] for k in sorted(lines, key=_order)], hourly,
                  counters.get(schema.RETENTION_EVENTS, 0), counters.get(schema.RETENTION_REJECTS, 0))


def _order(key: Place) -> tuple[bool, str, bool, str]:
    site, entrance = key
    return (site is None, site or "", entrance is None, entrance or "")


def _scan(target: Line, mode: str, verdict: str, reason: str, n: int) -> None:
    target.scans += n
    if verdict == Verdict.ACCEPT:
        target.accept += n
    else:
        target.deny += n
        target.reasons[reason] += n
    if mode == Mode.MANUAL:
        target.manual += n
    elif mode == Mode.EXIT:
        target.exit += n
    elif mode == Mode.ASSISTED:
        target.assisted += n


def _spans(since_ms: int, until_ms: int) -> tuple[tuple[int, int] | None, list[tuple[int, int]]]:
    """The period's whole hours (for the rollup), and its ragged ends (for `events`)."""
    first, last = -(-since_ms // H) * H, until_ms // H * H
    if first >= last:
        return None, [(since_ms, until_ms)]
    return (first, last), [span for span in ((since_ms, first), (last, until_ms)) if span[0] < span[1]]


def _devices(store: Store, since_ms: int, until_ms: int, line: Any) -> None:
    """Uptime, outage and backlog of each device, onto the line of its entrance."""
    latest: dict[tuple[str, str], tuple[int, str]] = {}
    for site, device, entrance, last_ms in store.rows(_ENTRANCES):
        key, seen = (str(site), str(device)), (int(str(last_ms)), str(entrance))
        latest[key] = max(latest.get(key, seen), seen)
    minutes: dict[tuple[str, str], tuple[float, float]] = {}
    history: dict[tuple[str, str], list[tuple[int, bool]]] = {}
    for site, device, arrived_ms, online in store.rows(_STATES, (until_ms,)):
        history.setdefault((str(site), str(device)), []).append((int(str(arrived_ms)), bool(online)))
    for key, changes in history.items():
        minutes[key] = uptime(changes, since_ms, until_ms)
    for key, (up, down) in minutes.items():
        target = line(key[0], latest.get(key, (0, None))[1])
        target.uptime_min += up
        target.outage_min += down
    for site, device, depth in store.rows(_BACKLOG, (since_ms // H * H, until_ms)):
        key = (str(site), str(device))
        target = line(key[0], latest.get(key, (0, None))[1])
        target.backlog_max = max(target.backlog_max or 0, int(str(depth)))


def uptime(changes: list[tuple[int, bool]], since_ms: int, until_ms: int) -> tuple[float, float]:
    """(online, offline) minutes within the period of a device's states, oldest first; each state
    holds until the next, the last until the end of the period."""
    online = offline = 0
    for i, (at, up) in enumerate(changes):
        end = changes[i + 1][0] if i + 1 < len(changes) else until_ms
        span = max(0, min(end, until_ms) - max(at, since_ms))
        if up:
            online += span
        else:
            offline += span
    return online / 60_000, offline / 60_000
