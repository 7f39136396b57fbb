"""COSE_Sign1 (RFC 9052): the signed envelope shared by every code scheme and by signed trust lists.

A COSE_Sign1 is the CBOR array `[protected: bstr, unprotected: map, payload: bstr, signature:
bstr]`, optionally wrapped in CBOR tag 18. The signature covers the protected header *as the exact
bytes that were sent*, so those bytes are kept next to their decoded form: re-encoding a decoded
header could give other bytes and break verification.

Decoding is strict (wrong array length, wrong types, a protected header that is not a map, duplicate
map keys, trailing bytes: CodeError), because every field comes from a stranger's phone screen.
The content type (label 3) is honoured only in the protected header: it is what keeps a signature
over one kind of object (a trust list, a venue poster) from passing as another kind signed by the
same key, so it must be covered by the signature.
Signature algorithms sit in the small `ALGORITHMS` table, so a scheme that needs another algorithm adds
a row, not a branch: EdDSA for the sentry's own codes, ES256, ES384, ES512 and PS256 for the EU DCC (RFC 9053,
RFC 8230; ECDSA on P-256 or P-384, whichever curve the key is on).
Pure functions, no I/O.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from ..errors import CodeError, ContentTypeError, UnsupportedAlgorithmError

TAG_SIGN1 = 18
TAG_CWT = 61
HEADER_ALG = 1
HEADER_CONTENT_TYPE = 3
HEADER_KID = 4
ALG_EDDSA = -8
ALG_ES256 = -7
ALG_ES384 = -35
ALG_ES512 = -36
ALG_PS256 = -37

# RFC 8230 section 2 fixes PS256's salt at the hash length; the DCC's secondary algorithm asks for a
# 2048-bit modulus at least, and anything shorter is refused outright rather than checked.
_PSS_SALT_BYTES = 32
_RSA_MIN_BITS = 2048
_SHOWN_CHARS = 40  # of a text header value quoted in an error message

Header = Mapping[int | str, Any]


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


# ECDSA curves a verifier takes, with their scalar length: COSE carries r || s, each a big-endian
# scalar of the curve's size (RFC 9053 section 2.1). P-521 is left out: no scheme here issues it.
_EC_SCALAR_BYTES = {"secp256r1": 32, "secp384r1": 48}


def _ecdsa_sign(
    alg_name: str, curve: str, hash_algorithm: hashes.HashAlgorithm, private_key: Any, message: bytes
) -> bytes:
    """Signing for one ECDSA label, strictly on its own curve (the sentry never signs across curves)."""
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or private_key.curve.name != curve:
        raise TypeError(f"{alg_name} signing needs a {curve} private key")
    size = _EC_SCALAR_BYTES[curve]
    r, s = decode_dss_signature(private_key.sign(message, ec.ECDSA(hash_algorithm)))
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _ecdsa_verify(
    hash_algorithm: hashes.HashAlgorithm, public_key: Any, signature: bytes, message: bytes
) -> bool:
    """Verification for one ECDSA label: the hash comes from the label, the curve from the key.

    Issuers of EU DCCs sign with P-384 keys under the label ES256 (SHA-256), and the EU's own
    verifiers accept that; ECDSA over a larger curve with a shorter hash is as sound as the hash, so
    reading the curve from the key costs nothing. The key can only be P-256 or P-384, and the
    signature must be exactly r || s for that curve (anything else, DER included, is wrong).
    """
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return False
    size = _EC_SCALAR_BYTES.get(public_key.curve.name)
    if size is None or len(signature) != 2 * size:
        return False
    r = int.from_bytes(signature[:size], "big")
    s = int.from_bytes(signature[size:], "big")
    try:
        public_key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hash_algorithm))
    except (InvalidSignature, ValueError):
        return False
    return True


def _verify_only(alg_name: str, private_key: Any, message: bytes) -> bytes:
    """For a label others sign with and the sentry only checks (its curve, P-521, is not taken)."""
    raise TypeError(f"{alg_name} is verified here, never signed")


def _ps256_sign(private_key: Any, message: bytes) -> bytes:
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise TypeError("PS256 signing needs an RSA private key")
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=_PSS_SALT_BYTES)
    return private_key.sign(message, pss, hashes.SHA256())


def _ps256_verify(public_key: Any, signature: bytes, message: bytes) -> bool:
    """RSASSA-PSS with SHA-256 and MGF1-SHA-256, whatever the salt length the signer used.

    RFC 8230 tells signers to use a 32-byte salt, but it does not ask verifiers to refuse another,
    and signers built on libraries whose default is the maximum salt length exist. PSS stays secure
    with any salt length (the salt only tightens the proof), so `PSS.AUTO` recovers it from the
    encoded message instead of insisting on 32 and locking such holders out. (cryptography's
    `PSS.MAX_LENGTH` would do the same on verification, as OpenSSL reads it as "auto" there, but only
    `AUTO` says so; `DIGEST_LENGTH` is the strict choice, refusing a maximum-length salt.)
    """
    if not isinstance(public_key, rsa.RSAPublicKey) or public_key.key_size < _RSA_MIN_BITS:
        return False
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
    try:
        public_key.verify(signature, message, pss, hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


# COSE algorithm id -> implementation. The ECDSA rows bind their label's parameters with `partial`
# over plain module functions rather than closures made once at import, so every call runs the
# module's functions as they are, which is what lets the mutation tests reach their bodies.
ALGORITHMS: dict[int, Algorithm] = {
    ALG_EDDSA: Algorithm("EdDSA", _eddsa_sign, _eddsa_verify),
    ALG_ES256: Algorithm(
        "ES256",
        partial(_ecdsa_sign, "ES256", "secp256r1", hashes.SHA256()),
        partial(_ecdsa_verify, hashes.SHA256()),
    ),
    ALG_ES384: Algorithm(
        "ES384",
        partial(_ecdsa_sign, "ES384", "secp384r1", hashes.SHA384()),
        partial(_ecdsa_verify, hashes.SHA384()),
    ),
    ALG_ES512: Algorithm("ES512", partial(_verify_only, "ES512"), partial(_ecdsa_verify, hashes.SHA512())),
    ALG_PS256: Algorithm("PS256", _ps256_sign, _ps256_verify),
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
            kid: bytes | None = self.protected_header[HEADER_KID]
            return kid
        found: bytes | None = self.unprotected.get(HEADER_KID)
        return found

    @property
    def content_type(self) -> Any:
        """The content type from the protected header, or None; an unprotected one is never read."""
        return self.protected_header.get(HEADER_CONTENT_TYPE)

    def require_content_type(self, expected: str, *, required: bool = True) -> None:
        """ContentTypeError unless the protected header names `expected`; with `required` False, a
        message that names no content type at all also passes (objects signed before types existed).

        A content type in the unprotected header is refused outright: nothing here writes one, and
        an unsigned label that seems to say what the object is would only mislead a reader.
        """
        if HEADER_CONTENT_TYPE in self.unprotected:
            raise ContentTypeError("COSE_Sign1: the content type must be in the protected header")
        found = self.content_type
        if found is None and not required:
            return
        if found is None:
            raise ContentTypeError(f"COSE_Sign1: no content type; expected {expected!r}")
        if found != expected:
            raise ContentTypeError(f"COSE_Sign1: content type {shown(found)}, expected {expected!r}")


def shown(value: Any) -> str:
    """A header value as an error message may quote it: short, and never itself an error.

    The sender chooses these values. repr() of an integer of more than 4300 digits raises (Python's
    limit on integer-to-text conversion), so an error path that quoted one would crash instead of
    refusing; a long text would flood the log. Integers beyond 64 bits are given by size, texts and
    byte strings cut short, anything else by its type.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, bool | int | float | None):
        return repr(value)
    if isinstance(value, str):
        return repr(value[:_SHOWN_CHARS]) + ("..." if len(value) > _SHOWN_CHARS else "")
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    return f"a {type(value).__name__}"


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
            raise CodeError(f"{what}: label {shown(label)} is neither an integer nor a text")
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


