"""Trust lists (docs/protocol.md section 3): which keys sign acceptable codes, what is revoked, and
which operator keys may sign config and commands (`operators`, for the sites each names).

The file is JSON; the same document also arrives as CBOR (byte strings may then be raw instead of
base64), and over MQTT as a COSE_Sign1 signed by the fleet's trust-root key with the content type
`application/vnd.edge-sentry.trust+cbor` (the same key signs venue posters, which must never pass as
a list). Loading is all-or-nothing: any problem raises TrustListError with one line naming the key
path ("keys[2].public_key: not base64"), so an operator fixes the file instead of a sentry
half-trusting it. Unknown keys are errors, as in the config, so that a typo cannot silently drop a
revocation.

`audience` names the sentries a list is for: sites by name, devices as "site/device" (a device id
names topics only under its site), "*" for all. It is optional here; whoever takes a pushed list
(link/trustpush.py) requires it and checks that it names that sentry.

Pure functions apart from `TrustList.load`, which reads one file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import CodeError, TrustListError
from ..vocabulary import ContentType, Role
from . import cose
from .dcc import Signer, load_signer
from .keys import KID_LENGTH, kid_of, raw_public_key

SCHEMES = ("es1", "dcc")
#: What an operator key may sign (docs/protocol.md, "Signed control plane").
OPERATOR_ROLES = tuple(role.value for role in Role)
#: An operator's `sites` holding only this addresses every site of the fleet.
ALL_SITES = "*"
#: In an audience, every site or every device of the fleet.
EVERYONE = "*"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_VERSION = 2**53


@dataclass(frozen=True)
class Es1Key:
    """A key whose ES1 codes are trusted; `issuer` is who holds its private half."""

    kid: bytes
    public_key: Ed25519PublicKey
    issuer: str
    scheme: str = "es1"


@dataclass(frozen=True)
class DccKey:
    """A DCC document signer certificate (DER), parsed once here, when the list is loaded.

    `signer` is the parsed form the verifier uses (key, validity, the kinds it may sign), or None when
    the DER cannot be used: such an entry stays in the list (and in `to_mapping`) but verifies nothing.
    """

    kid: bytes
    certificate: bytes
    scheme: str = "dcc"
    signer: Signer | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "signer", load_signer(self.certificate))


TrustedKey = Es1Key | DccKey


@dataclass(frozen=True)
class Operator:
    """A key allowed to sign config (`config`) or commands (`command`) for the sites it names.

    `sites` is either a list of site ids or exactly `("*",)`, every site; `name` says who holds the
    private half, for people reading the list (a sentry decides by the kid alone).
    """

    kid: bytes
    public_key: Ed25519PublicKey
    name: str
    roles: tuple[str, ...]
    sites: tuple[str, ...]

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def covers(self, site: str) -> bool:
        """Whether this key may address `site`."""
        return self.sites == (ALL_SITES,) or site in self.sites

    def to_mapping(self) -> dict[str, Any]:
        return {
            "kid": _b64(self.kid),
            "public_key": _b64(raw_public_key(self.public_key)),
            "name": self.name,
            "roles": list(self.roles),
            "sites": list(self.sites),
        }


@dataclass(frozen=True)
class Audience:
    """The sentries a trust list is for: `sites` by name, `devices` as "site/device"; "*" in either
    is every sentry of the fleet."""

    sites: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()

    @classmethod
    def of(cls, site: str, device: str | None = None) -> Audience:
        """One sentry (site and device), or every sentry of a site (no device)."""
        if device is None:
            return cls(sites=frozenset({site}))
        return cls(devices=frozenset({f"{site}/{device}"}))

    def names(self, site: str, device: str) -> bool:
        """True when the sentry `device` of `site` is among those the list is for."""
        return bool({EVERYONE, site} & self.sites) or bool({EVERYONE, f"{site}/{device}"} & self.devices)

    def to_mapping(self) -> dict[str, list[str]]:
        return {"sites": sorted(self.sites), "devices": sorted(self.devices)}


@dataclass(frozen=True)
class TrustList:
    """An immutable trust list; build it with `load`, `from_json`, `from_cbor` or `empty`."""

    version: int
    issued: datetime
    keys: tuple[TrustedKey, ...] = ()
    revoked_kids: frozenset[bytes] = frozenset()
    revoked_subs: frozenset[bytes] = frozenset()
    operators: tuple[Operator, ...] = ()
    audience: Audience | None = None
    _index: dict[tuple[str, bytes], tuple[TrustedKey, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        index: dict[tuple[str, bytes], tuple[TrustedKey, ...]] = {}
        for key in self.keys:
            index[(key.scheme, key.kid)] = (*index.get((key.scheme, key.kid), ()), key)
        object.__setattr__(self, "_index", index)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def empty(cls) -> TrustList:
        """A list that trusts nothing; issued at the epoch, so it is always stale."""
        return cls(version=0, issued=_EPOCH)

    @classmethod
    def from_mapping(cls, data: Any) -> TrustList:
        """Build from the decoded document; raise TrustListError naming the first bad key path."""
        return _parse(data)

    @classmethod
    def from_json(cls, data: bytes | str) -> TrustList:
        """Parse the JSON form."""
        try:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
            doc = json.loads(text, object_pairs_hook=_no_duplicates)
        except UnicodeDecodeError:
            raise TrustListError("not UTF-8 text") from None
        except ValueError as exc:
            raise TrustListError(f"not valid JSON ({exc})") from None
        except RecursionError:
            raise TrustListError("not valid JSON (nested too deeply)") from None
        return _parse(doc)

    @classmethod
    def from_cbor(cls, data: bytes) -> TrustList:
        """Parse the CBOR form (as pushed over MQTT inside the signed envelope)."""
        try:
            doc = cose.loads(data, what="trust list")
        except CodeError as exc:
            raise TrustListError(str(exc)) from None
        return _parse(doc)

    @classmethod
    def from_signed(cls, data: bytes, root_key: Ed25519PublicKey) -> TrustList:
        """Parse a COSE_Sign1-wrapped CBOR trust list, refusing it unless `root_key` signed it."""
        try:
            message = cose.decode_sign1(data)
            genuine = cose.verify(message, root_key)
        except CodeError as exc:
            raise TrustListError(f"signed trust list: {exc}") from None
        if not genuine:
            raise TrustListError(
                "signed trust list: signature does not verify under the trust-root key"
            )
        try:
            message.require_content_type(ContentType.TRUST)
        except CodeError as exc:
            raise TrustListError(f"signed trust list: {exc}") from None
        return cls.from_cbor(message.payload)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TrustList:
        """Read a trust-list file (JSON, or CBOR when it does not start with "{")."""
        name = os.fspath(path)
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise TrustListError(f"{name}: no such trust-list file") from None
        except OSError as exc:
            raise TrustListError(f"{name}: cannot read ({exc.strerror})") from None
        try:
            if data.lstrip()[:1] == b"{":
                return cls.from_json(data)
            return cls.from_cbor(data)
        except TrustListError as exc:
            raise TrustListError(f"{name}: {exc}") from None

    # -- questions a verifier asks ------------------------------------------------------------

    def lookup(self, scheme: str, kid: bytes) -> tuple[TrustedKey, ...]:
        """Every trusted key of `scheme` with this kid (DCC signers may share one)."""
        return self._index.get((scheme, kid), ())

    def es1_key(self, kid: bytes) -> Es1Key | None:
        """The ES1 key with this kid, or None."""
        found = self.lookup("es1", kid)
        return found[0] if found and isinstance(found[0], Es1Key) else None

    def dcc_signers(self, kid: bytes) -> tuple[Signer, ...]:
        """The usable DCC signer certificates with this kid, in list order (several may share one)."""
        return tuple(key.signer for key in self.lookup("dcc", kid) if isinstance(key, DccKey) and key.signer)

    def operator(self, kid: bytes) -> Operator | None:
        """The operator key with this kid, or None (kids are unique among operators)."""
        return next((op for op in self.operators if op.kid == kid), None)

    def is_kid_revoked(self, kid: bytes) -> bool:
        return kid in self.revoked_kids

    def is_sub_revoked(self, sub: bytes) -> bool:
        """Revocations list SHA-256 of the subject, so the list itself names nobody."""
        return hashlib.sha256(sub).digest() in self.revoked_subs

    def age_s(self, now: float) -> float:
        """Seconds since the list was issued (negative if it claims to come from the future)."""
        return now - self.issued.timestamp()

    def is_stale(self, now: float, max_age_h: float) -> bool:
        """True when older than `trust.max_age_h`; what follows is the config's `stale_policy`."""
        return self.age_s(now) > max_age_h * 3600

    # -- writing ------------------------------------------------------------------------------

    def to_mapping(self) -> dict[str, Any]:
        """The JSON-form document (byte strings as base64)."""
        keys: list[dict[str, Any]] = []
        for key in self.keys:
            if isinstance(key, Es1Key):
                keys.append(
                    {
                        "scheme": "es1",
                        "kid": _b64(key.kid),
                        "public_key": _b64(raw_public_key(key.public_key)),
                        "issuer": key.issuer,
                    }
                )
            else:
                keys.append(
                    {"scheme": "dcc", "kid": _b64(key.kid), "certificate": _b64(key.certificate)}
                )
        doc: dict[str, Any] = {
            "version": self.version,
            "issued": self.issued.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "keys": keys,
            "revoked": {
                "kids": sorted(_b64(k) for k in self.revoked_kids),
                "subs": sorted(_b64(s) for s in self.revoked_subs),
            },
        }
        if self.operators:
            doc["operators"] = [op.to_mapping() for op in self.operators]
        if self.audience is not None:
            doc["audience"] = self.audience.to_mapping()
        return doc

    def to_json(self) -> str:
        return json.dumps(self.to_mapping(), indent=2) + "\n"

    def to_cbor(self) -> bytes:
        return cbor2.dumps(self.to_mapping())

    def signed(self, root_key: Ed25519PrivateKey) -> bytes:
        """The COSE_Sign1 form an operator pushes over MQTT, typed as a trust list."""
        return cose.sign1(
            root_key, self.to_cbor(), alg=cose.ALG_EDDSA, kid=kid_of(root_key), content_type=ContentType.TRUST
        )

    def for_audience(self, audience: Audience) -> TrustList:
        """This list addressed to `audience` instead (same version: the content is the same keys)."""
        return replace(self, audience=audience)

    def with_entry(self, entry: Mapping[str, Any], *, issued: datetime) -> TrustList:
        """The next version of this list, with one more entry (JSON form, as from trust_entry)."""
        doc = self.to_mapping()
        doc["version"] = self.version + 1
        doc["issued"] = issued.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        doc["keys"].append(dict(entry))
        return _parse(doc)

    def with_operator(self, entry: Mapping[str, Any], *, issued: datetime) -> TrustList:
        """The next version of this list, with one more operator (JSON form, as from
        keys.operator_entry)."""
        doc = self.to_mapping()
        doc["version"] = self.version + 1
        doc["issued"] = issued.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        doc["operators"] = [*doc.get("operators", []), dict(entry)]
        return _parse(doc)


