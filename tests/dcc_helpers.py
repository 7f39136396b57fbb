"""Builders for the DCC tests: signer certificates, eu-dcc payloads and HC1 texts, made by hand.

Everything is assembled here with cbor2, zlib and the bare `cryptography` primitives, not with the
modules under test, so a test compares the sentry against an independent construction. The holder is
the recognisable fake "Gabriele Musterfrau-Gößinger", born 1964-08-12, so privacy tests can grep for her.

Key generation is the slow part (RSA-2048 especially), so the signer keys are made once per session;
certificates are cheap and made per test with the validity and extended key usage each test wants.
"""

from __future__ import annotations

import hashlib
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import cbor2
from codes_helpers import NOW, b64
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, NameOID

from edge_sentry.codes import base45
from edge_sentry.codes.trust import DccKey, TrustList
from edge_sentry.config import DccConfig, DeviceConfig, Es1Config, GateConfig
from edge_sentry.verifier import Verifier

DAY = 86400
FAMILY_NAME = "Musterfrau-Gößinger"
GIVEN_NAME = "Gabriele"
DOB = "1964-08-12"
CI = "URN:UVCI:01:AT:10807843F94AEE0EE5093FBC254BD813#B"
COUNTRY = "AT"
ISSUER_TEXT = "Ministry of Health, Austria"

EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())
CSCA_KEY = ec.generate_private_key(ec.SECP256R1())

ES256 = -7
PS256 = -37
EKU = {
    "test": "1.3.6.1.4.1.1847.2021.1.1",
    "vaccination": "1.3.6.1.4.1.1847.2021.1.2",
    "recovery": "1.3.6.1.4.1.1847.2021.1.3",
}
REMOVE = object()  # a field value meaning "leave this field out"


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def day(offset_days: int, now: float = NOW) -> str:
    """The calendar date (UTC) `offset_days` from `now`, as the schema writes dates."""
    return (at(now) + timedelta(days=offset_days)).strftime("%Y-%m-%d")


def moment(offset_s: float, now: float = NOW) -> str:
    """An ISO 8601 date-time `offset_s` seconds from `now`, as the schema writes `sc`."""
    return (at(now) + timedelta(seconds=offset_s)).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- certificates --------------------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, COUNTRY),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def certificate(
    key: Any = EC_KEY,
    *,
    not_before: float = NOW - 365 * DAY,
    not_after: float = NOW + 365 * DAY,
    kinds: tuple[str, ...] | None = None,
    extra_eku: tuple[str, ...] = (),
    csca: Any = None,
    name: str = "DSC test",
    explicit_ca_false: bool = False,
) -> bytes:
    """A document signer certificate (DER) for `key`: self-signed, or issued by a test CSCA key.

    `explicit_ca_false` writes BasicConstraints as SEQUENCE { BOOLEAN FALSE }, the DER default spelt
    out, as some member states' certificates do (strict DER parsers refuse it)."""
    subject = _name(name)
    issuer = _name("CSCA test") if csca is not None else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(at(not_before))
        .not_valid_after(at(not_after))
    )
    if explicit_ca_false:
        spelt_out = x509.UnrecognizedExtension(ExtensionOID.BASIC_CONSTRAINTS, b"\x30\x03\x01\x01\x00")
        builder = builder.add_extension(spelt_out, critical=True)
    oids = [EKU[k] for k in kinds or ()] + list(extra_eku)
    if oids:
        usage = x509.ExtendedKeyUsage([x509.ObjectIdentifier(o) for o in oids])
        builder = builder.add_extension(usage, critical=False)
    return builder.sign(csca if csca is not None else key, hashes.SHA256()).public_bytes(Encoding.DER)


def kid_of(der: bytes) -> bytes:
    return hashlib.sha256(der).digest()[:8]


EC_CERT = certificate(EC_KEY)
RSA_CERT = certificate(RSA_KEY, name="DSC test RSA")


# -- payloads ------------------------------------------------------------------------------------


def _entry(kind: str) -> dict[str, Any]:
    common = {"tg": "840539006", "co": COUNTRY, "is": ISSUER_TEXT, "ci": CI}
    if kind == "vaccination":
        return {
            "tg": "840539006", "vp": "1119349007", "mp": "EU/1/20/1528", "ma": "ORG-100030215",
            "dn": 2, "sd": 2, "dt": day(-30), "co": COUNTRY, "is": ISSUER_TEXT, "ci": CI,
        }  # fmt: skip
    if kind == "test":
        return common | {
            "tt": "LP217198-3", "ma": "1232", "sc": moment(-6 * 3600), "tr": "260415000",
            "tc": "Teststraße Wien-Mitte",
        }  # fmt: skip
    if kind == "pcr":
        return common | {
            "tt": "LP6464-4", "nm": "Roche LightCycler qPCR", "sc": moment(-20 * 3600),
            "tr": "260415000", "tc": "Labor Gößinger",
        }  # fmt: skip
    if kind == "recovery":
        return common | {"fr": day(-60), "df": day(-49), "du": day(120)}
    raise ValueError(kind)


_GROUP = {"vaccination": "v", "test": "t", "pcr": "t", "recovery": "r"}


