"""`edge-sentry codes keygen|operator|rootkey|issue|render|poster`: the issuer's and installer's tools.

keygen makes an ES1 issuer key and its trust-list entry; operator makes an operator key (it signs
config and commands for the sites it names) and its trust-list `operators` entry; rootkey makes the
fleet trust-root key that signs venue codes and trust lists; issue prints an ES1 code; render draws
any code as a PNG; poster issues and draws this entrance's VC1 venue poster from the device config.
Problems are one line on stderr with exit 2 (bad input) or 1 (cannot write); private keys are written
0600 and never overwritten."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import files
from ..codes import es1, keys, render, vc1
from ..codes.trust import TrustList
from ..config import Config
from ..errors import EdgeSentryError, KeyFileError, UsageError
from .verify import parse_time, read_text

STATUSES = {"green": es1.Status.GREEN, "yellow": es1.Status.YELLOW, "red": es1.Status.RED}
PAPER_LIFETIME_S = 30 * 86400  # a printed code outlives a phone's by far; its exp is its lifetime


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "codes",
        help="make keys, issue ES1 codes, render codes and venue posters",
        description="Make issuer and trust-root keys, issue ES1 entry codes, render a code or this "
        "entrance's venue poster as PNG.",
    )
    actions = parser.add_subparsers(dest="codes_command", metavar="ACTION")
    actions.required = True

    keygen = actions.add_parser(
        "keygen",
        help="make an ES1 issuer key and its trust-list entry",
        description="Write a new Ed25519 issuer private key (PEM, mode 0600) and its trust-list "
        "entry into DIR; print the entry as JSON.",
    )
    keygen.add_argument("--out", required=True, metavar="DIR", help="directory for the key files")
    keygen.add_argument("--issuer", metavar="NAME", help="issuer name (default: device.site)")
    keygen.add_argument(
        "--trust", metavar="FILE", help="also add the entry to this trust list (created if absent)"
    )
    keygen.set_defaults(func=handle_keygen)

    operator = actions.add_parser(
        "operator",
        help="make an operator key (signs config and commands) and its trust-list entry",
        description="Write a new Ed25519 operator private key (PEM, mode 0600) and its trust-list "
        "operators entry into DIR; print the entry as JSON. The key signs desired config (role "
        "config) and commands (role command) for the sites given ('*' alone: every site).",
    )
    operator.add_argument("--out", required=True, metavar="DIR", help="directory for the key files")
    operator.add_argument("--name", required=True, metavar="NAME", help="who holds the key")
    operator.add_argument(
        "--role", "--roles", dest="roles", action="append", required=True, metavar="ROLE",
        help="config or command; repeat it, or separate with commas",
    )  # fmt: skip
    operator.add_argument(
        "--site", "--sites", dest="sites", action="append", required=True, metavar="SITE",
        help="a site the key may address ('*' alone: every site); repeat it, or separate with commas",
    )  # fmt: skip
    operator.add_argument(
        "--trust", metavar="FILE", help="also add the entry to this trust list (created if absent)"
    )
    operator.set_defaults(func=handle_operator)

    rootkey = actions.add_parser(
        "rootkey",
        help="make the fleet trust-root key",
        description="Write a new Ed25519 trust-root key pair into DIR (root.key.pem, mode 0600, "
        "and root.pub.pem for trust.root_key); it signs venue codes and pushed trust lists.",
    )
    rootkey.add_argument("--out", required=True, metavar="DIR", help="directory for the key files")
    rootkey.set_defaults(func=handle_rootkey)

    issue = actions.add_parser(
        "issue",
        help="issue an ES1 entry code and print its text",
        description="Sign an ES1 entry code with an issuer key and print its text.",
    )
    issue.add_argument("--key", required=True, metavar="PEM", help="issuer private key")
    issue.add_argument("--issuer", required=True, metavar="NAME", help="issuer name (claim iss)")
    issue.add_argument("--status", choices=tuple(STATUSES), default="green")
    issue.add_argument(
        "--lifetime",
        type=_positive_int,
        metavar="S",
        help=f"seconds until exp (default: es1.max_age_s; {PAPER_LIFETIME_S} with --paper)",
    )
    issue.add_argument("--venue", metavar="V", help="valid only at this venue (device.venue)")
    issue.add_argument("--paper", action="store_true", help="printed code: entry needs staff")
    issue.add_argument("--sub", metavar="HEX", help="subject, 32 hex digits (default: random)")
    issue.add_argument("--now", metavar="ISO8601", help="issue as at this time (default: now)")
    issue.set_defaults(func=handle_issue)

    draw = actions.add_parser(
        "render",
        help="draw a code text as a PNG",
        description="Draw any code text as a QR symbol in a PNG file.",
    )
    draw.add_argument("text", metavar="TEXT|-", help="the code text, or - to read it from stdin")
    draw.add_argument("--out", required=True, metavar="PNG", help="PNG file to write")
    draw.add_argument("--scale", type=_positive_int, default=8, help="pixels per module")
    draw.add_argument("--border", type=_count, default=4, help="quiet zone in modules")
    draw.set_defaults(func=handle_render)

    poster = actions.add_parser(
        "poster",
        help="issue and draw this entrance's venue poster",
        description="Issue a VC1 venue code for the configured device.site, venue and entrance, "
        "signed by the trust-root key, and draw it as a poster PNG; print the VC1 text.",
    )
    poster.add_argument("--root-key", required=True, metavar="PEM", help="trust-root private key")
    poster.add_argument("--out", required=True, metavar="PNG", help="PNG file to write")
    poster.add_argument("--now", metavar="ISO8601", help="issue as at this time (default: now)")
    poster.set_defaults(func=handle_poster)


def _count(text: str, least: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}")
    return value


def _positive_int(text: str) -> int:
    return _count(text, least=1)


def _fail(action: str, exc: BaseException) -> int:
    """One line on stderr; 1 when a file could not be written, 2 for input that needs fixing."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None:
        message = f"{exc.filename}: {exc.strerror}"
    print(f"edge-sentry codes {action}: {message}", file=sys.stderr)
    return 1 if isinstance(exc, OSError) else 2


