"""Fuzz targets for what a phone screen carries: Base45, COSE_Sign1, ES1 and DCC codes.

Samples are valid codes made by the sentry's own issuers (es1.issue, cose.sign1, base45) with keys drawn
from the run's seed, and the published examples in tests/data/dcc_conformance.json (the EU member
states' DCC test cases, the COSE working group's COSE_Sign1 examples). ES1 and DCC texts go through
`Verifier.verify`, as the sentry calls it on each decoded QR text; its safety net (a surprise on hostile
input is logged and denied as `malformed`) counts as an escape here, since it means a parser raised what
it does not document.

A DCC's ECDSA signatures are not deterministic, so its samples differ from run to run under one seed;
the input printed with an escape is what replays it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from edge_sentry.codes import base45, cose, dcc, es1
from edge_sentry.codes.keys import kid_of
from edge_sentry.codes.trust import DccKey, Es1Key, TrustList
from edge_sentry.config import DccConfig, DeviceConfig, Es1Config, GateConfig
from edge_sentry.errors import CodeError
from edge_sentry.verifier import Decision, Verifier
from edge_sentry.vocabulary import Reason
from reliability._fuzzing import ACCEPTED, ESCAPED, FORGED, REFUSED, UNCHANGED, Input, Target
from reliability._mutate import Mutator

NOW = 1_795_000_000.0  # the run's clock: fixed, so a seed replays the same decisions
DAY = 86400
VECTORS = Path(__file__).resolve().parent.parent / "tests" / "data" / "dcc_conformance.json"
ISSUER = "fuzz-issuer"
# Reasons given before a signature is known to hold: nothing of the code's meaning was believed.
_UNAUTHENTIC = {Reason.MALFORMED, Reason.UNSUPPORTED, Reason.UNKNOWN_KEY, Reason.BAD_SIGNATURE}


class _NetCount(logging.Handler):
    """Counts the verifier's safety-net warnings (a parser raised something undocumented)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "could not be read" in record.getMessage():
            self.count += 1


@dataclass(frozen=True)
class CoseSample:
    data: bytes
    key: Any
    aad: bytes = b""
    dcc: bool = False  # read as the DCC reads it: tags 61 and 18, kid in both headers, alg unprotected


def _meaning(decision: Decision) -> tuple[Any, ...]:
    return (decision.scheme, decision.kid, decision.iat, decision.exp, decision.issuer, decision.sub,
            decision.paper)  # fmt: skip