def dgc(kind: str = "vaccination", **fields: Any) -> dict[str, Any]:
    """An eu_dgc_v1 map (schema 1.3.0) with one entry of `kind`; `fields` override the entry's
    values (REMOVE leaves one out)."""
    entry = _entry(kind)
    for key, value in fields.items():
        if value is REMOVE:
            entry.pop(key, None)
        else:
            entry[key] = value
    return {
        "ver": "1.3.0",
        "nam": {"fn": FAMILY_NAME, "fnt": "MUSTERFRAU<GOESSINGER", "gn": GIVEN_NAME, "gnt": "GABRIELE"},
        "dob": DOB,
        _GROUP[kind]: [entry],
    }


def claims(
    body: Any = None,
    *,
    iss: Any = COUNTRY,
    iat: Any = NOW - DAY,
    exp: Any = NOW + 30 * DAY,
    hcert: Any = None,
) -> bytes:
    """The CWT claims (CBOR) around an eu_dgc_v1 map; `hcert` replaces the whole -260 claim."""
    payload: dict[int, Any] = {}
    if iss is not REMOVE:
        payload[1] = iss
    if iat is not REMOVE:
        payload[6] = iat
    if exp is not REMOVE:
        payload[4] = exp
    payload[-260] = hcert if hcert is not None else {1: body if body is not None else dgc()}
    return cbor2.dumps(payload)


# -- signing and the envelope --------------------------------------------------------------------


ECDSA_HASHES: dict[int, hashes.HashAlgorithm] = {
    -7: hashes.SHA256(),
    -35: hashes.SHA384(),
    -36: hashes.SHA512(),
}


def raw_signature(key: Any, message: bytes, *, alg: int, salt: Any = 32) -> bytes:
    """What COSE carries: r || s for ECDSA (the hash from the alg, the size from the key's curve), the
    PSS signature for PS256."""
    if alg in ECDSA_HASHES:
        size = (key.curve.key_size + 7) // 8
        r, s = decode_dss_signature(key.sign(message, ec.ECDSA(ECDSA_HASHES[alg])))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt)
    return key.sign(message, pss, hashes.SHA256())


def sign1(
    key: Any,
    payload: bytes,
    *,
    kid: bytes | None,
    alg: int | None = None,
    kid_in: str = "protected",
    alg_in: str = "protected",
    tags: tuple[int, ...] = (18,),
    salt: Any = 32,
    signature: bytes | None = None,
) -> bytes:
    """A COSE_Sign1 (CBOR) over `payload`; `tags` are the CBOR tags around it, outermost first."""
    if alg is None:
        alg = ES256 if isinstance(key, ec.EllipticCurvePrivateKey) else PS256
    protected_map: dict[int, Any] = {1: alg} if alg_in == "protected" else {}
    unprotected: dict[int, Any] = {} if alg_in == "protected" else {1: alg}
    if kid is not None and kid_in in ("protected", "both"):
        protected_map[4] = kid
    if kid is not None and kid_in in ("unprotected", "both"):
        unprotected[4] = kid
    protected = cbor2.dumps(protected_map) if protected_map else b""
    to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
    if signature is None:
        signature = raw_signature(key, to_sign, alg=alg, salt=salt)
    item: Any = [protected, unprotected, payload, signature]
    for tag in reversed(tags):
        item = cbor2.CBORTag(tag, item)
    return cbor2.dumps(item)


def hc1(cose_bytes: bytes, *, prefix: str = "HC1:") -> str:
    """The text a phone shows: prefix + Base45 of the zlib-compressed COSE message."""
    return prefix + base45.encode(zlib.compress(cose_bytes, 9))


def issue(
    key: Any = EC_KEY,
    cert: bytes = EC_CERT,
    body: Any = None,
    *,
    kid: bytes | None = None,
    claim_args: dict[str, Any] | None = None,
    **sign_args: Any,
) -> str:
    """A complete HC1 text signed by `key`, naming `cert`'s kid (or `kid`)."""
    payload = claims(body, **(claim_args or {}))
    return hc1(sign1(key, payload, kid=kid if kid is not None else kid_of(cert), **sign_args))


# -- trust lists and verifiers -------------------------------------------------------------------


def trust(
    *certs: bytes, revoked_kids: tuple[bytes, ...] = (), revoked_subs: tuple[bytes, ...] = ()
) -> TrustList:
    """A trust list with these DSCs, through the JSON form an operator writes."""
    return TrustList.from_mapping(
        {
            "version": 1,
            "issued": "2026-11-18T00:00:00Z",
            "keys": [{"scheme": "dcc", "kid": b64(kid_of(c)), "certificate": b64(c)} for c in certs],
            "revoked": {
                "kids": [b64(k) for k in revoked_kids],
                "subs": [b64(hashlib.sha256(s).digest()) for s in revoked_subs],
            },
        }
    )


def shared_kid_trust(kid: bytes, *certs: bytes) -> TrustList:
    """A list where several certificates carry the same kid, as a truncated hash allows in the field.
    Built directly: no two real certificates can be made to collide for a test."""
    return TrustList(1, at(NOW), tuple(DccKey(kid, c) for c in certs))


def verifier(trust_list: TrustList, dcc: DccConfig | None = None, *, passback_s: int = 30) -> Verifier:
    return Verifier(
        Es1Config(),
        GateConfig(passback_s=passback_s),
        DeviceConfig(id="sentry-test", site="s1", venue="arena", entrance="north"),
        trust_list,
        dcc=dcc or DccConfig(),
    )


def sub_of(ci: str = CI) -> bytes:
    """The pseudonym the sentry is documented to derive, computed here independently."""
    return hashlib.sha256(ci.encode("utf-8")).digest()[:16]
