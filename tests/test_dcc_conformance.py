"""Conformance: published test vectors, and certificates made here with each property issuers use.

The published ones (tests/data/dcc_conformance.json) are the EU member states' common DCC test cases and
the COSE working group's COSE_Sign1 examples, each named by where it was published. The made ones cover
what genuine certificates in the field do that a strict reading refuses: ECDSA on P-384 under ES256,
the alg only in an empty-protected message's unprotected header, a signer certificate with a DER default
spelt out, and hcert content that only the rules may judge. Each has a forged or altered twin, which
must never be accepted.
"""

import base64
import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from dcc_helpers import (
    EC_CERT,
    EC_KEY,
    NOW,
    OTHER_EC_KEY,
    RSA_CERT,
    RSA_KEY,
    certificate,
    claims,
    dgc,
    hc1,
    issue,
    kid_of,
    sign1,
    trust,
    verifier,
)

from edge_sentry.codes import cose
from edge_sentry.config import DccConfig

VECTORS = json.loads((Path(__file__).parent / "data" / "dcc_conformance.json").read_text("utf-8"))
# The EU cases are first doses dated 2021: the rules that would judge them are not what is tested here.
SIGNATURE_ONLY = DccConfig(vaccination_complete=False, vaccination_max_days=0)


def _b64url(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


@pytest.mark.parametrize("case", VECTORS["eu_dcc"], ids=lambda case: case["source"].rsplit("/", 1)[-1])
def test_the_eu_common_test_cases_get_their_expected_verdict(case: dict[str, Any]) -> None:
    der = base64.b64decode(case["certificate"])
    clock = datetime.fromisoformat(case["clock"]).timestamp()
    decision = verifier(trust(der), SIGNATURE_ONLY).verify(case["hc1"], clock)
    assert decision.reason == ("ok" if case["verify"] else "bad-signature"), case["description"]


@pytest.mark.parametrize("case", VECTORS["cose_sign1"], ids=lambda case: case["source"].rsplit("/", 1)[-1])
def test_the_cose_working_group_sign1_examples(case: dict[str, Any]) -> None:
    key = ec.EllipticCurvePublicNumbers(_b64url(case["x"]), _b64url(case["y"]), ec.SECP256R1()).public_key()
    raw = bytes.fromhex(case["cbor"])
    aad = bytes.fromhex(case["external"])
    expected = case["verify"] and "differs" not in case
    message = cose.decode_sign1(raw)
    # read as the DCC reads it: the unprotected alg only when nothing is protected
    alg = None if message.protected_header else message.unprotected.get(cose.HEADER_ALG)
    assert cose.verify(message, key, external_aad=aad, alg=alg) is expected
    # and altered in its last signature byte, or checked without its external data, never
    altered = raw[:-1] + bytes([raw[-1] ^ 1])
    assert not cose.verify(cose.decode_sign1(altered), key, external_aad=aad, alg=alg)
    if aad:
        assert not cose.verify(message, key, alg=alg)


# -- certificates made here, one per property, each with a forged twin ----------------------------------

P384_KEY = ec.generate_private_key(ec.SECP384R1())
P384_CERT = certificate(P384_KEY, name="DSC P-384")
SPELT_OUT_KEY = ec.generate_private_key(ec.SECP256R1())
SPELT_OUT_CERT = certificate(SPELT_OUT_KEY, explicit_ca_false=True, name="DSC spelt-out default")
TRUST = trust(EC_CERT, RSA_CERT, P384_CERT, SPELT_OUT_CERT)


def _made() -> list[tuple[str, str, str]]:
    """(property, text, expected reason); a forged twin is signed by a key the trust list lacks."""
    cases = [
        ("ES256 on P-384", issue(P384_KEY, P384_CERT, alg=-7), "ok"),
        ("ES384 on P-384", issue(P384_KEY, P384_CERT, alg=-35), "ok"),
        ("ES512 on P-384", issue(P384_KEY, P384_CERT, alg=-36), "ok"),
        ("ES256, alg unprotected", issue(alg_in="unprotected", kid_in="unprotected"), "ok"),
        (
            "PS256, alg unprotected",
            issue(RSA_KEY, RSA_CERT, alg_in="unprotected", kid_in="unprotected"),
            "ok",
        ),
        ("cA FALSE spelt out", issue(SPELT_OUT_KEY, SPELT_OUT_CERT), "ok"),
        ("empty co", issue(body=dgc(co="")), "ok"),
        ("empty tr", issue(body=dgc("test", tr="")), "status"),
        ("empty mp, products listed", issue(body=dgc(mp="")), "status"),
        ("dose 0", issue(body=dgc(dn=0)), "status"),
        ("no entry", issue(body={"ver": "1.3.0"}), "status"),
        ("two v entries", issue(body=dgc() | {"v": dgc()["v"] * 2}), "status"),
        ("du before df", issue(body=dgc("recovery", df="2026-11-01", du="2026-10-01")), "status"),
        (
            "kid of 7 bytes protected, 8 unprotected",
            hc1(
                cbor2.dumps(
                    [cbor2.dumps({1: -7, 4: kid_of(EC_CERT)[:7]}), {4: kid_of(EC_CERT)}, claims(), b"s" * 64]
                )
            ),
            "malformed",
        ),
    ]
    forged = [
        (
            "forged ES256 on P-384",
            issue(ec.generate_private_key(ec.SECP384R1()), P384_CERT, alg=-7),
            "bad-signature",
        ),
        (
            "forged, alg unprotected",
            issue(OTHER_EC_KEY, EC_CERT, alg_in="unprotected", kid_in="unprotected"),
            "bad-signature",
        ),
        ("forged under cA FALSE spelt out", issue(OTHER_EC_KEY, SPELT_OUT_CERT), "bad-signature"),
        ("forged with odd content", issue(OTHER_EC_KEY, EC_CERT, body=dgc(dn=0)), "bad-signature"),
    ]
    return cases + forged


@pytest.mark.parametrize(("what", "text", "expected"), _made(), ids=[what for what, _, _ in _made()])
def test_made_certificates_with_each_property(what: str, text: str, expected: str) -> None:
    rules = dataclasses.replace(DccConfig(), products=["EU/1/20/1528"]) if "products" in what else DccConfig()
    assert verifier(TRUST, rules).verify(text, NOW).reason == expected


def test_an_alg_moved_out_of_a_nonempty_protected_header_is_not_read() -> None:
    # The kid stays protected, so the unprotected alg is an unsigned label and is ignored.
    payload = claims()
    text = hc1(sign1(EC_KEY, payload, kid=kid_of(EC_CERT), alg_in="unprotected", kid_in="protected"))
    assert verifier(TRUST).verify(text, NOW).reason == "unsupported"
