"""Which prompt an event calls for, and what each prompt says in each language.

A visitor hears one short sentence they can act on: come in, refresh the code, show the live code,
ask staff. Reasons the visitor cannot act on differently (a forged code, an unknown issuer, a
revoked key, another venue's code) share one prompt, so the voice never tells a forger which check
caught them. Staff and door alarms get a prompt only where the person at the gate can do something
(close the door, one at a time); a forced door is the staff's matter and stays silent here.

Pure: no I/O, no clock; only the contract's words from vocabulary.py. Never sees a code's text: an
event carries none.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from ..vocabulary import Event, Mode, Reason, Verdict


class Prompt(StrEnum):
    """One spoken outcome; the value names its rendered file and the `voice play` argument."""

    WELCOME = "welcome"
    STAFF_ENTRY = "staff-entry"
    GOODBYE = "goodbye"
    EXPIRED = "expired"
    USED = "used"
    SCREENSHOT = "screenshot"
    ASK_STAFF = "ask-staff"
    INVALID = "invalid"
    CLOSE_DOOR = "close-door"
    ONE_AT_A_TIME = "one-at-a-time"


#: Languages a prompt is written in, with the espeak-ng voice that speaks it.
VOICES: Mapping[str, str] = {"en": "en", "zh": "cmn"}

TEXTS: Mapping[str, Mapping[Prompt, str]] = {
    "en": {
        Prompt.WELCOME: "Welcome. Please come in.",
        Prompt.STAFF_ENTRY: "Staff have let you in. Please come in.",
        Prompt.GOODBYE: "Goodbye.",
        Prompt.EXPIRED: "This code has expired. Please refresh it.",
        Prompt.USED: "This code was already used.",
        Prompt.SCREENSHOT: "A screenshot will not work. Please show the live code.",
        Prompt.ASK_STAFF: "Please ask staff.",
        Prompt.INVALID: "This code is not valid here. Please ask staff.",
        Prompt.CLOSE_DOOR: "Please close the door.",
        Prompt.ONE_AT_A_TIME: "One person at a time, please.",
    },
    "zh": {
        Prompt.WELCOME: "欢迎，请进。",
        Prompt.STAFF_ENTRY: "工作人员已放行，请进。",
        Prompt.GOODBYE: "再见。",
        Prompt.EXPIRED: "此码已过期，请刷新。",
        Prompt.USED: "此码已被使用。",
        Prompt.SCREENSHOT: "截图无效，请出示实时码。",
        Prompt.ASK_STAFF: "请找工作人员。",
        Prompt.INVALID: "此码无效，请找工作人员。",
        Prompt.CLOSE_DOOR: "请关门。",
        Prompt.ONE_AT_A_TIME: "请一人一次通过。",
    },
}

#: Deny reasons by what the visitor can do about them; any other reason is INVALID.
_DENY: Mapping[str, Prompt] = {
    Reason.EXPIRED: Prompt.EXPIRED,
    Reason.NOT_YET_VALID: Prompt.EXPIRED,  # a phone clock far off: refreshing is the remedy too
    Reason.PASSBACK: Prompt.USED,
    Reason.STALE: Prompt.SCREENSHOT,
    Reason.ASSIST: Prompt.ASK_STAFF,  # a paper code: staff confirm it with their button
    Reason.OK: Prompt.ASK_STAFF,  # a valid code a policy or a fault withholds: staff decide
}

_GRANT: Mapping[str, Prompt] = {
    Mode.SCAN: Prompt.WELCOME,
    Mode.ASSISTED: Prompt.WELCOME,
    Mode.MANUAL: Prompt.STAFF_ENTRY,
    Mode.EXIT: Prompt.GOODBYE,
}

_ALARMS: Mapping[str, Prompt] = {
    Event.DOOR_HELD: Prompt.CLOSE_DOOR,
    Event.TAILGATE: Prompt.ONE_AT_A_TIME,
}


def prompt_for(event: Mapping[str, Any]) -> Prompt | None:
    """The prompt an event calls for, or None (most events are not for the visitor's ears)."""
    name = event.get("event")
    if name != Event.SCAN:
        return _ALARMS.get(name) if isinstance(name, str) else None
    if event.get("verdict") == Verdict.ACCEPT:
        mode = event.get("mode")
        return _GRANT.get(mode, Prompt.WELCOME) if isinstance(mode, str) else Prompt.WELCOME
    reason = event.get("reason")
    return _DENY.get(reason, Prompt.INVALID) if isinstance(reason, str) else Prompt.INVALID


def text(language: str, prompt: Prompt) -> str:
    """What `prompt` says in `language` (KeyError for a language without texts)."""
    return TEXTS[language][prompt]
