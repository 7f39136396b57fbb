"""Configuration: the schema, its embedded defaults, TOML loading and validation.

Every command works with no file at all: the defaults below are a runnable demo sentry (synthetic camera,
mock pins, outbox in the user's state directory, no broker). A file, or a config pushed by an operator,
is validated whole against the schema before anything uses it; each problem is reported with its key path
(`gate.pulse_ms: must be at least 50`) so that a typo is never silently ignored.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError


def _state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "edge-sentry"


def _rule(check: Callable[[Any], bool], message: str) -> dict[str, Any]:
    return {"check": check, "message": message}


def _between(low: float, high: float) -> dict[str, Any]:
    return _rule(lambda v: low <= v <= high, f"must be between {low:g} and {high:g}")


def _one_of(*choices: str) -> dict[str, Any]:
    return _rule(lambda v: v in choices, "must be one of " + ", ".join(repr(c) for c in choices))


def _non_empty() -> dict[str, Any]:
    return _rule(lambda v: bool(v.strip()), "must not be empty")


def _pin() -> dict[str, Any]:
    return _between(0, 27)


# Site and device ids are levels of the MQTT topics `sentry/v1/{site}/{device}` (docs/protocol.md 6.1): a
# separator or a wildcard in one would widen a subscription or an ACL grant, and the device slot `all`
# addresses a whole site. link/topics.py refuses them too, but only once a broker is dialled.
_TOPIC_FORBIDDEN = ("/", "+", "#", "\0")
_SITE_WIDE = "all"


def _topic_level(*reserved: str) -> dict[str, Any]:
    message = "must be one MQTT topic level: not empty, without '/', '+', '#' or NUL"
    if reserved:
        message += ", and not " + " or ".join(repr(r) for r in reserved) + " (reserved)"
    return _rule(
        lambda v: bool(v.strip()) and not any(c in v for c in _TOPIC_FORBIDDEN) and v not in reserved,
        message,
    )


@dataclass(frozen=True)
class DeviceConfig:
    """Who this sentry is: the identity every event and MQTT topic carries."""

    id: str = field(
        default_factory=lambda: "sentry-" + socket.gethostname(), metadata=_topic_level(_SITE_WIDE)
    )
    site: str = field(default="demo-site", metadata=_topic_level())
    venue: str = field(default="demo-venue", metadata=_non_empty())
    entrance: str = field(default="main", metadata=_non_empty())
    venue_name: str = "Demo Venue"
    entrance_name: str = "Main entrance"
    state_dir: str = field(default_factory=lambda: str(_state_dir()))


@dataclass(frozen=True)
class TrustConfig:
    """Where the trust list lives and what happens when it grows old."""

    file: str | None = None
    max_age_h: float = field(default=24.0, metadata=_between(0.1, 24 * 365))
    stale_policy: str = field(default="verify", metadata=_one_of("verify", "deny"))
    root_key: str | None = None


@dataclass(frozen=True)
class Es1Config:
    """Freshness rules of the sentry's own dynamic codes."""

    max_age_s: int = field(default=60, metadata=_between(1, 86400))
    skew_s: int = field(default=30, metadata=_between(0, 3600))
    accept_status: list[int] = field(
        default_factory=lambda: [0],
        metadata=_rule(lambda v: bool(v) and all(s in (0, 1, 2) for s in v), "must list statuses 0-2"),
    )


_DCC_KINDS = ("vaccination", "test", "recovery")


def _texts(message: str) -> dict[str, Any]:
    return _rule(lambda v: all(t.strip() for t in v) and len(set(v)) == len(v), message)


