"""Verification cost per code, beside the bare signature check it cannot avoid: ES1 and the EU DCC.

The verifier runs on the hot path once per new code in view. Everything it adds around the signature
(Base45, strict CBOR decodes, trust lookup, the rules, passback; for a DCC also the inflate, the hcert
reading and the rule set) should cost a small multiple of `cryptography`'s own verify over the same key
and message; the ratio printed here is that multiple, measured in one run so machine speed cancels out.
DCCs are timed for both of their algorithms, ES256 (P-256) and PS256 (RSA-2048), with signer
certificates and codes made here.

Run: .venv/bin/python benchmarks/bench_verify.py [ROUNDS]
"""

from __future__ import annotations

import base64
import gc
import hashlib
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

from edge_sentry.codes import base45, cose, dcc, es1, keys
from edge_sentry.codes.trust import TrustList
from edge_sentry.config import DccConfig, DeviceConfig, Es1Config, GateConfig
from edge_sentry.verifier import Verifier


def _percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return p50 / 1000, p99 / 1000


def _time_interleaved(
    a: Callable[[], object], b: Callable[[], object], rounds: int
) -> tuple[list[int], list[int]]:
    """Alternate the two calls so both see the same CPU frequency, cache and scheduler noise."""
    times_a: list[int] = []
    times_b: list[int] = []
    clock = time.perf_counter_ns
    for _ in range(min(200, rounds)):  # warm-up
        a()
        b()
    gc.disable()
    try:
        for _ in range(rounds):
            t0 = clock()
            a()
            t1 = clock()
            b()
            t2 = clock()
            times_a.append(t1 - t0)
            times_b.append(t2 - t1)
    finally:
        gc.enable()
    return times_a, times_b


def _print_rows(title: str, full: list[int], bare: list[int], bare_label: str) -> None:
    full_p50, full_p99 = _percentiles(full)
    bare_p50, bare_p99 = _percentiles(bare)
    print(title)
    print(f"{'':30} {'p50 µs':>9} {'p99 µs':>9}")
    print(f"{'verifier.verify (accept)':30} {full_p50:9.1f} {full_p99:9.1f}")
    print(f"{bare_label:30} {bare_p50:9.1f} {bare_p99:9.1f}")
    print(f"{'ratio':30} {full_p50 / bare_p50:9.2f} {full_p99 / bare_p99:9.2f}")


def _bench_es1(rounds: int) -> int:
    key = keys.generate()
    now = int(time.time())
    text = es1.issue(key, issuer="bench", lifetime_s=60, iat=now)
    trust = TrustList.from_mapping(
        {"version": 1, "issued": "2026-01-01T00:00:00Z", "keys": [keys.trust_entry(key, "bench")]}
    )
    # passback off: the same code is verified over and over and must take the accept path each time
    verifier = Verifier(Es1Config(), GateConfig(passback_s=0), DeviceConfig(), trust)
    if verifier.verify(text, now).verdict != "accept":
        print("bench_verify: the benchmark ES1 code was not accepted", file=sys.stderr)
        return 1

    message = cose.decode_sign1(base45.decode(text[len(es1.PREFIX) :]))
    signed_bytes = cose.sig_structure(message.protected, message.payload)
    public_key = key.public_key()

    full, bare = _time_interleaved(
        lambda: verifier.verify(text, now),
        lambda: public_key.verify(message.signature, signed_bytes),
        rounds,
    )
    junk = "ES1:" + "0" * 4000
    rejected, _ = _time_interleaved(lambda: verifier.verify(junk, now), lambda: None, rounds)

    _print_rows(f"ES1 code: {len(text)} characters, {rounds} rounds", full, bare, "bare Ed25519 verify")
    junk_p50, junk_p99 = _percentiles(rejected)
    print(f"{'4 KB junk text (malformed)':30} {junk_p50:9.1f} {junk_p99:9.1f}")
    return 0


# -- DCC ------------------------------------------------------------------------------------------


