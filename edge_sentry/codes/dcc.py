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


# Each field is None when the certificate leaves it out or writes it off its form: what the hcert holds
# is for the rules to judge (a rule that needs a field it cannot read fails, which is `status`), never a
# reason to call the container `malformed`. Issuers differ in what they fill in, across the schema's
# versions 1.0.0 to 1.3.x, and a field no configured rule reads must not lock a holder out.


@dataclass(frozen=True)
class Vaccination:
    """One vaccination entry (`v`): disease `tg`, product `mp`, dose `dn` of `sd`, date `dt`."""

    kind: ClassVar[str] = "vaccination"
    disease: str | None
    product: str | None
    dose: int | None
    doses: int | None
    date: date | None


@dataclass(frozen=True)
class Test:
    """One test entry (`t`): disease `tg`, type `tt`, result `tr`, sample collected at `sc`."""

    kind: ClassVar[str] = "test"
    disease: str | None
    test_type: str | None
    result: str | None
    sampled: datetime | None


@dataclass(frozen=True)
class Recovery:
    """One recovery entry (`r`): disease `tg`, first positive `fr`, valid from `df` until `du`."""

    kind: ClassVar[str] = "recovery"
    disease: str | None
    first_positive: date | None
    valid_from: date | None
    valid_until: date | None


HealthEntry = Vaccination | Test | Recovery


@dataclass(frozen=True, repr=False)
class DccClaims:
    """The signed claims of a DCC, reduced to what a decision needs; health data, never logged.

    `kinds` are the entry kinds the hcert names (`v`, `t`, `r`), for the signer's key usage; `entry`
    is the one vaccination, test or recovery, None when the hcert holds no single readable entry
    with its `ci` (no rule can accept it); `sub` is the pseudonym of `ci` (see `pseudonym`), for
    passback and revocation, None without a readable `ci`.
    """

    iss: str
    iat: int
    exp: int
    sub: bytes | None
    kinds: frozenset[str]
    entry: HealthEntry | None

    def __repr__(self) -> str:
        kind = self.entry.kind if self.entry is not None else None
        return f"DccClaims(iss={self.iss!r}, iat={self.iat}, exp={self.exp}, sub=<hidden>, entry=<{kind}>)"


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
        raise UnsupportedAlgorithmError(
            f"DCC: algorithm {cose.shown(alg)} is not ES256, ES384, ES512 or PS256"
        )
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
    """Parse the CWT container strictly, and the health entry tolerantly.

    CodeError (`malformed`) only for the container: the claims map, `1` iss, `6` iat, `4` exp and
    `-260` hcert with its eu_dgc_v1 map, present and typed. What that map holds is read field by field
    (see `HealthEntry`) and judged by the rules. The map decoded here holds the holder's name and birth
    date; only the fields in DccClaims leave.
    """
    claims = cose.loads(payload, what="DCC claims")
    if not isinstance(claims, Mapping):
        raise CodeError("DCC: claims must be a CBOR map")
    iss = claims.get(CLAIM_ISS)
    if not isinstance(iss, str) or not iss:
        raise CodeError("DCC: claim iss must be a non-empty text")
    iat = _numeric_date(claims.get(CLAIM_IAT), "iat")
    exp = _numeric_date(claims.get(CLAIM_EXP), "exp")
    if exp <= iat:
        raise CodeError("DCC: claim exp must be after iat")
    hcert = claims.get(CLAIM_HCERT)
    if not isinstance(hcert, Mapping) or not isinstance(hcert.get(HCERT_EU_DGC_V1), Mapping):
        raise CodeError("DCC: claim hcert must be a map holding the eu_dgc_v1 map under key 1")
    dgc = hcert[HCERT_EU_DGC_V1]
    kinds = frozenset(kind for key, kind in _ENTRY_KEYS.items() if key in dgc)
    found = _one_entry(dgc)
    ci = _text(found[1].get("ci")) if found is not None else None
    # Without its `ci` a certificate can be checked neither for revocation nor for passback.
    entry = _entry(found) if found is not None and ci is not None else None
    return DccClaims(iss, iat, exp, pseudonym(ci) if ci is not None else None, kinds, entry)


def read_entry(dgc: Any) -> HealthEntry | None:
    """The one vaccination, test or recovery of an eu_dgc_v1 map, its fields read as far as they go;
    None when the map holds no single entry (no `v`, `t` or `r`, several, or one holding no or several
    entries), which no rule can accept."""
    found = _one_entry(dgc)
    return _entry(found) if found is not None else None


def _one_entry(dgc: Any) -> tuple[str, Mapping[Any, Any]] | None:
    """The entry key and fields when the map holds exactly one of v, t and r, with exactly one entry."""
    if not isinstance(dgc, Mapping):
        return None
    present = [key for key in _ENTRY_KEYS if key in dgc]
    if len(present) != 1:
        return None
    entries = dgc[present[0]]
    if not isinstance(entries, list | tuple) or len(entries) != 1 or not isinstance(entries[0], Mapping):
        return None
    return present[0], entries[0]


def _entry(found: tuple[str, Mapping[Any, Any]]) -> HealthEntry:
    key, fields = found
    disease = _text(fields.get("tg"))
    if key == "v":
        return Vaccination(
            disease,
            _text(fields.get("mp")),
            _dose(fields.get("dn")),
            _dose(fields.get("sd")),
            _date(fields.get("dt")),
        )
    if key == "t":
        return Test(disease, _text(fields.get("tt")), _text(fields.get("tr")), _date_time(fields.get("sc")))
    return Recovery(disease, _date(fields.get("fr")), _date(fields.get("df")), _date(fields.get("du")))


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


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _dose(value: Any) -> int | None:
    """A dose number within the schema's 1..9; another number says nothing a rule could trust."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_DOSES:
        return None
    return value


def _date(value: Any) -> date | None:
    """A calendar date: "YYYY-MM-DD" as the schema says, or a date-time whose date part is taken, or
    a CBOR date tag the decoder already turned into a date; the hcert specification asks verifiers to
    be permissive with such reasonable conversions."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DATE.match(value):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _date_time(value: Any) -> datetime | None:
    """An ISO 8601 date-time, in UTC; one without an offset is read as UTC (an hour either way does
    not change whether a 48-hour-old test is acceptable, and refusing it would lock the holder out)."""
    if not isinstance(value, datetime) and not (isinstance(value, str) and _DATE_TIME.match(value)):
        return None
    try:
        when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