@dataclass(frozen=True)
class DccConfig:
    """Which EU Digital COVID Certificates open the gate: the venue's rule set, as data, not code.

    The defaults follow the EU's common acceptance periods where they exist (14 days after a vaccine
    dose, 270 days for a primary series, 180 days after recovery) and take PCR and rapid antigen tests
    up to 48 hours old (between the EU's 24 hours for rapid and 72 for PCR tests, one key for both).
    `accept = []` takes no DCC at all (`unsupported`, no signature is checked). A zero
    `vaccination_max_days` or `recovery_max_days` means no limit of the venue's own (the certificate's
    own `du` still bounds a recovery). Empty `products` accepts every vaccine product; empty
    `target_disease` every disease code. Dates are compared as UTC calendar days.

    `skew_s` is the clock tolerance around the CWT's iat and exp, the signer certificate's validity and
    a test's sample time. It is a key of its own rather than `es1.skew_s` because that one is tuned
    together with ES1's one-minute codes, while a DCC lives for months: a venue may well want to be
    stricter, or more lenient, with one than with the other. Same default, 30 s.
    """

    accept: list[str] = field(
        default_factory=lambda: list(_DCC_KINDS),
        metadata=_rule(
            lambda v: all(k in _DCC_KINDS for k in v) and len(set(v)) == len(v),
            "must list distinct kinds from 'vaccination', 'test', 'recovery'",
        ),
    )
    skew_s: int = field(default=30, metadata=_between(0, 3600))
    target_disease: str = "840539006"
    vaccination_complete: bool = True
    vaccination_min_days: int = field(default=14, metadata=_between(0, 3650))
    vaccination_max_days: int = field(default=270, metadata=_between(0, 3650))
    products: list[str] = field(default_factory=list, metadata=_texts("must list distinct product codes"))
    test_types: list[str] = field(
        default_factory=lambda: ["LP6464-4", "LP217198-3"],
        metadata=_texts("must list distinct test type codes"),
    )
    test_result_negative: str = field(default="260415000", metadata=_non_empty())
    test_max_age_h: int = field(default=48, metadata=_between(1, 8760))
    recovery_max_days: int = field(default=180, metadata=_between(0, 3650))


@dataclass(frozen=True)
class GateConfig:
    """Timings and policy of the gate; the relay bound `max_open_s` is never exceeded."""

    pulse_ms: int = field(default=1000, metadata=_between(50, 10000))
    max_open_s: float = field(default=10.0, metadata=_between(0.1, 120))
    relay_rest_ms: int = field(default=500, metadata=_between(0, 60000))
    grant_window_s: float = field(default=8.0, metadata=_between(0.5, 120))
    held_open_s: float = field(default=20.0, metadata=_between(1, 3600))
    passback_s: int = field(default=30, metadata=_between(0, 86400))
    assist_window_s: float = field(default=20.0, metadata=_between(1, 600))
    fail_mode: str = field(default="secure", metadata=_one_of("secure", "safe"))
    light_ms: int = field(default=1500, metadata=_between(50, 10000))
    beep_accept_ms: int = field(default=100, metadata=_between(0, 5000))
    beep_deny_ms: int = field(default=600, metadata=_between(0, 5000))
    # SCHED_FIFO priority of the loop that reads frames and decides (see priority.py); 0: ordinary.
    realtime_priority: int = field(default=10, metadata=_between(0, 99))


@dataclass(frozen=True)
class CameraConfig:
    """Which frame source feeds the decoder, and the geometry of what it analyses."""

    source: str = field(default="synthetic", metadata=_one_of("picamera2", "replay", "synthetic"))
    fps: float = field(default=15.0, metadata=_between(0.1, 120))
    width: int = field(default=1280, metadata=_between(160, 4656))
    height: int = field(default=720, metadata=_between(120, 3496))
    lores_width: int = field(default=1280, metadata=_between(160, 2328))
    lores_height: int = field(default=720, metadata=_between(120, 1748))
    path: str | None = None
    loop: bool = True
    scene: str = "demo"
    timeout_s: float = field(default=2.0, metadata=_between(0.05, 60))
    fault_after_s: float = field(default=5.0, metadata=_between(0.1, 600))


@dataclass(frozen=True)
class DecoderConfig:
    """How zxing-cpp is driven; the defaults are the ones the decode benchmark chose."""

    scale: int = field(default=2, metadata=_between(1, 4))
    # Retry regions at full resolution around half-seen codes and code-like textures, never the whole frame.
    retry_full: bool = True
    binarizer: str = field(
        default="LocalAverage",
        metadata=_one_of("LocalAverage", "GlobalHistogram", "FixedThreshold", "BoolCast"),
    )
    try_invert: bool = False
    try_rotate: bool = True


