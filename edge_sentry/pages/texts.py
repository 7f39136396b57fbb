"""What the pages say, in the two languages a display speaks (`display.language`: "en" or "zh").

A visitor reads the result from a step or two away and must know what to do next, so each message
says the action rather than the technical reason ("code expired: refresh it", not "exp < now"). A
message never names anything from the code itself (who issued it, whose it is): only the verdict,
the reason and the mode reach it.

Pure: no I/O, no imports from the rest of the package but its vocabulary.
"""

from __future__ import annotations

from .. import vocabulary as v

LANGUAGES = ("en", "zh")

Text = dict[str, str]

#: One message for every reason the visitor cannot act on differently (a forged, unreadable or
#: foreign code, an unknown issuer, a withdrawn code, a status or a venue that does not let in), as
#: the voice has one prompt for them (voice/prompts.py): neither tells a forger which check caught the
#: code. The staff view shows the exact reason.
INVALID_MESSAGE: Text = {
    "en": "This code is not valid here: please ask staff",
    "zh": "此码在此无效：请联系工作人员",
}

INVALID_REASONS = frozenset(
    {
        v.Reason.MALFORMED,
        v.Reason.UNSUPPORTED,
        v.Reason.UNKNOWN_KEY,
        v.Reason.BAD_SIGNATURE,
        v.Reason.REVOKED,
        v.Reason.STATUS,
        v.Reason.WRONG_VENUE,
    }
)

#: Per deny reason the visitor can do something about: what to do.
REASON_MESSAGES: dict[str, Text] = {
    v.Reason.EXPIRED: {
        "en": "Code expired: refresh it",
        "zh": "此码已过期：请刷新",
    },
    v.Reason.NOT_YET_VALID: {
        "en": "Code not valid yet: check your phone's clock and refresh it",
        "zh": "此码尚未生效：请检查手机时间并刷新",
    },
    v.Reason.STALE: {
        "en": "A screenshot will not work: show the live code",
        "zh": "截图无效：请出示实时码",
    },
    v.Reason.PASSBACK: {
        "en": "This code was already used",
        "zh": "此码已被使用",
    },
    v.Reason.ASSIST: {
        "en": "Paper code: please ask staff, they will let you in",
        "zh": "纸质码：请联系工作人员为您放行",
    },
}

#: Per way in that is not a scan: what the visitor sees when the gate opens for it.
MODE_MESSAGES: dict[str, Text] = {
    v.Mode.SCAN: {"en": "Welcome: please go in", "zh": "欢迎：请进"},
    v.Mode.MANUAL: {"en": "Let in by staff: please go in", "zh": "工作人员已放行：请进"},
    v.Mode.ASSISTED: {"en": "Paper code checked by staff: please go in", "zh": "工作人员已核验纸质码：请进"},
    v.Mode.EXIT: {"en": "Exit: the door is open", "zh": "出口：门已打开"},
}

#: A valid code whose entry a policy withholds (`deny`, `ok`, `refused`): staff decide.
REFUSED_MESSAGE: Text = {
    "en": "Your code is fine, but the gate needs staff just now: please ask staff",
    "zh": "您的码有效，但此刻需要工作人员放行：请联系工作人员",
}

#: Anything the table above does not know (a newer sentry's reason on an older page, say).
FALLBACK_MESSAGE: Text = {"en": "Please ask staff", "zh": "请联系工作人员"}

#: The display's fixed words: headlines, the idle screen, the staff-assisted wait.
UI: dict[str, Text] = {
    "accept": {"en": "Please go in", "zh": "请进"},
    "deny": {"en": "No entry", "zh": "禁止通行"},
    "assist": {"en": "Please wait for staff", "zh": "请等候工作人员"},
    "idle_title": {"en": "Show your entry code", "zh": "请出示入场码"},
    "idle_hint": {
        "en": "Hold the QR code on your phone up to the camera, about 20 cm away",
        "zh": "将手机上的二维码对准摄像头，距离约20厘米",
    },
    "idle_paper": {
        "en": "Paper code or no phone? Staff will help you",
        "zh": "纸质码或没有手机？工作人员会帮助您",
    },
    "fault": {
        "en": "Scanning is out of order: please ask staff",
        "zh": "扫码暂时无法使用：请联系工作人员",
    },
    "offline": {"en": "Reconnecting…", "zh": "正在重新连接…"},
}


def message(verdict: str, reason: str, mode: str, refused: str | None = None) -> Text:
    """What the display says for one decision, in every language."""
    if verdict == v.Verdict.ACCEPT:
        return dict(MODE_MESSAGES.get(mode, MODE_MESSAGES[v.Mode.SCAN]))
    if refused is not None or reason == v.Reason.OK:
        return dict(REFUSED_MESSAGE)
    if reason in INVALID_REASONS:
        return dict(INVALID_MESSAGE)
    return dict(REASON_MESSAGES.get(reason, FALLBACK_MESSAGE))
