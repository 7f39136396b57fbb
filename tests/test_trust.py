"""Trust lists (format, lookups, revocation, age, signed form) and the key files behind them."""

import base64
import copy
import hashlib
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import cbor2
import pytest
from codes_helpers import b64, trust_doc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_sentry.codes import cose, keys
from edge_sentry.codes.trust import Audience, DccKey, Es1Key, TrustList
from edge_sentry.errors import KeyFileError, TrustListError
from edge_sentry.vocabulary import ContentType

ISSUED_EPOCH = 1_795_651_200  # 2026-11-26T00:00:00Z
CERT = b"0\x82\x01\x00not-really-DER"  # DCC certificates are carried, not parsed, for now


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def dcc_entry(cert: bytes = CERT) -> dict:
    kid = hashlib.sha256(cert).digest()[:8]
    return {"scheme": "dcc", "kid": b64(kid), "certificate": b64(cert)}


def full_doc() -> tuple[dict, Ed25519PrivateKey, Ed25519PrivateKey]:
    a, b = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    doc = trust_doc(a, b, revoked_kids=(keys.kid_of(b),), revoked_subs=(b"\x01" * 16,), version=7)
    doc["keys"].append(dcc_entry())
    return doc, a, b


# -- reading -------------------------------------------------------------------------------------


def test_reads_the_design_document_shape() -> None:
    doc, a, _ = full_doc()
    trust = TrustList.from_json(json.dumps(doc))
    assert trust.version == 7
    assert trust.issued.timestamp() == ISSUED_EPOCH
    entry = trust.es1_key(keys.kid_of(a))
    assert isinstance(entry, Es1Key)
    assert entry.issuer == "test-issuer"
    assert raw_public(a) == entry.public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    dcc_kid = hashlib.sha256(CERT).digest()[:8]
    assert trust.lookup("dcc", dcc_kid) == (DccKey(dcc_kid, CERT),)
    assert trust.es1_key(dcc_kid) is None
    assert trust.lookup("es1", dcc_kid) == ()


def test_revocations_by_kid_and_by_hash_of_subject() -> None:
    doc, a, b = full_doc()
    trust = TrustList.from_mapping(doc)
    assert trust.is_kid_revoked(keys.kid_of(b))
    assert not trust.is_kid_revoked(keys.kid_of(a))
    assert trust.is_sub_revoked(b"\x01" * 16)
    assert not trust.is_sub_revoked(b"\x02" * 16)
    assert not trust.is_sub_revoked(hashlib.sha256(b"\x01" * 16).digest())


def test_revoked_section_is_optional() -> None:
    doc, _, _ = full_doc()
    del doc["revoked"]
    trust = TrustList.from_mapping(doc)
    assert trust.revoked_kids == frozenset()
    assert trust.revoked_subs == frozenset()


def test_age_and_staleness_follow_issued() -> None:
    trust = TrustList.from_mapping(full_doc()[0])
    assert trust.age_s(ISSUED_EPOCH + 3600) == 3600
    assert trust.is_stale(ISSUED_EPOCH + 3600, max_age_h=0.5)
    assert not trust.is_stale(ISSUED_EPOCH + 3600, max_age_h=2)


def test_issued_with_an_offset_is_the_same_instant() -> None:
    doc = full_doc()[0] | {"issued": "2026-11-26T01:00:00+01:00"}
    assert TrustList.from_mapping(doc).issued.timestamp() == ISSUED_EPOCH


def test_empty_list_trusts_nothing_and_is_always_stale() -> None:
    trust = TrustList.empty()
    assert trust.keys == ()
    assert trust.es1_key(b"\x00" * 8) is None
    assert trust.is_stale(ISSUED_EPOCH, max_age_h=24 * 365)


def test_cbor_form_accepts_base64_texts_or_raw_bytes() -> None:
    doc, a, _ = full_doc()
    as_text = TrustList.from_cbor(cbor2.dumps(doc))
    raw = copy.deepcopy(doc)
    for entry in raw["keys"]:
        for field in ("kid", "public_key", "certificate"):
            if field in entry:
                entry[field] = base64.b64decode(entry[field])
    raw["revoked"]["subs"] = [base64.b64decode(s) for s in raw["revoked"]["subs"]]
    as_bytes = TrustList.from_cbor(cbor2.dumps(raw))
    assert as_text == as_bytes
    assert as_bytes.es1_key(keys.kid_of(a)) is not None


def test_json_round_trip() -> None:
    trust = TrustList.from_mapping(full_doc()[0])
    again = TrustList.from_json(trust.to_json())
    assert again == trust
    assert json.loads(trust.to_json())["issued"] == "2026-11-26T00:00:00Z"
    assert TrustList.from_cbor(trust.to_cbor()) == trust


