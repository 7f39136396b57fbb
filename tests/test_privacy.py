"""Sealed subjects: what the authority can open, what nobody else can, and what tampering does."""

from __future__ import annotations

import base64
import json

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey

from edge_sentry import privacy
from edge_sentry.codes import keys
from edge_sentry.config import PrivacyConfig
from edge_sentry.errors import AuthorityKeyError, ConfigError, SubjectError
from edge_sentry.outbox import Outbox

SUB = bytes.fromhex("00112233445566778899aabbccddeeff")


def scan_event(t: int = 1_795_000_000_123, **overrides: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event": "scan", "t": t, "site": "arena", "device": "sentry-0001", "entrance": "north",
        "mode": "scan", "scheme": "es1", "verdict": "accept", "reason": "ok", "issuer": "venue-co",
        "latency_ms": 12.5,
    }  # fmt: skip
    event.update(overrides)
    return event


@pytest.fixture
def authority() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


@pytest.fixture
def sealer(authority: X25519PrivateKey) -> privacy.Sealer:
    return privacy.Sealer(authority.public_key())


def sealed_event(sealer: privacy.Sealer, sub: bytes = SUB, **overrides: object) -> dict[str, object]:
    event = scan_event(**overrides)
    event["subject"] = sealer.seal(sub, event)
    return event


# -- interoperability: the documented parameters, checked with pyhpke's own receiver -------------


def test_pyhpke_receiver_opens_a_subject_with_the_documented_parameters(authority, sealer):
    event = sealed_event(sealer)
    subject = event["subject"]
    assert set(subject) == {"v", "kid", "enc", "ct"} and subject["v"] == 1
    suite = CipherSuite.new(
        KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305
    )
    receiver = suite.create_recipient_context(
        subject["enc"], KEMKey.from_pyca_cryptography_key(authority), info=b"edge-sentry subject v1"
    )
    aad = cbor2.dumps(["arena", "sentry-0001", "north", 1_795_000_000_123])
    assert receiver.open(subject["ct"], aad=aad) == SUB


def test_two_scans_of_one_subject_share_no_bytes(sealer):
    first = sealed_event(sealer)["subject"]
    second = sealed_event(sealer)["subject"]
    assert first["kid"] == second["kid"]
    assert first["enc"] != second["enc"]
    assert first["ct"] != second["ct"]
    assert SUB not in first["ct"] and SUB not in first["enc"]


def test_the_kid_follows_the_es1_rule(authority, sealer):
    import hashlib

    raw = authority.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert sealer.kid == hashlib.sha256(raw).digest()[:8]
    assert sealed_event(sealer)["subject"]["kid"] == sealer.kid


def test_open_subject_round_trip(authority, sealer):
    event = sealed_event(sealer)
    assert privacy.open_subject(event["subject"], authority, event) == SUB


def test_a_dcc_pseudonym_of_another_length_seals_too(authority, sealer):
    long_sub = bytes(range(32))
    event = sealed_event(sealer, long_sub)
    assert privacy.open_subject(event["subject"], authority, event) == long_sub


@pytest.mark.parametrize("bad", [b"", b"x" * 257, "text"])
def test_sealing_refuses_what_is_no_pseudonym(sealer, bad):
    with pytest.raises(ValueError):
        sealer.seal(bad, scan_event())  # type: ignore[arg-type]


def test_sealing_needs_the_event_context(sealer):
    event = scan_event()
    del event["device"]
    with pytest.raises(SubjectError) as info:
        sealer.seal(SUB, event)
    assert info.value.reason == "no-context"


# -- failing cleanly ---------------------------------------------------------------------------


def reason_of(sealed: object, key: X25519PrivateKey, event: dict[str, object]) -> str:
    with pytest.raises(SubjectError) as info:
        privacy.open_subject(sealed, key, event)
    return info.value.reason


def test_another_authority_key_is_refused_by_kid(sealer):
    event = sealed_event(sealer)
    assert reason_of(event["subject"], X25519PrivateKey.generate(), event) == "wrong-key"


def test_another_key_that_claims_the_kid_cannot_open(sealer):
    event = sealed_event(sealer)
    impostor = X25519PrivateKey.generate()
    forged = {**event["subject"], "kid": privacy.key_id(impostor)}
    assert reason_of(forged, impostor, event) == "cannot-open"


@pytest.mark.parametrize("field", ["enc", "ct"])
def test_a_flipped_bit_does_not_open(authority, sealer, field):
    event = sealed_event(sealer)
    damaged = bytearray(event["subject"][field])
    damaged[len(damaged) // 2] ^= 0x01
    assert reason_of({**event["subject"], field: bytes(damaged)}, authority, event) == "cannot-open"


@pytest.mark.parametrize(
    "change", [{"t": 1_795_000_000_124}, {"site": "other"}, {"device": "sentry-0002"},
               {"entrance": "south"}],
)  # fmt: skip
def test_a_subject_moved_to_another_event_does_not_open(authority, sealer, change):
    event = sealed_event(sealer)
    assert reason_of(event["subject"], authority, {**event, **change}) == "cannot-open"


def test_a_low_order_enc_fails_cleanly(authority, sealer):
    event = sealed_event(sealer)
    zero_point = {**event["subject"], "enc": bytes(32)}
    assert reason_of(zero_point, authority, event) == "cannot-open"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: "not a map",
        lambda s: {**s, "v": 2},
        lambda s: {k: v for k, v in s.items() if k != "ct"},
        lambda s: {**s, "kid": s["kid"][:4]},
        lambda s: {**s, "enc": s["enc"] + b"\0"},
        lambda s: {**s, "ct": s["ct"][:16]},
        lambda s: {**s, "ct": "zz" * 20},
        lambda s: {**s, "ct": 17},
    ],
)
def test_malformed_subjects_are_named_so(authority, sealer, mangle):
    event = sealed_event(sealer)
    assert reason_of(mangle(event["subject"]), authority, event) == "malformed"


