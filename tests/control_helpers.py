"""Operator keys and signed control messages for tests: what an operator's tool would send.

`OPERATOR` is one operator key for the whole test run, with both roles and every site in
`operator_trust()`; tests that need a narrower or a stranger's key make their own with `keys.generate()`
and `operator_entry(...)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_sentry.codes import control, keys
from edge_sentry.codes.trust import TrustList
from edge_sentry.config import Config, ControlConfig
from edge_sentry.link.control import ControlGuard
from edge_sentry.link.topics import Topics
from edge_sentry.state import StateStore

OPERATOR = keys.generate()


def operator_entry(
    key: Ed25519PrivateKey = OPERATOR,
    roles: Iterable[str] = ("config", "command"),
    sites: Iterable[str] = ("*",),
    name: str = "ops-test",
) -> dict[str, Any]:
    return keys.operator_entry(key, name, list(roles), list(sites))


def operator_trust(
    *entries: dict[str, Any], version: int = 1, issuer: Ed25519PrivateKey | None = None
) -> TrustList:
    """A trust list listing `entries` as operators (default: `OPERATOR`, both roles, every site)."""
    doc: dict[str, Any] = {
        "version": version,
        "issued": "2026-11-26T00:00:00Z",
        "keys": [keys.trust_entry(issuer, "test-issuer")] if issuer is not None else [],
        "operators": list(entries) or [operator_entry()],
    }
    return TrustList.from_mapping(doc)


def write_trust(path: Path, trust: TrustList) -> Path:
    path.write_text(trust.to_json())
    return path


def signed_config(
    aud: str, version: Any, config: Any, *, key: Ed25519PrivateKey = OPERATOR, iat_ms: int = 1_795_000_000_000
) -> bytes:
    """A desired-config document signed for topic `aud` (configs do not depend on the clock)."""
    return control.sign(key, aud, {"version": version, "config": config}, iat_ms=iat_ms)


def signed_command(
    aud: str,
    deadline: Any,
    *,
    iat_ms: int,
    args: dict[str, Any] | None = None,
    key: Ed25519PrivateKey = OPERATOR,
    jti: bytes | None = None,
    body: Any = None,
) -> bytes:
    """A command request signed for topic `aud`; `body` replaces `{deadline, args}` when given."""
    if body is None:
        body = {} if deadline is None else {"deadline": deadline}
        if args is not None:
            body["args"] = args
    return control.sign(key, aud, body, iat_ms=iat_ms, jti=jti)


def guard(
    own: Topics | Config,
    store: StateStore,
    trust: TrustList | Callable[[], TrustList] | None = None,
    *,
    clock: Callable[[], float] | None = None,
    record: Callable[[dict[str, Any]], Any] | None = None,
    settings: ControlConfig | None = None,
) -> ControlGuard:
    """A guard for a device (its Topics, or a Config naming it) trusting `trust` (default:
    `operator_trust()`)."""
    topics = own if isinstance(own, Topics) else Topics(own.device.site, own.device.id)
    current = trust if trust is not None else operator_trust()
    options: dict[str, Any] = {}
    if clock is not None:
        options["clock"] = clock
    return ControlGuard(
        topics,
        current if callable(current) else (lambda: current),
        store,
        settings=(lambda: settings) if settings is not None else ControlConfig,
        record=record,
        **options,
    )