# -- parsing ----------------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _fail(path: str, message: str) -> TrustListError:
    return TrustListError(f"{path}: {message}")


def _map(value: Any, path: str, required: set[str], optional: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path or "trust list", "must be an object")
    for key in value:
        if key not in required | optional:
            # A CBOR list may hold any key; an integer past 4300 digits has no text to name it by.
            name = key if isinstance(key, str) else cose.shown(key)
            raise _fail(f"{path}.{name}" if path else name, "unknown key")
    for key in sorted(required):
        if key not in value:
            raise _fail(f"{path}.{key}" if path else key, "missing")
    return value


def _bytes(value: Any, path: str, length: int | None = None) -> bytes:
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _fail(path, "not base64") from None
    else:
        raise _fail(path, "must be a base64 text")
    if length is not None and len(raw) != length:
        raise _fail(path, f"must be {length} bytes, not {len(raw)}")
    if not raw:
        raise _fail(path, "must not be empty")
    return raw


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, "must be a non-empty text")
    return value


def _issued(value: Any, path: str) -> datetime:
    if not isinstance(value, str):
        raise _fail(path, "must be an ISO 8601 text such as 2026-11-26T00:00:00Z")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(path, "not an ISO 8601 time such as 2026-11-26T00:00:00Z") from None
    if when.tzinfo is None:
        raise _fail(path, "needs a time zone, such as a final Z for UTC")
    return when.astimezone(UTC)


