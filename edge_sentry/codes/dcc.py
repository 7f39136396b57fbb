"""The EU Digital COVID Certificate (docs/protocol.md 2.3): read an HC1 text and its signer, never decide.

Text = "HC1:" + Base45(zlib(COSE_Sign1)); the signed payload is a CWT: `1` iss (issuing country), `6` iat,
`4` exp, `-260` hcert = {1: the eu_dgc_v1 map with `ver`, `nam`, `dob` and one `v`, `t` or `r` entry}.
The signature is ECDSA (ES256, ES384 or ES512; P-256 or P-384, the curve from the key) or PS256 under a
document signer certificate (DSC) named by an 8-byte kid; the alg is read from the unprotected header
only when the protected header is empty.

As for ES1, reading is split so that nothing a stranger wrote is decoded before its signature holds:
`parse` opens the envelope (prefix, Base45, a capped inflate, COSE with its optional tags 61 and 18)
just far enough to find the kid and the algorithm; `DccCode.unverified_claims` decodes the payload and
is called only after `DccCode.verify`. Whether a certificate opens the gate is the verifier's and the
rule set's business (`dcc_rules`), not this module's.

Privacy: the holder's name (`nam`) and date of birth (`dob`) are never read. `DccClaims` keeps only what
the rules need (dates, dose counts, test type and result, product) and a pseudonym of the certificate
identifier `ci`; the decoded map itself is dropped before `unverified_claims` returns. None of this is
ever logged. Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import math
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from ..errors import CodeError, UnsupportedAlgorithmError
from . import base45, cose, tolerant_x509
from .keys import KID_LENGTH

PREFIX = "HC1:"
MAX_TEXT_BYTES = 4096
# A certificate inflates to well under 2 KB. A zlib stream from a 4 KB text could otherwise inflate
# a thousand times over, so inflation stops here and anything longer is `malformed`.
MAX_INFLATED = 32 * 1024
SUB_LENGTH = 16

CLAIM_ISS = 1
CLAIM_EXP = 4
CLAIM_IAT = 6
CLAIM_HCERT = -260
HCERT_EU_DGC_V1 = 1

ALGORITHMS = (cose.ALG_ES256, cose.ALG_ES384, cose.ALG_ES512, cose.ALG_PS256)
KINDS = ("vaccination", "test", "recovery")
_ENTRY_KEYS = {"v": "vaccination", "t": "test", "r": "recovery"}

# Extended key usages that limit what a DSC may sign (eHealth Network trust framework): a test
# centre's key must not be able to sign vaccinations. Each has a second, mistyped OID that issuers
# put into circulation; both are honoured. A DSC that names none of them may sign every kind.
_EKU_KINDS = {
    "1.3.6.1.4.1.1847.2021.1.1": "test",
    "1.3.6.1.4.1.0.1847.2021.1.1": "test",
    "1.3.6.1.4.1.1847.2021.1.2": "vaccination",
    "1.3.6.1.4.1.0.1847.2021.1.2": "vaccination",
    "1.3.6.1.4.1.1847.2021.1.3": "recovery",
    "1.3.6.1.4.1.0.1847.2021.1.3": "recovery",
}

_MAX_TIME = 2**40  # beyond this a "time" is an attempt to overflow someone's arithmetic
_MAX_DOSES = 9  # the eu-dcc schema bounds dn and sd to 1..9
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(T|\Z)", re.ASCII)
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", re.ASCII)


# -- the certificate's content, as far as the rules need it ----------------------------------------


@dataclass(frozen=True)
class Vaccination:
    """One vaccination entry (`v`): disease `tg`, product `mp`, dose `dn` of `sd`, date `dt`."""

    kind: ClassVar[str] = "vaccination"
    disease: str
    product: str
    dose: int
    doses: int
    date: date


@dataclass(frozen=True)
class Test:
    """One test entry (`t`): disease `tg`, type `tt`, result `tr`, sample collected at `sc`."""

    kind: ClassVar[str] = "test"
    disease: str
    test_type: str
    result: str
    sampled: datetime


@dataclass(frozen=True)
class Recovery:
    """One recovery entry (`r`): disease `tg`, first positive `fr`, valid from `df` until `du`."""

    kind: ClassVar[str] = "recovery"
    disease: str
    first_positive: date
    valid_from: date
    valid_until: date


HealthEntry = Vaccination | Test | Recovery


@dataclass(frozen=True, repr=False)
class DccClaims:
    """The signed claims of a DCC, reduced to what a decision needs; health data, never logged.

    `sub` is the pseudonym of the certificate identifier (see `pseudonym`), for passback and
    revocation; `entry` is the one vaccination, test or recovery.
    """

    iss: str | None
    iat: int
    exp: int
    sub: bytes
    entry: HealthEntry

    def __repr__(self) -> str:
        return (
            f"DccClaims(iss={self.iss!r}, iat={self.iat}, exp={self.exp}, sub=<hidden>, "
            f"entry=<{self.entry.kind}>)"
        )


# -- signer certificates ------------------------------------------------------------------------


@dataclass(frozen=True)
class Signer:
    """A document signer certificate, parsed once when the trust list is loaded.

    The verifier checks signatures many times a minute; parsing X.509 and extracting the key each time
    would cost more than the signature check itself.
    """

    public_key: Any
    not_before: float
    not_after: float
    kinds: frozenset[str]

    def may_sign(self, kind: str) -> bool:
        """False when the certificate's extended key usage excludes this kind of entry."""
        return kind in self.kinds


