"""The fleet inventory: which sites, devices, operators and ingesters the broker knows (TOML).

```toml
[broker]
hosts = ["mqtt.example.net"]    # names (and IPs) the sentries connect to: the server certificate's SANs
port = 8883                     # optional (8883); the devices' TLS listener
operator_port = 8884            # optional (8884); the TLS listener of operators and ingesters
bind = "0.0.0.0"                # optional (all interfaces)
dir = "/etc/mosquitto/edge-sentry"  # optional: where the broker's files are installed (default: the
                                    # output's broker folder, for a broker on the same host)

[sites]
arena = ["gate-1", "gate-2"]    # site id -> its devices' ids

[operators]
alice = ["arena"]               # operator -> the sites they may read and control

[ingesters]
backend-1 = ["arena"]           # back-end ingester -> the sites whose scans and events it reads
```

Every name becomes a certificate's CN and so the broker's username, which the ACL is keyed on:
names are one namespace across devices, operators and ingesters, and a device id is unique across
the fleet (two sites with a `gate-1` would share one login and one set of grants). Names are kept
to letters, digits, `.`, `_` and `-`: they are written into the ACL file line by line, and a space,
newline or wildcard in one would grant more than it names. Pure apart from `load()` reading the
file; every problem is reported at once, by key path, and nothing is written.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InventoryError
from ..link.topics import SITE_WIDE

DEFAULT_PORT = 8883
DEFAULT_OPERATOR_PORT = 8884
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")
_SECTIONS = ("broker", "sites", "operators", "ingesters")
_BROKER_KEYS = ("hosts", "port", "operator_port", "bind", "dir")


@dataclass(frozen=True)
class Device:
    id: str
    site: str


@dataclass(frozen=True)
class Client:
    """An operator or an ingester: a login with rights over some sites."""

    name: str
    sites: tuple[str, ...]


@dataclass(frozen=True)
class Inventory:
    hosts: tuple[str, ...]
    port: int
    operator_port: int
    bind: str | None
    dir: Path | None
    sites: tuple[str, ...]
    devices: tuple[Device, ...]
    operators: tuple[Client, ...]
    ingesters: tuple[Client, ...]


def load(path: Path) -> Inventory:
    """Read and check the inventory file; InventoryError (every problem) if it cannot be used."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise InventoryError([("", f"{path}: cannot read ({exc.strerror})")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError([("", f"{path}: not TOML ({exc})")]) from None
    except UnicodeDecodeError as exc:
        raise InventoryError([("", f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
                                   f"at offset {exc.start})")]) from None
    return parse(data)


def parse(data: Mapping[str, Any]) -> Inventory:
    """Check an inventory mapping (as TOML gives it); InventoryError with every problem found."""
    problems: list[tuple[str, str]] = []
    for key in data:
        if key not in _SECTIONS:
            problems.append((key, "unknown section"))
    broker = _table(data, "broker", problems, required=True)
    hosts, (port, operator_port), bind, folder = _broker(broker, problems)
    sites, devices = _sites(_table(data, "sites", problems, required=True), problems)
    operators = _clients(_table(data, "operators", problems), "operators", sites, problems)
    ingesters = _clients(_table(data, "ingesters", problems), "ingesters", sites, problems)
    _unique_logins(devices, operators, ingesters, problems)
    if problems:
        raise InventoryError(problems)
    return Inventory(hosts, port, operator_port, bind, folder, sites, devices, operators, ingesters)


def _table(data: Mapping[str, Any], key: str, problems: list[tuple[str, str]], *,
           required: bool = False) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        if required:
            problems.append((key, "missing section"))
        return {}
    if not isinstance(value, Mapping):
        problems.append((key, "must be a table"))
        return {}
    return value


