"""The desired-config document and the rules for it: its shape, which keys may change remotely, and
the effective config built from the local one and the two overlays.

Pure: no I/O, no clock, no state; `shadow.ConfigShadow` decides when to call it and keeps the outcome.

What may not change remotely (`LOCAL_ONLY`): who and where the sentry is (`device.*`: its id and
site name its MQTT topics and its broker ACL, so a wrong value strands it; its venue and entrance
decide which codes and posters belong here), what the gate does when it fails (`gate.fail_mode`:
a push must never turn a secure door into an open one; `gate.realtime_priority`: the unit's
LimitRTPRIO= matches the local value, and a push above it would drop the deciding loop to
ordinary priority), how fresh a signed command must be
(`control.*`: a pushed config must not loosen the checks that let it in), the operator tools' own
settings (`fleet.*`), where its pages are served and the names they answer to (`display.listen`,
`display.hosts`: a push must not show them beyond the machine) and whether camera frames may leave
it at all (`display.aim`, the aiming page), where it keeps its files, how it reaches the broker, how
it is wired, which camera it reads, which keys anchor its trust, and the privacy opt-ins that a
venue grants on site (`privacy.allow_snapshot`). A desired value equal to the local one is accepted
(a full config dump may be pushed back), a different one is an error naming the key. Keys outside
`LIVE` take effect only after a restart. Secrets (`SECRETS`) are refused whatever their value and
never shown in a report.

What may change remotely stays within bounds (`BOUNDS`, `SUBSET_OF_LOCAL`, docs/protocol.md section
6.5) tighter than the schema's, so a broker login cannot loosen entry: a code may not live longer or
be skewed further, passback may not be switched off, and no status the local file refuses may be let
in. A remote value equal to the local one is again accepted (it changes nothing).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from ..codes.control import MAX_CONFIG_VERSION
from ..config import Config, from_mapping, key_name, to_mapping
from ..errors import ConfigError, ConfigRejected

MAX_DESIRED_BYTES = 64 * 1024
_MAX_INT = 2**63  # beyond a 64-bit integer no config value means anything; floats would overflow
#: Versions are integers a JSON reader (an operator's dashboard, say) keeps exact: below 2^53.
MAX_VERSION = MAX_CONFIG_VERSION
#: How far above the applied version a new one may jump. Versions only grow, so one that leaped to
#: the top of the range would leave no room for the next push: a sentry refuses such a leap, and an
#: operator whose tool was fooled (a device's report is not signed) still gets in with a sane one.
MAX_VERSION_STEP = 2**32

#: Keys set on the device only. "section.*" covers a whole section.
LOCAL_ONLY = frozenset(
    {
        "device.*",
        "gate.fail_mode",
        "gate.realtime_priority",
        "control.*",
        "trust.file",
        "trust.root_key",
        "outbox.path",
        "privacy.authority_key",
        "privacy.allow_snapshot",
        "camera.source",
        "camera.path",
        "camera.scene",
        "gpio.*",
        "mqtt.host",
        "mqtt.port",
        "mqtt.username",
        "mqtt.password",
        "mqtt.password_file",
        "mqtt.ca",
        "mqtt.cert",
        "mqtt.key",
        "mqtt.keepalive_s",
        "fleet.*",
        "ingest.*",
        "display.listen",
        "display.hosts",
        "display.aim",
        "voice.output",
        "voice.device",
    }
)

#: Keys whose new value the running process picks up through `on_applied` listeners (the daemon
#: swaps them in); every other key takes effect at the next restart.
LIVE = frozenset(
    {
        "es1.*",
        "dcc.*",
        "trust.max_age_h",
        "trust.stale_policy",
        "health.interval_s",
        "clock.unsynced_clock",
        "log.level",
    }
)

#: Remote values must stay within these (lowest, highest); None is no bound on that side.
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "es1.skew_s": (None, 300),
    "es1.max_age_s": (None, 600),
    "gate.passback_s": (5, None),
}

#: Remote lists that may only keep or drop members of the local file's list.
SUBSET_OF_LOCAL = frozenset({"es1.accept_status"})

#: Values replaced by SECRET_MARK in reports: a report is retained on the broker for anyone with
#: read access to the device's topics.
SECRETS = frozenset({"mqtt.password"})
SECRET_MARK = "<set>"

def matches(path: str, patterns: Iterable[str]) -> bool:
    section = path.split(".", 1)[0]
    return any(p == path or p == f"{section}.*" for p in patterns)


def flatten(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """`{section: {key: value}}` -> `{"section.key": value}` (only two levels exist)."""
    flat: dict[str, Any] = {}
    for section, keys in mapping.items():
        if isinstance(keys, Mapping):
            for key, value in keys.items():
                flat[f"{section}.{key}"] = value
        else:
            flat[str(section)] = keys
    return flat


def merge(lower: Mapping[str, Any], upper: Mapping[str, Any]) -> dict[str, Any]:
    """Overlay `upper` on `lower` key by key within each section (lists are replaced whole)."""
    out: dict[str, Any] = {name: dict(keys) for name, keys in lower.items()}
    for name, keys in upper.items():
        if isinstance(keys, Mapping) and isinstance(out.get(name), dict):
            out[name].update(keys)
        else:
            out[name] = dict(keys) if isinstance(keys, Mapping) else keys
    return out


def redacted(config: Config) -> dict[str, Any]:
    """The config as a report shows it: plain mappings, secrets replaced by a mark."""
    out = to_mapping(config)
    for path in SECRETS:
        section, key = path.split(".", 1)
        if isinstance(out.get(section), dict) and out[section].get(key) is not None:
            out[section][key] = SECRET_MARK
    return out


def check_document(doc: Any) -> tuple[int, Mapping[str, Any]]:
    """The version and the config of a desired document; ConfigRejected naming what is wrong."""
    if not isinstance(doc, Mapping):
        raise ConfigRejected([("", "must be a map with version and config")])
    problems = [(key_name(k), "unknown key") for k in doc if k not in ("version", "config")]
    version = doc.get("version")
    if "version" not in doc:
        problems.append(("version", "missing"))
    elif isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < MAX_VERSION:
        problems.append(("version", "must be a whole number from 0 to 2^53 - 1"))
    config = doc.get("config")
    if "config" not in doc:
        problems.append(("config", "missing"))
    elif not isinstance(config, Mapping):
        problems.append(("config", "must be a map of sections"))
    if problems:
        raise ConfigRejected(problems)
    return version, config  # type: ignore[return-value]


def _check_shape(config: Mapping[str, Any]) -> None:
    """Two levels of text keys, values that the schema can judge; before `from_mapping` sees it."""
    problems: list[tuple[str, str]] = []
    for section, keys in config.items():
        if not isinstance(section, str):
            problems.append((key_name(section), "section names must be text"))
            continue
        if not isinstance(keys, Mapping):
            problems.append((section, "must be a map of keys"))
            continue
        for key, value in keys.items():
            if not isinstance(key, str):
                problems.append((f"{section}.{key_name(key)}", "key names must be text"))
                continue
            items = value if isinstance(value, list) else [value]
            for item in items:
                # Plain data only, even for a key the other overlay masks: each overlay is kept in the
                # state store as it came, and a CBOR tag or a byte string has no JSON form there.
                if item is not None and not isinstance(item, str | int | float):
                    problems.append((f"{section}.{key}", "must be a text, a number, true or false or a list"))
                    break
                if isinstance(item, int) and not isinstance(item, bool) and abs(item) >= _MAX_INT:
                    problems.append((f"{section}.{key}", "number out of range"))
                    break
                if isinstance(item, float) and not math.isfinite(item):
                    problems.append((f"{section}.{key}", "must be a finite number"))
                    break
    if problems:
        raise ConfigRejected(problems)


def build(local: Config, site: Mapping[str, Any], device: Mapping[str, Any]) -> Config:
    """The effective config from the local one and two overlays; ConfigRejected listing every problem."""
    _check_shape(site)
    _check_shape(device)
    wanted = merge(site, device)
    problems: list[tuple[str, str]] = []
    local_map = to_mapping(local)
    for path, value in flatten(wanted).items():
        section, key = path.split(".", 1)
        if matches(path, SECRETS):
            # Always refused, whatever the value: accepting an equal one would let anyone who can
            # publish a desired config test guesses of the secret.
            problems.append((path, "is a secret; it is set on the device only"))
        elif local_map.get(section, {}).get(key, value) == value:
            continue  # equal to the local value: changes nothing, whatever the rules below say
        elif matches(path, LOCAL_ONLY):
            problems.append((path, "is set on the device only; it cannot be changed remotely"))
        else:
            problems.extend(_out_of_bounds(path, value, local_map.get(section, {}).get(key)))
    for section in wanted:
        if section not in local_map and section in {f.name for f in dataclasses.fields(Config)}:
            problems.append((section, f"the {section} section is set on the device only"))
    try:
        config = from_mapping(wanted, base=local)
    except ConfigError as exc:
        problems.extend(exc.problems)
        config = None
    except (ValueError, TypeError, OverflowError) as exc:  # a value the schema's rules choke on
        problems.append(("config", f"cannot be read ({type(exc).__name__})"))
        config = None
    if problems or config is None:
        unique = sorted(set(problems))
        raise ConfigRejected(unique)
    return config


def _out_of_bounds(path: str, value: Any, local: Any) -> list[tuple[str, str]]:
    """The problem with a remote `value` that the remote bounds refuse; ill-typed values are left to
    the schema, which names them."""
    if path in BOUNDS and isinstance(value, int | float) and not isinstance(value, bool):
        low, high = BOUNDS[path]
        if low is not None and value < low:
            return [(path, f"must be at least {low:g} when set remotely")]
        if high is not None and value > high:
            return [(path, f"must be at most {high:g} when set remotely")]
    if path in SUBSET_OF_LOCAL and isinstance(value, list) and isinstance(local, list):
        extra = [item for item in value if item not in local]
        if extra:
            return [(path, f"may only keep values of the local file's {sorted(local)!r} when set remotely")]
    return []


def strip_local(local: Config, overlay: Mapping[str, Any]) -> dict[str, Any]:
    """The overlay without local-only keys (`build` has checked that they equal the local values):
    the store keeps only what an operator may change, and a later edit of the local file is
    not masked by a stale copy of it."""
    out: dict[str, Any] = {}
    for section, keys in overlay.items():
        kept = {k: v for k, v in keys.items() if not matches(f"{section}.{k}", LOCAL_ONLY)}
        if kept:
            out[section] = kept
    return out