def _untag(item: Any, cwt_tag: bool) -> Any:
    """Peel the tags a COSE_Sign1 may wear: 18, and with `cwt_tag` also 61 outside it (or alone).

    RFC 8392 puts the CWT tag 61 around the COSE tag; issuers that write either one alone exist, so
    both orders of absence are taken. Tags in any other place or order are refused.
    """
    if cwt_tag and isinstance(item, cbor2.CBORTag) and item.tag == TAG_CWT:
        item = item.value
    if isinstance(item, cbor2.CBORTag):
        if item.tag != TAG_SIGN1:
            raise CodeError(f"COSE_Sign1: unexpected CBOR tag {item.tag}")
        item = item.value
    return item


def decode_sign1(data: bytes, *, cwt_tag: bool = False, kid_in_both: bool = False) -> Sign1:
    """Parse a COSE_Sign1 (tag 18 optional); CodeError on anything off RFC 9052's shape.

    A detached payload (nil) is refused: no scheme here carries its payload elsewhere. `cwt_tag`
    also accepts the CWT tag 61 around the message. `kid_in_both` tolerates a kid in both headers
    (the protected one is then the kid): RFC 9052 forbids it, but the EU DCC specification calls the
    kid not security-critical and lets issuers put it in either header, so a verifier of DCCs must not
    lock a holder out over it. Every other label in both headers is refused.
    """
    item = _untag(loads(data, what="COSE_Sign1"), cwt_tag)
    if not isinstance(item, list | tuple) or len(item) != 4:
        raise CodeError("COSE_Sign1: must be an array of four items")
    protected, unprotected, payload, signature = item
    if not isinstance(protected, bytes):
        raise CodeError("COSE_Sign1: protected header must be a byte string")
    protected_header = decode_header(protected)
    unprotected = _check_header(unprotected, "unprotected header")
    both = set(protected_header) & set(unprotected)
    if kid_in_both:
        both.discard(HEADER_KID)
    if both:
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
    content_type: str | None = None,
    unprotected: Header | None = None,
    tag: bool = True,
) -> bytes:
    """Sign `payload`; return the serialised COSE_Sign1 with alg, kid and content type (when given)
    in the protected header."""
    algorithm = ALGORITHMS.get(alg)
    if algorithm is None:
        raise UnsupportedAlgorithmError(f"COSE: algorithm {shown(alg)} is not supported")
    header: dict[int | str, Any] = {HEADER_ALG: alg}
    if content_type is not None:
        header[HEADER_CONTENT_TYPE] = content_type
    if kid is not None:
        header[HEADER_KID] = kid
    protected = encode_header(header)
    signature = algorithm.sign(private_key, sig_structure(protected, payload))
    return encode_sign1(protected, unprotected or {}, payload, signature, tag=tag)


def verify(message: Sign1, public_key: Any, *, external_aad: bytes = b"", alg: Any = None) -> bool:
    """True when `message` is signed by `public_key` under the algorithm its protected header names.

    `alg` overrides the protected header's algorithm; only a scheme whose specification lets the
    algorithm travel unprotected passes it (the DCC), and every other caller stays protected-only.
    Raises UnsupportedAlgorithmError for an algorithm missing from `ALGORITHMS` (or none at all), so
    a caller can tell "cannot check" from "checked and wrong".
    """
    alg = message.alg if alg is None else alg
    algorithm = ALGORITHMS.get(alg) if isinstance(alg, int) and not isinstance(alg, bool) else None
    if algorithm is None:
        raise UnsupportedAlgorithmError(f"COSE: algorithm {shown(alg)} is not supported")
    return algorithm.verify(
        public_key,
        message.signature,
        sig_structure(message.protected, message.payload, external_aad),
    )