def _broker(broker: Mapping[str, Any], problems: list[tuple[str, str]]
            ) -> tuple[tuple[str, ...], tuple[int, int], str | None, Path | None]:
    for key in broker:
        if key not in _BROKER_KEYS:
            problems.append((f"broker.{key}", "unknown key"))
    hosts: tuple[str, ...] = ()
    raw_hosts = broker.get("hosts")
    if not isinstance(raw_hosts, list) or not raw_hosts or not all(isinstance(h, str) for h in raw_hosts):
        problems.append(("broker.hosts", "must be a non-empty list of host names or IP addresses"))
    else:
        hosts = tuple(raw_hosts)
        for host in hosts:
            if not _is_host(host):
                problems.append(("broker.hosts", f"{host!r} is neither a host name nor an IP address"))
        if len(set(hosts)) != len(hosts):
            problems.append(("broker.hosts", "names a host twice"))
    port = _port(broker, "port", DEFAULT_PORT, problems)
    operator_port = _port(broker, "operator_port", DEFAULT_OPERATOR_PORT, problems)
    if port == operator_port:
        problems.append(("broker.operator_port", "must differ from broker.port: the devices' listener "
                         "and the operators' listener are two"))
    bind = broker.get("bind")
    if bind is not None and not (isinstance(bind, str) and _is_ip(bind)):
        problems.append(("broker.bind", "must be an IP address"))
        bind = None
    folder = broker.get("dir")
    if folder is not None and not (isinstance(folder, str) and Path(folder).is_absolute()
                                   and plain_path(folder)):
        problems.append(("broker.dir", "must be an absolute path without spaces or control characters"))
        folder = None
    return hosts, (port, operator_port), bind, Path(folder) if folder is not None else None


def _port(broker: Mapping[str, Any], key: str, default: int, problems: list[tuple[str, str]]) -> int:
    port = broker.get(key, default)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        problems.append((f"broker.{key}", "must be a port number, 1 to 65535"))
        return default
    return port


def _sites(table: Mapping[str, Any], problems: list[tuple[str, str]]
           ) -> tuple[tuple[str, ...], tuple[Device, ...]]:
    devices: list[Device] = []
    for site, ids in table.items():
        where = f"sites.{site}"
        _check_name(site, where, "site id", problems)
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            problems.append((where, "must be a list of device ids"))
            continue
        for device in ids:
            if device == SITE_WIDE:
                problems.append((where, f"{SITE_WIDE!r} names the whole site, not a device"))
            else:
                _check_name(device, where, "device id", problems)
            devices.append(Device(device, site))
    return tuple(table), tuple(devices)


def _clients(table: Mapping[str, Any], section: str, sites: tuple[str, ...],
             problems: list[tuple[str, str]]) -> tuple[Client, ...]:
    clients: list[Client] = []
    for name, their_sites in table.items():
        where = f"{section}.{name}"
        _check_name(name, where, "name", problems)
        if (not isinstance(their_sites, list) or not their_sites
                or not all(isinstance(s, str) for s in their_sites)):
            problems.append((where, "must be a non-empty list of site ids"))
            continue
        unknown = [s for s in their_sites if s not in sites]
        if unknown:
            problems.append((where, f"unknown site(s) {', '.join(map(repr, unknown))}: not in [sites]"))
        clients.append(Client(name, tuple(dict.fromkeys(their_sites))))
    return tuple(clients)


def _unique_logins(devices: tuple[Device, ...], operators: tuple[Client, ...],
                   ingesters: tuple[Client, ...], problems: list[tuple[str, str]]) -> None:
    """One certificate CN is one broker login: two identities with one name would share grants."""
    seen: dict[str, str] = {}
    named = ([(d.id, f"sites.{d.site}") for d in devices]
             + [(o.name, f"operators.{o.name}") for o in operators]
             + [(i.name, f"ingesters.{i.name}") for i in ingesters])
    for name, where in named:
        if name in seen:
            problems.append((where, f"{name!r} is already a login at {seen[name]}: names must be unique"))
        else:
            seen[name] = where


def _check_name(value: object, where: str, what: str, problems: list[tuple[str, str]]) -> None:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        problems.append((where, f"{what} {value!r} must be 1 to 64 letters, digits, '.', '_' or '-', "
                                "starting with a letter or digit"))


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_host(value: str) -> bool:
    return _is_ip(value) or bool(HOST.fullmatch(value))


def plain_path(value: str) -> bool:
    """Whether `value` can be written into mosquitto.conf, where a space or newline would end the
    value or add a line of its own."""
    return all(c.isprintable() and not c.isspace() for c in value)
