"""Signed control messages (docs/protocol.md, "Signed control plane"): what makes a config or a
command an operator's, rather than anyone's with a broker login.

A control message is a COSE_Sign1 (Ed25519) whose protected header is `{1: -8, 4: kid, 3:
"application/vnd.edge-sentry.control+cbor"}` and whose payload is the CBOR map `{"aud": the full
topic it is meant for, "iat": ms since 1970, "jti": 16 random bytes, "body": ...}`. The content type
sits in the protected header so that no other object signed by the same key (a trust list, a venue
poster) can pass as a control message.

`verify` checks, in this order, and raises ControlRefused with the first reason that applies:
`unsigned` (not such a COSE_Sign1, or its payload lacks a field), `unknown-operator` (no operator
with the kid in the trust list given), `bad-signature`, `role`, `scope` (the key's `sites` do not
cover the site), `audience` (`aud` is not the topic the message came on). Nothing in the payload is
read before the signature holds. The freshness rules of commands and the version bound of configs
are the small pure checks below; what needs memory (seen jti, retained delivery) is the link's
(link/control.py).

Pure: no I/O, no clock (callers pass `now`), no logging.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..errors import CodeError, ContentTypeError, ControlRefused
from ..vocabulary import ContentType, ControlRefusal
from . import cose
from .keys import KID_LENGTH, kid_of
from .trust import Operator

#: The protected header's content type: a control message never passes as a trust list or a poster.
CONTENT_TYPE = ContentType.CONTROL
JTI_BYTES = 16
#: Config versions stay below 2^53, so every JSON reader of a report holds them exactly.
MAX_CONFIG_VERSION = 2**53
#: An iat at or past this is no time (ms since 1970 reach it in the year 287,000): the freshness checks
#: do float arithmetic on it, which an integer beyond 1e308 would make raise.
MAX_IAT_MS = 2**53
_FIELDS = frozenset({"aud", "iat", "jti", "body"})

OperatorLookup = Callable[[bytes], Operator | None]


@dataclass(frozen=True)
class Control:
    """A verified control message: who signed it, for which topic, when, and what it says."""

    operator: Operator
    aud: str
    iat: int
    jti: bytes
    body: Any


def sign(
    private_key: Ed25519PrivateKey, aud: str, body: Any, *, iat_ms: int, jti: bytes | None = None
) -> bytes:
    """A control message for topic `aud`, signed by an operator key; `jti` fresh unless given."""
    payload = cbor2.dumps(
        {"aud": aud, "iat": int(iat_ms), "jti": os.urandom(JTI_BYTES) if jti is None else jti, "body": body}
    )
    return cose.sign1(private_key, payload, kid=kid_of(private_key), content_type=CONTENT_TYPE)


def _envelope(data: bytes) -> cose.Sign1:
    try:
        message = cose.decode_sign1(bytes(data))
    except CodeError as exc:
        raise ControlRefused(ControlRefusal.UNSIGNED, f"not a signed control message ({exc})") from None
    try:
        message.require_content_type(CONTENT_TYPE)
    except ContentTypeError:
        raise ControlRefused(
            ControlRefusal.UNSIGNED, f"not signed as a control message (content type {CONTENT_TYPE})"
        ) from None
    header = message.protected_header
    if header.get(cose.HEADER_ALG) != cose.ALG_EDDSA:
        raise ControlRefused(ControlRefusal.UNSIGNED, "a control message is signed with EdDSA (alg -8)")
    kid = header.get(cose.HEADER_KID)
    if not isinstance(kid, bytes) or len(kid) != KID_LENGTH:
        raise ControlRefused(ControlRefusal.UNSIGNED, "no operator kid in the protected header")
    return message


def _claims(payload: bytes, kid: bytes) -> tuple[str, int, bytes, Any]:
    try:
        claims = cose.loads(payload, what="control payload")
    except CodeError as exc:
        raise ControlRefused(ControlRefusal.UNSIGNED, str(exc), kid) from None
    if not isinstance(claims, Mapping) or set(claims) != _FIELDS:
        raise ControlRefused(ControlRefusal.UNSIGNED, "payload: must be a map of aud, iat, jti and body", kid)
    aud, iat, jti = claims["aud"], claims["iat"], claims["jti"]
    if not isinstance(aud, str):
        raise ControlRefused(ControlRefusal.UNSIGNED, "payload: aud must be a topic", kid)
    if isinstance(iat, bool) or not isinstance(iat, int) or not 0 <= iat < MAX_IAT_MS:
        raise ControlRefused(ControlRefusal.UNSIGNED, "payload: iat must be milliseconds since 1970", kid)
    if not isinstance(jti, bytes) or len(jti) != JTI_BYTES:
        raise ControlRefused(ControlRefusal.UNSIGNED, f"payload: jti must be {JTI_BYTES} bytes", kid)
    return aud, iat, jti, claims["body"]


def verify(data: bytes, operators: OperatorLookup, *, topic: str, site: str, role: str) -> Control:
    """The verified message that arrived on `topic` (of `site`) and needs `role`; ControlRefused
    otherwise. `operators` looks a kid up in the sentry's current trust list."""
    message = _envelope(data)
    kid: bytes = message.protected_header[cose.HEADER_KID]
    operator = operators(kid)
    if operator is None:
        raise ControlRefused(
            ControlRefusal.UNKNOWN_OPERATOR, "no operator key with this kid in the trust list"
        )
    if not cose.verify(message, operator.public_key):
        raise ControlRefused(
            ControlRefusal.BAD_SIGNATURE, "the signature does not verify under the operator's key"
        )
    aud, iat, jti, body = _claims(message.payload, kid)
    if not operator.has_role(role):
        raise ControlRefused(ControlRefusal.ROLE, f"operator {operator.name!r} may not sign {role}", kid)
    if not operator.covers(site):
        raise ControlRefused(
            ControlRefusal.SCOPE, f"operator {operator.name!r} may not address site {site!r}", kid
        )
    if aud != topic:
        raise ControlRefused(ControlRefusal.AUDIENCE, "signed for another topic", kid)
    return Control(operator, aud, iat, jti, body)


def check_fresh(control: Control, *, now_ms: float, skew_s: float) -> None:
    """A command's `iat` must be within `skew_s` of the sentry's clock (`stale`)."""
    if abs(now_ms - control.iat) > skew_s * 1000:
        raise ControlRefused(
            ControlRefusal.STALE, f"iat is {(now_ms - control.iat) / 1000:.0f} s from this sentry's clock",
            control.operator.kid,
        )  # fmt: skip


def check_deadline(control: Control, deadline_ms: float, *, max_deadline_s: float) -> None:
    """A command's deadline may be at most `max_deadline_s` after its `iat` (`deadline`), so a
    captured command cannot be kept for long."""
    if deadline_ms - control.iat > max_deadline_s * 1000:
        raise ControlRefused(
            ControlRefusal.DEADLINE,
            f"the deadline is more than {max_deadline_s:g} s after iat",
            control.operator.kid,
        )


def check_config_version(control: Control) -> None:
    """A config body's version, when it is a whole number, must be below 2^53 and not negative
    (`version`); other shapes are the config's own errors."""
    body = control.body
    version = body.get("version") if isinstance(body, Mapping) else None
    if isinstance(version, int) and not isinstance(version, bool) and not 0 <= version < MAX_CONFIG_VERSION:
        raise ControlRefused(
            ControlRefusal.VERSION, "the version must be 0 or more and below 2^53", control.operator.kid
        )