@dataclass(frozen=True)
class GpioConfig:
    """Pin factory and BCM pin numbers of the gate's parts."""

    pin_factory: str = field(default="auto", metadata=_one_of("auto", "mock", "lgpio", "rpigpio"))
    relay: int = field(default=17, metadata=_pin())
    green: int = field(default=27, metadata=_pin())
    red: int = field(default=22, metadata=_pin())
    buzzer: int = field(default=23, metadata=_pin())
    door: int = field(default=24, metadata=_pin())
    staff: int = field(default=25, metadata=_pin())
    exit: int = field(default=5, metadata=_pin())
    relay_active_high: bool = True
    bounce_ms: int = field(default=20, metadata=_between(0, 1000))


@dataclass(frozen=True)
class OutboxConfig:
    """The durable queue of events waiting for the broker."""

    path: str = field(default_factory=lambda: str(_state_dir() / "outbox"))
    max_events: int = field(default=200_000, metadata=_between(100, 10_000_000))
    queue_size: int = field(default=10_000, metadata=_between(10, 1_000_000))


@dataclass(frozen=True)
class MqttConfig:
    """The fleet broker; absent from the config means the sentry runs without one."""

    host: str = field(default="localhost", metadata=_non_empty())
    port: int = field(default=1883, metadata=_between(1, 65535))
    username: str | None = None
    password: str | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    keepalive_s: int = field(default=30, metadata=_between(5, 3600))
    password_file: str | None = None
    batch_size: int = field(default=100, metadata=_between(1, 10000))
    backoff_min_s: float = field(default=1.0, metadata=_between(0.05, 600))
    backoff_max_s: float = field(default=60.0, metadata=_between(0.1, 3600))
    max_payload: int = field(default=262144, metadata=_between(1024, 16 << 20))


@dataclass(frozen=True)
class LogConfig:
    """How the daemon writes its event log on standard output."""

    format: str = field(default="human", metadata=_one_of("human", "json"))
    level: str = field(default="info", metadata=_one_of("debug", "info", "warning", "error"))


@dataclass(frozen=True)
class PrivacyConfig:
    """How long events live and who may read the subject."""

    retention_days: float = field(default=14.0, metadata=_between(0.01, 3650))
    authority_key: str | None = None
    allow_snapshot: bool = False


@dataclass(frozen=True)
class HealthConfig:
    interval_s: float = field(default=60.0, metadata=_between(1, 86400))


@dataclass(frozen=True)
class ClockConfig:
    """What time-based checks do before the clock is known to be synchronised (a Pi has no RTC)."""

    unsynced_clock: str = field(default="verify", metadata=_one_of("verify", "deny"))


@dataclass(frozen=True)
class ControlConfig:
    """How fresh a signed command must be (docs/protocol.md, "Signed control plane"); local only."""

    skew_s: int = field(default=30, metadata=_between(1, 3600))
    max_deadline_s: int = field(default=300, metadata=_between(1, 86400))


@dataclass(frozen=True)
class FleetConfig:
    """The operator's own tools (`edge-sentry fleet`): which key signs what they send."""

    operator_key: str | None = None


@dataclass(frozen=True)
class IngestConfig:
    """The fleet back end's ingester (`edge-sentry fleet ingest`): where it stores, how it batches.

    `max_future_s` bounds how far ahead of its arrival an event's own time may be: a sentry whose
    clock runs ahead would otherwise write scans into the future of every report. `db` is the
    database URL (`postgresql://...`) or SQLite file; none: `fleet.sqlite3` in `device.state_dir`.
    """

    db: str | None = None
    max_future_s: float = field(default=300.0, metadata=_between(1, 7 * 86400))
    group: str = field(default="ingest", metadata=_topic_level())
    batch_messages: int = field(default=50, metadata=_between(1, 10_000))
    batch_wait_s: float = field(default=0.2, metadata=_between(0.001, 60))
    session_expiry_s: int = field(default=86400, metadata=_between(60, 30 * 86400))
    progress_s: float = field(default=10.0, metadata=_between(0.1, 3600))
    retention_check_s: float = field(default=3600.0, metadata=_between(1, 86400))
    partitions_ahead_days: int = field(default=2, metadata=_between(0, 60))


