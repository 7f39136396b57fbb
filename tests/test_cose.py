"""COSE_Sign1: structures are built by hand with cbor2, independently of the module under test."""

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_sentry.codes import cose
from edge_sentry.errors import CodeError

PROTECTED = cbor2.dumps({1: -8, 4: b"kid-0001"})


def hand_built(*items, tag: int | None = 18) -> bytes:
    body = list(items)
    return cbor2.dumps(cbor2.CBORTag(tag, body) if tag is not None else body)


def test_decodes_a_tagged_hand_built_message() -> None:
    data = hand_built(PROTECTED, {33: b"x"}, b"payload", b"sig")
    msg = cose.decode_sign1(data)
    assert msg.protected == PROTECTED
    assert dict(msg.protected_header) == {1: -8, 4: b"kid-0001"}
    assert dict(msg.unprotected) == {33: b"x"}
    assert msg.payload == b"payload"
    assert msg.signature == b"sig"
    assert msg.alg == -8
    assert msg.kid == b"kid-0001"


def test_decodes_an_untagged_message() -> None:
    msg = cose.decode_sign1(hand_built(PROTECTED, {}, b"p", b"s", tag=None))
    assert (msg.payload, msg.signature, msg.kid) == (b"p", b"s", b"kid-0001")


def test_empty_protected_bytes_mean_an_empty_header_and_kid_may_be_unprotected() -> None:
    msg = cose.decode_sign1(hand_built(b"", {4: b"k"}, b"p", b"s"))
    assert dict(msg.protected_header) == {}
    assert msg.alg is None
    assert msg.kid == b"k"


def test_encode_is_byte_for_byte_the_rfc_shape() -> None:
    # d2 = tag 18, 84 = array(4), 43 a10127 = bstr {1: -8}, a0 = {}, 41 01 = bstr 01, 42 0203 = bstr
    assert cose.encode_sign1(b"\xa1\x01\x27", {}, b"\x01", b"\x02\x03").hex() == (
        "d2" "84" "43a10127" "a0" "4101" "420203"
    )  # fmt: skip
    assert cose.encode_sign1(b"\xa1\x01\x27", {}, b"\x01", b"\x02\x03", tag=False).hex() == (
        "84" "43a10127" "a0" "4101" "420203"
    )  # fmt: skip


def test_encode_matches_hand_built_structure() -> None:
    assert cose.encode_sign1(PROTECTED, {4: b"k"}, b"pl", b"sg") == hand_built(
        PROTECTED, {4: b"k"}, b"pl", b"sg"
    )


def test_sig_structure_is_signature1_array() -> None:
    assert cose.sig_structure(b"\xa1\x01\x27", b"\x01").hex() == (
        "84" "6a" + b"Signature1".hex() + "43a10127" "40" "4101"
    )  # fmt: skip
    assert cose.sig_structure(PROTECTED, b"p", b"aad") == cbor2.dumps(
        ["Signature1", PROTECTED, b"aad", b"p"]
    )


