"""A recorded event as the pages may see it: an allow-list, never a deny-list.

The daemon records events that carry what the fleet needs: a scan event may hold a sealed subject,
the issuer, the scheme, ids; gate events may carry the verifier's decision as context. A page is
shown to whoever stands at the entrance, so it gets a new, small dict built only from the fields
named below, of plain types: a field added to an event later never reaches a page unless it is
added here on purpose. Never a code's text, a subject (sealed or not), an issuer or a DCC field.

Pure: no I/O. Called on the hot loop's thread, so it stays a few dictionary look-ups.
"""

from __future__ import annotations

from typing import Any

from ..vocabulary import Event
from .texts import message

#: The events a page shows, and for each the details it may show besides `event` and `t`.
#: `scan` is built on its own (below). Staff see these as alarms and faults.
DETAILS: dict[str, tuple[str, ...]] = {
    Event.DOOR_OPENED: (),
    Event.DOOR_CLOSED: ("open_s",),
    Event.DOOR_FORCED: (),
    Event.DOOR_HELD: ("open_s",),
    Event.TAILGATE: (),
    Event.ASSIST_EXPIRED: (),
    Event.FAULT: ("cause", "fail_mode"),
    Event.FAULT_CLEARED: ("cause",),
    Event.CAMERA_FAULT: (),
    Event.CAMERA_RECOVERED: (),
    Event.TRUST_INVALID: (),
    Event.TRUST_STALE: ("age_h", "policy"),
    Event.CLOCK_UNSYNCED: ("policy",),
    Event.OUTBOX_FULL: (),
    Event.DISK_LOW: (),
}

#: The fields of a scan event a page may show: what happened, never who or with what code.
SCAN_FIELDS = ("verdict", "reason", "mode", "refused")

_PLAIN = (str, int, float, bool)


def _plain(value: Any) -> Any:
    """A value as a page may hold it: a plain text or number (a StrEnum member becomes its text),
    anything else nothing, so an object that happens to sit under an allowed key never leaks."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, _PLAIN):
        return value
    return None


def page_event(event: dict[str, Any]) -> dict[str, Any] | None:
    """The page's view of a recorded event, or None when pages do not show that event."""
    name = event.get("event")
    t = event.get("t")
    if not isinstance(t, int | float) or isinstance(t, bool):
        return None
    if name == Event.SCAN:
        out: dict[str, Any] = {"event": str(Event.SCAN), "t": t}
        for key in SCAN_FIELDS:
            value = _plain(event.get(key))
            if value is not None:
                out[key] = value
        if not all(isinstance(out.get(k), str) for k in ("verdict", "reason", "mode")):
            return None
        out["message"] = message(out["verdict"], out["reason"], out["mode"], out.get("refused"))
        return out
    allowed = DETAILS.get(name) if isinstance(name, str) else None
    if allowed is None:
        return None
    out = {"event": str(name), "t": t}
    for key in allowed:
        value = _plain(event.get(key))
        if value is not None:
            out[key] = value
    return out
