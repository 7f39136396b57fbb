"""COSE_Sign1: structures are built by hand with cbor2, independently of the module under test."""

from collections.abc import Callable

import cbor2
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from edge_sentry.codes import cose
from edge_sentry.errors import CodeError, ContentTypeError, UnsupportedAlgorithmError

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
    assert cose.sig_structure(PROTECTED, b"p", b"aad") == cbor2.dumps(["Signature1", PROTECTED, b"aad", b"p"])


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


@pytest.mark.parametrize("header", [{1: -47}, {1: -257}, {1: "EdDSA"}, {1: "ES256"}, {}])
def test_verify_raises_for_algorithms_it_cannot_check(header: dict) -> None:
    protected = cbor2.dumps(header) if header else b""
    msg = cose.decode_sign1(hand_built(protected, {}, b"p", b"s" * 64))
    with pytest.raises(UnsupportedAlgorithmError):
        cose.verify(msg, Ed25519PrivateKey.generate().public_key())


def test_sign1_refuses_an_unknown_algorithm() -> None:
    with pytest.raises(UnsupportedAlgorithmError):
        cose.sign1(Ed25519PrivateKey.generate(), b"p", alg=-47)


def test_loads_refuses_deep_nesting() -> None:
    with pytest.raises(CodeError):
        cose.loads(b"\x81" * 50 + b"\x00")


@pytest.mark.parametrize("container", [b"\x81", b"\xa1\x00"], ids=["array", "map"])
def test_loads_takes_16_nested_containers_and_refuses_17(container: bytes) -> None:
    sixteen = cose.loads(container * 16 + b"\x00")
    for _ in range(16):
        sixteen = sixteen[0]
    assert sixteen == 0
    with pytest.raises(CodeError, match="nesting depth"):
        cose.loads(container * 17 + b"\x00")


def test_loads_honours_a_tighter_depth() -> None:
    assert cose.loads(b"\x81" * 4 + b"\x00", max_depth=4) == [[[[0]]]]
    with pytest.raises(CodeError):
        cose.loads(b"\x81" * 5 + b"\x00", max_depth=4)


def test_loads_refuses_one_trailing_byte() -> None:
    assert cose.loads(b"\x00") == 0
    with pytest.raises(CodeError, match="1 trailing bytes"):
        cose.loads(b"\x00\x00")


def test_sign1_writes_an_untagged_message_when_asked() -> None:
    key = Ed25519PrivateKey.generate()
    item = cbor2.loads(cose.sign1(key, b"hello", tag=False))
    assert isinstance(item, list) and len(item) == 4
    assert cose.verify(cose.decode_sign1(cbor2.dumps(item)), key.public_key())


@pytest.mark.parametrize("alg", [-8.0, -7.0, True])
def test_verify_takes_no_algorithm_that_only_compares_equal_to_one(alg) -> None:
    """-8.0 == -8 in Python: an algorithm chosen by value equality would let a float pass as EdDSA."""
    key = Ed25519PrivateKey.generate()
    msg = cose.decode_sign1(cose.sign1(key, b"hello"))
    with pytest.raises(UnsupportedAlgorithmError):
        cose.verify(msg, key.public_key(), alg=alg)


@pytest.mark.parametrize(
    ("alg", "key"),
    [
        (-8, ec.generate_private_key(ec.SECP256R1())),
        (-7, Ed25519PrivateKey.generate()),
        (-35, Ed25519PrivateKey.generate()),
        (-37, Ed25519PrivateKey.generate()),
        (-36, ec.generate_private_key(ec.SECP521R1())),
    ],
)
def test_signing_with_a_key_of_another_type_is_a_type_error(alg: int, key) -> None:
    with pytest.raises(TypeError):
        cose.sign1(key, b"p", alg=alg)


# -- ES256 and PS256 (the EU DCC's algorithms) -------------------------------------------------------

EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SHA256 = hashes.SHA256()


def pss(salt) -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt)


def signed_by_hand(alg: int, signature_of) -> cose.Sign1:
    """A message whose signature is made by `signature_of(sig_structure_bytes)`, outside the module."""
    protected = cbor2.dumps({1: alg, 4: b"kid-0001"})
    signature = signature_of(cbor2.dumps(["Signature1", protected, b"", b"payload"]))
    return cose.decode_sign1(hand_built(protected, {}, b"payload", signature))


