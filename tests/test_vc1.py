"""VC1 venue codes: wire format, and each answer `verify` can give."""

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_sentry.codes import base45, cose, keys, vc1
from edge_sentry.codes.trust import TrustList
from edge_sentry.vocabulary import ContentType

PLACE = {"site": "s1", "venue": "arena", "entrance": "north", "name": "The Arena"}


def signed_by(signer: Ed25519PrivateKey, body, kid: bytes, extra: dict | None = None) -> str:
    """A VC1 text built by hand; without `extra` header labels it is a poster printed before content
    types existed."""
    header = cbor2.dumps({1: -8, 4: kid} | (extra or {}))
    payload = cbor2.dumps(body)
    signature = signer.sign(cbor2.dumps(["Signature1", header, b"", payload]))
    return "VC1:" + base45.encode(cbor2.dumps(cbor2.CBORTag(18, [header, {}, payload, signature])))


def test_issued_text_is_a_root_signed_place_map() -> None:
    root = Ed25519PrivateKey.generate()
    text = vc1.issue(root, **PLACE, issued=1_795_000_000)
    assert text.startswith("VC1:")
    protected, unprotected, payload, signature = cbor2.loads(base45.decode(text[4:])).value
    assert unprotected == {}
    venue_type = "application/vnd.edge-sentry.venue+cbor"
    assert cbor2.loads(protected) == {1: -8, 3: venue_type, 4: keys.kid_of(root)}
    assert cbor2.loads(payload) == PLACE | {"issued": 1_795_000_000}
    root.public_key().verify(signature, cbor2.dumps(["Signature1", protected, b"", payload]))


def test_genuine_code_verifies_and_says_where_it_belongs() -> None:
    root = Ed25519PrivateKey.generate()
    reason, code = vc1.verify(vc1.issue(root, **PLACE, issued=5), root.public_key())
    assert reason == "ok"
    assert code == vc1.VenueCode("s1", "arena", "north", "The Arena", 5)
    assert code.as_dict() == PLACE | {"issued": 5}
    assert code.matches(site="s1", venue="arena", entrance="north")
    assert not code.matches(site="s1", venue="arena", entrance="south")
    assert not code.matches(site="s2", venue="arena", entrance="north")


def test_a_poster_printed_before_content_types_stays_readable() -> None:
    root = Ed25519PrivateKey.generate()
    reason, code = vc1.verify(signed_by(root, PLACE | {"issued": 5}, keys.kid_of(root)), root.public_key())
    assert reason == "ok" and code == vc1.VenueCode("s1", "arena", "north", "The Arena", 5)


@pytest.mark.parametrize(
    "extra",
    [
        {3: ContentType.TRUST},
        {3: ContentType.CONTROL},
        {3: "application/cbor"},
        {3: 60},  # a CoAP content format number
    ],
    ids=["trust list", "control message", "plain cbor", "number"],
)
def test_a_genuine_signature_over_another_kind_of_object_is_malformed(extra) -> None:
    root = Ed25519PrivateKey.generate()
    text = signed_by(root, PLACE | {"issued": 5}, keys.kid_of(root), extra)
    assert vc1.verify(text, root.public_key()) == ("malformed", None)


def test_a_content_type_outside_the_signature_is_malformed() -> None:
    root = Ed25519PrivateKey.generate()
    message = cose.sign1(
        root, cbor2.dumps(PLACE | {"issued": 5}), kid=keys.kid_of(root),
        unprotected={cose.HEADER_CONTENT_TYPE: ContentType.VENUE},
    )  # fmt: skip
    assert vc1.verify(vc1.PREFIX + base45.encode(message), root.public_key()) == ("malformed", None)


def test_a_signed_trust_list_shown_as_a_venue_code_is_malformed() -> None:
    """The root key signs both: a trust list whose map happened to hold the poster's fields must
    still never read as a poster."""
    root = Ed25519PrivateKey.generate()
    body = cbor2.dumps(PLACE | {"issued": 5})
    message = cose.sign1(root, body, kid=keys.kid_of(root), content_type=ContentType.TRUST)
    assert vc1.verify(vc1.PREFIX + base45.encode(message), root.public_key()) == ("malformed", None)
    real = TrustList.empty().signed(root)
    assert vc1.verify(vc1.PREFIX + base45.encode(real), root.public_key()) == ("malformed", None)


def test_without_a_root_key_or_with_another_root_the_key_is_unknown() -> None:
    root = Ed25519PrivateKey.generate()
    text = vc1.issue(root, **PLACE)
    assert vc1.verify(text, None) == ("unknown-key", None)
    assert vc1.verify(text, Ed25519PrivateKey.generate().public_key()) == ("unknown-key", None)


def test_forgery_naming_the_root_kid_is_a_bad_signature() -> None:
    root = Ed25519PrivateKey.generate()
    forged = signed_by(Ed25519PrivateKey.generate(), PLACE | {"issued": 1}, keys.kid_of(root))
    assert vc1.verify(forged, root.public_key()) == ("bad-signature", None)


@pytest.mark.parametrize(
    "body",
    [
        {k: v for k, v in PLACE.items() if k != "entrance"} | {"issued": 1},
        PLACE | {"issued": "2026-01-01"},
        PLACE | {"issued": True},
        PLACE | {"venue": 7, "issued": 1},
        ["s1", "arena"],
    ],
)
def test_genuinely_signed_but_malformed_body_is_malformed(body) -> None:
    root = Ed25519PrivateKey.generate()
    assert vc1.verify(signed_by(root, body, keys.kid_of(root)), root.public_key()) == (
        "malformed",
        None,
    )


@pytest.mark.parametrize(
    "text",
    ["VC1:", "VC1:abc", "ES1:" + base45.encode(b"\x00"), "VC1:" + "0" * 5000, "VC1:BB8"],
)
def test_texts_that_are_not_venue_codes_are_malformed(text: str) -> None:
    root = Ed25519PrivateKey.generate()
    assert vc1.verify(text, root.public_key()) == ("malformed", None)
