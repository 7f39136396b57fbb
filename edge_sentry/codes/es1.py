"""ES1, the sentry's own dynamic entry code (docs/protocol.md section 2.2): issue and parse, never decide.

Text = "ES1:" + Base45(COSE_Sign1) with protected header {1: -8, 4: kid} and a CWT claims payload.
Parsing is split in two on purpose: `parse` reads only the envelope (enough to find the key by its
kid), and `Es1Code.unverified_claims` decodes the payload. The verifier calls the second only after
the signature holds, so attacker-chosen payload bytes reach the CBOR decoder only when a trusted key
signed them. Whether a code is accepted is the verifier's business, not this module's.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import CodeError
from . import base45, cose
from .keys import KID_LENGTH, kid_of

PREFIX = "ES1:"
MAX_TEXT_BYTES = 4096
SUB_LENGTH = 16

CLAIM_ISS = 1
CLAIM_SUB = 2
CLAIM_EXP = 4
CLAIM_IAT = 6
CLAIM_STATUS = -65537
CLAIM_VENUE = -65538
CLAIM_PAPER = -65539

# Times beyond this are not seconds since 1970 but an attempt to overflow someone's arithmetic.
_MAX_TIME = 2**40


class Status(IntEnum):
    """The holder's status claim; which ones open the gate is config (`es1.accept_status`)."""

    GREEN = 0
    YELLOW = 1
    RED = 2


_STATUSES = frozenset(int(s) for s in Status)


@dataclass(frozen=True)
class Es1Claims:
    """The CWT claims of an ES1 code. `sub` is a pseudonym: never log it."""

    iss: str
    sub: bytes
    iat: int
    exp: int
    status: int
    venue: str | None = None
    paper: bool = False

    def __repr__(self) -> str:
        return (
            f"Es1Claims(iss={self.iss!r}, sub=<hidden>, iat={self.iat}, exp={self.exp}, "
            f"status={self.status}, venue={self.venue!r}, paper={self.paper})"
        )


@dataclass(frozen=True)
class Es1Code:
    """A parsed, *unverified* ES1 envelope: the COSE message and the kid that names its key."""

    message: cose.Sign1
    kid: bytes

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        """True when the code's signature holds under `public_key`."""
        return cose.verify(self.message, public_key)

    def unverified_claims(self) -> Es1Claims:
        """Decode the payload's claims; trust them only after `verify` returned True."""
        return decode_claims(self.message.payload)


def _int_claim(claims: Mapping[Any, Any], label: int, name: str) -> int:
    value = claims.get(label)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CodeError(f"ES1: claim {name} must be an integer")
    if not 0 <= value < _MAX_TIME:
        raise CodeError(f"ES1: claim {name} is out of range")
    return value


def decode_claims(payload: bytes) -> Es1Claims:
    """Parse the CWT claims map strictly; claims with other labels are ignored, as CWT allows."""
    claims = cose.loads(payload, what="ES1 claims")
    if not isinstance(claims, Mapping):
        raise CodeError("ES1: claims must be a CBOR map")
    iss = claims.get(CLAIM_ISS)
    if not isinstance(iss, str) or not iss:
        raise CodeError("ES1: claim iss must be a non-empty text")
    sub = claims.get(CLAIM_SUB)
    if not isinstance(sub, bytes) or len(sub) != SUB_LENGTH:
        raise CodeError(f"ES1: claim sub must be {SUB_LENGTH} bytes")
    iat = _int_claim(claims, CLAIM_IAT, "iat")
    exp = _int_claim(claims, CLAIM_EXP, "exp")
    if exp <= iat:
        raise CodeError("ES1: claim exp must be after iat")
    status = claims.get(CLAIM_STATUS)
    if isinstance(status, bool) or not isinstance(status, int) or status not in _STATUSES:
        raise CodeError("ES1: claim status must be 0, 1 or 2")
    venue = claims.get(CLAIM_VENUE)
    if venue is not None and not isinstance(venue, str):
        raise CodeError("ES1: claim venue must be a text")
    paper = claims.get(CLAIM_PAPER, False)
    if not isinstance(paper, bool):
        raise CodeError("ES1: claim paper must be true or false")
    return Es1Claims(iss, sub, iat, exp, int(status), venue, paper)


def encode_claims(claims: Es1Claims) -> bytes:
    """CBOR of the claims map; optional claims appear only when set, keeping the QR small."""
    body: dict[int, Any] = {
        CLAIM_ISS: claims.iss,
        CLAIM_SUB: claims.sub,
        CLAIM_IAT: claims.iat,
        CLAIM_EXP: claims.exp,
        CLAIM_STATUS: claims.status,
    }
    if claims.venue is not None:
        body[CLAIM_VENUE] = claims.venue
    if claims.paper:
        body[CLAIM_PAPER] = True
    return cbor2.dumps(body)


def issue(
    private_key: Ed25519PrivateKey,
    *,
    issuer: str,
    lifetime_s: int,
    sub: bytes | None = None,
    status: int = Status.GREEN,
    venue: str | None = None,
    paper: bool = False,
    iat: int | None = None,
) -> str:
    """Sign a new ES1 code and return its text; `sub` defaults to 16 fresh random bytes."""
    if not issuer:
        raise ValueError("issuer must not be empty")
    if lifetime_s <= 0:
        raise ValueError("lifetime_s must be positive")
    if status not in _STATUSES:
        raise ValueError("status must be 0 (green), 1 (yellow) or 2 (red)")
    sub = secrets.token_bytes(SUB_LENGTH) if sub is None else sub
    if len(sub) != SUB_LENGTH:
        raise ValueError(f"sub must be {SUB_LENGTH} bytes")
    iat = int(time.time()) if iat is None else int(iat)
    claims = Es1Claims(issuer, sub, iat, iat + int(lifetime_s), int(status), venue, paper)
    message = cose.sign1(
        private_key, encode_claims(claims), alg=cose.ALG_EDDSA, kid=kid_of(private_key)
    )
    return PREFIX + base45.encode(message)


def parse(text: str) -> Es1Code:
    """Read an ES1 text's envelope without trusting it; raise CodeError when it is not well formed.

    Over-long texts are refused before any decoding: a bounded input is what keeps a hostile code
    from costing the hot path more than a normal one.
    """
    if len(text) > MAX_TEXT_BYTES or len(text.encode("utf-8", "replace")) > MAX_TEXT_BYTES:
        raise CodeError(f"ES1: text longer than {MAX_TEXT_BYTES} bytes")
    if not text.startswith(PREFIX):
        raise CodeError(f"ES1: text does not start with {PREFIX!r}")
    message = cose.decode_sign1(base45.decode(text[len(PREFIX) :]))
    if message.alg != cose.ALG_EDDSA:
        raise CodeError("ES1: protected header must name alg -8 (EdDSA)")
    kid = message.protected_header.get(cose.HEADER_KID)
    if not isinstance(kid, bytes) or len(kid) != KID_LENGTH:
        raise CodeError(f"ES1: protected header must carry an {KID_LENGTH}-byte kid")
    return Es1Code(message, kid)
