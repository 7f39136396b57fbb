"""Fuzz targets for what the broker and the files carry: trust lists, config, control messages, commands.

Samples are made by the sentry's own writers (TrustList.to_json/to_cbor/signed, control.sign, a TOML
file as an operator writes one) with keys drawn from the run's seed. Two kinds of input: changed bytes
that nobody signed (accepting one with another meaning is a forgery), and documents an operator key of
this run signs over hostile content (an operator's tool gone wrong: accepting them is right, crashing on
them is not, and a pushed config must still never touch a local-only key or leave the remote bounds).

The state store (jti, answered commands, applied config) lives in a temporary folder, on tmpfs where
there is one (its fsyncs cost nothing there), and is started afresh every few hundred inputs, so that
one run's remembered ids do not grow with the number of inputs.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_sentry import config as config_module
from edge_sentry.codes import control, cose, keys
from edge_sentry.codes.trust import TrustList
from edge_sentry.config import Config, from_mapping, to_mapping
from edge_sentry.errors import ConfigError, ControlRefused, TrustListError
from edge_sentry.link import desired
from edge_sentry.link.control import ControlGuard
from edge_sentry.link.remote_commands import RemoteCommands, builtin_commands
from edge_sentry.link.shadow import DEVICE, SITE, ConfigShadow
from edge_sentry.link.topics import Topics
from edge_sentry.state import Identity, StateStore
from edge_sentry.vocabulary import CommandStatus, ContentType
from reliability._fuzzing import ACCEPTED, ESCAPED, FORGED, REFUSED, UNCHANGED, Input, Target
from reliability._mutate import Mutator, Raw, encode

NOW = 1_795_000_000.0
SITE_ID, DEVICE_ID = "fuzz-site", "fuzz-device"
RESET_EVERY = 256  # inputs between fresh state stores
T = TypeVar("T")

TOML_SAMPLE = """\
[device]
id = "fuzz-device"
site = "fuzz-site"
venue = "fuzz-venue"
entrance = "north"

[trust]
max_age_h = 24.0
stale_policy = "verify"

[es1]
max_age_s = 60
skew_s = 30
accept_status = [0, 1]

[dcc]
accept = ["vaccination", "test"]
products = ["EU/1/20/1528"]
test_max_age_h = 48

[gate]
pulse_ms = 1000
max_open_s = 10.0
passback_s = 30
fail_mode = "secure"

[camera]
source = "synthetic"
fps = 15.0

[gpio]
pin_factory = "mock"
relay = 17

[mqtt]
host = "localhost"
port = 1883
username = "fuzz"

