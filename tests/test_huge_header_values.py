"""Header values chosen to break an error path: integers too long to print, texts too long to log.

Python refuses to turn an integer of more than 4300 digits into text, so an error message that quoted
one raised ValueError in place of the refusal. Every path that reads a COSE header (ES1, VC1, HC1,
signed trust lists, signed control messages) must still answer with its own clean refusal.
"""

from __future__ import annotations

import logging

import cbor2
import pytest
from codes_helpers import NOW, make_verifier, trust_list
from control_helpers import OPERATOR, operator_trust
from dcc_helpers import EC_CERT, claims, hc1, kid_of, trust, verifier

from edge_sentry.codes import base45, control, cose, dcc, keys
from edge_sentry.codes.trust import TrustList
from edge_sentry.errors import ControlRefused, TrustListError, UnsupportedAlgorithmError
from edge_sentry.vocabulary import ContentType

HUGE = 2**20000  # about 6000 digits
BIG = 2**70
ROOT = keys.generate()
EC_KID = kid_of(EC_CERT)


def sign1(signer, header: dict, payload: bytes = b"\xa0") -> bytes:
    protected = cbor2.dumps(header)
    signature = signer.sign(cose.sig_structure(protected, payload))
    return cose.encode_sign1(protected, {}, payload, signature)


@pytest.mark.parametrize(
    "value, text",
    [
        (HUGE, "an integer of 20001 bits"),
        (-HUGE, "an integer of 20001 bits"),
        (BIG, "an integer of 71 bits"),
        (2**64 - 1, "18446744073709551615"),
        (2**64, "an integer of 65 bits"),
        (-8, "-8"),
        ("x" * 5000, repr("x" * 40) + "..."),
        ("x" * 40, repr("x" * 40)),
        ("x" * 41, repr("x" * 40) + "..."),
        (b"\x00" * 9, "9 bytes"),
        ((HUGE,), "a tuple"),
        (True, "True"),
    ],
    ids=[
        "huge",
        "huge-negative",
        "71-bit",
        "64-bit",
        "65-bit",
        "eddsa",
        "long-text",
        "40-chars",
        "41-chars",
        "bytes",
        "tuple",
        "bool",
    ],
)
def test_a_header_value_is_shown_short_and_without_raising(value, text: str) -> None:
    assert cose.shown(value) == text


@pytest.mark.parametrize("alg", [HUGE, -HUGE, BIG], ids=["huge", "huge-negative", "71-bit"])
def test_cose_verify_refuses_a_huge_alg_as_unsupported(alg: int) -> None:
    message = cose.decode_sign1(sign1(ROOT, {1: alg}))
    with pytest.raises(UnsupportedAlgorithmError, match="an integer of"):
        cose.verify(message, ROOT.public_key())


def test_a_huge_content_type_or_an_unprintable_label_is_a_clean_code_error() -> None:
    message = cose.decode_sign1(sign1(ROOT, {1: -8, 3: HUGE}))
    with pytest.raises(cose.ContentTypeError, match="content type an integer of 20001 bits"):
        message.require_content_type(ContentType.TRUST)
    with pytest.raises(cose.CodeError, match="label a tuple"):
        cose.decode_header(cbor2.dumps({(HUGE,): 1}))


@pytest.mark.parametrize("alg", [HUGE, BIG], ids=["huge", "71-bit"])
@pytest.mark.parametrize("where", ["protected", "unprotected only"])
def test_hc1_with_a_huge_alg_is_unsupported_not_a_surprise(alg: int, where: str, caplog) -> None:
    protected = {1: alg, 4: EC_KID} if where == "protected" else {}
    unprotected = {} if where == "protected" else {1: alg, 4: EC_KID}
    text = hc1(cbor2.dumps([cbor2.dumps(protected) if protected else b"", unprotected, claims(), b"s" * 64]))
    with pytest.raises(UnsupportedAlgorithmError, match="an integer of"):
        dcc.parse(text)
    with caplog.at_level(logging.WARNING):
        decision = verifier(trust(EC_CERT)).verify(text, NOW)
    assert (decision.verdict, decision.reason) == ("deny", "unsupported")
    assert "could not be read" not in caplog.text


@pytest.mark.parametrize("alg", [HUGE, BIG], ids=["huge", "71-bit"])
def test_es1_and_vc1_with_a_huge_alg_are_malformed(alg: int, caplog) -> None:
    key = keys.generate()
    v = make_verifier(trust_list(key), root=ROOT)
    for prefix, signer in (("ES1:", key), ("VC1:", ROOT)):
        text = prefix + base45.encode(sign1(signer, {1: alg, 4: keys.kid_of(signer)}))
        with caplog.at_level(logging.WARNING):
            decision = v.verify(text, NOW)
        assert (decision.verdict, decision.reason) == ("deny", "malformed"), prefix
    assert "could not be read" not in caplog.text


def test_a_signed_trust_list_with_a_huge_alg_is_a_trust_list_error() -> None:
    data = sign1(ROOT, {1: HUGE, 4: keys.kid_of(ROOT), 3: ContentType.TRUST})
    with pytest.raises(TrustListError, match="algorithm an integer of 20001 bits"):
        TrustList.from_signed(data, ROOT.public_key())


@pytest.mark.parametrize(
    "header",
    [{1: HUGE}, {1: -8, 3: HUGE}, {1: BIG, 3: control.CONTENT_TYPE}],
    ids=["huge-alg", "huge-content-type", "71-bit-alg"],
)
def test_a_control_message_with_a_huge_header_value_is_unsigned(header: dict) -> None:
    data = sign1(OPERATOR, {**header, 4: keys.kid_of(OPERATOR)})
    with pytest.raises(ControlRefused) as caught:
        control.verify(data, operator_trust().operator, topic="s1/x", site="s1", role="command")
    assert caught.value.reason == "unsigned"