def _ed25519(entry: Mapping[str, Any], path: str) -> tuple[bytes, Ed25519PublicKey]:
    """The kid and the public key of an entry, the kid checked against the key."""
    kid = _bytes(entry["kid"], f"{path}.kid", KID_LENGTH)
    raw = _bytes(entry["public_key"], f"{path}.public_key", 32)
    try:
        public_key = Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise _fail(f"{path}.public_key", "not an Ed25519 public key") from None
    if kid_of(raw) != kid:
        raise _fail(f"{path}.kid", "does not match public_key (must be SHA-256(public_key)[:8])")
    return kid, public_key


def _es1_entry(entry: Mapping[str, Any], path: str) -> Es1Key:
    _map(entry, path, {"scheme", "kid", "public_key", "issuer"}, set())
    kid, public_key = _ed25519(entry, path)
    return Es1Key(kid, public_key, _text(entry["issuer"], f"{path}.issuer"))


def _distinct_texts(value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise _fail(path, "must be a non-empty list")
    items = tuple(_text(v, f"{path}[{i}]") for i, v in enumerate(value))
    if len(set(items)) != len(items):
        raise _fail(path, "lists a value twice")
    return items


def _operator_entry(entry: Any, path: str) -> Operator:
    _map(entry, path, {"kid", "public_key", "name", "roles", "sites"}, set())
    kid, public_key = _ed25519(entry, path)
    roles = _distinct_texts(entry["roles"], f"{path}.roles")
    for i, role in enumerate(roles):
        if role not in OPERATOR_ROLES:
            raise _fail(f"{path}.roles[{i}]", "must be one of " + ", ".join(repr(r) for r in OPERATOR_ROLES))
    sites = _distinct_texts(entry["sites"], f"{path}.sites")
    for i, site in enumerate(sites):
        # "*" alone means every site; beside named sites it would be a scope nobody can read.
        if site == ALL_SITES and len(sites) > 1:
            raise _fail(f"{path}.sites[{i}]", f"{ALL_SITES!r} (every site) must be the only entry")
        if any(c in site for c in "/+#\0"):
            raise _fail(f"{path}.sites[{i}]", "must be a site id (one MQTT topic level)")
    return Operator(kid, public_key, _text(entry["name"], f"{path}.name"), roles, sites)


def _operators(value: Any) -> tuple[Operator, ...]:
    if not isinstance(value, list | tuple):
        raise _fail("operators", "must be a list")
    operators: list[Operator] = []
    for i, entry in enumerate(value):
        operator = _operator_entry(entry, f"operators[{i}]")
        if any(op.kid == operator.kid for op in operators):
            raise _fail(f"operators[{i}].kid", "duplicate operator kid")
        operators.append(operator)
    return tuple(operators)


def _dcc_entry(entry: Mapping[str, Any], path: str) -> DccKey:
    _map(entry, path, {"scheme", "kid", "certificate"}, set())
    kid = _bytes(entry["kid"], f"{path}.kid", KID_LENGTH)
    certificate = _bytes(entry["certificate"], f"{path}.certificate")
    if hashlib.sha256(certificate).digest()[:KID_LENGTH] != kid:
        raise _fail(f"{path}.kid", "does not match certificate (must be SHA-256(certificate)[:8])")
    return DccKey(kid, certificate)


def _parse(doc: Any) -> TrustList:
    _map(doc, "", {"version", "issued", "keys"}, {"revoked", "operators", "audience"})
    version = doc["version"]
    # Below 2^53, so that every JSON reader holds it exactly and the list can be written as JSON again
    # (a CBOR list could otherwise carry an integer of more digits than Python turns into text).
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < MAX_VERSION:
        raise _fail("version", "must be a whole number, 0 or more and below 2^53")
    issued = _issued(doc["issued"], "issued")
    if not isinstance(doc["keys"], list | tuple):
        raise _fail("keys", "must be a list")
    keys: list[TrustedKey] = []
    seen_es1: set[bytes] = set()
    for i, entry in enumerate(doc["keys"]):
        path = f"keys[{i}]"
        if not isinstance(entry, Mapping):
            raise _fail(path, "must be an object")
        scheme = entry.get("scheme")
        if scheme == "es1":
            key: TrustedKey = _es1_entry(entry, path)
            if key.kid in seen_es1:
                raise _fail(f"{path}.kid", "duplicate es1 kid")
            seen_es1.add(key.kid)
        elif scheme == "dcc":
            key = _dcc_entry(entry, path)
        else:
            raise _fail(f"{path}.scheme", "must be one of " + ", ".join(repr(s) for s in SCHEMES))
        keys.append(key)
    revoked = _map(doc.get("revoked", {}), "revoked", set(), {"kids", "subs"})
    kids = _byte_list(revoked.get("kids", []), "revoked.kids", None)
    subs = _byte_list(revoked.get("subs", []), "revoked.subs", 32)
    operators = _operators(doc.get("operators", []))
    audience = _audience(doc["audience"]) if "audience" in doc else None
    return TrustList(version, issued, tuple(keys), kids, subs, operators=operators, audience=audience)


def _audience(value: Any) -> Audience:
    audience = _map(value, "audience", set(), {"sites", "devices"})
    sites = _text_list(audience.get("sites", []), "audience.sites")
    devices = _text_list(audience.get("devices", []), "audience.devices")
    for i, site in enumerate(sites):
        if "/" in site:
            raise _fail(f"audience.sites[{i}]", "a site name has no /")
    for i, device in enumerate(devices):
        parts = device.split("/")
        if device != EVERYONE and (len(parts) != 2 or not all(p.strip() for p in parts)):
            raise _fail(f"audience.devices[{i}]", 'must be "site/device" or "*"')
    if not sites and not devices:
        raise _fail("audience", "must name at least one site or device (\"*\" for all)")
    return Audience(frozenset(sites), frozenset(devices))


def _text_list(value: Any, path: str) -> list[str]:
    if not isinstance(value, list | tuple):
        raise _fail(path, "must be a list")
    return [_text(v, f"{path}[{i}]") for i, v in enumerate(value)]


def _byte_list(value: Any, path: str, length: int | None) -> frozenset[bytes]:
    if not isinstance(value, list | tuple):
        raise _fail(path, "must be a list")
    return frozenset(_bytes(v, f"{path}[{i}]", length) for i, v in enumerate(value))
