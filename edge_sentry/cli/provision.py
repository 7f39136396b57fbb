"""`edge-sentry fleet provision INVENTORY --out DIR`: the broker's identities, config and ACL.

Reads the fleet inventory (TOML: broker host names, sites and their devices, operators,
ingesters), then makes what is missing in DIR: the fleet CA (devices and the broker), the people CA
(operators and ingesters), the broker's server certificate, a client certificate per login (CN =
device id or name), and writes the broker's mosquitto.conf and ACL afresh (see
`edge_sentry.fleet.provision`). Safe to re-run: existing keys are never re-issued or overwritten.
Needs no broker and ignores the config's `[mqtt]` section.

Exit codes: 0 done; 1 the output folder holds files that do not fit together, or cannot be written;
2 a bad inventory or option. Nothing is written when the inventory or the folder is refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import UsageError
from ..fleet import inventory, pki, provision


def register(fleet: Any) -> None:
    """Add `provision` to the `fleet` sub-command set."""
    p = fleet.add_parser(
        "provision",
        help="make the fleet's CAs, certificates, the broker's mosquitto.conf and ACL from an inventory",
        description="Read INVENTORY (TOML: [broker] hosts, [sites], [operators], [ingesters]) and "
        "make in DIR what is missing: the fleet CA, the people CA, the broker's server certificate, a client "
        "certificate per device, operator and ingester (CN = its name), and the broker's "
        "mosquitto.conf and ACL (rewritten each run). Existing keys are never re-issued. Exit "
        "codes: 0 done, 1 the folder holds files that do not fit or cannot be written, 2 bad input.",
    )
    p.add_argument("inventory", metavar="INVENTORY", help="the fleet inventory (TOML)")
    p.add_argument("--out", required=True, metavar="DIR", help="the provisioning folder (kept between runs)")
    p.add_argument("--days", type=int, default=pki.CERT_DAYS, metavar="N",
                   help=f"validity of new certificates in days (default {pki.CERT_DAYS})")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace, _config: Config) -> int:
    if not 1 <= args.days <= pki.CA_DAYS:
        raise UsageError(f"--days: must be 1 to {pki.CA_DAYS}")
    fleet = inventory.load(Path(args.inventory))
    try:  # a ProvisionError reaches the entry point: one line, exit 1
        outcomes = provision.provision(fleet, Path(args.out), days=args.days)
    except OSError as exc:
        print(f"edge-sentry fleet provision: {exc.filename or args.out}: {exc.strerror}", file=sys.stderr)
        return 1
    for outcome in outcomes:
        print(f"{outcome.kind:<9} {outcome.name:<24} {outcome.action}  ({outcome.folder})")
    print(f"broker    mosquitto.conf, acl and people-ca.crt written  ({Path(args.out) / 'broker'})")
    return 0