#: The embedded default of `display.listen`: loopback, so the demo shows its pages on this machine
#: and nothing beyond it. `EDGE_SENTRY_DISPLAY_LISTEN` replaces this default (never a value a file
#: sets): the tests set it to "" so that the many sentries they start never contend for one port.
DISPLAY_LISTEN_ENV = "EDGE_SENTRY_DISPLAY_LISTEN"
_DISPLAY_LISTEN = "127.0.0.1:8080"


#: A DNS host name: labels of letters, digits and hyphens, separated by dots.
_HOST_NAME = re.compile(r"(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?")


def parse_listen(text: str) -> tuple[str, int] | None:
    """`HOST:PORT` (an IPv6 host in brackets, `[::1]:8080`) as (host, port); None when it is not one.

    The host must be an IP address or `localhost`: a name would need a DNS lookup at every start,
    and where the pages are seen must not depend on an answer from the network. Port 0 asks the
    system for any free port (the sentry logs which).
    """
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            return None
    elif ":" in host:
        return None  # an IPv6 address goes in brackets, or its last group would read as the port
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None
    return host, int(port)


@dataclass(frozen=True)
class DisplayConfig:
    """The sentry's pages (edge_sentry/pages/): where they are served, how the visitor display
    speaks and whether the camera aiming page is on. `listen = ""` serves none. The venue and
    entrance names shown are `device.venue_name` and `device.entrance_name`, the ones the entrance
    poster prints. The pages answer requests addressed to the address they are reached on, and to
    the names in `hosts` (empty by default)."""

    listen: str = field(
        default_factory=lambda: os.environ.get(DISPLAY_LISTEN_ENV, _DISPLAY_LISTEN),
        metadata=_rule(
            lambda v: v == "" or parse_listen(v) is not None,
            "must be HOST:PORT with an IP address or localhost (e.g. '127.0.0.1:8080', '[::1]:8080'), "
            "or '' for no pages",
        ),
    )
    # Names the pages answer to besides the address they are reached on (DNS rebinding: pages/hosts.py).
    hosts: list[str] = field(
        default_factory=list,
        metadata=_rule(
            lambda v: all(_HOST_NAME.fullmatch(h) for h in v) and len(set(v)) == len(v),
            "must list distinct host names without a port (e.g. 'sentry-north.local')",
        ),
    )
    language: str = field(default="en", metadata=_one_of("en", "zh"))
    # How long a result stays on the visitor display before the idle screen comes back.
    result_s: float = field(default=4.0, metadata=_between(1, 60))
    # The camera aiming page (`/aim`) for technicians: the only way camera frames leave the sentry,
    # so off unless set in the device's own file (a pushed config cannot turn it on).
    aim: bool = False
    # Pictures a second the aiming page gets: enough to aim by, few enough to cost the hot loop
    # nothing it notices (benchmarks/bench_aim.py).
    aim_fps: float = field(default=4.0, metadata=_between(0.5, 10))
VOICE_LANGUAGES = ("en", "zh")


@dataclass(frozen=True)
class VoiceConfig:
    """Spoken prompts at the gate (voice/): one short prompt per outcome, played off the hot path.

    `language` empty means the visitor display's language (`display.language`, "en" without a
    display section). `output` chooses the player like `gpio.pin_factory` chooses pins: "auto" is
    `aplay` on a Raspberry Pi and the simulated player elsewhere, decided from the hardware, never
    from whether tests run. `device` is the ALSA device `aplay -D` opens. `volume` (0-100) is
    rendered into the prompts (espeak-ng's amplitude), so changing it renders them again.
    """

    enabled: bool = True
    language: str = field(default="", metadata=_one_of("", *VOICE_LANGUAGES))
    volume: int = field(default=75, metadata=_between(0, 100))
    output: str = field(default="auto", metadata=_one_of("auto", "aplay", "simulated"))
    device: str = field(default="default", metadata=_non_empty())