def _new_key(
    action: str, out_dir: str, name_prefix: str, entry_of: Any, grow: Any, trust: str | None
) -> int:
    """Make a key, its trust-list entry (`entry_of(key)`) and, with `trust`, the grown list
    (`grow(list, entry)`); everything is checked before the first file is written."""
    try:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        key = keys.generate()
        name = f"{name_prefix}-{keys.kid_of(key).hex()}"
        entry = entry_of(key)
        # Read the trust list before writing anything, so a broken list leaves no orphan key.
        trust_path = Path(trust) if trust else None
        grown = None
        if trust_path is not None:
            current = TrustList.load(trust_path) if trust_path.exists() else TrustList.empty()
            grown = grow(current, entry)
        keys.save_private_key(key, out / f"{name}.key.pem")
        # Entries, trust lists and images are handed on to others: world-readable, unlike state.
        entry_json = (json.dumps(entry, indent=2) + "\n").encode()
        files.write_atomic(out / f"{name}.entry.json", entry_json, files.PUBLIC, create_folder=False)
        if trust_path is not None and grown is not None:
            files.write_atomic(trust_path, grown.to_json().encode(), files.PUBLIC, create_folder=False)
    except (EdgeSentryError, OSError) as exc:
        return _fail(action, exc)
    print(json.dumps(entry))
    print(f"private key: {out / f'{name}.key.pem'}", file=sys.stderr)
    return 0


def handle_keygen(args: argparse.Namespace, config: Config) -> int:
    issuer = args.issuer or config.device.site
    return _new_key(
        "keygen", args.out, "es1", lambda key: keys.trust_entry(key, issuer),
        lambda current, entry: current.with_entry(entry, issued=datetime.now(UTC)), args.trust,
    )  # fmt: skip