def raw_es256(message: bytes, key=EC_KEY) -> bytes:
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(SHA256)))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def test_es256_signature_is_raw_r_and_s_checked_by_the_bare_library() -> None:
    item = cbor2.loads(cose.sign1(EC_KEY, b"hello", alg=-7, kid=b"12345678"))
    protected, _, payload, signature = item.value
    assert cbor2.loads(protected) == {1: -7, 4: b"12345678"}
    assert len(signature) == 64
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    EC_KEY.public_key().verify(der, cbor2.dumps(["Signature1", protected, b"", payload]), ec.ECDSA(SHA256))


def test_es256_verifies_a_hand_made_raw_signature_and_refuses_other_keys() -> None:
    msg = signed_by_hand(-7, raw_es256)
    assert cose.verify(msg, EC_KEY.public_key())
    assert not cose.verify(msg, ec.generate_private_key(ec.SECP256R1()).public_key())
    assert not cose.verify(msg, RSA_KEY.public_key())
    assert not cose.verify(msg, Ed25519PrivateKey.generate().public_key())


def test_es256_refuses_a_der_signature_and_wrong_lengths() -> None:
    der = signed_by_hand(-7, lambda m: EC_KEY.sign(m, ec.ECDSA(SHA256)))
    assert not cose.verify(der, EC_KEY.public_key())  # COSE carries r || s, never DER
    for cut in (raw_es256(b"x")[:63], raw_es256(b"x") + b"\x00", b"", b"\x00" * 64, b"\xff" * 64):
        assert not cose.verify(signed_by_hand(-7, lambda m, c=cut: c), EC_KEY.public_key())


def test_ecdsa_takes_the_hash_from_the_alg_and_the_curve_from_the_key() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())

    def raw(
        key: ec.EllipticCurvePrivateKey, hash_algorithm: hashes.HashAlgorithm
    ) -> Callable[[bytes], bytes]:
        size = (key.curve.key_size + 7) // 8

        def sign(m: bytes) -> bytes:
            r, s = decode_dss_signature(key.sign(m, ec.ECDSA(hash_algorithm)))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")

        return sign

    for alg, hash_algorithm in ((-7, SHA256), (-35, hashes.SHA384()), (-36, hashes.SHA512())):
        assert cose.verify(signed_by_hand(alg, raw(p384, hash_algorithm)), p384.public_key())
        assert cose.verify(signed_by_hand(alg, raw(EC_KEY, hash_algorithm)), EC_KEY.public_key())
    # the hash the label names, never another one
    assert not cose.verify(signed_by_hand(-7, raw(p384, hashes.SHA384())), p384.public_key())
    assert not cose.verify(signed_by_hand(-35, raw(p384, SHA256)), p384.public_key())
    # P-256 and P-384 only
    p521 = ec.generate_private_key(ec.SECP521R1())
    assert not cose.verify(signed_by_hand(-7, raw(p521, SHA256)), p521.public_key())
    # the sentry signs only on the curve the label names, and never ES512
    assert cose.verify(cose.decode_sign1(cose.sign1(p384, b"p", alg=-35)), p384.public_key())
    for key, alg in ((p384, -7), (EC_KEY, -35), (p384, -36)):
        with pytest.raises(TypeError):
            cose.sign1(key, b"p", alg=alg)


def test_ps256_signs_with_a_32_byte_salt() -> None:
    protected, _, payload, signature = cbor2.loads(cose.sign1(RSA_KEY, b"hello", alg=-37)).value
    signed = cbor2.dumps(["Signature1", protected, b"", payload])
    RSA_KEY.public_key().verify(signature, signed, pss(32), SHA256)  # RFC 8230: salt = hash length
    with pytest.raises(InvalidSignature):
        RSA_KEY.public_key().verify(signature, signed, pss(20), SHA256)


@pytest.mark.parametrize("salt", [32, padding.PSS.MAX_LENGTH, 0, 20])
def test_ps256_verifies_whatever_salt_length_the_signer_chose(salt) -> None:
    msg = signed_by_hand(-37, lambda m: RSA_KEY.sign(m, pss(salt), SHA256))
    assert cose.verify(msg, RSA_KEY.public_key())