def test_an_event_without_its_context_is_named_so(authority, sealer):
    event = sealed_event(sealer)
    assert reason_of(event["subject"], authority, {**event, "t": "yesterday"}) == "no-context"


# -- the forms a subject travels in ----------------------------------------------------------------


def test_opens_from_a_json_line_with_bytes_in_hex(authority, sealer):
    line = json.loads(json.dumps(sealed_event(sealer), default=bytes.hex))
    assert all(isinstance(line["subject"][k], str) for k in ("kid", "enc", "ct"))
    assert privacy.open_subject(line["subject"], authority, line) == SUB


def test_opens_from_cbor_as_on_the_scan_topic(authority, sealer):
    batch = cbor2.loads(cbor2.dumps([sealed_event(sealer), sealed_event(sealer)]))
    assert [privacy.open_subject(e["subject"], authority, e) for e in batch] == [SUB, SUB]


def test_survives_the_outbox(tmp_path, authority, sealer):
    with Outbox(tmp_path / "outbox", max_events=100, queue_size=10, retention_days=1) as outbox:
        outbox.put(sealed_event(sealer))
        assert outbox.flush(5)
    with Outbox(tmp_path / "outbox", max_events=100, queue_size=10, retention_days=1) as outbox:
        (stored,) = outbox.pending(10)
    assert privacy.open_subject(stored["subject"], authority, stored) == SUB


# -- keys and config ---------------------------------------------------------------------------


def test_no_authority_key_means_no_sealer():
    assert privacy.Sealer.from_config(PrivacyConfig()) is None


def test_keys_saved_as_pem_load_back_with_tight_modes(tmp_path, authority):
    privacy.save_key_pair(authority, tmp_path / "a.key.pem", tmp_path / "a.pub.pem")
    assert (tmp_path / "a.key.pem").stat().st_mode & 0o777 == 0o600
    sealer = privacy.Sealer.from_config(PrivacyConfig(authority_key=str(tmp_path / "a.pub.pem")))
    assert sealer is not None and sealer.kid == privacy.key_id(authority)
    loaded = privacy.load_private_key(tmp_path / "a.key.pem")
    event = sealed_event(sealer)
    assert privacy.open_subject(event["subject"], loaded, event) == SUB


def test_save_key_pair_never_overwrites(tmp_path, authority):
    (tmp_path / "a.pub.pem").write_text("keep me")
    with pytest.raises(AuthorityKeyError, match="already exists"):
        privacy.save_key_pair(authority, tmp_path / "a.key.pem", tmp_path / "a.pub.pem")
    assert not (tmp_path / "a.key.pem").exists()
    assert (tmp_path / "a.pub.pem").read_text() == "keep me"


def test_a_raw_base64_public_key_is_accepted(tmp_path, authority):
    raw = keys.raw_public_key(authority)
    (tmp_path / "a.pub").write_text(base64.b64encode(raw).decode() + "\n")
    assert privacy.load_public_key(tmp_path / "a.pub").public_bytes_raw() == raw


@pytest.mark.parametrize(
    "content", [None, b"garbage", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]
)
def test_an_unusable_authority_key_is_a_config_error_naming_the_key(tmp_path, content):
    path = tmp_path / "authority.pub.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        privacy.Sealer.from_config(PrivacyConfig(authority_key=str(path)))
    assert info.value.problems[0][0] == "privacy.authority_key"


def test_an_ed25519_key_is_not_taken_for_an_authority_key(tmp_path):
    from edge_sentry.codes import keys

    keys.save_public_key(keys.generate(), tmp_path / "issuer.pub.pem")
    with pytest.raises(AuthorityKeyError, match="not an X25519 key"):
        privacy.load_public_key(tmp_path / "issuer.pub.pem")


# The small-order points of Curve25519 (RFC 7748 section 6.1 asks for their all-zero shared secret to be
# refused): 0, 1, the two points of order 8, p - 1, p, p + 1.
_LOW_ORDER_POINTS = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    (2**255 - 19 - 1).to_bytes(32, "little"),
    (2**255 - 19).to_bytes(32, "little"),
    (2**255 - 19 + 1).to_bytes(32, "little"),
]


@pytest.mark.parametrize("point", _LOW_ORDER_POINTS, ids=range(len(_LOW_ORDER_POINTS)))
def test_a_low_order_authority_key_is_a_config_error_not_a_failure_per_scan(tmp_path, point):
    # base64 of 32 zero bytes looks like any other key file (a placeholder left in a template), but
    # no shared secret exists with such a point: every seal would raise on the hot path.
    path = tmp_path / "authority.pub"
    path.write_text(base64.b64encode(point).decode() + "\n")
    with pytest.raises(ConfigError) as info:
        privacy.Sealer.from_config(PrivacyConfig(authority_key=str(path)))
    assert info.value.problems[0][0] == "privacy.authority_key"
    assert "low-order" in info.value.problems[0][1]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_an_authority_private_key_others_can_read_is_refused(tmp_path, authority, mode):
    private, public = tmp_path / "a.key.pem", tmp_path / "a.pub.pem"
    privacy.save_key_pair(authority, private, public)
    private.chmod(mode)
    with pytest.raises(AuthorityKeyError, match=f"a.key.pem: group or others .*{mode:04o}"):
        privacy.load_private_key(private)
    # Only the public half is taken from it here: that one is not a secret.
    assert privacy.key_id(privacy.load_public_key(private)) == privacy.key_id(authority)
    private.chmod(0o600)
    assert privacy.key_id(privacy.load_private_key(private)) == privacy.key_id(authority)