def _b64url_int(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def _certificate(key: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "XX"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "DSC fuzz")])  # fmt: skip
    when = datetime.fromtimestamp(NOW, UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(4711)
        .not_valid_before(when - timedelta(days=365))
        .not_valid_after(when + timedelta(days=365))
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def _day(offset: int) -> str:
    return (datetime.fromtimestamp(NOW, UTC) + timedelta(days=offset)).strftime("%Y-%m-%d")


def _dgc(kind: str, n: int) -> dict[str, Any]:
    common: dict[str, Any] = {
        "tg": "840539006",
        "co": "XX",
        "is": "Fuzz Ministry",
        "ci": f"URN:UVCI:01:XX:FUZZ{n:04d}#A",
    }
    entries: dict[str, dict[str, Any]] = {
        "v": {
            "vp": "1119349007",
            "mp": "EU/1/20/1528",
            "ma": "ORG-100030215",
            "dn": 2,
            "sd": 2,
            "dt": _day(-30),
        },
        "t": {
            "tt": "LP6464-4",
            "sc": (datetime.fromtimestamp(NOW - 6 * 3600, UTC)).isoformat(),
            "tr": "260415000",
        },
        "r": {"fr": _day(-60), "df": _day(-49), "du": _day(120)},
    }
    return {"ver": "1.3.0", "nam": {"fn": "Fuzz", "fnt": "FUZZ"}, "dob": "1990-01-01",
            kind: [common | entries[kind]]}  # fmt: skip


def _dcc_claims(kind: str, n: int) -> bytes:
    return cbor2.dumps({1: "XX", 6: int(NOW - DAY), 4: int(NOW + 30 * DAY), -260: {1: _dgc(kind, n)}})


def _dcc_sign1(key: ec.EllipticCurvePrivateKey, payload: bytes, kid: bytes, variant: int) -> bytes:
    """Variant 0: alg and kid protected, tag 18; 1: tags 61 and 18; 2: kid unprotected, no tag;
    3: alg and kid unprotected, protected header empty."""
    protected_map: dict[int | str, Any] = {1: cose.ALG_ES256} if variant != 3 else {}
    unprotected: dict[int, Any] = {1: cose.ALG_ES256} if variant == 3 else {}
    if variant in (2, 3):
        unprotected[4] = kid
    else:
        protected_map[4] = kid
    protected = cose.encode_header(protected_map)
    signature = cose.ALGORITHMS[cose.ALG_ES256].sign(key, cose.sig_structure(protected, payload))
    item: Any = [protected, unprotected, payload, signature]
    if variant in (0, 1):
        item = cbor2.CBORTag(cose.TAG_SIGN1, item)
    if variant == 1:
        item = cbor2.CBORTag(cose.TAG_CWT, item)
    return cbor2.dumps(item)


def _hc1(cose_bytes: bytes) -> str:
    return dcc.PREFIX + base45.encode(zlib.compress(cose_bytes, 9))


class CodeSamples:
    """Every valid sample of this run, and the verifier that must accept them unchanged."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(f"{seed}/keys")
        self.es1_key = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
        self.ec_key = ec.derive_private_key(rng.getrandbits(250) | 1, ec.SECP256R1())
        self.ec_cert = _certificate(self.ec_key)
        self.ec_kid = hashlib.sha256(self.ec_cert).digest()[:8]
        vectors = json.loads(VECTORS.read_text("utf-8"))

        # ES1 codes: plain, with a venue, a paper code, another status; iat a little before the clock.
        self.es1_texts: list[str] = []
        variants: list[dict[str, Any]] = [
            {},
            {"venue": "fuzz-venue"},
            {"paper": True},
            {"status": es1.Status.YELLOW},
        ]
        for i, extra in enumerate(variants):
            sub = hashlib.sha256(f"{seed}/sub/{i}".encode()).digest()[:16]
            self.es1_texts.append(
                es1.issue(self.es1_key, issuer=ISSUER, lifetime_s=300, sub=sub, iat=int(NOW) - 5, **extra)
            )
        # DCC codes: the EU's published cases (each at its own clock), and this run's, one per kind and form.
        self.dcc_texts: list[tuple[str, float]] = []
        certificates = [self.ec_cert]
        for case in vectors["eu_dcc"]:
            self.dcc_texts.append((case["hc1"], datetime.fromisoformat(case["clock"]).timestamp()))
            certificates.append(base64.b64decode(case["certificate"]))
        for n, (kind, variant) in enumerate([("v", 0), ("t", 1), ("r", 2), ("v", 3)]):
            payload = _dcc_claims(kind, n)
            self.dcc_texts.append((_hc1(_dcc_sign1(self.ec_key, payload, self.ec_kid, variant)), NOW))

        trust = TrustList(
            1,
            datetime.fromtimestamp(NOW, UTC),
            (Es1Key(kid_of(self.es1_key), self.es1_key.public_key(), ISSUER),
             *(DccKey(hashlib.sha256(c).digest()[:8], c) for c in certificates)),
        )  # fmt: skip
        self.verifier = Verifier(
            Es1Config(accept_status=[0, 1]),
            GateConfig(passback_s=0),  # a sample accepted twice is not a passback here
            DeviceConfig(id="fuzz", site="fuzz-site", venue="fuzz-venue", entrance="main"),
            trust,
            dcc=DccConfig(vaccination_complete=False, vaccination_max_days=0),
        )
        self.net = _NetCount()
        logging.getLogger("edge_sentry.verifier").addHandler(self.net)
        # What each sample means when it verifies (None: it must not verify, like the EU's invalid case).
        self.meanings: dict[str, tuple[Any, ...] | None] = {}
        for text, clock in [(t, NOW) for t in self.es1_texts] + self.dcc_texts:
            decision = self.verifier.verify(text, clock)
            self.meanings[text] = None if decision.reason in _UNAUTHENTIC else _meaning(decision)

        # COSE messages: inside the codes above, a venue-poster-like message, and the COSE WG examples.
        self.cose: list[CoseSample] = [
            CoseSample(base45.decode(t[4:]), self.es1_key.public_key()) for t in self.es1_texts
        ]
        for text, _clock in self.dcc_texts:
            raw = zlib.decompress(base45.decode(text[4:]))
            message = cose.decode_sign1(raw, cwt_tag=True, kid_in_both=True)
            for c in certificates:
                if hashlib.sha256(c).digest()[:8] == message.kid:
                    key = x509.load_der_x509_certificate(c).public_key()
                    self.cose.append(CoseSample(raw, key, dcc=True))
        for case in vectors["cose_sign1"]:
            numbers = ec.EllipticCurvePublicNumbers(
                _b64url_int(case["x"]), _b64url_int(case["y"]), ec.SECP256R1()
            )
            raw = bytes.fromhex(case["cbor"])
            self.cose.append(CoseSample(raw, numbers.public_key(), bytes.fromhex(case["external"]), dcc=True))
        self.cose_bytes = [s.data for s in self.cose]
        self.signed_parts = {s.data: self._signed_part(s) for s in self.cose}

    def close(self) -> None:
        logging.getLogger("edge_sentry.verifier").removeHandler(self.net)

    def unchanged(self) -> bool:
        """Every sample that should verify does, and is read back with its meaning (the harness works)."""
        return all(
            (_meaning(d) if d.reason not in _UNAUTHENTIC else None) == self.meanings[text]
            for text, clock in [(t, NOW) for t in self.es1_texts] + self.dcc_texts
            for d in [self.verifier.verify(text, clock)]
        ) and all(self.meanings[t] is not None for t in self.es1_texts)

    def _signed_part(self, sample: CoseSample) -> tuple[bytes, bytes] | None:
        """The protected header and payload a sample's signature covers, or None when it covers nothing
        a mutation could restore.

        One published example ("Redo protected") is sent with the protected header h'A0' but signed
        over h'': the sentry refuses it as sent, and a mutation that writes h'' back recovers exactly
        what its key signed, which is no forgery. So a sample that does not verify as sent is tried
        once more with an empty protected header.
        """
        try:
            signed = self.cose_verified(sample, sample.data)
            if signed is None:
                message = cose.decode_sign1(sample.data, cwt_tag=sample.dcc, kid_in_both=sample.dcc)
                header = {**message.protected_header, **message.unprotected}
                redone = cose.encode_sign1(b"", header, message.payload, message.signature)
                signed = self.cose_verified(sample, redone)
        except CodeError:
            return None
        return signed

    @staticmethod
    def cose_verified(sample: CoseSample, data: bytes) -> tuple[bytes, bytes] | None:
        message = cose.decode_sign1(data, cwt_tag=sample.dcc, kid_in_both=sample.dcc)
        alg = None
        if sample.dcc and not message.protected_header:
            alg = message.unprotected.get(cose.HEADER_ALG)
        if not cose.verify(message, sample.key, external_aad=sample.aad, alg=alg):
            return None
        return message.protected, message.payload


# -- Base45 ---------------------------------------------------------------------------------------


def base45_target(samples: CodeSamples) -> Target:
    texts = [t[4:] for t in samples.es1_texts] + [t[4:] for t, _ in samples.dcc_texts]
    others = samples.cose_bytes

    def draw(m: Mutator) -> Input:
        text = m.rng.choice(texts)
        pick = m.rng.random()
        if pick < 0.6:
            return Input(m.base45_text(text), origin=text, how="text mutation")
        if pick < 0.8:
            return Input(
                base45.encode(m.mutate_bytes(base45.decode(text), others)), origin=text, how="bytes mutation"
            )
        return Input(m.random_text(), origin=text, how="random text")

    def attempt(case: Input) -> str:
        out = base45.decode(case.data)
        # Strict decoding is a bijection: a text that decodes must be the one encoding of its bytes.
        if base45.encode(out) != case.data:
            return FORGED
        return UNCHANGED if case.data == case.origin else ACCEPTED

    return Target("base45", draw, attempt, (CodeError,), short=60_000)


# -- COSE_Sign1 -------------------------------------------------------------------------------------


def cose_target(samples: CodeSamples) -> Target:
    def draw(m: Mutator) -> Input:
        sample = m.rng.choice(samples.cose)
        pick = m.rng.random()
        if pick < 0.5:
            data, how = m.cbor(sample.data, samples.cose_bytes), "CBOR mutation"
        elif pick < 0.95:
            data, how = m.mutate_bytes(sample.data, samples.cose_bytes), "bytes mutation"
        else:
            data, how = m.random_bytes(), "random bytes"
        return Input(data, origin=sample, how=how)

    def attempt(case: Input) -> str:
        sample: CoseSample = case.origin
        signed = samples.cose_verified(sample, case.data)
        if signed is None:
            return REFUSED
        # Verified: the signature must cover exactly what the sample's covers (only the unprotected
        # header, the tags or the encoding of the envelope may differ).
        return UNCHANGED if signed == samples.signed_parts[sample.data] else FORGED

    return Target("cose", draw, attempt, (CodeError,), short=60_000)


# -- codes through the verifier ---------------------------------------------------------------------


def _text_inputs(m: Mutator, text: str, prefix: str, others: list[bytes], inner: bool) -> tuple[str, str]:
    """A mutated code text: at the text, the COSE bytes (`inner`: inside zlib) or the prefix."""
    body = text[len(prefix) :]
    pick = m.rng.random()
    if pick < 0.3:
        return prefix + m.base45_text(body), "Base45 text mutation"
    if pick < 0.9:
        raw = base45.decode(body)
        cose_bytes = zlib.decompress(raw) if inner else raw
        changed = m.cbor(cose_bytes, others) if m.rng.random() < 0.6 else m.mutate_bytes(cose_bytes, others)
        if inner:
            wrapped = (
                zlib.compress(changed, 9)
                if m.rng.random() < 0.9
                else m.mutate_bytes(zlib.compress(changed, 9))
            )
            return prefix + base45.encode(wrapped), "COSE mutation (zlib kept valid mostly)"
        return prefix + base45.encode(changed), "COSE mutation"
    if pick < 0.95:
        return m.rng.choice(
            ("", "HC1:", "HC2:", "hc1:", "ES1:", "ES2:", "VC1:", "HC1:HC1:", " ", "ES1")
        ) + body, "prefix"
    return prefix + m.random_text(), "random text"


def _judge(samples: CodeSamples, case: Input, clock: float) -> str:
    before = samples.net.count
    decision = samples.verifier.verify(case.data, clock)
    if samples.net.count != before:
        return ESCAPED
    if decision.reason in _UNAUTHENTIC and not decision.accepted:
        return REFUSED
    if case.genuine:
        return ACCEPTED if decision.accepted else REFUSED
    expected = samples.meanings.get(case.origin)
    return UNCHANGED if expected is not None and _meaning(decision) == expected else FORGED


def es1_target(samples: CodeSamples) -> Target:
    others = samples.cose_bytes

    def draw(m: Mutator) -> Input:
        text = m.rng.choice(samples.es1_texts)
        if m.rng.random() < 0.15:  # signed by the trusted issuer over claims it should never have signed
            payload = es1.parse(text).message.payload
            claims = m.cbor(payload) if m.rng.random() < 0.9 else m.random_bytes()
            message = cose.sign1(samples.es1_key, claims, kid=kid_of(samples.es1_key))
            return Input(
                es1.PREFIX + base45.encode(message), genuine=True, origin=text, how="claims re-signed"
            )
        data, how = _text_inputs(m, text, es1.PREFIX, others, inner=False)
        return Input(data, origin=text, how=how)

    return Target("es1", draw, lambda case: _judge(samples, case, NOW), (), short=24_000)


def dcc_target(samples: CodeSamples) -> Target:
    others = samples.cose_bytes
    clocks = dict(samples.dcc_texts)
    own = [t for t, clock in samples.dcc_texts if clock == NOW]

    def draw(m: Mutator) -> Input:
        if m.rng.random() < 0.15:  # the run's own signer over claims no issuer should sign
            text = m.rng.choice(own)
            raw = zlib.decompress(base45.decode(text[4:]))
            payload = cose.decode_sign1(raw, cwt_tag=True, kid_in_both=True).payload
            claims = m.cbor(payload) if m.rng.random() < 0.9 else m.random_bytes()
            signed = _dcc_sign1(samples.ec_key, claims, samples.ec_kid, m.rng.randrange(4))
            return Input(_hc1(signed), genuine=True, origin=text, how="claims re-signed")
        text = m.rng.choice([t for t, _ in samples.dcc_texts])
        data, how = _text_inputs(m, text, dcc.PREFIX, others, inner=True)
        return Input(data, origin=text, how=how)

    return Target("dcc", draw, lambda case: _judge(samples, case, clocks[case.origin]), (), short=16_000)
