"""Sealing a scan's subject to the health authority (docs/protocol.md 5), and opening it on their side.

A scan event never carries the holder's pseudonym (`sub`) in clear. When `privacy.authority_key` names
the authority's X25519 public key, the event's `subject` is that pseudonym sealed with HPKE (RFC 9180)
base mode, suite DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20-Poly1305, through pyhpke: a fresh
encapsulation per event, so two scans of one holder share no bytes and the fleet cannot link them. Only
the holder of the private key (the health authority, for contact tracing) can open a subject; any RFC
9180 implementation can, given the parameters below. Without an authority key there is no subject at all.

The sealed subject (a contract: the authority's tools read it), a map with text keys:

    {"v": 1, "kid": bstr(8), "enc": bstr(32), "ct": bstr}

- `kid`: first 8 bytes of SHA-256 of the authority's raw 32-byte public key (the ES1 key-id rule), so
  the authority knows which of its keys to use after a rotation;
- `enc`: HPKE's encapsulated key; `ct`: HPKE's ciphertext of `sub` (its length + 16);
- HPKE `info` = b"edge-sentry subject v1" (`v` 1 means exactly this suite and this info);
- HPKE `aad` = CBOR encoding of the array `[site, device, entrance, t]`, taken from the scan event the
  subject sits in (`t` in integer milliseconds). So a sealed subject opens only inside the event it was
  made for: copying it into another event (another place or time) makes it fail to open.
In CBOR (the outbox, the `scan` topic) the byte strings are CBOR byte strings; in JSON (the daemon's
`--log-format json` lines, fleet exports) they are lowercase hex strings, as the event log writes bytes.

Base mode authenticates nobody: anyone with the public key can seal. The binding only stops a real
subject from being moved to another event; it does not prove which device sealed it.

Key files. Public: PEM SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`), or one line of base64 of the
raw 32 bytes. Private: unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, what `openssl genpkey
-algorithm X25519` writes and `edge-sentry authority keygen` writes with mode 0600), or base64 raw.

This module never logs: neither a subject nor a sealed one, nor a key.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cbor2
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey, PyHPKEError

from . import files
from .codes.keys import KID_LENGTH, kid_of, write_new
from .config import PrivacyConfig
from .errors import AuthorityKeyError, ConfigError, ExposedSecretError, SubjectError

SUBJECT_VERSION = 1
INFO = b"edge-sentry subject v1"
ENC_LENGTH = 32
TAG_LENGTH = 16
MAX_SUB_LENGTH = 256  # an ES1 sub is 16 bytes; anything far longer is a bug, not a pseudonym
CONTEXT_FIELDS = ("site", "device", "entrance", "t")

# Stateless once built: safe to share between the hot loop and gpiozero's callback threads.
SUITE = CipherSuite.new(
    KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305
)


# --- keys -------------------------------------------------------------------------------------


# Key ids follow the ES1 rule (first 8 bytes of SHA-256 of the raw public key).
key_id = kid_of


def _read_key_file(path: str | os.PathLike[str], *, private: bool = False) -> bytes:
    """The file's bytes; a `private` one only if it is owner-only (whoever can read the authority's
    key can open every sealed subject)."""
    try:
        return files.read_private(path) if private else Path(path).read_bytes()
    except ExposedSecretError as exc:
        raise AuthorityKeyError(str(exc)) from None
    except FileNotFoundError:
        raise AuthorityKeyError(f"{os.fspath(path)}: no such key file") from None
    except OSError as exc:
        raise AuthorityKeyError(f"{os.fspath(path)}: cannot read ({exc.strerror})") from None


def _raw_from_base64(data: bytes) -> bytes | None:
    """32 raw key bytes from a one-line base64 file, or None if the file is not that."""
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def load_public_key(path: str | os.PathLike[str]) -> X25519PublicKey:
    """The authority's public key from PEM or base64 raw (a private-key PEM gives its public half)."""
    data = _read_key_file(path)
    if b"PRIVATE KEY" in data:
        # Only its public half is used here, so its mode is not this reader's concern.
        return _private_from(data, path).public_key()
    raw = _raw_from_base64(data)
    if raw is not None:
        return X25519PublicKey.from_public_bytes(raw)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise AuthorityKeyError(
            f"{os.fspath(path)}: not a PEM public key or base64 of a raw 32-byte key"
        ) from None
    if not isinstance(key, X25519PublicKey):
        raise AuthorityKeyError(f"{os.fspath(path)}: not an X25519 key")
    return key


def load_private_key(path: str | os.PathLike[str]) -> X25519PrivateKey:
    """The authority's private key from unencrypted PKCS#8 PEM or base64 raw, from an owner-only
    file."""
    return _private_from(_read_key_file(path, private=True), path)


