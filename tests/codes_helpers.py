"""Shared builders for the entry-code tests: keys, trust lists and verifiers with known settings.

Keys are generated fresh per call (Ed25519 generation is cheap), so no test depends on a key that
another test could have revoked or recorded.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_sentry.codes import keys
from edge_sentry.codes.trust import TrustList
from edge_sentry.config import Config, DeviceConfig, Es1Config, GateConfig
from edge_sentry.verifier import Verifier

NOW = 1_795_000_000  # a fixed "now" (late 2026), seconds since 1970
ISSUER = "test-issuer"
SUB = bytes(range(16))


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def trust_doc(
    *private_keys: Ed25519PrivateKey,
    revoked_kids: tuple[bytes, ...] = (),
    revoked_subs: tuple[bytes, ...] = (),
    issued: str = "2026-11-26T00:00:00Z",
    version: int = 1,
    audience: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """A trust-list document (JSON form) trusting `private_keys`' public halves for ES1; addressed to
    `audience` when given (a pushed list must be)."""
    doc: dict[str, Any] = {
        "version": version,
        "issued": issued,
        "keys": [keys.trust_entry(k, ISSUER) for k in private_keys],
        "revoked": {
            "kids": [b64(k) for k in revoked_kids],
            "subs": [b64(hashlib.sha256(s).digest()) for s in revoked_subs],
        },
    }
    if audience is not None:
        doc["audience"] = audience
    return doc


def trust_list(*private_keys: Ed25519PrivateKey, **kwargs: Any) -> TrustList:
    return TrustList.from_mapping(trust_doc(*private_keys, **kwargs))


def make_verifier(
    trust: TrustList,
    *,
    root: Ed25519PrivateKey | None = None,
    es1: Es1Config | None = None,
    gate: GateConfig | None = None,
    device: DeviceConfig | None = None,
) -> Verifier:
    return Verifier(
        es1 or Es1Config(),
        gate or GateConfig(),
        device or DeviceConfig(id="sentry-test", site="s1", venue="arena", entrance="north"),
        trust,
        root.public_key() if root is not None else None,
    )


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_cli(argv: list[str], config: Config | None = None) -> int:
    """Parse `argv` with the codes and verify commands' own parsers and run the handler in-process,
    as the main entry point does; the config is given instead of loaded."""
    from edge_sentry.cli import codes, verify

    parser = argparse.ArgumentParser(prog="edge-sentry")
    parser.add_argument("--config")
    sub = parser.add_subparsers(dest="command", required=True)
    codes.register(sub)
    verify.register(sub)
    args = parser.parse_args(argv)
    return args.func(args, config or Config())


def text_of_length(length: int, grow: Callable[[int], str]) -> str:
    """`grow(size)` for the smallest size whose text reaches `length` characters, which must then be
    exactly `length`: codes are grown to a limit by padding a claim that nobody reads."""
    for size in range(length):
        text = grow(size)
        if len(text) >= length:
            assert len(text) == length, "Base45 cannot spell this length"
            return text
    raise AssertionError(f"no size grows the text to {length} characters")


def apply_mutation(text: str, mutation: tuple[str, int, str]) -> str:
    """One edit of a code text, for fuzzing: ("replace" | "insert" | "delete" | "truncate", index, char)."""
    kind, i, ch = mutation
    i = min(i, len(text))
    if kind == "replace":
        return text[:i] + ch + text[i + 1 :]
    if kind == "insert":
        return text[:i] + ch + text[i:]
    if kind == "delete":
        return text[:i] + text[i + 1 :]
    return text[:i]
