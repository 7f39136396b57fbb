"""ES1 codes: the wire format of docs/protocol.md 2.2, issuing, and strict parsing without trust."""

import hashlib

import cbor2
import pytest
from codes_helpers import NOW, SUB, text_of_length
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_sentry.codes import base45, es1
from edge_sentry.errors import CodeError


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def unwrap(text: str) -> tuple[bytes, dict, bytes, bytes]:
    """Take an ES1 text apart with cbor2 alone."""
    assert text.startswith("ES1:")
    item = cbor2.loads(base45.decode(text[4:]))
    assert item.tag == 18
    return tuple(item.value)


def build(key: Ed25519PrivateKey, claims: dict, protected: dict | None = None) -> str:
    """Hand-build and sign an ES1 text, so malformed claims can be tested with a valid signature."""
    kid = hashlib.sha256(raw_public(key)).digest()[:8]
    header = cbor2.dumps(protected if protected is not None else {1: -8, 4: kid})
    payload = cbor2.dumps(claims)
    signature = key.sign(cbor2.dumps(["Signature1", header, b"", payload]))
    return "ES1:" + base45.encode(cbor2.dumps(cbor2.CBORTag(18, [header, {}, payload, signature])))


def good_claims() -> dict:
    return {1: "issuer", 2: SUB, 6: NOW, 4: NOW + 60, -65537: 0}


def test_issued_text_has_the_design_wire_format() -> None:
    key = Ed25519PrivateKey.generate()
    text = es1.issue(key, issuer="acme", sub=SUB, status=1, lifetime_s=90, iat=NOW)
    protected, unprotected, payload, signature = unwrap(text)
    kid = hashlib.sha256(raw_public(key)).digest()[:8]
    assert cbor2.loads(protected) == {1: -8, 4: kid}
    assert unprotected == {}
    assert cbor2.loads(payload) == {1: "acme", 2: SUB, 6: NOW, 4: NOW + 90, -65537: 1}
    key.public_key().verify(signature, cbor2.dumps(["Signature1", protected, b"", payload]))


def test_optional_claims_appear_only_when_set() -> None:
    key = Ed25519PrivateKey.generate()
    text = es1.issue(key, issuer="acme", sub=SUB, lifetime_s=60, iat=NOW, venue="arena", paper=True)
    claims = cbor2.loads(unwrap(text)[2])
    assert claims[-65538] == "arena"
    assert claims[-65539] is True


def test_default_subject_is_16_fresh_random_bytes() -> None:
    key = Ed25519PrivateKey.generate()
    subs = {cbor2.loads(unwrap(es1.issue(key, issuer="a", lifetime_s=60))[2])[2] for _ in range(5)}
    assert len(subs) == 5
    assert all(len(s) == 16 for s in subs)


def test_parse_reads_envelope_and_claims_of_an_issued_code() -> None:
    key = Ed25519PrivateKey.generate()
    text = es1.issue(key, issuer="acme", sub=SUB, lifetime_s=60, iat=NOW, venue="v")
    code = es1.parse(text)
    assert code.kid == hashlib.sha256(raw_public(key)).digest()[:8]
    assert code.verify(key.public_key())
    assert not code.verify(Ed25519PrivateKey.generate().public_key())
    assert code.unverified_claims() == es1.Es1Claims("acme", SUB, NOW, NOW + 60, 0, "v", False)


def test_parse_reads_a_hand_built_untagged_code() -> None:
    key = Ed25519PrivateKey.generate()
    _, _, payload, _ = unwrap(build(key, good_claims()))
    kid = hashlib.sha256(raw_public(key)).digest()[:8]
    header = cbor2.dumps({1: -8, 4: kid})
    signature = key.sign(cbor2.dumps(["Signature1", header, b"", payload]))
    text = "ES1:" + base45.encode(cbor2.dumps([header, {}, payload, signature]))
    code = es1.parse(text)
    assert code.verify(key.public_key())
    assert code.unverified_claims().iss == "issuer"


def test_parse_does_not_decode_claims() -> None:
    # A signed envelope with garbage claims parses; only reading the claims fails.
    key = Ed25519PrivateKey.generate()
    code = es1.parse(build(key, ["not", "a", "map"]))
    with pytest.raises(CodeError, match="claims must be a CBOR map"):
        code.unverified_claims()


def test_unknown_claims_are_ignored() -> None:
    key = Ed25519PrivateKey.generate()
    claims = es1.parse(build(key, good_claims() | {7: b"cti", 99: "future"})).unverified_claims()
    assert claims.iss == "issuer"