def _private_from(data: bytes, path: str | os.PathLike[str]) -> X25519PrivateKey:
    raw = _raw_from_base64(data)
    if raw is not None:
        return X25519PrivateKey.from_private_bytes(raw)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise AuthorityKeyError(f"{os.fspath(path)}: key is encrypted; give an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise AuthorityKeyError(f"{os.fspath(path)}: not a PEM private key") from None
    if not isinstance(key, X25519PrivateKey):
        raise AuthorityKeyError(f"{os.fspath(path)}: not an X25519 key")
    return key


def save_key_pair(key: X25519PrivateKey, private_path: Path, public_path: Path) -> None:
    """Write the private key (PKCS#8 PEM, 0600) and its public half (SPKI PEM, 0644).

    Refuses before writing anything if either file exists: a lost authority key makes every subject
    sealed to it unreadable, so overwriting one is never what anybody meant.
    """
    for existing in (private_path, public_path):
        if existing.exists():
            raise AuthorityKeyError(f"{existing}: already exists; refusing to overwrite a key")
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_new(private_path, private_pem, 0o600, AuthorityKeyError)
    write_new(public_path, public_pem, 0o644, AuthorityKeyError)


# --- the sealed format: pure functions ---------------------------------------------------------


def context_aad(event: Mapping[str, Any]) -> bytes:
    """The HPKE aad for a subject inside `event`: CBOR of [site, device, entrance, t]."""
    values = [event.get(name) for name in CONTEXT_FIELDS]
    *names, t = values
    if not all(isinstance(v, str) for v in names):
        raise SubjectError("no-context", "the event lacks site, device or entrance")
    if isinstance(t, float) and t.is_integer():
        t = int(t)
    if not isinstance(t, int) or isinstance(t, bool):
        raise SubjectError("no-context", "the event lacks an integer t")
    return cbor2.dumps([*names, t])


def _field_bytes(sealed: Mapping[str, Any], name: str) -> bytes:
    value = sealed.get(name)
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise SubjectError("malformed", f"subject {name!r} is not hexadecimal") from None
    raise SubjectError("malformed", f"subject has no {name!r} bytes")


def decode_sealed(sealed: Any) -> tuple[bytes, bytes, bytes]:
    """(kid, enc, ct) from a sealed subject in its CBOR or JSON form; SubjectError if malformed."""
    if not isinstance(sealed, Mapping):
        raise SubjectError("malformed", "subject is not a map")
    if sealed.get("v") != SUBJECT_VERSION:
        raise SubjectError("malformed", f"subject version is not {SUBJECT_VERSION}")
    kid, enc, ct = (_field_bytes(sealed, name) for name in ("kid", "enc", "ct"))
    if len(kid) != KID_LENGTH or len(enc) != ENC_LENGTH or len(ct) <= TAG_LENGTH:
        raise SubjectError("malformed", "subject fields have the wrong lengths")
    return kid, enc, ct


# --- the sentry's side --------------------------------------------------------------------------


class Sealer:
    """Seals subjects to one authority public key; one per process, shared across threads."""

    def __init__(self, public_key: X25519PublicKey):
        """Raises ValueError for a low-order point (all zeros, say): it loads like any key, but no
        shared secret exists with it, so every `seal` would fail on the hot path instead of here."""
        self._recipient = KEMKey.from_pyca_cryptography_key(public_key)
        try:
            SUITE.create_sender_context(self._recipient, info=INFO)
        except (PyHPKEError, ValueError):
            raise ValueError(
                "not a usable X25519 public key: a low-order point, with which no secret is shared"
            ) from None
        self.kid = key_id(public_key)

    @classmethod
    def from_config(cls, privacy: PrivacyConfig) -> Sealer | None:
        """The sealer for `privacy.authority_key`, or None when none is set (events carry no subject).

        A key that is set but unusable is a ConfigError naming the key: running on without sealing
        would silently lose what the authority was promised, running with a wrong key would hand
        them subjects they cannot open.
        """
        if privacy.authority_key is None:
            return None
        try:
            return cls(load_public_key(privacy.authority_key))
        except (AuthorityKeyError, ValueError) as exc:
            raise ConfigError([("privacy.authority_key", str(exc))]) from None

    def seal(self, sub: bytes, event: Mapping[str, Any]) -> dict[str, Any]:
        """The sealed form of `sub` for `event`, which must already carry site, device, entrance, t.

        Each call makes a fresh encapsulation (a new ephemeral key pair inside pyhpke).
        """
        if not isinstance(sub, bytes) or not 0 < len(sub) <= MAX_SUB_LENGTH:
            raise ValueError(f"sub must be 1 to {MAX_SUB_LENGTH} bytes")
        aad = context_aad(event)
        enc, context = SUITE.create_sender_context(self._recipient, info=INFO)
        return {"v": SUBJECT_VERSION, "kid": self.kid, "enc": enc, "ct": context.seal(sub, aad=aad)}


# --- the authority's side -----------------------------------------------------------------------


def open_subject(sealed: Any, private_key: X25519PrivateKey, event: Mapping[str, Any]) -> bytes:
    """The `sub` inside `sealed`, which sat in `event`; SubjectError (with a reason) if it won't open."""
    kid, enc, ct = decode_sealed(sealed)
    if kid != key_id(private_key):
        raise SubjectError("wrong-key", "sealed to another authority key")
    aad = context_aad(event)
    try:
        recipient = SUITE.create_recipient_context(
            enc, KEMKey.from_pyca_cryptography_key(private_key), info=INFO
        )
        return recipient.open(ct, aad=aad)
    except (PyHPKEError, ValueError) as exc:
        # ValueError: an `enc` that is no usable X25519 point; both mean the bytes were altered.
        raise SubjectError("cannot-open", "the subject or its event was altered") from exc
