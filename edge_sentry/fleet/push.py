"""Pushing a desired config or a trust list, and judging what each sentry answered.

A desired config is `{"version", "config"}`, signed by an operator key (codes/control.py), on a
retained topic; the device applies it whole or
rejects it, and says which on its retained `config/reported` (docs/protocol.md section 6.5). The version
decides everything: a sentry silently ignores a document whose version is at or below the one it
applied from the same source (its device topic, or the site's `all/config/desired`). So the version
chosen by default is one above every version the broker knows of for that source: the retained
desired document and each sentry's reported and `state` versions. Epoch seconds would also always
grow, but would make a hand-picked `--version 5` afterwards silently ignored; counting on keeps
versions small and readable. An explicit version that a sentry is known to have reached already is
refused before anything is published, since the sentry would ignore it without a word.

A trust list goes, signed by the fleet's trust-root key, to each sentry's own retained `trust`
topic: that is the only trust topic a sentry subscribes to (`link.trustpush`). Its answer is its
`state` carrying the new `trust_version` (or a `trust-updated` event), or a `trust-rejected` event
with a reason. Since a refused list would be refused again at every reconnect, the retained message
it replaced is put back (or the topic cleared) on the sentries that refused it.

The watches are pure: the CLI feeds them each message after the push and asks who is still pending.
"""

from __future__ import annotations

import abc
import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..codes import cose
from ..errors import CodeError, UsageError
from ..link import topics
from ..link.desired import MAX_VERSION
from ..vocabulary import Event

APPLIED = "applied"
REJECTED = "rejected"
ACCEPTED = "accepted"
OFFLINE = "offline"
NO_ANSWER = "no-answer"

DEVICE = "device"
SITE = "site"

_LEAVES = (str, int, float, bool)


@dataclass
class Outcome:
    """What one sentry made of a push."""

    device: str
    status: str
    version: int | None = None
    errors: list[tuple[str, str]] = field(default_factory=list)
    detail: str | None = None
    restart: list[str] = field(default_factory=list)

    @property
    def settled(self) -> bool:
        return self.status in (APPLIED, ACCEPTED, REJECTED)

    def to_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "status": self.status,
            "version": self.version,
            "errors": [{"path": p, "message": m} for p, m in self.errors],
            "detail": self.detail,
            "restart": self.restart,
        }


# -- the desired-config file ---------------------------------------------------------------------


def load_desired(path: str | Path) -> tuple[dict[str, Any], int | None]:
    """The config sections of a TOML or JSON file and the version it names (None: none).

    A JSON file may also be a whole desired document `{"version": N, "config": {...}}` (as read
    back from a broker); anything else is sections of keys, like the device's own config file. Only
    the shape is checked here: the sentry validates the content against its schema and names every
    problem by key path in its report, so the rules live in one place.
    """
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{name}: cannot read ({exc.strerror or exc})") from None
    version = None
    as_json = name.lower().endswith(".json") or raw.lstrip()[:1] == b"{"
    try:
        doc = json.loads(raw.decode("utf-8")) if as_json else tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{name}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{name}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{name}: not valid TOML ({exc})") from None
    if isinstance(doc, dict) and set(doc) == {"version", "config"}:
        version, doc = doc["version"], doc["config"]
        if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < MAX_VERSION:
            raise UsageError(f"{name}: version must be a whole number from 0 to 2^53 - 1")
    return check_sections(doc, name), version


def check_sections(doc: Any, name: str = "config") -> dict[str, Any]:
    """`doc` if it is `{section: {key: value}}` with values a config can hold; UsageError naming
    the first key path that is not (a TOML date, for one, has no CBOR form a sentry accepts)."""
    if not isinstance(doc, dict) or not doc:
        raise UsageError(f"{name}: must hold at least one [section] of keys")
    for section, keys in doc.items():
        if not isinstance(keys, dict):
            raise UsageError(f"{name}: {section}: must be a section of keys, not a single value")
        for key, value in keys.items():
            items = value if isinstance(value, list) else [value]
            if not all(isinstance(item, _LEAVES) for item in items):
                raise UsageError(
                    f"{name}: {section}.{key}: must be text, a number, true/false or a list of them"
                )
    return doc


def signed_body(payload: bytes) -> Any:
    """The body of a signed control message as it sits on the broker, *unverified* (None when it
    is not one): the operator's tools read a retained document's version with it, never trust."""
    try:
        message = cose.decode_sign1(payload)
        claims = cose.loads(message.payload, what="control payload")
    except CodeError:
        return None
    return claims.get("body") if isinstance(claims, Mapping) else None


