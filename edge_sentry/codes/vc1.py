"""VC1, the venue code printed on an entrance's poster (docs/protocol.md section 2.4).

Text = "VC1:" + Base45(COSE_Sign1) signed with the fleet's trust-root key over the CBOR map {"site",
"venue", "entrance", "name", "issued"}. `name` is the venue's display name and `issued` is seconds
since 1970. The protected header carries alg -8, the root key's kid (so a poster signed by an older
root reads as `unknown-key` rather than as a forgery) and the content type
`application/vnd.edge-sentry.venue+cbor`: the root key also signs trust lists, and neither may pass
as the other. A poster without a content type was printed before types existed and stays readable; one
that names any other type is `malformed`, whoever signed it.

A VC1 never opens a gate: it lets a sentry's self-test prove that the poster at its entrance is
genuine and belongs there, catching a moved, altered or foreign poster. Pure functions, no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import CodeError
from ..vocabulary import ContentType, Reason
from . import base45, cose
from .keys import kid_of

PREFIX = "VC1:"
MAX_TEXT_BYTES = 4096
_TEXT_FIELDS = ("site", "venue", "entrance", "name")


@dataclass(frozen=True)
class VenueCode:
    """Where a poster says it hangs; genuine only when returned by `verify` with reason "ok"."""

    site: str
    venue: str
    entrance: str
    name: str
    issued: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, *, site: str, venue: str, entrance: str) -> bool:
        """True when the poster belongs to this site, venue and entrance."""
        return (self.site, self.venue, self.entrance) == (site, venue, entrance)


def issue(
    root_key: Ed25519PrivateKey,
    *,
    site: str,
    venue: str,
    entrance: str,
    name: str,
    issued: int | None = None,
) -> str:
    """Sign a venue code with the fleet's trust-root key and return its text."""
    body = {
        "site": site,
        "venue": venue,
        "entrance": entrance,
        "name": name,
        "issued": int(time.time()) if issued is None else int(issued),
    }
    message = cose.sign1(
        root_key, cbor2.dumps(body), alg=cose.ALG_EDDSA, kid=kid_of(root_key), content_type=ContentType.VENUE
    )
    return PREFIX + base45.encode(message)


def _decode_body(payload: bytes) -> VenueCode:
    body = cose.loads(payload, what="VC1 body")
    if not isinstance(body, Mapping):
        raise CodeError("VC1: body must be a CBOR map")
    for key in _TEXT_FIELDS:
        if not isinstance(body.get(key), str):
            raise CodeError(f"VC1: {key} must be a text")
    issued = body.get("issued")
    if isinstance(issued, bool) or not isinstance(issued, int):
        raise CodeError("VC1: issued must be an integer")
    return VenueCode(body["site"], body["venue"], body["entrance"], body["name"], issued)


def verify(text: str, root_key: Ed25519PublicKey | None) -> tuple[str, VenueCode | None]:
    """Check a VC1 text against the trust-root key; return (reason, venue code when genuine).

    reason is "ok" (signature holds; the VenueCode is returned), "unknown-key" (no root key
    configured, or the code names another key), "bad-signature" or "malformed" (also for a signed
    object of another kind, such as a trust list, whatever its signature). Whether the genuine
    poster is at the right place is a separate question: `VenueCode.matches`.
    """
    try:
        if len(text) > MAX_TEXT_BYTES or len(text.encode("utf-8", "replace")) > MAX_TEXT_BYTES:
            raise CodeError("VC1: text too long")
        if not text.startswith(PREFIX):
            raise CodeError(f"VC1: text does not start with {PREFIX!r}")
        message = cose.decode_sign1(base45.decode(text[len(PREFIX) :]))
        if message.alg != cose.ALG_EDDSA or not isinstance(
            message.protected_header.get(cose.HEADER_KID), bytes
        ):
            raise CodeError("VC1: protected header must carry alg -8 and a kid")
        message.require_content_type(ContentType.VENUE, required=False)
    except CodeError:
        return Reason.MALFORMED, None
    if root_key is None or message.protected_header[cose.HEADER_KID] != kid_of(root_key):
        return Reason.UNKNOWN_KEY, None
    if not cose.verify(message, root_key):
        return Reason.BAD_SIGNATURE, None
    try:
        return Reason.OK, _decode_body(message.payload)
    except CodeError:
        return Reason.MALFORMED, None