def load_signer(der: bytes) -> Signer | None:
    """Parse a DSC from DER; None when it cannot be used (not X.509, unreadable key or extensions).

    None rather than an error because one country's odd certificate must not stop a trust list from
    loading: an unusable certificate simply verifies nothing. A certificate `cryptography` refuses
    (a DER default written out, as some issuers do) is read again by `tolerant_x509`, which takes
    only its key, validity and key usages; the signature check itself is the same either way.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
        public_key = cert.public_key()
        kinds = _signable_kinds(_key_usages(cert))
        not_before = cert.not_valid_before_utc.timestamp()
        not_after = cert.not_valid_after_utc.timestamp()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        fields = tolerant_x509.read(der)
        if fields is None:
            return None
        return Signer(
            fields.public_key, fields.not_before, fields.not_after, _signable_kinds(fields.key_usages)
        )
    return Signer(public_key, not_before, not_after, kinds)


def _key_usages(cert: x509.Certificate) -> frozenset[str] | None:
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    return frozenset(oid.dotted_string for oid in usage)


def _signable_kinds(key_usages: frozenset[str] | None) -> frozenset[str]:
    kinds = frozenset(_EKU_KINDS[oid] for oid in key_usages or () if oid in _EKU_KINDS)
    return kinds or frozenset(KINDS)


# -- the envelope -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DccCode:
    """A parsed, *unverified* DCC envelope: the COSE message and the kid that names its signer."""

    message: cose.Sign1
    kid: bytes
    alg: int

    def verify(self, signer: Signer) -> bool:
        """True when the signature holds under the signer's key (False for a key of another type)."""
        return cose.verify(self.message, signer.public_key, alg=self.alg)

    def unverified_claims(self) -> DccClaims:
        """Decode the payload; trust the result only after `verify` returned True."""
        return decode_claims(self.message.payload)


def inflate(data: bytes, limit: int = MAX_INFLATED) -> bytes:
    """Inflate one complete zlib stream of at most `limit` bytes; CodeError otherwise.

    `decompressobj` with `max_length` stops at the cap instead of allocating whatever a bomb asks for;
    output beyond the cap, a truncated stream and bytes after the stream are all refused.
    """
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit)
    except zlib.error as exc:
        raise CodeError(f"DCC: not a zlib stream ({exc})") from None
    if inflater.unconsumed_tail:
        raise CodeError(f"DCC: inflates to more than {limit} bytes")
    if not inflater.eof:
        raise CodeError("DCC: zlib stream is truncated")
    if inflater.unused_data:
        raise CodeError("DCC: bytes after the zlib stream")
    return out