def next_version(known: Iterable[int]) -> int:
    """One above every known version (1 when none is known)."""
    return max([0, *known]) + 1


# -- watching the answers ------------------------------------------------------------------------


class Watch(abc.ABC):
    """Outcomes per target; `see()` takes each (device, kind, decoded map) after the push."""

    def __init__(self, targets: Iterable[str], version: int) -> None:
        self.targets = list(dict.fromkeys(targets))
        self.version = version
        self.outcomes: dict[str, Outcome] = {}

    def pending(self) -> list[str]:
        return [t for t in self.targets if t not in self.outcomes]

    @abc.abstractmethod
    def see(self, device: str, kind: str, doc: Mapping[str, Any] | None) -> None:
        """Record what `device` said on its `kind` topic, if it answers this push."""

    def finish(self, offline: Iterable[str], timeout_s: float) -> list[Outcome]:
        """Every target's outcome, the unanswered ones as offline or no-answer, in target order."""
        gone = set(offline)
        for device in self.pending():
            if device in gone:
                self.outcomes[device] = Outcome(device, OFFLINE, self.version)
            else:
                self.outcomes[device] = Outcome(device, NO_ANSWER, self.version,
                                                detail=f"no answer within {timeout_s:g} s")
        return [self.outcomes[t] for t in self.targets]


class ConfigWatch(Watch):
    """Answers to a desired config of `source`: a `config/reported` naming the pushed version in
    `version` (device documents) or `site_version` (site-wide ones)."""

    def __init__(self, targets: Iterable[str], version: int, source: str) -> None:
        super().__init__(targets, version)
        self.key = "version" if source == DEVICE else "site_version"

    def see(self, device: str, kind: str, doc: Mapping[str, Any] | None) -> None:
        if kind != topics.CONFIG_REPORTED or doc is None or device not in self.targets:
            return
        if device in self.outcomes or doc.get(self.key) != self.version:
            return
        status = doc.get("status")
        errors = [
            (str(e.get("path", "")), str(e.get("message", "")))
            for e in doc.get("errors") or [] if isinstance(e, Mapping)
        ]
        restart = [str(k) for k in doc.get("restart") or []] if status == APPLIED else []
        self.outcomes[device] = Outcome(
            device, APPLIED if status == APPLIED else REJECTED, self.version, errors, restart=restart
        )


class TrustWatch(Watch):
    """Answers to a pushed trust list: the sentry's `state` (or a `trust-updated` event) with the
    new version, or a `trust-rejected` event (whose version is absent when the signature failed,
    since the list inside was never read)."""

    def see(self, device: str, kind: str, doc: Mapping[str, Any] | None) -> None:
        if doc is None or device not in self.targets or device in self.outcomes:
            return
        event = doc.get("event") if kind == topics.EVENT else None
        took = (kind == topics.STATE and doc.get("trust_version") == self.version) or (
            event == Event.TRUST_UPDATED and doc.get("version") == self.version
        )
        if took:
            self.outcomes[device] = Outcome(device, ACCEPTED, self.version)
        elif event == Event.TRUST_REJECTED and doc.get("version") in (None, self.version):
            reason = str(doc.get("reason") or "rejected")
            detail = doc.get("detail")
            current = doc.get("current")
            text = f"{reason}: {detail}" if detail else reason
            if current is not None:
                text += f"; keeps version {current}"
            self.outcomes[device] = Outcome(device, REJECTED, self.version, detail=text)


# -- reporting -----------------------------------------------------------------------------------


def describe(outcome: Outcome) -> list[str]:
    """Lines for one outcome: the verdict, then each error by key path, indented."""
    head = f"{outcome.device}: {outcome.status}"
    if outcome.version is not None and outcome.status in (APPLIED, ACCEPTED, REJECTED):
        head += f" (version {outcome.version})"
    if outcome.status == OFFLINE:
        head += " (it takes the retained document when it reconnects)"
    if outcome.detail:
        head += f": {outcome.detail}"
    lines = [head]
    lines += [f"  {path or '(document)'}: {message}" for path, message in outcome.errors]
    if outcome.restart:
        lines.append("  takes effect after a restart: " + ", ".join(outcome.restart))
    return lines


def exit_status(outcomes: Iterable[Outcome], *, failed: int = 1, unanswered: int = 3) -> int:
    """0 when every sentry took the push, `failed` when one refused it (whatever the others did),
    else `unanswered` when one did not answer (offline, or no answer in time)."""
    found = list(outcomes)
    if any(o.status == REJECTED for o in found):
        return failed
    if all(o.settled for o in found):
        return 0
    return unanswered
