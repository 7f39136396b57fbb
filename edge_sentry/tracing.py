"""Contact tracing on the back end, the health authority's side: open the sealed subjects of a time
window, find one subject's visits and who was at the same entrance around them.

Every subject is sealed with a fresh encapsulation (privacy.py), so nothing in the database links
two scans of one person: only opening every subject of the window does. That is one HPKE open per
scan, and the opened subjects live in this process's memory only; nothing here logs or writes
them anywhere (the caller prints the report, which is the authority's to keep).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from . import privacy
from .backend.reader import Scan
from .errors import SubjectError

MINUTE_MS = 60_000


@dataclass(frozen=True)
class Opened:
    """A scan whose subject opened."""

    scan: Scan
    sub: bytes


@dataclass
class Visit:
    scan: Scan
    co_visitors: list[Opened] = field(default_factory=list)


@dataclass
class Trace:
    """What a trace found; `failed` counts the subjects that did not open, by reason."""

    sub: bytes
    since_ms: int
    until_ms: int
    window_ms: int
    total: int = 0
    opened: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    visits: list[Visit] = field(default_factory=list)


def open_scan(scan: Scan, key: X25519PrivateKey) -> bytes:
    """The subject of a stored scan; SubjectError (with its reason) when it does not open."""
    if scan.subject is None:
        raise SubjectError("no-subject", "the event carries no subject")
    try:
        sealed: Any = cbor2.loads(scan.subject)
    except Exception:  # any decoding failure: the stored bytes are no sealed subject
        raise SubjectError("malformed", "the stored subject is not CBOR") from None
    event = {"site": scan.site, "device": scan.device, "entrance": scan.entrance, "t": scan.t_ms}
    return privacy.open_subject(sealed, key, event)


def open_all(scans: Iterable[Scan], key: X25519PrivateKey, trace: Trace,
             progress: Callable[[int], None] | None = None) -> list[Opened]:
    """Every scan's subject opened, failures counted in `trace.failed`, `trace.total` the scans read
    (an ingester may add some while this runs); `progress(n)` after each."""
    out: list[Opened] = []
    done = 0
    for done, scan in enumerate(scans, start=1):
        try:
            out.append(Opened(scan, open_scan(scan, key)))
        except SubjectError as exc:
            trace.failed[exc.reason] += 1
        if progress is not None:
            progress(done)
    trace.total, trace.opened = done, len(out)
    return out


def find(trace: Trace, opened: list[Opened]) -> Trace:
    """Fill `trace.visits`: the subject's scans inside [since, until), each with the other subjects
    scanned at the same site and entrance within ± the window (edges included), by time."""
    inside = [o for o in opened if o.sub == trace.sub and trace.since_ms <= o.scan.t_ms < trace.until_ms]
    mine = sorted(inside, key=lambda o: (o.scan.t_ms, o.scan.id))
    at: dict[tuple[str, str | None], list[Opened]] = {}
    for o in opened:
        if o.sub != trace.sub:
            at.setdefault((o.scan.site, o.scan.entrance), []).append(o)
    for visit in mine:
        here = at.get((visit.scan.site, visit.scan.entrance), [])
        near = [o for o in here if abs(o.scan.t_ms - visit.scan.t_ms) <= trace.window_ms]
        trace.visits.append(Visit(visit.scan, sorted(near, key=lambda o: (o.scan.t_ms, o.scan.id))))
    return trace