def test_with_entry_makes_the_next_version() -> None:
    trust = TrustList.from_mapping(full_doc()[0])
    new_key = Ed25519PrivateKey.generate()
    later = datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)
    grown = trust.with_entry(keys.trust_entry(new_key, "new"), issued=later)
    assert grown.version == trust.version + 1
    assert grown.issued == later
    assert grown.es1_key(keys.kid_of(new_key)).issuer == "new"
    assert len(grown.keys) == len(trust.keys) + 1
    assert grown.revoked_kids == trust.revoked_kids


# -- refusing, with the key path -----------------------------------------------------------------


def _mutations() -> list[tuple[str, object, str]]:
    """(description, mutation applied to a good document, expected message)."""

    def setter(path, value):
        def apply(doc):
            target = doc
            for part in path[:-1]:
                target = target[part]
            if value is KeyError:
                del target[path[-1]]
            else:
                target[path[-1]] = value

        return apply

    return [
        ("public key not base64", setter(["keys", 0, "public_key"], "***"),
         "keys[0].public_key: not base64"),
        ("public key short", setter(["keys", 1, "public_key"], b64(b"\x01" * 31)),
         "keys[1].public_key: must be 32 bytes, not 31"),
        ("kid of another key", setter(["keys", 0, "kid"], b64(b"\x00" * 8)),
         "keys[0].kid: does not match public_key"),
        ("kid wrong length", setter(["keys", 0, "kid"], b64(b"\x00" * 9)),
         "keys[0].kid: must be 8 bytes, not 9"),
        ("kid not text", setter(["keys", 0, "kid"], 12), "keys[0].kid: must be a base64 text"),
        ("no issuer", setter(["keys", 0, "issuer"], KeyError), "keys[0].issuer: missing"),
        ("blank issuer", setter(["keys", 0, "issuer"], " "), "keys[0].issuer: must be a non-empty"),
        ("unknown entry key", setter(["keys", 0, "colour"], "red"), "keys[0].colour: unknown key"),
        ("unknown scheme", setter(["keys", 1, "scheme"], "es2"),
         "keys[1].scheme: must be one of 'es1', 'dcc'"),
        ("entry not a map", setter(["keys", 2], "es1"), "keys[2]: must be an object"),
        ("dcc kid mismatch", setter(["keys", 2, "kid"], b64(b"\x00" * 8)),
         "keys[2].kid: does not match certificate"),
        ("dcc no certificate", setter(["keys", 2, "certificate"], KeyError),
         "keys[2].certificate: missing"),
        ("keys not a list", setter(["keys"], {}), "keys: must be a list"),
        ("no keys", setter(["keys"], KeyError), "keys: missing"),
        ("version text", setter(["version"], "7"), "version: must be a whole number"),
        ("version negative", setter(["version"], -1), "version: must be a whole number"),
        ("version boolean", setter(["version"], True), "version: must be a whole number"),
        ("version 2^53", setter(["version"], 2**53), "version: must be a whole number"),
        ("no version", setter(["version"], KeyError), "version: missing"),
        ("issued naive", setter(["issued"], "2026-11-26T00:00:00"), "issued: needs a time zone"),
        ("issued prose", setter(["issued"], "yesterday"), "issued: not an ISO 8601 time"),
        ("issued number", setter(["issued"], 1795651200), "issued: must be an ISO 8601 text"),
        ("unknown top key", setter(["extra"], 1), "extra: unknown key"),
        ("revoked kid not base64", setter(["revoked", "kids", 0], "%%"),
         "revoked.kids[0]: not base64"),
        ("revoked sub not a hash", setter(["revoked", "subs", 0], b64(b"\x01" * 16)),
         "revoked.subs[0]: must be 32 bytes, not 16"),
        ("revoked unknown key", setter(["revoked", "names"], []), "revoked.names: unknown key"),
        ("revoked kids not a list", setter(["revoked", "kids"], "x"),
         "revoked.kids: must be a list"),
    ]  # fmt: skip


@pytest.mark.parametrize(("mutate", "message"), [m[1:] for m in _mutations()],
                         ids=[m[0] for m in _mutations()])  # fmt: skip