@pytest.mark.parametrize(
    "text",
    [
        "ES2:" + base45.encode(b"\x00"),
        "es1:" + base45.encode(b"\x00"),
        "ES1:" + "A" * 4093,
        "ES1:not base45",
        "ES1:" + base45.encode(b"\xa0"),
        "ES1:",
    ],
)
def test_parse_refuses_texts_that_are_not_es1(text: str) -> None:
    with pytest.raises(CodeError):
        es1.parse(text)


def test_parse_refuses_over_4096_bytes_before_decoding() -> None:
    with pytest.raises(CodeError, match="longer than 4096"):
        es1.parse("ES1:" + "é" * 2100)  # 2104 characters but more than 4096 bytes


def padded(key: Ed25519PrivateKey, length: int) -> str:
    """A well-formed code of exactly `length` characters, grown by a claim nobody reads."""
    return text_of_length(length, lambda size: build(key, good_claims() | {-70000: b"x" * size}))


def test_parse_reads_a_code_of_exactly_4096_bytes_and_refuses_the_next_longer_one() -> None:
    key = Ed25519PrivateKey.generate()
    assert es1.parse(padded(key, 4096)).unverified_claims().iss == "issuer"
    with pytest.raises(CodeError, match="longer than 4096"):
        es1.parse(padded(key, 4098))  # Base45 has no 4097-character spelling of a message


def test_claim_times_run_from_0_to_just_under_2_to_the_40() -> None:
    key = Ed25519PrivateKey.generate()
    claims = es1.parse(build(key, good_claims() | {6: 0, 4: 2**40 - 1})).unverified_claims()
    assert (claims.iat, claims.exp) == (0, 2**40 - 1)
    with pytest.raises(CodeError, match="exp is out of range"):
        es1.parse(build(key, good_claims() | {4: 2**40})).unverified_claims()


def test_the_shortest_lifetime_is_one_second() -> None:
    text = es1.issue(Ed25519PrivateKey.generate(), issuer="a", lifetime_s=1, iat=NOW)
    claims = es1.parse(text).unverified_claims()
    assert (claims.iat, claims.exp) == (NOW, NOW + 1)


@pytest.mark.parametrize(
    ("protected", "message"),
    [
        ({1: -7, 4: b"12345678"}, "alg -8"),
        ({4: b"12345678"}, "alg -8"),
        ({1: -8}, "kid"),
        ({1: -8, 4: b"1234567"}, "kid"),
    ],
)
def test_parse_refuses_a_wrong_protected_header(protected: dict, message: str) -> None:
    with pytest.raises(CodeError, match=message):
        es1.parse(build(Ed25519PrivateKey.generate(), good_claims(), protected))


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        (good_claims() | {1: 5}, "iss"),
        ({k: v for k, v in good_claims().items() if k != 1}, "iss"),
        (good_claims() | {1: ""}, "iss"),
        ({k: v for k, v in good_claims().items() if k != 2}, "sub"),
        (good_claims() | {2: b"\x00" * 15}, "sub"),
        (good_claims() | {2: "0" * 16}, "sub"),
        ({k: v for k, v in good_claims().items() if k != 6}, "iat"),
        (good_claims() | {6: float(NOW)}, "iat"),
        (good_claims() | {6: True}, "iat"),
        (good_claims() | {6: -1}, "iat"),
        (good_claims() | {4: 2**64}, "exp"),
        ({k: v for k, v in good_claims().items() if k != 4}, "exp"),
        (good_claims() | {4: NOW}, "exp must be after iat"),
        ({k: v for k, v in good_claims().items() if k != -65537}, "status"),
        (good_claims() | {-65537: 3}, "status"),
        (good_claims() | {-65537: 0.0}, "status"),
        (good_claims() | {-65537: False}, "status"),
        (good_claims() | {-65538: b"arena"}, "venue"),
        (good_claims() | {-65539: 1}, "paper"),
    ],
)
def test_claims_are_decoded_strictly(claims: dict, message: str) -> None:
    code = es1.parse(build(Ed25519PrivateKey.generate(), claims))
    with pytest.raises(CodeError, match=message):
        code.unverified_claims()


def test_claims_repr_hides_the_subject() -> None:
    claims = es1.Es1Claims("acme", SUB, NOW, NOW + 1, 0)
    assert SUB.hex() not in repr(claims)
    assert repr(SUB) not in repr(claims)
    assert "<hidden>" in repr(claims)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"issuer": "", "lifetime_s": 60},
        {"issuer": "a", "lifetime_s": 0},
        {"issuer": "a", "lifetime_s": 60, "status": 3},
        {"issuer": "a", "lifetime_s": 60, "sub": b"short"},
    ],
)
def test_issue_refuses_arguments_that_would_make_a_malformed_code(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        es1.issue(Ed25519PrivateKey.generate(), **kwargs)
