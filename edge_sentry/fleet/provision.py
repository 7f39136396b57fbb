"""Provisioning a fleet's broker identities from the inventory: certificates, mosquitto.conf, ACL.

The output folder, built up over runs (nothing in it is ever overwritten but the broker's config,
its ACL, its copy of the people CA, when the broker's host names change its server certificate, and
once, when the folder predates the people CA, operators' and ingesters' certificates):

```
ca/ca.crt, ca/ca.key                 the fleet CA: devices and the broker (keep the keys offline
ca/people.crt, ca/people.key         the people CA: operators and ingesters  once the fleet is set up)
broker/ca.crt, people-ca.crt, server.crt, server.key, mosquitto.conf, acl    what the broker installs
devices/{id}/mqtt.ca, mqtt.cert, mqtt.key                     what each sentry installs
operators/{name}/..., ingesters/{name}/...                    the same three files per login
```

Two CAs, because the broker's two listeners each take the certificates of one (`acl.mosquitto_conf`):
a device's certificate is refused where client ids are free. Every `mqtt.ca` is the fleet CA, which
signed the broker's certificate, so every client checks the broker the same way.

A folder provisioned before the people CA existed has operators and ingesters with fleet-CA
certificates: a run re-issues each of them from the people CA for the same key (MOVED), and the
login installs its new `mqtt.cert` and the operators' port.

A run first checks everything it finds (a key that does not match its certificate, a certificate
from another CA, a certificate without its key) and stops with ProvisionError before writing
anything; then it issues only what is missing. An existing key is never re-issued or overwritten
(`files.write_new`), so re-running after adding devices leaves every installed sentry working.
A key is written before its certificate, so a run cut short leaves at worst a key whose
certificate the next run issues. Private keys are 0600 from their first byte. Never logs a key.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from .. import files
from ..errors import ProvisionError, UsageError
from . import acl, pki
from .inventory import Inventory, plain_path

CA_NAME = "Edge Sentry fleet CA"
BROKER_NAME = "edge-sentry-broker"

# A sentry's `[mqtt] ca, cert, key` files, by these names in its folder.
MQTT_CA, MQTT_CERT, MQTT_KEY = "mqtt.ca", "mqtt.cert", "mqtt.key"
KINDS = {"device": "devices", "operator": "operators", "ingester": "ingesters"}

PEOPLE_CA_NAME = "Edge Sentry people CA"
PEOPLE = ("operator", "ingester")  # the kinds of login the people CA signs

NEW, KEPT, CERT_FOR_KEY, RENEWED = "new", "kept", "certificate issued for the existing key", "renewed"
MOVED = "re-issued by the people CA for the existing key; install the new mqtt.cert"


@dataclass(frozen=True)
class Outcome:
    """What a run did for one identity: `kind` (ca, broker, device, operator, ingester), its name,
    its folder, and one of NEW, KEPT, CERT_FOR_KEY, RENEWED, MOVED."""

    kind: str
    name: str
    folder: Path
    action: str


@dataclass
class _Leaf:
    kind: str
    name: str
    folder: Path
    key_path: Path
    cert_path: Path
    ca_path: Path
    server_names: tuple[str, ...] = ()
    key: ec.EllipticCurvePrivateKey | None = None
    action: str = NEW


def provision(inventory: Inventory, out: Path, *, now: dt.datetime | None = None,
              days: int = pki.CERT_DAYS) -> list[Outcome]:
    """Bring `out` in step with `inventory` (see the module docstring); return what was done."""
    now = now or dt.datetime.now(dt.UTC)
    out = Path(out)
    folder_on_broker = inventory.dir or (out / "broker").resolve()
    if not plain_path(str(folder_on_broker)):
        raise UsageError(f"{folder_on_broker}: has spaces or control characters, which mosquitto.conf "
                         "cannot hold; set [broker] dir in the inventory")
    fleet_paths = out / "ca" / "ca.key", out / "ca" / "ca.crt"
    people_paths = out / "ca" / "people.key", out / "ca" / "people.crt"
    found = _existing_ca(*fleet_paths), _existing_ca(*people_paths)
    if found[0] is None and found[1] is not None:
        raise ProvisionError(f"{people_paths[1]}: there is no fleet CA beside it")
    leaves = _leaves(inventory, out)
    for leaf in leaves:
        _check(leaf, found[0][1] if found[0] else None, found[1][1] if found[1] else None)

    # Everything found fits: from here on, only new files (and the broker's derived files).
    outcomes: list[Outcome] = []
    fleet_ca = _ca(CA_NAME, found[0], *fleet_paths, now, outcomes)
    people_ca = _ca(PEOPLE_CA_NAME, found[1], *people_paths, now, outcomes)
    ca_pem = pki.cert_pem(fleet_ca[1])
    for leaf in leaves:
        _issue(leaf, *(people_ca if leaf.kind in PEOPLE else fleet_ca), now, days)
        if not leaf.ca_path.exists():
            _new_file(leaf.ca_path, ca_pem, files.PUBLIC)
        outcomes.append(Outcome(leaf.kind, leaf.name, leaf.folder, leaf.action))

    broker = out / "broker"
    files.write_atomic(broker / acl.PEOPLE_CA_FILE, pki.cert_pem(people_ca[1]), files.PUBLIC)
    files.write_atomic(broker / acl.ACL_FILE, acl.acl_text(inventory).encode(), files.PUBLIC)
    files.write_atomic(broker / acl.CONF_FILE, acl.mosquitto_conf(inventory, folder_on_broker).encode(),
                       files.PUBLIC)
    return outcomes


def identity_folder(out: Path, kind: str, name: str) -> Path:
    """Where the files of one login live: `devices/{id}`, `operators/{name}`, `ingesters/{name}`."""
    return Path(out) / KINDS[kind] / name


def _leaves(inventory: Inventory, out: Path) -> list[_Leaf]:
    broker = out / "broker"
    leaves = [_Leaf("broker", BROKER_NAME, broker, broker / acl.SERVER_KEY, broker / acl.SERVER_CERT,
                    broker / acl.CA_FILE, server_names=inventory.hosts)]
    logins = ([("device", d.id) for d in inventory.devices]
              + [("operator", o.name) for o in inventory.operators]
              + [("ingester", i.name) for i in inventory.ingesters])
    for kind, name in logins:
        folder = identity_folder(out, kind, name)
        leaves.append(_Leaf(kind, name, folder, folder / MQTT_KEY, folder / MQTT_CERT, folder / MQTT_CA))
    return leaves


def _ca(name: str, found: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None,
        key_path: Path, cert_path: Path, now: dt.datetime, outcomes: list[Outcome]
        ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The CA found, or a new one written to its two files."""
    if found is not None:
        outcomes.append(Outcome("ca", name, cert_path.parent, KEPT))
        return found
    made = pki.make_ca(name, now)
    _new_file(key_path, pki.key_pem(made[0]), files.PRIVATE)
    _new_file(cert_path, pki.cert_pem(made[1]), files.PUBLIC)
    outcomes.append(Outcome("ca", name, cert_path.parent, NEW))
    return made


