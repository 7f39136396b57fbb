"""What a page may see of a recorded event: an allow-list, and a message a visitor can act on."""

from __future__ import annotations

import json

import pytest

from edge_sentry.pages import texts
from edge_sentry.pages.events import DETAILS, page_event
from edge_sentry.verifier import Decision
from edge_sentry.vocabulary import Event, Mode, Reason, Refusal, Verdict
from edge_sentry.voice.prompts import Prompt, prompt_for

CODE_TEXT = "ES1:6BFOXN*TS0BI$ZD4N9:9S6RCVN5+O30K3/XIV0W23NTDEXWK G2EP4J0B"
SEALED = "a0b1c2d3e4f5sealedsubject"


def full_scan(**over: object) -> dict[str, object]:
    """A scan event as the sentry records it, with everything a page must never show."""
    event: dict[str, object] = {
        "event": Event.SCAN, "t": 1_795_000_000_000, "id": "0190d2c6-0000-7000-8000-000000000001",
        "seq": 17, "site": "s1", "device": "sentry-1", "entrance": "north", "mode": Mode.SCAN,
        "scheme": "dcc", "verdict": Verdict.DENY, "reason": Reason.EXPIRED, "issuer": "Arena Tickets Ltd",
        "latency_ms": 1.2, "subject": SEALED, "text": CODE_TEXT, "sub": b"\x01" * 16,
        "nam": {"fn": "Gößinger", "gn": "Gabriele"}, "dob": "1964-08-12",
    }  # fmt: skip
    event.update(over)
    return event


def test_a_scan_event_keeps_only_what_happened():
    page = page_event(full_scan())
    assert page is not None
    assert set(page) == {"event", "t", "verdict", "reason", "mode", "message"}
    encoded = json.dumps(page, ensure_ascii=False)
    for secret in (CODE_TEXT, SEALED, "Arena Tickets", "Gößinger", "Gabriele", "1964", "subject",
                   "issuer", "dcc", "sentry-1", "0190d2c6"):  # fmt: skip
        assert secret not in encoded


def test_a_refused_valid_code_says_why_and_sends_the_visitor_to_staff():
    page = page_event(full_scan(reason=Reason.OK, refused=Refusal.TRUST_STALE))
    assert page is not None and page["refused"] == "trust-stale"
    assert page["message"] == texts.REFUSED_MESSAGE


def test_values_are_plain_text_even_when_a_member_or_an_object_sits_under_an_allowed_key():
    page = page_event(full_scan(refused=object(), mode=Mode.MANUAL, verdict=Verdict.ACCEPT, reason=Reason.OK))
    assert page is not None and "refused" not in page
    assert type(page["mode"]) is str and type(page["verdict"]) is str
    assert page["message"] == texts.MODE_MESSAGES[Mode.MANUAL]


def test_gate_events_lose_their_context_and_anything_not_listed():
    decision = Decision(verdict=Verdict.DENY, reason=Reason.ASSIST, scheme="es1", issuer="Arena Tickets Ltd",
                        sub=b"\x02" * 16)  # fmt: skip
    page = page_event({"event": Event.ASSIST_EXPIRED, "t": 5, "context": decision, "subject": SEALED})
    assert page == {"event": "assist-expired", "t": 5}
    held = page_event({"event": Event.DOOR_HELD, "t": 6, "open_s": 21.5, "site": "s1"})
    assert held == {"event": "door-held", "t": 6, "open_s": 21.5}
    # A camera's own error text may name files or devices: staff see that the camera failed, not why.
    assert page_event({"event": Event.CAMERA_FAULT, "t": 7, "cause": "/dev/video0: gone"}) == {
        "event": "camera-fault", "t": 7}  # fmt: skip


NOT_SHOWN = ["start", "stop", "trust-updated", "control-rejected", "venue-code", "gate-pulse", "nonsense",
             None, 5]  # fmt: skip


@pytest.mark.parametrize("name", NOT_SHOWN)
def test_events_the_pages_do_not_show_are_dropped(name):
    assert page_event({"event": name, "t": 1, "reason": "ok"}) is None


@pytest.mark.parametrize("t", [None, "soon", True])
def test_an_event_without_a_time_is_dropped(t):
    assert page_event(full_scan(t=t)) is None


def test_a_scan_without_a_verdict_reason_or_mode_is_dropped():
    assert page_event(full_scan(verdict=None)) is None


def test_every_alarm_the_pages_show_is_an_event_of_the_contract():
    assert set(DETAILS) <= set(Event)


@pytest.mark.parametrize("reason", [r for r in Reason if r != Reason.OK])
def test_every_deny_reason_has_a_message_in_both_languages(reason):
    message = texts.message(Verdict.DENY, reason, Mode.SCAN)
    assert message != texts.FALLBACK_MESSAGE
    assert set(message) == set(texts.LANGUAGES) and all(m.strip() for m in message.values())


def test_the_reasons_the_voice_keeps_from_a_forger_share_one_message_and_the_others_differ():
    """The display tells a forger no more than the voice: which check caught a code is for staff."""
    deny = [r for r in Reason if r != Reason.OK]
    hidden = {r for r in deny if prompt_for({"event": Event.SCAN, "verdict": Verdict.DENY, "reason": r})
              == Prompt.INVALID}  # fmt: skip
    assert hidden == {Reason.MALFORMED, Reason.UNSUPPORTED, Reason.UNKNOWN_KEY, Reason.BAD_SIGNATURE,
                      Reason.REVOKED, Reason.STATUS, Reason.WRONG_VENUE}  # fmt: skip
    for language in texts.LANGUAGES:
        said = {r: texts.message(Verdict.DENY, r, Mode.SCAN)[language] for r in deny}
        assert {said[r] for r in hidden} == {texts.INVALID_MESSAGE[language]}
        others = [said[r] for r in deny if r not in hidden]
        assert len(set(others)) == len(others) and texts.INVALID_MESSAGE[language] not in others


def test_the_messages_the_issue_asks_for():
    en = {r: texts.message(Verdict.DENY, r, Mode.SCAN)["en"] for r in Reason}
    assert en[Reason.EXPIRED] == "Code expired: refresh it"
    assert en[Reason.PASSBACK] == "This code was already used"
    assert en[Reason.STALE] == "A screenshot will not work: show the live code"
    assert "please ask staff" in en[Reason.ASSIST]


@pytest.mark.parametrize("mode", list(Mode))
def test_every_way_in_has_a_welcome(mode):
    message = texts.message(Verdict.ACCEPT, Reason.OK, mode)
    assert message == texts.MODE_MESSAGES[mode]


def test_an_unknown_reason_falls_back_to_asking_staff():
    assert texts.message(Verdict.DENY, "from-a-newer-sentry", Mode.SCAN) == texts.FALLBACK_MESSAGE