@dataclass(frozen=True)
class Config:
    device: DeviceConfig = field(default_factory=DeviceConfig)
    trust: TrustConfig = field(default_factory=TrustConfig)
    es1: Es1Config = field(default_factory=Es1Config)
    dcc: DccConfig = field(default_factory=DccConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    mqtt: MqttConfig | None = None
    log: LogConfig = field(default_factory=LogConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    fleet: FleetConfig = field(default_factory=FleetConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    voice: VoiceConfig = field(default_factory=VoiceConfig)


_SECTIONS: dict[str, type] = {
    "device": DeviceConfig,
    "trust": TrustConfig,
    "es1": Es1Config,
    "dcc": DccConfig,
    "gate": GateConfig,
    "camera": CameraConfig,
    "decoder": DecoderConfig,
    "gpio": GpioConfig,
    "outbox": OutboxConfig,
    "mqtt": MqttConfig,
    "log": LogConfig,
    "privacy": PrivacyConfig,
    "health": HealthConfig,
    "clock": ClockConfig,
    "control": ControlConfig,
    "fleet": FleetConfig,
    "ingest": IngestConfig,
    "display": DisplayConfig,
    "voice": VoiceConfig,
}


def _type_name(tp: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if typing.get_origin(tp) is list:
        return "a list of " + _type_name(typing.get_args(tp)[0]).removeprefix("a ").removeprefix("an ")
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check `value` against a field type; TOML integers are accepted where a number is asked."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return True, None
        return _coerce(value, args[0])
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            return False, None
        out = []
        for v in value:
            ok, c = _coerce(v, item)
            if not ok:
                return False, None
            out.append(c)
        return True, out
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False, None
        try:
            return True, float(value)
        except OverflowError:  # an integer past 1e308: no number a key here could use
            return False, None
    if tp is str:
        return isinstance(value, str), value
    return False, None


def key_name(key: Any) -> str:
    """A key as a problem's path names it, whatever the mapping's sender put there.

    Keys that come over the link are decoded CBOR, so they need not be text: an integer of more than
    4300 digits cannot even be turned into text (Python raises), and the error meant to name it would
    itself crash. Such keys are named by their type, and by size for an integer.
    """
    if isinstance(key, str):
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return repr(key) if key.bit_length() <= 64 else f"<an integer of {key.bit_length()} bits>"
    if isinstance(key, bool | float | None):
        return repr(key)
    return f"<a {type(key).__name__}>"


def _build_section(name: str, cls: type, data: Any, problems: list[tuple[str, str]]) -> Any:
    if not isinstance(data, Mapping):
        problems.append((name, "must be a table of keys"))
        return cls()
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, raw in data.items():
        path = f"{name}.{key_name(key)}"
        if key not in known:
            problems.append((path, "unknown key"))
            continue
        ok, value = _coerce(raw, hints[key])
        if not ok:
            problems.append((path, f"must be {_type_name(hints[key])}, not {type(raw).__name__}"))
            continue
        rule = known[key].metadata.get("check")
        if rule is not None and value is not None and not rule(value):
            problems.append((path, known[key].metadata["message"]))
            continue
        values[key] = value
    return cls(**values)


def from_mapping(data: Mapping[str, Any], base: Config | None = None) -> Config:
    """Build a Config from nested mappings, over `base` (defaults when None); raise ConfigError.

    Keys absent from `data` keep their value from `base`, so an operator may push a partial config.
    """
    base = base or Config()
    problems: list[tuple[str, str]] = []
    if not isinstance(data, Mapping):
        raise ConfigError([("", "must be a table of sections")])
    sections: dict[str, Any] = {}
    for name, section in data.items():
        cls = _SECTIONS.get(name)
        if cls is None:
            problems.append((key_name(name), "unknown section"))
            continue
        current = getattr(base, name)
        merged = dict(dataclasses.asdict(current)) if current is not None else {}
        if isinstance(section, Mapping):
            merged.update(section)
            sections[name] = _build_section(name, cls, merged, problems)
        else:
            _build_section(name, cls, section, problems)
    if problems:
        raise ConfigError(problems)
    config = dataclasses.replace(base, **sections)
    _check_whole(config, problems)
    if problems:
        raise ConfigError(problems)
    return config


def _check_whole(config: Config, problems: list[tuple[str, str]]) -> None:
    """Rules that tie keys together; each problem is named by the key an operator should change."""
    gate = config.gate
    if gate.pulse_ms / 1000 > gate.max_open_s:
        problems.append(("gate.pulse_ms", "must not exceed gate.max_open_s"))
    if config.display.aim and not config.display.listen:
        problems.append(("display.aim", AIM_NEEDS_LISTEN))
    if config.camera.source == "replay" and not config.camera.path:
        problems.append(("camera.path", "is required when camera.source is 'replay'"))
    mqtt = config.mqtt
    if mqtt is not None:
        if mqtt.backoff_min_s > mqtt.backoff_max_s:
            problems.append(("mqtt.backoff_min_s", "must not exceed mqtt.backoff_max_s"))
        if mqtt.password is not None and mqtt.password_file is not None:
            problems.append(("mqtt.password_file", "give mqtt.password or mqtt.password_file, not both"))
        if (mqtt.cert is None) != (mqtt.key is None):
            problems.append(("mqtt.key" if mqtt.key is None else "mqtt.cert", "cert and key go together"))
        elif mqtt.cert is not None and mqtt.ca is None:
            # Without a CA there is no TLS at all: the client certificate would silently go unused.
            problems.append(("mqtt.ca", CLIENT_CERT_NEEDS_CA))
        exposed = plaintext_password(mqtt)
        if exposed is not None:
            problems.append((exposed, plaintext_password_message(mqtt.host)))
    pins = {k: getattr(config.gpio, k) for k in ("relay", "green", "red", "buzzer", "door", "staff", "exit")}
    seen: dict[int, str] = {}
    for key, pin in pins.items():
        if pin in seen:
            problems.append((f"gpio.{key}", f"pin {pin} is already used by gpio.{seen[pin]}"))
        seen[pin] = key


AIM_NEEDS_LISTEN = "needs display.listen: the aiming page is served with the other pages"


def loopback_host(host: str) -> bool:
    """Whether `host` names this machine without a network in between: `localhost`, 127.0.0.0/8 or
    ::1. Decided from the text alone, never by a DNS lookup, which an attacker on the network could
    answer."""
    name = host.strip().rstrip(".").lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def plaintext_password(mqtt: MqttConfig) -> str | None:
    """The key of a password that would cross the network in plaintext (no `mqtt.ca`, so no TLS, to
    a host that is not loopback), or None when the password is safe or there is none."""
    if mqtt.ca is not None or loopback_host(mqtt.host):
        return None
    if mqtt.password_file is not None:
        return "mqtt.password_file"
    if mqtt.password is not None:
        return "mqtt.password"
    return None


CLIENT_CERT_NEEDS_CA = "is required with mqtt.cert and mqtt.key (TLS needs the broker's CA)"


def plaintext_password_message(host: str) -> str:
    return (f"a password is never sent without TLS to {host!r}, which is not the loopback host: "
            "set mqtt.ca (and use the broker's TLS port), or log in with a client certificate")


def load(path: str | os.PathLike[str] | None) -> Config:
    """Read a TOML config file (None: the embedded defaults); raise ConfigError on any problem."""
    if path is None:
        return Config()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([("", f"config file {os.fspath(path)!r} not found")]) from None
    except OSError as exc:
        raise ConfigError([("", f"cannot read {os.fspath(path)!r}: {exc.strerror}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([("", f"{os.fspath(path)!r} is not valid TOML: {exc}")]) from None
    except RecursionError:
        # tomllib reads nested arrays and inline tables by recursion: a few thousand brackets end it.
        raise ConfigError([("", f"{os.fspath(path)!r} is not valid TOML: nested too deeply")]) from None
    except UnicodeDecodeError as exc:
        # TOML is UTF-8 by definition; a corrupt or binary file must not end in a traceback
        bad = exc.object[exc.start]
        where = f"byte 0x{bad:02x} at offset {exc.start}"
        raise ConfigError([("", f"{os.fspath(path)!r} is not UTF-8 text ({where})")]) from None
    except ValueError:
        # Past its own syntax errors, tomllib lets Python's int() raise: an integer of more than
        # 4300 digits is refused by the interpreter's limit on integer-to-text conversion.
        message = f"{os.fspath(path)!r} is not valid TOML: a number too long to read"
        raise ConfigError([("", message)]) from None
    return from_mapping(data)


def to_mapping(config: Config) -> dict[str, Any]:
    """The config as plain nested dicts (sections that are absent are left out)."""
    return {k: v for k, v in dataclasses.asdict(config).items() if v is not None}