def test_empty_header_encodes_as_empty_bytes() -> None:
    assert cose.encode_header({}) == b""
    assert cose.encode_header({1: -8}) == b"\xa1\x01\x27"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (hand_built(PROTECTED, {}, b"p"), "four items"),
        (hand_built(PROTECTED, {}, b"p", b"s", b"extra"), "four items"),
        (cbor2.dumps(cbor2.CBORTag(18, {1: 2})), "four items"),
        (cbor2.dumps(cbor2.CBORTag(98, [PROTECTED, {}, b"p", b"s"])), "tag 98"),
        (hand_built({1: -8}, {}, b"p", b"s"), "protected header must be a byte string"),
        (hand_built(cbor2.dumps([1, -8]), {}, b"p", b"s"), "must be a CBOR map"),
        (hand_built(b"\xa1\x01", {}, b"p", b"s"), "not valid CBOR"),
        (hand_built(PROTECTED + b"\x00", {}, b"p", b"s"), "trailing"),
        (hand_built(b"\xa2\x01\x27\x01\x26", {}, b"p", b"s"), "Duplicate"),
        (hand_built(PROTECTED, [], b"p", b"s"), "unprotected header: must be a CBOR map"),
        (hand_built(PROTECTED, {4: b"x"}, b"p", b"s"), "both protected and unprotected"),
        (hand_built(cbor2.dumps({4: "text-kid"}), {}, b"p", b"s"), "kid must be a byte string"),
        (hand_built(cbor2.dumps({1: True}), {}, b"p", b"s"), "alg must be"),
        (hand_built(cbor2.dumps({1.5: 1}), {}, b"p", b"s"), "label"),
        (hand_built(PROTECTED, {}, None, b"s"), "detached"),
        (hand_built(PROTECTED, {}, "text", b"s"), "payload must be a byte string"),
        (hand_built(PROTECTED, {}, b"p", "sig"), "signature must be a byte string"),
        (hand_built(PROTECTED, {}, b"p", b"s") + b"\x00", "trailing"),
        (b"", "not valid CBOR"),
        (b"\xff\xff", "not valid CBOR"),
    ],
)
def test_decoding_is_strict(data: bytes, message: str) -> None:
    with pytest.raises(CodeError, match=message):
        cose.decode_sign1(data)


def test_sign1_signs_the_sig_structure_of_its_own_protected_bytes() -> None:
    key = Ed25519PrivateKey.generate()
    data = cose.sign1(key, b"hello", kid=b"12345678")
    item = cbor2.loads(data)
    assert item.tag == 18
    protected, unprotected, payload, signature = item.value
    assert cbor2.loads(protected) == {1: -8, 4: b"12345678"}
    assert (unprotected, payload) == ({}, b"hello")
    # Checked with the bare library over a hand-built Sig_structure, not with cose.verify.
    key.public_key().verify(signature, cbor2.dumps(["Signature1", protected, b"", b"hello"]))


def test_verify_accepts_the_right_key_and_refuses_others() -> None:
    key = Ed25519PrivateKey.generate()
    msg = cose.decode_sign1(cose.sign1(key, b"hello"))
    assert cose.verify(msg, key.public_key())
    assert not cose.verify(msg, Ed25519PrivateKey.generate().public_key())
    assert not cose.verify(msg, "not a key")
    assert not cose.verify(msg, key.public_key(), external_aad=b"other context")


def test_verify_refuses_a_changed_payload_or_protected_header() -> None:
    key = Ed25519PrivateKey.generate()
    protected, unprotected, payload, signature = cbor2.loads(cose.sign1(key, b"hello")).value
    changed_payload = cose.decode_sign1(hand_built(protected, unprotected, b"hellp", signature))
    assert not cose.verify(changed_payload, key.public_key())
    other_protected = cbor2.dumps({1: -8, 4: b"x"})
    changed_header = cose.decode_sign1(hand_built(other_protected, {}, payload, signature))
    assert not cose.verify(changed_header, key.public_key())


@pytest.mark.parametrize("header", [{1: -7}, {1: -37}, {1: "EdDSA"}, {}])
def test_verify_raises_for_algorithms_it_cannot_check(header: dict) -> None:
    protected = cbor2.dumps(header) if header else b""
    msg = cose.decode_sign1(hand_built(protected, {}, b"p", b"s" * 64))
    with pytest.raises(cose.UnsupportedAlgorithmError):
        cose.verify(msg, Ed25519PrivateKey.generate().public_key())


def test_sign1_refuses_an_unknown_algorithm() -> None:
    with pytest.raises(cose.UnsupportedAlgorithmError):
        cose.sign1(Ed25519PrivateKey.generate(), b"p", alg=-7)


def test_loads_refuses_deep_nesting() -> None:
    with pytest.raises(CodeError):
        cose.loads(b"\x81" * 50 + b"\x00")