def test_malformed_lists_are_refused_naming_the_key_path(mutate, message: str) -> None:
    doc = full_doc()[0]
    mutate(doc)
    with pytest.raises(TrustListError) as caught:
        TrustList.from_json(json.dumps(doc))
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_duplicate_es1_kid_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(TrustListError, match=r"keys\[1\].kid: duplicate es1 kid"):
        TrustList.from_mapping(trust_doc(key, key))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "not valid JSON"),
        (b'{"version": 1, "version": 2}', "duplicate key"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[]", "trust list: must be an object"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_unreadable_json_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(TrustListError, match=message):
        TrustList.from_json(data)


def test_a_cbor_version_too_long_for_json_is_refused() -> None:
    doc = {"version": 10**5000, "issued": "2026-11-26T00:00:00Z", "keys": []}
    with pytest.raises(TrustListError, match="version: must be a whole number"):
        TrustList.from_cbor(cbor2.dumps(doc))


def test_bad_cbor_is_refused() -> None:
    with pytest.raises(TrustListError, match="not valid CBOR"):
        TrustList.from_cbor(b"\xa1")


@pytest.mark.parametrize(
    "key, name",
    [(10**5000, "an integer of 16610 bits"), (1, "1"), ((1, 2), "a tuple")],
    ids=["integer past 4300 digits", "integer", "array"],
)
def test_a_cbor_key_that_is_not_text_is_named_without_failing(key, name: str) -> None:
    doc = {"version": 1, "issued": "2026-11-26T00:00:00Z", "keys": [], key: 1}
    with pytest.raises(TrustListError, match=f"{name}: unknown key"):
        TrustList.from_cbor(cbor2.dumps(doc))


def test_load_reads_json_and_cbor_files(tmp_path: Path) -> None:
    doc, a, _ = full_doc()
    (tmp_path / "t.json").write_text(json.dumps(doc))
    (tmp_path / "t.cbor").write_bytes(cbor2.dumps(doc))
    assert TrustList.load(tmp_path / "t.json") == TrustList.load(tmp_path / "t.cbor")
    assert TrustList.load(tmp_path / "t.json").es1_key(keys.kid_of(a)) is not None


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(TrustListError, match=r"nope\.json: no such trust-list file"):
        TrustList.load(tmp_path / "nope.json")
    doc = full_doc()[0]
    doc["keys"][0]["public_key"] = "!"
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(TrustListError, match=r"bad\.json: keys\[0\].public_key: not base64"):
        TrustList.load(tmp_path / "bad.json")


# -- the signed form pushed over MQTT ---------------------------------------------------------


def test_signed_list_is_accepted_only_under_the_root_key() -> None:
    root = Ed25519PrivateKey.generate()
    trust = TrustList.from_mapping(full_doc()[0])
    signed = trust.signed(root)
    assert TrustList.from_signed(signed, root.public_key()) == trust
    with pytest.raises(TrustListError, match="does not verify"):
        TrustList.from_signed(signed, Ed25519PrivateKey.generate().public_key())


def test_tampered_or_unsigned_lists_are_refused() -> None:
    root = Ed25519PrivateKey.generate()
    trust = TrustList.from_mapping(full_doc()[0])
    protected, unprotected, _, signature = cbor2.loads(trust.signed(root)).value
    forged = TrustList.from_mapping(full_doc()[0] | {"version": 99})
    tampered = cbor2.dumps(cbor2.CBORTag(18, [protected, unprotected, forged.to_cbor(), signature]))
    with pytest.raises(TrustListError, match="does not verify"):
        TrustList.from_signed(tampered, root.public_key())
    with pytest.raises(TrustListError, match="signed trust list"):
        TrustList.from_signed(trust.to_cbor(), root.public_key())


def test_the_signed_form_names_the_trust_content_type() -> None:
    root = Ed25519PrivateKey.generate()
    protected = cbor2.loads(TrustList.empty().signed(root)).value[0]
    assert cbor2.loads(protected)[3] == "application/vnd.edge-sentry.trust+cbor"


@pytest.mark.parametrize(
    "content_type",
    [None, ContentType.VENUE, ContentType.CONTROL, "application/cbor"],
    ids=["none", "venue poster", "control message", "plain cbor"],
)
def test_a_genuine_signature_over_another_kind_is_not_a_trust_list(content_type) -> None:
    root = Ed25519PrivateKey.generate()
    body = TrustList.from_mapping(full_doc()[0]).to_cbor()
    signed = cose.sign1(root, body, kid=keys.kid_of(root), content_type=content_type)
    with pytest.raises(TrustListError, match="content type"):
        TrustList.from_signed(signed, root.public_key())


# -- audience ------------------------------------------------------------------------------------


def test_audience_reads_back_and_names_its_sentries() -> None:
    doc = full_doc()[0] | {"audience": {"sites": ["s1"], "devices": ["s2/gate-9"]}}
    trust = TrustList.from_json(json.dumps(doc))
    assert trust.audience == Audience(frozenset({"s1"}), frozenset({"s2/gate-9"}))
    assert TrustList.from_json(trust.to_json()) == trust
    assert trust.audience.names("s1", "anything") and trust.audience.names("s2", "gate-9")
    assert not trust.audience.names("s2", "gate-1") and not trust.audience.names("s3", "gate-9")
    assert Audience(sites=frozenset({"*"})).names("any", "one")
    assert Audience(devices=frozenset({"*"})).names("any", "one")


def test_a_list_without_audience_still_loads_as_installed(tmp_path: Path) -> None:
    """Existing trust files (and `codes keygen`'s) have no audience: the local file needs none."""
    (tmp_path / "trust.json").write_text(json.dumps(full_doc()[0]))
    trust = TrustList.load(tmp_path / "trust.json")
    assert trust.audience is None and "audience" not in trust.to_mapping()


def test_addressing_a_list_keeps_its_content_and_version() -> None:
    trust = TrustList.from_mapping(full_doc()[0])
    for_gate = trust.for_audience(Audience.of("s1", "gate-2"))
    assert for_gate.audience == Audience(devices=frozenset({"s1/gate-2"}))
    assert for_gate.version == trust.version and for_gate.keys == trust.keys
    assert trust.for_audience(Audience.of("s1")).audience == Audience(sites=frozenset({"s1"}))


@pytest.mark.parametrize(
    ("audience", "path"),
    [
        ([], r"audience: must be an object"),
        ({"sites": "s1"}, r"audience\.sites: must be a list"),
        ({"sites": [""]}, r"audience\.sites\[0\]: must be a non-empty text"),
        ({"sites": ["s1/x"]}, r"audience\.sites\[0\]: a site name has no /"),
        ({"devices": ["gate-1"]}, r"audience\.devices\[0\]: must be \"site/device\""),
        ({"devices": ["s1/"]}, r"audience\.devices\[0\]"),
        ({"devices": ["a/b/c"]}, r"audience\.devices\[0\]"),
        ({"sites": [], "devices": []}, r"audience: must name at least one"),
        ({"site": ["s1"]}, r"audience\.site: unknown key"),
    ],
)
def test_a_bad_audience_is_named_by_its_key_path(audience, path: str) -> None:
    with pytest.raises(TrustListError, match=path):
        TrustList.from_mapping(full_doc()[0] | {"audience": audience})


# -- issuer key files ----------------------------------------------------------------------------


def test_trust_entry_describes_the_public_key() -> None:
    key = Ed25519PrivateKey.generate()
    entry = keys.trust_entry(key, "acme")
    raw = raw_public(key)
    assert entry == {
        "scheme": "es1",
        "kid": b64(hashlib.sha256(raw).digest()[:8]),
        "public_key": b64(raw),
        "issuer": "acme",
    }
    doc = {"version": 1, "issued": "2026-01-01T00:00:00Z", "keys": [entry]}
    trust = TrustList.from_mapping(doc)
    assert trust.es1_key(keys.kid_of(key)) is not None


def test_private_key_file_is_owner_only_and_loads_back(tmp_path: Path) -> None:
    key = keys.generate()
    path = tmp_path / "issuer.pem"
    keys.save_private_key(key, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert raw_public(keys.load_private_key(path)) == raw_public(key)
    assert keys.raw_public_key(keys.load_public_key(path)) == raw_public(key)


def test_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "issuer.pem"
    path.write_text("precious")
    with pytest.raises(KeyFileError, match="already exists"):
        keys.save_private_key(keys.generate(), path)
    assert path.read_text() == "precious"


def test_public_key_file_loads_back(tmp_path: Path) -> None:
    key = keys.generate()
    keys.save_public_key(key, tmp_path / "root.pub.pem")
    assert keys.raw_public_key(keys.load_public_key(tmp_path / "root.pub.pem")) == raw_public(key)


def _encrypted_pem() -> bytes:
    return keys.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )


def _ec_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such key file"),
        (b"hello", "not a PEM private key"),
        (_encrypted_pem(), "encrypted"),
        (_ec_pem(), "not an Ed25519 key"),
    ],
)
def test_unusable_private_key_files_are_explained(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "k.pem"
    if content is not None:
        path.write_bytes(content)
        path.chmod(0o600)  # owner-only, as a private key must be: the content is what is wrong
    with pytest.raises(KeyFileError, match=message) as caught:
        keys.load_private_key(path)
    assert str(path) in str(caught.value)