def test_ps256_refuses_other_keys_paddings_and_short_moduli() -> None:
    good = signed_by_hand(-37, lambda m: RSA_KEY.sign(m, pss(32), SHA256))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert not cose.verify(good, other.public_key())
    assert not cose.verify(good, EC_KEY.public_key())
    pkcs1 = signed_by_hand(-37, lambda m: RSA_KEY.sign(m, padding.PKCS1v15(), SHA256))
    assert not cose.verify(pkcs1, RSA_KEY.public_key())
    sha384 = signed_by_hand(-37, lambda m: RSA_KEY.sign(m, pss(32), hashes.SHA384()))
    assert not cose.verify(sha384, RSA_KEY.public_key())
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak = signed_by_hand(-37, lambda m: short.sign(m, pss(32), SHA256))
    assert not cose.verify(weak, short.public_key())  # the DCC asks for 2048 bits at least
    assert not cose.verify(signed_by_hand(-37, lambda m: b"\x00" * 256), RSA_KEY.public_key())


def test_a_changed_payload_fails_under_es256_and_ps256() -> None:
    for alg, key in ((-7, EC_KEY), (-37, RSA_KEY)):
        protected, unprotected, _, signature = cbor2.loads(cose.sign1(key, b"hello", alg=alg)).value
        changed = cose.decode_sign1(hand_built(protected, unprotected, b"hellp", signature))
        assert not cose.verify(changed, key.public_key())


# -- CWT tag and kid placement -------------------------------------------------------------------


def wrapped(*tags: int) -> bytes:
    item = [PROTECTED, {}, b"p", b"s"]
    for tag in reversed(tags):
        item = cbor2.CBORTag(tag, item)
    return cbor2.dumps(item)


@pytest.mark.parametrize("tags", [(61, 18), (18,), (61,), ()])
def test_the_cwt_tag_is_taken_around_or_instead_of_the_cose_tag(tags) -> None:
    msg = cose.decode_sign1(wrapped(*tags), cwt_tag=True)
    assert (msg.payload, msg.kid) == (b"p", b"kid-0001")


@pytest.mark.parametrize("tags", [(18, 61), (61, 61), (18, 18), (61, 18, 18), (98,), (61, 98)])
def test_tags_in_another_order_or_number_are_refused(tags) -> None:
    with pytest.raises(CodeError):
        cose.decode_sign1(wrapped(*tags), cwt_tag=True)


def test_the_cwt_tag_is_refused_unless_asked_for() -> None:
    with pytest.raises(CodeError, match="tag 61"):
        cose.decode_sign1(wrapped(61, 18))


def test_a_kid_in_both_headers_is_tolerated_only_when_asked_and_the_protected_one_wins() -> None:
    data = hand_built(PROTECTED, {4: b"other-id"}, b"p", b"s")
    with pytest.raises(CodeError, match="both"):
        cose.decode_sign1(data)
    assert cose.decode_sign1(data, kid_in_both=True).kid == b"kid-0001"
    duplicated_alg = hand_built(PROTECTED, {1: -7}, b"p", b"s")
    with pytest.raises(CodeError, match="both"):
        cose.decode_sign1(duplicated_alg, kid_in_both=True)


def test_an_unprotected_alg_is_never_honoured() -> None:
    msg = cose.decode_sign1(hand_built(cbor2.dumps({4: b"k"}), {1: -8}, b"p", b"s"))
    assert msg.alg is None
    with pytest.raises(UnsupportedAlgorithmError):
        cose.verify(msg, Ed25519PrivateKey.generate().public_key())


# -- content types --------------------------------------------------------------------------------


def test_a_content_type_is_signed_in_the_protected_header_and_required_back() -> None:
    key = Ed25519PrivateKey.generate()
    message = cose.decode_sign1(cose.sign1(key, b"\xa0", content_type="application/x-one"))
    assert message.protected_header[cose.HEADER_CONTENT_TYPE] == "application/x-one"
    assert cose.verify(message, key.public_key())
    message.require_content_type("application/x-one")
    with pytest.raises(ContentTypeError, match="'application/x-one', expected 'application/x-two'"):
        message.require_content_type("application/x-two")


def test_no_content_type_passes_only_where_it_is_optional() -> None:
    message = cose.decode_sign1(cose.sign1(Ed25519PrivateKey.generate(), b"\xa0"))
    message.require_content_type("application/x-one", required=False)
    with pytest.raises(ContentTypeError, match="no content type"):
        message.require_content_type("application/x-one")


def test_an_unprotected_content_type_is_never_honoured() -> None:
    unprotected = {cose.HEADER_CONTENT_TYPE: "application/x-one"}
    message = cose.decode_sign1(cose.sign1(Ed25519PrivateKey.generate(), b"\xa0", unprotected=unprotected))
    assert message.content_type is None
    for required in (True, False):
        with pytest.raises(ContentTypeError, match="protected header"):
            message.require_content_type("application/x-one", required=required)