[log]
level = "info"
"""
# What a TOML value may be replaced with: each kind of value, its extremes, and what no reader expects.
_TOML_VALUES = [
    "0", "-1", "9223372036854775807", "9223372036854775808", "1" * 5000, "1e308", "1e999", "inf", "-inf",
    "nan", "0.0", "true", "false", '""', '"' + "x" * 5000 + '"', '"\\u0000"', "'/'", "1979-05-27T07:32:00Z",
    "07:32:00", "[]", "[1, \"a\"]", "{}", "{ a = 1 }", "[" * 50 + "]" * 50, "[" * 3000 + "]" * 3000,
    "{ a = " * 500 + "1" + " }" * 500, '"""\nmulti\n"""', "0x7fffffffffffffff", "0o777", "0b1", "+12_345",
]  # fmt: skip


_FOLDERS: list[str] = []


def _tmp_folder() -> str:
    folder = tempfile.mkdtemp(prefix="fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    _FOLDERS.append(folder)
    return folder


def remove_folders() -> None:
    """Remove every temporary folder the targets made (at the end of the run)."""
    while _FOLDERS:
        shutil.rmtree(_FOLDERS.pop(), ignore_errors=True)


@dataclass(frozen=True)
class LinkKeys:
    root: Ed25519PrivateKey
    operator: Ed25519PrivateKey
    stranger: Ed25519PrivateKey  # a key no trust list names
    trust: TrustList  # the sentry's: names `operator` with both roles on every site


def link_keys(seed: int) -> LinkKeys:
    rng = random.Random(f"{seed}/link-keys")
    root, operator, stranger, issuer = (
        Ed25519PrivateKey.from_private_bytes(rng.randbytes(32)) for _ in range(4)
    )
    doc = {
        "version": 7,
        "issued": "2026-11-26T00:00:00Z",
        "keys": [keys.trust_entry(issuer, "fuzz-issuer")],
        "revoked": {"kids": ["AAAAAAAAAAA="], "subs": []},
        "operators": [keys.operator_entry(operator, "fuzz-ops", ["config", "command"], ["*"])],
        "audience": {"sites": [SITE_ID], "devices": [f"{SITE_ID}/{DEVICE_ID}"]},
    }
    return LinkKeys(root, operator, stranger, TrustList.from_mapping(doc))


def _signed_control(key: Ed25519PrivateKey, claims: Any, content_type: str = ContentType.CONTROL) -> bytes:
    """A COSE_Sign1 over any claims (CBOR written by the fuzz encoder, so they may be hostile)."""
    return cose.sign1(key, encode(claims), kid=keys.kid_of(key), content_type=content_type)


def _claims_of(data: bytes, keys_: LinkKeys, topic: str, role: str) -> tuple[Any, ...] | None:
    """What a control message says, if it verifies (its meaning, for telling forgeries)."""
    try:
        c = control.verify(data, keys_.trust.operator, topic=topic, site=SITE_ID, role=role)
    except ControlRefused:
        return None
    return (c.aud, c.iat, c.jti, repr_safe(c.body), c.operator.kid)


def repr_safe(value: Any) -> str:
    """A comparable text of a decoded body (an integer too long for repr is named by its size)."""
    try:
        return repr(value)
    except ValueError:
        return f"<{type(value).__name__} with an integer past the text limit>"


# -- trust lists ----------------------------------------------------------------------------------


def trust_target(seed: int) -> Target:
    k = link_keys(seed)
    sample = k.trust
    json_text = sample.to_json()
    cbor_bytes = sample.to_cbor()
    signed = sample.signed(k.root)
    expected = repr_safe(sample.to_mapping())
    folder = Path(_tmp_folder())
    others = [cbor_bytes, signed, json_text.encode()]

    def draw(m: Mutator) -> Input:
        pick = m.rng.random()
        if pick < 0.25:
            return Input(("json", _json_mutation(m, sample.to_mapping())), how="JSON mutation")
        if pick < 0.35:
            return Input(("json", m.mutate_bytes(json_text.encode(), others)), how="JSON bytes mutation")
        if pick < 0.55:
            return Input(("cbor", m.cbor(cbor_bytes, others)), how="CBOR mutation")
        if pick < 0.75:
            data = m.cbor(signed, others) if m.rng.random() < 0.5 else m.mutate_bytes(signed, others)
            return Input(("signed", data), how="signed list mutated")
        if pick < 0.9:  # the root key signs hostile CBOR: the list's own checks must hold
            body = m.cbor(cbor_bytes, others)
            return Input(("signed", _signed_control(k.root, Raw(body), ContentType.TRUST)), genuine=True,
                         how="hostile list re-signed")  # fmt: skip
        if pick < 0.95:
            return Input(
                (
                    "signed",
                    _signed_control(
                        k.root,
                        Raw(cbor_bytes),
                        m.rng.choice((ContentType.CONTROL, ContentType.VENUE, "text/plain")),
                    ),
                ),
                how="list signed as another kind",
            )
        return Input(
            ("file", m.random_bytes() if m.rng.random() < 0.5 else m.mutate_bytes(cbor_bytes)), how="file"
        )

    def attempt(case: Input) -> str:
        form, data = case.data
        if form == "json":
            got = TrustList.from_json(data)
        elif form == "cbor":
            got = TrustList.from_cbor(data)
        elif form == "file":
            path = folder / "trust.bin"
            path.write_bytes(data)
            got = TrustList.load(path)
        else:
            got = TrustList.from_signed(data, k.root.public_key())
        same = repr_safe(got.to_mapping()) == expected
        got.to_json()  # whatever was accepted can be written back
        if same:
            return UNCHANGED
        if form == "signed" and not case.genuine:
            return FORGED
        return ACCEPTED

    return Target("trust", draw, attempt, (TrustListError,), short=24_000)


def _json_mutation(m: Mutator, doc: Any) -> bytes:
    """The JSON document with one value replaced by a JSON oddity (written as raw text)."""
    mark = "\x00FUZZ\x00"
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            paths.append((node, key))
            walk(value)

    walk(doc)
    node, key = m.rng.choice(paths)
    node[key] = mark
    odd = m.rng.choice([
        "1" * 5000, "-1", "1e999", "NaN", "Infinity", "null", "true", "[]", "{}", '"' + "A" * 5000 + '"',
        "[" * 5000 + "]" * 5000, '{"a":' * 3000 + "1" + "}" * 3000, '"\\ud800"', '"AAAAAAAAAAA="', "0.5",
        '{"kids": [], "kids": ["AAAAAAAAAAA="]}', '"2026-13-01T00:00:00Z"', '"2026-11-26T00:00:00"', '"é"',
    ])  # fmt: skip
    text = json.dumps(doc).replace(json.dumps(mark), odd, 1)
    if m.rng.random() < 0.2:  # a key written twice
        text = text.replace('"version": ', '"version": 1, "version": ', 1)
    return text.encode("utf-8", "surrogatepass")


# -- config: TOML, mappings, and desired documents over the signed control plane -------------------


class _Renewed(Generic[T]):
    """What `make` builds over a fresh state store, built again every RESET_EVERY uses."""

    def __init__(self, make: Callable[[StateStore, ControlGuard], T], trust: TrustList) -> None:
        self.make, self.trust, self.uses, self.folder = make, trust, 0, ""
        self.store: StateStore | None = None
        self.current = self._new()

    def _new(self) -> T:
        if self.store is not None:
            self.store.close()
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = _tmp_folder()
        self.store = StateStore(self.folder, Identity(SITE_ID, DEVICE_ID))
        guard = ControlGuard(
            Topics(SITE_ID, DEVICE_ID),
            lambda: self.trust,
            self.store,
            record=lambda e: None,
            clock=lambda: NOW,
        )
        return self.make(self.store, guard)

    def get(self) -> T:
        self.uses += 1
        if self.uses % RESET_EVERY == 0:
            self.current = self._new()
        return self.current


def _commands(store: StateStore, guard: ControlGuard) -> RemoteCommands:
    parts = ("camera", "relay", "lights")
    builtins = builtin_commands(
        grant=lambda mode: NOW,
        request_restart=lambda: None,
        allow_snapshot=lambda: True,
        snapshot=lambda: b"\xff\xd8\xff\xd9",
        selftest=lambda chosen: [{"part": p, "status": "pass"} for p in (chosen or parts)],
        selftest_parts=parts,
    )
    return RemoteCommands(store, builtins, guard=guard, clock=lambda: NOW, clock_synced=lambda: True)


def _within_remote_rules(local: Config, applied: Config) -> bool:
    """What no pushed config may do: change a local-only key, or leave the remote bounds."""
    before, after = desired.flatten(to_mapping(local)), desired.flatten(to_mapping(applied))
    for path in before.keys() | after.keys():
        if desired.matches(path, desired.LOCAL_ONLY) and before.get(path) != after.get(path):
            return False
        if path in desired.BOUNDS and before.get(path) != after.get(path):
            low, high = desired.BOUNDS[path]
            value = after[path]
            if (low is not None and value < low) or (high is not None and value > high):
                return False
    return set(after.get("es1.accept_status", [])) <= set(before.get("es1.accept_status", []))


def config_target(seed: int) -> Target:
    k = link_keys(seed)
    folder = Path(_tmp_folder())
    toml_path = folder / "sentry.toml"
    local = from_mapping({"device": {"id": DEVICE_ID, "site": SITE_ID, "state_dir": str(folder)}})
    local_map = to_mapping(local)
    holder = _Renewed(
        lambda store, guard: ConfigShadow(local, store, guard=guard, clock=lambda: NOW), k.trust
    )
    topics = Topics(SITE_ID, DEVICE_ID)
    pushed = {"gate": {"passback_s": 20, "pulse_ms": 800}, "es1": {"skew_s": 20}, "log": {"level": "debug"}}
    lines = TOML_SAMPLE.splitlines()

    def draw(m: Mutator) -> Input:
        pick = m.rng.random()
        if pick < 0.3:
            return Input(("toml", _toml_mutation(m, lines)), how="TOML mutation")
        if pick < 0.4:
            return Input(
                ("toml", m.mutate_bytes(TOML_SAMPLE.encode(), [TOML_SAMPLE.encode()])), how="TOML bytes"
            )
        if pick < 0.55:
            return Input(("mapping", m.item(local_map if m.rng.random() < 0.5 else pushed)), how="mapping")
        source = m.rng.choice((SITE, DEVICE))
        shadow = holder.get()
        version = (shadow.site_version if source == SITE else shadow.version) + 1
        doc = {"version": version, "config": pushed}
        aud = topics.site_config_desired if source == SITE else topics.config_desired
        claims = {"aud": aud, "iat": int(NOW * 1000), "jti": m.rng.randbytes(16), "body": doc}
        if pick < 0.85:  # an operator signs a hostile document
            claims["body"] = m.item(doc)
            return Input(("desired", source, _signed_control(k.operator, claims)), genuine=True,
                         how="hostile desired config, signed")  # fmt: skip
        data = _signed_control(k.operator, claims)
        changed = m.cbor(data) if m.rng.random() < 0.5 else m.mutate_bytes(data)
        return Input(("desired", source, changed), origin=_claims_of(data, k, aud, "config"),
                     how="signed desired config, mutated")  # fmt: skip

    def attempt(case: Input) -> str:
        form = case.data[0]
        if form == "toml":
            toml_path.write_bytes(case.data[1])
            config_module.load(toml_path)
            return ACCEPTED
        if form == "mapping":
            from_mapping(_as_python(case.data[1]), base=local)
            return ACCEPTED
        _, source, payload = case.data
        shadow = holder.current
        report = shadow.handle(source, payload)
        if report is None or report["status"] != "applied":
            return REFUSED
        if not _within_remote_rules(local, shadow.current):
            return FORGED
        if case.genuine:
            return ACCEPTED
        aud = shadow.topic(source)
        return UNCHANGED if _claims_of(payload, k, aud, "config") == case.origin else FORGED

    return Target("config", draw, attempt, (ConfigError,), short=6_000)


def _as_python(item: Any) -> Any:
    """A mutated mapping as a reader would hand it over: through CBOR, as the link decodes it."""
    try:
        return cose.loads(encode(item), max_depth=64)
    except Exception:  # not decodable at all: the unchanged value stands in
        return {}


def _toml_mutation(m: Mutator, lines: list[str]) -> bytes:
    out = list(lines)
    for _ in range(m.rng.choice((1, 1, 2, 3))):
        i = m.rng.randrange(len(out))
        kind = m.rng.randrange(6)
        if kind <= 2 and "=" in out[i]:
            key = out[i].split("=", 1)[0]
            out[i] = f"{key}= {m.rng.choice(_TOML_VALUES)}"
        elif kind == 3:
            out.insert(i, out[i])  # a key or a table twice
        elif kind == 4:
            out.insert(
                i, m.rng.choice(("unknown = 1", "[unknown]", "[[gate]]", "[gate.inner]", "a.b.c = 1", "="))
            )
        else:
            del out[i]
    return "\n".join(out).encode("utf-8", "surrogatepass")


# -- signed control messages ------------------------------------------------------------------------


def control_target(seed: int) -> Target:
    k = link_keys(seed)
    topics = Topics(SITE_ID, DEVICE_ID)
    holder = _Renewed(lambda store, guard: guard, k.trust)
    now_ms = int(NOW * 1000)
    samples: list[tuple[str, str, Any]] = [
        ("config", topics.config_desired, {"version": 3, "config": {"log": {"level": "debug"}}}),
        ("config", topics.site_config_desired, {"version": 2, "config": {}}),
        ("command", topics.cmd("pulse-gate"), {"deadline": now_ms + 60_000}),
        ("command", topics.cmd("selftest"), {"deadline": now_ms + 60_000, "args": {"parts": ["relay"]}}),
    ]
    signed = [(role, aud, control.sign(k.operator, aud, body, iat_ms=now_ms, jti=bytes(16)))
              for role, aud, body in samples]  # fmt: skip
    meanings = {data: _claims_of(data, k, aud, role) for role, aud, data in signed}
    others = [data for _, _, data in signed]

    def draw(m: Mutator) -> Input:
        role, aud, data = m.rng.choice(signed)
        pick = m.rng.random()
        if pick < 0.6:
            changed = m.cbor(data, others) if m.rng.random() < 0.6 else m.mutate_bytes(data, others)
            return Input((role, aud, changed), origin=meanings[data], how="signed message mutated")
        claims = {"aud": aud, "iat": now_ms, "jti": m.rng.randbytes(16), "body": samples[0][2]}
        if pick < 0.9:  # the operator signs hostile claims
            return Input((role, aud, _signed_control(k.operator, m.item(claims))), genuine=True,
                         how="hostile claims, signed")  # fmt: skip
        key = m.rng.choice((k.stranger, k.root))
        return Input(
            (role, aud, _signed_control(key, claims)), origin=None, how="signed by a key with no role"
        )

    def attempt(case: Input) -> str:
        role, aud, data = case.data
        guard = holder.get()
        if role == "config":
            verified = guard.config(aud, data)
        else:
            verified = guard.command(aud, data, retained=False)
            body = verified.body
            deadline = body.get("deadline") if isinstance(body, Mapping) else None
            guard.admit(aud, verified, deadline if isinstance(deadline, int | float) else verified.iat + 1000)
        if case.genuine:
            return ACCEPTED
        meaning = (verified.aud, verified.iat, verified.jti, repr_safe(verified.body), verified.operator.kid)
        return UNCHANGED if meaning == case.origin else FORGED

    return Target("control", draw, attempt, (ControlRefused,), short=20_000)


# -- remote command arguments ----------------------------------------------------------------------


def commands_target(seed: int) -> Target:
    k = link_keys(seed)
    topics = Topics(SITE_ID, DEVICE_ID)
    holder = _Renewed(_commands, k.trust)
    now_ms = int(NOW * 1000)
    requests: dict[str, Any] = {
        "pulse-gate": {"deadline": now_ms + 60_000},
        "restart": {"deadline": now_ms + 60_000, "args": {}},
        "snapshot": {"deadline": now_ms + 60_000},
        "selftest": {"deadline": now_ms + 60_000, "args": {"parts": ["camera", "relay"]}},
    }
    originals = {name: control.sign(k.operator, topics.cmd(name), body, iat_ms=now_ms, jti=bytes(16))
                 for name, body in requests.items()}  # fmt: skip

    def draw(m: Mutator) -> Input:
        name = m.rng.choice([*requests, "pulse-gate", "selftest"])
        correlation = m.rng.randbytes(8)
        if m.rng.random() < 0.85:  # a validly signed command with hostile arguments
            body = m.item(requests[name])
            claims = {"aud": topics.cmd(name), "iat": now_ms, "jti": m.rng.randbytes(16), "body": body}
            return Input((name, _signed_control(k.operator, claims), correlation), genuine=True,
                         how="signed command, hostile body")  # fmt: skip
        data = originals[name]
        changed = m.cbor(data) if m.rng.random() < 0.5 else m.mutate_bytes(data)
        origin = _claims_of(data, k, topics.cmd(name), "command")
        return Input((name, changed, correlation), origin=origin, how="signed command mutated")

    def attempt(case: Input) -> str:
        name, payload, correlation = case.data
        reply = holder.get().handle(name, payload, correlation)
        if reply is None:
            return REFUSED
        status, error = reply.response["status"], str(reply.response.get("error", ""))
        if status == CommandStatus.ERROR and error.startswith("failed ("):
            return ESCAPED  # the command raised what it does not document; handle's net caught it
        if status not in (CommandStatus.OK, CommandStatus.ERROR):
            return REFUSED
        json.dumps(reply.response, default=lambda v: repr_safe(v))  # the answer can be published
        if case.genuine:
            return ACCEPTED
        return UNCHANGED if _claims_of(payload, k, topics.cmd(name), "command") == case.origin else FORGED

    return Target("commands", draw, attempt, (), short=4_000)


def all_targets(seed: int) -> list[Callable[[], Target]]:
    return [lambda: trust_target(seed), lambda: config_target(seed), lambda: control_target(seed),
            lambda: commands_target(seed)]  # fmt: skip