def parse(text: str) -> DccCode:
    """Read an HC1 text's envelope without trusting it.

    Raises UnsupportedAlgorithmError for a well-formed message under an algorithm not in
    `ALGORITHMS`, and CodeError for anything else that does not follow the format.
    """
    if len(text) > MAX_TEXT_BYTES or len(text.encode("utf-8", "replace")) > MAX_TEXT_BYTES:
        raise CodeError(f"DCC: text longer than {MAX_TEXT_BYTES} bytes")
    if not text.startswith(PREFIX):
        raise CodeError(f"DCC: text does not start with {PREFIX!r}")
    raw = inflate(base45.decode(text[len(PREFIX) :]))
    message = cose.decode_sign1(raw, cwt_tag=True, kid_in_both=True)
    # The kid is checked before the algorithm: a kid of the wrong length is a broken envelope
    # whatever algorithm it names (the protected kid is the one read when both headers carry one).
    kid = message.kid
    if kid is None or len(kid) != KID_LENGTH:
        raise CodeError(f"DCC: a {KID_LENGTH}-byte kid is required in the protected or unprotected header")
    alg = _algorithm(message)
    if alg not in ALGORITHMS:
        raise UnsupportedAlgorithmError(f"DCC: algorithm {alg!r} is not ES256, ES384, ES512 or PS256")
    return DccCode(message, kid, alg)


def _algorithm(message: cose.Sign1) -> Any:
    """The alg from the protected header; from the unprotected one only when nothing is protected.

    Some issuers send an empty protected header with the alg unprotected, and the EU's own verifiers
    accept it. That weakens nothing here: the alg only picks how the signature is checked, each
    check refuses a key of another type, and the key is the trusted signer's, never the code's.
    When the protected header holds anything, the unprotected alg is never read.
    """
    if message.protected_header:
        return message.alg
    return message.unprotected.get(cose.HEADER_ALG)


# -- the claims ---------------------------------------------------------------------------------


def pseudonym(ci: str) -> bytes:
    """The holder's pseudonym at this sentry: the first 16 bytes of SHA-256 of the UTF-8 `ci`.

    `ci` identifies the certificate, not the person, and is not kept; a hash of it lets passback work
    for DCCs as for ES1 (the same certificate shown twice is the same `sub`), lets an operator revoke
    one certificate by listing SHA-256 of this `sub`, and is the digest the EU revocation lists' UCI
    hash type is built on, so a health authority opening the sealed subject can match it.
    """
    return hashlib.sha256(ci.encode("utf-8")).digest()[:SUB_LENGTH]


def decode_claims(payload: bytes) -> DccClaims:
    """Parse the CWT claims and the one health entry strictly; CodeError when they are off the format.

    The map decoded here holds the holder's name and birth date; only the fields in DccClaims leave.
    """
    claims = cose.loads(payload, what="DCC claims")
    if not isinstance(claims, Mapping):
        raise CodeError("DCC: claims must be a CBOR map")
    iss = claims.get(CLAIM_ISS)
    if iss is not None and (not isinstance(iss, str) or not iss):
        raise CodeError("DCC: claim iss must be a non-empty text")
    iat = _numeric_date(claims.get(CLAIM_IAT), "iat")
    exp = _numeric_date(claims.get(CLAIM_EXP), "exp")
    if exp <= iat:
        raise CodeError("DCC: claim exp must be after iat")
    hcert = claims.get(CLAIM_HCERT)
    if not isinstance(hcert, Mapping) or not isinstance(hcert.get(HCERT_EU_DGC_V1), Mapping):
        raise CodeError("DCC: claim hcert must be a map holding the eu_dgc_v1 map under key 1")
    entry, ci = _read(hcert[HCERT_EU_DGC_V1])
    return DccClaims(iss, iat, exp, pseudonym(ci), entry)


