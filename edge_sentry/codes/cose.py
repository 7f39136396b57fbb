"""COSE_Sign1 (RFC 9052): the signed envelope shared by every code scheme and by signed trust lists.

A COSE_Sign1 is the CBOR array `[protected: bstr, unprotected: map, payload: bstr, signature:
bstr]`, optionally wrapped in CBOR tag 18. The signature covers the protected header *as the exact
bytes that were sent*, so those bytes are kept next to their decoded form: re-encoding a decoded
header could give other bytes and break verification.

Decoding is strict (wrong array length, wrong types, a protected header that is not a map, duplicate
map keys, trailing bytes: CodeError), because every field comes from a stranger's phone screen.
Signature algorithms sit in the small `ALGORITHMS` table so the schemes that need ES256 or PS256 add
a row, not a branch. Pure functions, no I/O.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import CodeError

TAG_SIGN1 = 18
HEADER_ALG = 1
HEADER_KID = 4
ALG_EDDSA = -8

Header = Mapping[int | str, Any]


class UnsupportedAlgorithmError(CodeError):
    """A well-formed message signed with an algorithm this build cannot verify."""


@dataclass(frozen=True)
class Algorithm:
    """One signature algorithm: how to sign and verify with its key type.

    `verify` returns False (never raises) for a wrong signature or a key of another type, so a trust
    entry of the wrong kind reads as a failed signature rather than a crash.
    """

    name: str
    sign: Callable[[Any, bytes], bytes]
    verify: Callable[[Any, bytes, bytes], bool]


def _eddsa_sign(private_key: Any, message: bytes) -> bytes:
    if not isinstance(private_key, Ed25519PrivateKey):
        raise TypeError("EdDSA signing needs an Ed25519 private key")
    return private_key.sign(message)


def _eddsa_verify(public_key: Any, signature: bytes, message: bytes) -> bool:
    if not isinstance(public_key, Ed25519PublicKey):
        return False
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


# COSE algorithm id -> implementation; ES256 (-7) and PS256 (-37) join here for the EU DCC.
ALGORITHMS: dict[int, Algorithm] = {
    ALG_EDDSA: Algorithm("EdDSA", _eddsa_sign, _eddsa_verify),
}


@dataclass(frozen=True)
class Sign1:
    """A decoded COSE_Sign1; nothing in it is trustworthy until `verify` says it holds."""

    protected: bytes
    protected_header: Header
    unprotected: Header
    payload: bytes
    signature: bytes

    @property
    def alg(self) -> Any:
        """The algorithm id from the protected header (the only place it is honoured)."""
        return self.protected_header.get(HEADER_ALG)

    @property
    def kid(self) -> bytes | None:
        """The key id, from the protected header first, else the unprotected one."""
        if HEADER_KID in self.protected_header:
            return self.protected_header[HEADER_KID]
        return self.unprotected.get(HEADER_KID)


def loads(data: bytes, *, what: str = "CBOR", max_depth: int = 16) -> Any:
    """Decode exactly one CBOR item; raise CodeError on bad CBOR, duplicate keys or trailing bytes.

    cbor2.loads silently ignores trailing bytes and keeps the last of duplicate keys; both let two
    different byte strings mean the same thing, which a signature check must not allow.
    """
    fp = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(fp, allow_duplicate_keys=False, max_depth=max_depth).decode()
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise CodeError(f"{what}: not valid CBOR ({exc})") from None
    if fp.tell() != len(data):
        raise CodeError(f"{what}: {len(data) - fp.tell()} trailing bytes after the CBOR item")
    return value


def _check_header(header: Any, what: str) -> Header:
    if not isinstance(header, Mapping):
        raise CodeError(f"{what}: must be a CBOR map")
    for label in header:
        if isinstance(label, bool) or not isinstance(label, int | str):
            raise CodeError(f"{what}: label {label!r} is neither an integer nor a text")
    if HEADER_KID in header and not isinstance(header[HEADER_KID], bytes):
        raise CodeError(f"{what}: kid must be a byte string")
    alg = header.get(HEADER_ALG)
    if HEADER_ALG in header and (isinstance(alg, bool) or not isinstance(alg, int | str)):
        raise CodeError(f"{what}: alg must be an integer or a text")
    return header


def encode_header(header: Header) -> bytes:
    """The bytes of a protected header: empty when there is nothing to protect (RFC 9052 4.1)."""
    return cbor2.dumps(dict(header)) if header else b""


def decode_header(protected: bytes) -> Header:
    """Decode protected-header bytes to a map; the empty byte string is the empty map."""
    if protected == b"":
        return {}
    return _check_header(loads(protected, what="protected header"), "protected header")


def sig_structure(protected: bytes, payload: bytes, external_aad: bytes = b"") -> bytes:
    """The bytes actually signed: CBOR of ["Signature1", protected, external_aad, payload]."""
    return cbor2.dumps(["Signature1", protected, external_aad, payload])


def encode_sign1(
    protected: bytes, unprotected: Header, payload: bytes, signature: bytes, *, tag: bool = True
) -> bytes:
    """Serialise a COSE_Sign1 from its four parts, tagged 18 unless `tag` is False."""
    body = [protected, dict(unprotected), payload, signature]
    return cbor2.dumps(cbor2.CBORTag(TAG_SIGN1, body) if tag else body)


def decode_sign1(data: bytes) -> Sign1:
    """Parse a COSE_Sign1 (tag 18 optional); CodeError on anything off RFC 9052's shape.

    A detached payload (nil) is refused: no scheme here carries its payload elsewhere.
    """
    item = loads(data, what="COSE_Sign1")
    if isinstance(item, cbor2.CBORTag):
        if item.tag != TAG_SIGN1:
            raise CodeError(f"COSE_Sign1: unexpected CBOR tag {item.tag}")
        item = item.value
    if not isinstance(item, list | tuple) or len(item) != 4:
        raise CodeError("COSE_Sign1: must be an array of four items")
    protected, unprotected, payload, signature = item
    if not isinstance(protected, bytes):
        raise CodeError("COSE_Sign1: protected header must be a byte string")
    protected_header = decode_header(protected)
    unprotected = _check_header(unprotected, "unprotected header")
    if set(protected_header) & set(unprotected):
        raise CodeError("COSE_Sign1: a header label appears both protected and unprotected")
    if payload is None:
        raise CodeError("COSE_Sign1: detached payloads are not supported")
    if not isinstance(payload, bytes):
        raise CodeError("COSE_Sign1: payload must be a byte string")
    if not isinstance(signature, bytes):
        raise CodeError("COSE_Sign1: signature must be a byte string")
    return Sign1(protected, protected_header, unprotected, payload, signature)


def sign1(
    private_key: Any,
    payload: bytes,
    *,
    alg: int = ALG_EDDSA,
    kid: bytes | None = None,
    unprotected: Header | None = None,
    tag: bool = True,
) -> bytes:
    """Sign `payload`; return the serialised COSE_Sign1 with alg and kid in the protected header."""
    algorithm = ALGORITHMS.get(alg)
    if algorithm is None:
        raise UnsupportedAlgorithmError(f"COSE: algorithm {alg} is not supported")
    header: dict[int | str, Any] = {HEADER_ALG: alg}
    if kid is not None:
        header[HEADER_KID] = kid
    protected = encode_header(header)
    signature = algorithm.sign(private_key, sig_structure(protected, payload))
    return encode_sign1(protected, unprotected or {}, payload, signature, tag=tag)


def verify(message: Sign1, public_key: Any, *, external_aad: bytes = b"") -> bool:
    """True when `message` is signed by `public_key` under the algorithm its protected header names.

    Raises UnsupportedAlgorithmError for an algorithm missing from `ALGORITHMS` (or none at all), so
    a caller can tell "cannot check" from "checked and wrong".
    """
    algorithm = ALGORITHMS.get(message.alg) if isinstance(message.alg, int) else None
    if algorithm is None:
        raise UnsupportedAlgorithmError(f"COSE: algorithm {message.alg!r} is not supported")
    return algorithm.verify(
        public_key,
        message.signature,
        sig_structure(message.protected, message.payload, external_aad),
    )
