"""The fleet broker's Mosquitto config and ACL, written from the inventory (DESIGN: least privilege).

Each login is the CN of its client certificate (`use_identity_as_username`), and the ACL grants
each one exactly its topics of docs/protocol.md section 6.2:

- a device publishes its `state`, `scan`, `event`, `health`, `config/reported` and `reply/+`, and
  reads its `config/desired`, `trust`, `cmd/+` and its site's `all/config/desired`. Nothing else:
  not its own control topics (a device that could write its `trust` or `cmd/` could hand itself a
  trust list or a command), not another device's topics;
- an operator reads everything of their sites and writes their control topics (`config/desired`,
  the site's `all/config/desired`, `trust`, `cmd/+`);
- an ingester reads `scan`, `event`, `health` and `state` of its sites and writes nothing.

Mosquitto's `pattern` lines know only the login (`%u`) and the client id (`%c`), so a pattern could
not pin a device to its site: every grant here is an explicit `topic` line under the login's
`user` line. A login the ACL does not name gets nothing (Mosquitto denies what no line grants), so
a device removed from the inventory can still connect with its certificate but do nothing.

Two TLS listeners (no plaintext listener at all), each with its own settings
(`per_listener_settings true`), each requiring a client certificate and taking the login from its
CN, so there are no passwords to leak:

- the devices' listener (`port`) accepts only certificates of the fleet CA, which signs devices and
  the broker, and makes the login the client id (`use_username_as_clientid`): a device's
  certificate cannot connect under another device's client id and so knock that device off;
- the operators' listener (`operator_port`) accepts only certificates of the people CA, which signs
  operators and ingesters, and lets them choose their client ids, so two sessions of one operator
  (or several processes of one ingester) stay connected side by side. A device's certificate is
  refused there, so it cannot choose a client id anywhere.

Both listeners use the one ACL: each CA signs only its own kind of login. Pure: text in, text out.
"""

from __future__ import annotations

from pathlib import Path

from ..link import topics
from .inventory import Inventory

DEVICE_WRITES = (
    topics.STATE, topics.SCAN, topics.EVENT, topics.HEALTH, topics.CONFIG_REPORTED, "reply/+",
)
DEVICE_READS = (topics.CONFIG_DESIRED, topics.TRUST, f"{topics.CMD}/+")
OPERATOR_WRITES = (topics.CONFIG_DESIRED, topics.TRUST, f"{topics.CMD}/+")  # under `+`: `all` is one too
INGESTER_READS = (topics.SCAN, topics.EVENT, topics.HEALTH, topics.STATE)

# The broker's own files, by their names in its folder.
CA_FILE = "ca.crt"  # the fleet CA: devices' certificates and the broker's own
PEOPLE_CA_FILE = "people-ca.crt"  # the people CA: operators' and ingesters' certificates
SERVER_CERT = "server.crt"
SERVER_KEY = "server.key"
ACL_FILE = "acl"
CONF_FILE = "mosquitto.conf"


def acl_text(inventory: Inventory) -> str:
    """The ACL file: one `user` block per login, explicit `topic` lines only."""
    lines = ["# Edge Sentry fleet ACL, written by `edge-sentry fleet provision` from the inventory.",
             "# Re-run it after changing the inventory; edits here are lost.", ""]
    for device in inventory.devices:
        prefix = f"{topics.ROOT}/{device.site}/{device.id}"
        lines += [f"# device {device.id} at site {device.site}", f"user {device.id}"]
        lines += [f"topic write {prefix}/{kind}" for kind in DEVICE_WRITES]
        lines += [f"topic read {prefix}/{kind}" for kind in DEVICE_READS]
        lines += [f"topic read {topics.ROOT}/{device.site}/{topics.SITE_CONFIG_DESIRED}", ""]
    for operator in inventory.operators:
        lines += [f"# operator {operator.name}", f"user {operator.name}"]
        for site in operator.sites:
            lines.append(f"topic read {topics.ROOT}/{site}/#")
            lines += [f"topic write {topics.ROOT}/{site}/+/{kind}" for kind in OPERATOR_WRITES]
        lines.append("")
    for ingester in inventory.ingesters:
        lines += [f"# ingester {ingester.name}", f"user {ingester.name}"]
        for site in ingester.sites:
            lines += [f"topic read {topics.ROOT}/{site}/+/{kind}" for kind in INGESTER_READS]
        lines.append("")
    return "\n".join(lines)


def mosquitto_conf(inventory: Inventory, folder: Path) -> str:
    """The broker's config: the devices' and the operators' TLS listeners, client certificates
    required, the ACL; `folder` is where the broker's files sit on the broker host. Meant for
    Mosquitto's `conf.d` (it sets no persistence or logging, which the distribution's main config
    does)."""
    return "\n".join([
        "# Edge Sentry fleet broker, written by `edge-sentry fleet provision` from the inventory.",
        "# Re-run it after changing the inventory; edits here are lost.",
        # Each listener's security settings below are its own, none shared.
        "per_listener_settings true",
        "",
        "# Devices: fleet CA certificates only; the login is the client id, so no device can take",
        "# another's client id and knock it off the broker.",
        *_listener(inventory, inventory.port, folder / CA_FILE, folder),
        "use_username_as_clientid true",
        "",
        "# Operators and ingesters: people CA certificates only (a device's is refused here); they",
        "# choose their client ids, so one login may hold several sessions.",
        *_listener(inventory, inventory.operator_port, folder / PEOPLE_CA_FILE, folder),
        "",
    ])


def _listener(inventory: Inventory, port: int, cafile: Path, folder: Path) -> list[str]:
    """One TLS listener's lines: its client CA, the broker's certificate, the login from the CN."""
    return [
        " ".join(["listener", str(port), *([inventory.bind] if inventory.bind else [])]),
        f"cafile {cafile}",
        f"certfile {folder / SERVER_CERT}",
        f"keyfile {folder / SERVER_KEY}",
        "tls_version tlsv1.2",
        "require_certificate true",
        "use_identity_as_username true",
        "allow_anonymous false",
        f"acl_file {folder / ACL_FILE}",
    ]