def read_entry(dgc: Any) -> HealthEntry:
    """The one vaccination, test or recovery of an eu_dgc_v1 map, typed; CodeError when malformed."""
    return _read(dgc)[0]


def _read(dgc: Any) -> tuple[HealthEntry, str]:
    """The entry and its `ci`. Every field a rule may read is checked here, whatever the rule set,
    so whether a certificate is `malformed` never depends on the venue's config."""
    if not isinstance(dgc, Mapping):
        raise CodeError("DCC: eu_dgc_v1 must be a map")
    present = [key for key in _ENTRY_KEYS if key in dgc]
    if len(present) != 1:
        raise CodeError("DCC: exactly one of v, t and r is required")
    entries = dgc[present[0]]
    if not isinstance(entries, list | tuple) or len(entries) != 1 or not isinstance(entries[0], Mapping):
        raise CodeError(f"DCC: {present[0]} must hold exactly one entry")
    fields = entries[0]
    ci = _text(fields.get("ci"), "ci")
    disease = _text(fields.get("tg"), "tg")
    kind = _ENTRY_KEYS[present[0]]
    if kind == "vaccination":
        entry: HealthEntry = Vaccination(
            disease,
            _text(fields.get("mp"), "mp"),
            _dose(fields.get("dn"), "dn"),
            _dose(fields.get("sd"), "sd"),
            _date(fields.get("dt"), "dt"),
        )
    elif kind == "test":
        entry = Test(
            disease,
            _text(fields.get("tt"), "tt"),
            _text(fields.get("tr"), "tr"),
            _date_time(fields.get("sc"), "sc"),
        )
    else:
        valid_from = _date(fields.get("df"), "df")
        valid_until = _date(fields.get("du"), "du")
        if valid_until < valid_from:
            raise CodeError("DCC: recovery du is before df")
        entry = Recovery(disease, _date(fields.get("fr"), "fr"), valid_from, valid_until)
    return entry, ci


def _numeric_date(value: Any, name: str) -> int:
    """RFC 8392 NumericDate: an integer, or a finite float (whole seconds are kept), or a CBOR tag 1."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.timestamp()
    if isinstance(value, float) and math.isfinite(value):
        value = math.floor(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CodeError(f"DCC: claim {name} must be a NumericDate")
    if not 0 <= value < _MAX_TIME:
        raise CodeError(f"DCC: claim {name} is out of range")
    return value


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CodeError(f"DCC: {name} must be a non-empty text")
    return value


def _dose(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_DOSES:
        raise CodeError(f"DCC: {name} must be an integer from 1 to {_MAX_DOSES}")
    return value


def _date(value: Any, name: str) -> date:
    """A calendar date: "YYYY-MM-DD" as the schema says, or a date-time whose date part is taken, or
    a CBOR date tag the decoder already turned into a date; the hcert specification asks verifiers to
    be permissive with such reasonable conversions."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DATE.match(value):
        raise CodeError(f"DCC: {name} must be a date YYYY-MM-DD")
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise CodeError(f"DCC: {name} is not a calendar date") from None


def _date_time(value: Any, name: str) -> datetime:
    """An ISO 8601 date-time, in UTC; one without an offset is read as UTC (an hour either way does
    not change whether a 48-hour-old test is acceptable, and refusing it would lock the holder out)."""
    if not isinstance(value, datetime) and not (isinstance(value, str) and _DATE_TIME.match(value)):
        raise CodeError(f"DCC: {name} must be an ISO 8601 date-time")
    try:
        when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError):
        raise CodeError(f"DCC: {name} is not an ISO 8601 date-time in range") from None