def _existing_ca(key_path: Path, cert_path: Path
                 ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None:
    if not key_path.exists() and not cert_path.exists():
        return None
    if not (key_path.exists() and cert_path.exists()):
        missing = cert_path if key_path.exists() else key_path
        raise ProvisionError(f"{missing}: missing, while the other half of the fleet CA is there")
    key, cert = pki.load_key(key_path), pki.load_cert(cert_path)
    if cert.public_key() != key.public_key():
        raise ProvisionError(f"{cert_path}: does not match {key_path}")
    return key, cert


def _check(leaf: _Leaf, ca_cert: x509.Certificate | None, people_cert: x509.Certificate | None) -> None:
    """Decide what `leaf` needs, or raise ProvisionError for files that do not fit together.
    `ca_cert` is the fleet CA's, `people_cert` the people CA's (either None when not made yet)."""
    has_key, has_cert = leaf.key_path.exists(), leaf.cert_path.exists()
    if has_cert and not has_key:
        raise ProvisionError(f"{leaf.cert_path}: there is no {leaf.key_path.name} beside it; remove "
                             f"{leaf.folder} to issue {leaf.name} a new key")
    if has_cert and ca_cert is None:
        raise ProvisionError(f"{leaf.cert_path}: issued by a fleet CA that is not in this folder")
    if leaf.ca_path.exists() and (ca_cert is None or leaf.ca_path.read_bytes() != pki.cert_pem(ca_cert)):
        raise ProvisionError(f"{leaf.ca_path}: is not this fleet's CA certificate")
    if not has_key:
        return
    leaf.key = pki.load_key(leaf.key_path)
    if not has_cert:
        leaf.action = CERT_FOR_KEY
        return
    assert ca_cert is not None
    cert = pki.load_cert(leaf.cert_path)
    if leaf.kind in PEOPLE and pki.issued_by(cert, ca_cert):
        # From before the people CA: valid, but the operators' listener refuses the fleet CA's.
        pki.check_leaf(cert, ca_cert, leaf.name, leaf.key, leaf.cert_path)
        leaf.action = MOVED
        return
    issuer = people_cert if leaf.kind in PEOPLE else ca_cert
    if issuer is None:
        raise ProvisionError(f"{leaf.cert_path}: issued by a people CA that is not in this folder")
    pki.check_leaf(cert, issuer, leaf.name, leaf.key, leaf.cert_path)
    # The broker's host names may change; its certificate (public) is then issued again for the
    # same key, which no client holds. A client's certificate is otherwise never replaced (MOVED
    # above is the one exception, and the run says so).
    renew = bool(leaf.server_names) and sorted(pki.san_names(cert)) != sorted(leaf.server_names)
    leaf.action = RENEWED if renew else KEPT


def _issue(leaf: _Leaf, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
           now: dt.datetime, days: int) -> None:
    if leaf.action == KEPT:
        return
    leaf.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if leaf.key is None:
        leaf.key = pki.new_key()
        _new_file(leaf.key_path, pki.key_pem(leaf.key), files.PRIVATE)
    cert = pki.issue(ca_key, ca_cert, leaf.name, leaf.key.public_key(), now, days=days,
                     server_names=leaf.server_names)
    if leaf.action in (RENEWED, MOVED):
        files.write_atomic(leaf.cert_path, pki.cert_pem(cert), files.PUBLIC)
    else:
        _new_file(leaf.cert_path, pki.cert_pem(cert), files.PUBLIC)


def _new_file(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        files.write_new(path, data, mode)
    except FileExistsError:
        raise ProvisionError(f"{path}: appeared while provisioning; run again") from None
