"""Ed25519 keys of code issuers, of operators and of the fleet trust root: make, save, load, describe.

This is the one module under `codes/` that touches files, because a private key must be written with
owner-only permissions from the first byte (created 0600, never chmod-ed afterwards, through
`files.write_new`) and never overwrite an existing key: a lost issuer key cannot be recovered, only
revoked.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from .. import files
from ..errors import ExposedSecretError, KeyFileError

KID_LENGTH = 8


def generate() -> Ed25519PrivateKey:
    """A fresh Ed25519 private key from the operating system's random source."""
    return Ed25519PrivateKey.generate()


RawKey = Ed25519PublicKey | Ed25519PrivateKey | X25519PublicKey | X25519PrivateKey


def raw_public_key(key: RawKey) -> bytes:
    """The 32-byte raw form of a public key (the form trust lists carry). X25519 keys too: the
    health authority's key is named by the same rule as the issuers'."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey | X25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def kid_of(key: RawKey | bytes) -> bytes:
    """Key id: the first 8 bytes of SHA-256 of the 32-byte raw public key (docs/protocol.md section 1)."""
    raw = key if isinstance(key, bytes) else raw_public_key(key)
    return hashlib.sha256(raw).digest()[:KID_LENGTH]


def trust_entry(key: Ed25519PublicKey | Ed25519PrivateKey, issuer: str) -> dict[str, Any]:
    """The trust-list entry (JSON form) that makes a sentry accept ES1 codes signed by `key`."""
    raw = raw_public_key(key)
    return {
        "scheme": "es1",
        "kid": base64.b64encode(kid_of(raw)).decode("ascii"),
        "public_key": base64.b64encode(raw).decode("ascii"),
        "issuer": issuer,
    }


def operator_entry(
    key: Ed25519PublicKey | Ed25519PrivateKey,
    name: str,
    roles: list[str] | tuple[str, ...],
    sites: list[str] | tuple[str, ...],
) -> dict[str, Any]:
    """The trust-list `operators` entry (JSON form) that lets `key` sign config (`config` role) or
    commands (`command` role) for `sites` (`["*"]`: every site)."""
    raw = raw_public_key(key)
    return {
        "kid": base64.b64encode(kid_of(raw)).decode("ascii"),
        "public_key": base64.b64encode(raw).decode("ascii"),
        "name": name,
        "roles": list(roles),
        "sites": list(sites),
    }


def write_new(
    path: Path, data: bytes, mode: int, error: type[KeyFileError] = KeyFileError
) -> None:
    """Create `path` with `mode` from its first byte and make it durable; an existing file is never
    replaced (a key overwritten by mistake is a key lost). Failures raise `error`, naming the file."""
    try:
        files.write_new(path, data, mode)
    except FileExistsError:
        raise error(f"{path}: already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise error(f"{path}: cannot create ({exc.strerror})") from None


def save_private_key(key: Ed25519PrivateKey, path: str | os.PathLike[str]) -> None:
    """Write `key` as unencrypted PKCS#8 PEM, readable by the owner only; never overwrite a file."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_new(Path(path), pem, 0o600)


def save_public_key(
    key: Ed25519PublicKey | Ed25519PrivateKey, path: str | os.PathLike[str]
) -> None:
    """Write the public half as SubjectPublicKeyInfo PEM (world-readable: it is public)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_new(Path(path), pem, 0o644)


def _read(path: str | os.PathLike[str], *, private: bool = False) -> bytes:
    """The file's bytes; a `private` one only if it is owner-only (a key others can read may
    already be copied, and signing with it would spread that trust)."""
    try:
        return files.read_private(path) if private else Path(path).read_bytes()
    except ExposedSecretError as exc:
        raise KeyFileError(str(exc)) from None
    except FileNotFoundError:
        raise KeyFileError(f"{os.fspath(path)}: no such key file") from None
    except OSError as exc:
        raise KeyFileError(f"{os.fspath(path)}: cannot read ({exc.strerror})") from None


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Read an unencrypted Ed25519 private key from PEM, from an owner-only file; KeyFileError says
    what is wrong with it."""
    return _private_from_pem(_read(path, private=True), path)


def _private_from_pem(data: bytes, path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyFileError(
            f"{os.fspath(path)}: key is encrypted; give an unencrypted key"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{os.fspath(path)}: not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{os.fspath(path)}: not an Ed25519 key")
    return key


def load_public_key(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """Read an Ed25519 public key from PEM (from a private-key PEM, its public half)."""
    data = _read(path)
    if b"PRIVATE KEY" in data:
        # Only its public half is used here, so its mode is not this reader's concern.
        return _private_from_pem(data, path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{os.fspath(path)}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{os.fspath(path)}: not an Ed25519 key")
    return key
