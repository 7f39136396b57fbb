"""DCC signer certificates a strict DER parser refuses: read tolerantly, never trusted more for it."""

from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from dcc_helpers import (
    DAY,
    NOW,
    OTHER_EC_KEY,
    RSA_KEY,
    certificate,
    dgc,
    issue,
    trust,
    verifier,
)

from edge_sentry.codes import dcc, tolerant_x509

EC_KEY = ec.generate_private_key(ec.SECP256R1())
SPELT_OUT = certificate(EC_KEY, explicit_ca_false=True, name="DSC spelt-out default")


def test_cryptography_refuses_the_spelt_out_default() -> None:
    cert = x509.load_der_x509_certificate(SPELT_OUT)
    with pytest.raises(ValueError):
        cert.extensions  # noqa: B018 - the parse happens on access


def test_the_tolerant_reading_finds_the_key_and_the_validity() -> None:
    signer = dcc.load_signer(SPELT_OUT)
    assert signer is not None
    assert signer.public_key.public_numbers() == EC_KEY.public_key().public_numbers()
    assert (
        signer.not_before == datetime.fromtimestamp(NOW - 365 * DAY, UTC).replace(microsecond=0).timestamp()
    )
    assert signer.not_after == datetime.fromtimestamp(NOW + 365 * DAY, UTC).replace(microsecond=0).timestamp()
    assert signer.kinds == frozenset(dcc.KINDS)


def test_a_code_signed_by_its_key_verifies_and_a_forged_one_does_not() -> None:
    assert verifier(trust(SPELT_OUT)).verify(issue(EC_KEY, SPELT_OUT), NOW).reason == "ok"
    assert verifier(trust(SPELT_OUT)).verify(issue(OTHER_EC_KEY, SPELT_OUT), NOW).reason == "bad-signature"
    text = issue(EC_KEY, SPELT_OUT)
    altered = text[:-12] + ("A" if text[-12] != "A" else "B") + text[-11:]
    assert verifier(trust(SPELT_OUT)).verify(altered, NOW).reason in ("bad-signature", "malformed")


def test_the_tolerant_reading_keeps_the_validity_and_the_key_usage() -> None:
    old = certificate(EC_KEY, explicit_ca_false=True, not_after=NOW - DAY)
    assert verifier(trust(old)).verify(issue(EC_KEY, old), NOW).reason == "expired"
    tests_only = certificate(EC_KEY, explicit_ca_false=True, kinds=("test",))
    assert dcc.load_signer(tests_only).kinds == {"test"}  # type: ignore[union-attr]
    assert verifier(trust(tests_only)).verify(issue(EC_KEY, tests_only), NOW).reason == "bad-signature"
    rsa = certificate(RSA_KEY, explicit_ca_false=True)
    assert verifier(trust(rsa)).verify(issue(RSA_KEY, rsa, body=dgc()), NOW).reason == "ok"


@pytest.mark.parametrize(
    "der",
    [b"", b"\x30\x00", b"not a certificate", SPELT_OUT + b"\x00", SPELT_OUT[:-1], SPELT_OUT[:100]],
)
def test_what_neither_reading_takes_verifies_nothing(der: bytes) -> None:
    assert tolerant_x509.read(der) is None
    assert dcc.load_signer(der) is None