def _listed(values: list[str]) -> list[str]:
    """`["config,command", "x"]` -> `["config", "command", "x"]`, blanks dropped."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def handle_operator(args: argparse.Namespace, config: Config) -> int:
    roles, sites = _listed(args.roles), _listed(args.sites)

    def entry_of(key: Any) -> dict[str, Any]:
        entry = keys.operator_entry(key, args.name, roles, sites)
        # The trust list's own parser judges the entry, so a bad role or site fails here, not later.
        TrustList.empty().with_operator(entry, issued=datetime.now(UTC))
        return entry

    return _new_key(
        "operator", args.out, "operator", entry_of,
        lambda current, entry: current.with_operator(entry, issued=datetime.now(UTC)), args.trust,
    )  # fmt: skip


def handle_rootkey(args: argparse.Namespace, config: Config) -> int:
    try:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for existing in (out / "root.key.pem", out / "root.pub.pem"):
            if existing.exists():
                raise KeyFileError(f"{existing}: already exists; refusing to overwrite a key")
        key = keys.generate()
        keys.save_private_key(key, out / "root.key.pem")
        keys.save_public_key(key, out / "root.pub.pem")
    except (EdgeSentryError, OSError) as exc:
        return _fail("rootkey", exc)
    print(
        json.dumps(
            {
                "kid": keys.trust_entry(key, "root")["kid"],
                "private_key": str(out / "root.key.pem"),
                "public_key": str(out / "root.pub.pem"),
            }
        )
    )
    return 0


def _sub(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        sub = bytes.fromhex(text)
    except ValueError:
        raise UsageError(f"--sub: not hexadecimal: {text!r}") from None
    if len(sub) != es1.SUB_LENGTH:
        raise UsageError(f"--sub: must be {es1.SUB_LENGTH * 2} hex digits ({es1.SUB_LENGTH} bytes)")
    return sub


def handle_issue(args: argparse.Namespace, config: Config) -> int:
    try:
        key = keys.load_private_key(args.key)
        iat = int(parse_time(args.now)) if args.now is not None else int(time.time())
        default_lifetime = PAPER_LIFETIME_S if args.paper else config.es1.max_age_s
        text = es1.issue(
            key,
            issuer=args.issuer,
            sub=_sub(args.sub),
            status=STATUSES[args.status],
            lifetime_s=args.lifetime or default_lifetime,
            venue=args.venue,
            paper=args.paper,
            iat=iat,
        )
    except (EdgeSentryError, ValueError) as exc:
        return _fail("issue", exc)
    print(text)
    return 0


def handle_render(args: argparse.Namespace, config: Config) -> int:
    try:
        text = read_text(args.text)
        if not text:
            raise UsageError("nothing to render: the text is empty")
        png = render.code_png(text, scale=args.scale, border=args.border)
    except (EdgeSentryError, ValueError) as exc:
        return _fail("render", exc)
    try:
        files.write_atomic(Path(args.out), png, files.PUBLIC, create_folder=False)
    except OSError as exc:
        return _fail("render", exc)
    return 0


def handle_poster(args: argparse.Namespace, config: Config) -> int:
    device = config.device
    try:
        root = keys.load_private_key(args.root_key)
        issued = int(parse_time(args.now)) if args.now is not None else int(time.time())
        text = vc1.issue(
            root,
            site=device.site,
            venue=device.venue,
            entrance=device.entrance,
            name=device.venue_name,
            issued=issued,
        )
        png = render.poster_png(
            text, venue_name=device.venue_name, entrance_name=device.entrance_name
        )
    except (EdgeSentryError, ValueError) as exc:
        return _fail("poster", exc)
    try:
        files.write_atomic(Path(args.out), png, files.PUBLIC, create_folder=False)
    except OSError as exc:
        return _fail("poster", exc)
    print(text)
    return 0