def _signer_certificate(key: Any, now: float) -> bytes:
    name = x509.Name(
        [x509.NameAttribute(NameOID.COUNTRY_NAME, "AT"), x509.NameAttribute(NameOID.COMMON_NAME, "bench DSC")]
    )
    start = datetime.fromtimestamp(now, UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - timedelta(days=30))
        .not_valid_after(start + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def _dcc_text(key: Any, alg: int, kid: bytes, now: int) -> str:
    """A realistic vaccination certificate (schema 1.3.0), as an issuer would sign it."""
    today = datetime.fromtimestamp(now, UTC)
    entry = {
        "tg": "840539006", "vp": "1119349007", "mp": "EU/1/20/1528", "ma": "ORG-100030215", "dn": 2,
        "sd": 2, "dt": (today - timedelta(days=60)).strftime("%Y-%m-%d"), "co": "AT",
        "is": "Ministry of Health, Austria", "ci": "URN:UVCI:01:AT:10807843F94AEE0EE5093FBC254BD813#B",
    }  # fmt: skip
    dgc = {
        "ver": "1.3.0",
        "nam": {"fn": "Musterfrau-Gößinger", "fnt": "MUSTERFRAU<GOESSINGER", "gn": "Gabriele"},
        "dob": "1964-08-12",
        "v": [entry],
    }
    claims = cbor2.dumps({1: "AT", 6: now - 86400, 4: now + 30 * 86400, -260: {1: dgc}})
    return dcc.PREFIX + base45.encode(zlib.compress(cose.sign1(key, claims, alg=alg, kid=kid), 9))


def _bare_check(alg: int, public_key: Any, signature: bytes, signed: bytes) -> Callable[[], object]:
    """cryptography's own verify of the same signature over the same bytes, in its native form."""
    if alg == cose.ALG_ES256:
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        der = encode_dss_signature(r, s)
        return lambda: public_key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    return lambda: public_key.verify(signature, signed, pss, hashes.SHA256())


def _bench_dcc(rounds: int) -> int:
    now = int(time.time())
    cases = [
        ("ES256", cose.ALG_ES256, ec.generate_private_key(ec.SECP256R1()), "bare ECDSA P-256 verify"),
        ("PS256", cose.ALG_PS256, rsa.generate_private_key(public_exponent=65537, key_size=2048),
         "bare RSA-PSS 2048 verify"),
    ]  # fmt: skip
    for name, alg, key, bare_label in cases:
        der = _signer_certificate(key, now)
        kid = hashlib.sha256(der).digest()[:8]
        trust = TrustList.from_mapping(
            {
                "version": 1,
                "issued": "2026-01-01T00:00:00Z",
                "keys": [{"scheme": "dcc", "kid": _b64(kid), "certificate": _b64(der)}],
            }
        )
        verifier = Verifier(Es1Config(), GateConfig(passback_s=0), DeviceConfig(), trust, dcc=DccConfig())
        text = _dcc_text(key, alg, kid, now)
        if verifier.verify(text, now).verdict != "accept":
            print(f"bench_verify: the benchmark DCC ({name}) was not accepted", file=sys.stderr)
            return 1
        message = dcc.parse(text).message
        signed = cose.sig_structure(message.protected, message.payload)
        full, bare = _time_interleaved(
            lambda text=text, verifier=verifier: verifier.verify(text, now),
            _bare_check(alg, key.public_key(), message.signature, signed),
            rounds,
        )
        print()
        _print_rows(f"DCC {name} code: {len(text)} characters, {rounds} rounds", full, bare, bare_label)
    bomb = dcc.PREFIX + base45.encode(zlib.compress(b"\0" * 2_500_000, 9))
    rejected, _ = _time_interleaved(lambda: verifier.verify(bomb, now), lambda: None, rounds)
    bomb_p50, bomb_p99 = _percentiles(rejected)
    print(f"{'zlib bomb (malformed)':30} {bomb_p50:9.1f} {bomb_p99:9.1f}")
    return 0


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def main(rounds: int = 5000) -> int:
    return _bench_es1(rounds) or _bench_dcc(rounds)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
