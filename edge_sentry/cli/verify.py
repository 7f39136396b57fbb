"""`edge-sentry verify [--now ISO8601] [--trust FILE] TEXT|-`: decide on one code text, print JSON.

Prints one JSON object {"verdict", "reason", "scheme", "kid", "iat", "exp"} (docs/protocol.md 7, a
contract: operators' scripts parse it) and exits 0 on accept, 1 on deny, 2 on bad usage. The code
text itself is never echoed, so the output can be logged.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from ..codes import keys
from ..codes.trust import TrustList
from ..config import Config
from ..errors import EdgeSentryError, UsageError
from ..verifier import Decision, Verifier


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "verify",
        help="verify one code text and print the decision as JSON",
        description="Verify one entry-code text as the sentry would (without passback history) "
        "and print {verdict, reason, scheme, kid, iat, exp}. Exit 0 on accept, 1 on deny, 2 on "
        "bad usage.",
    )
    parser.add_argument(
        "--now", metavar="ISO8601", help="decide as at this time (default: now; no zone means UTC)"
    )
    parser.add_argument("--trust", metavar="FILE", help="trust-list file (default: trust.file)")
    parser.add_argument(
        "--root-key", metavar="PEM", help="fleet trust-root public key, for VC1 (trust.root_key)"
    )
    parser.add_argument("text", metavar="TEXT|-", help="the code text, or - to read it from stdin")
    parser.set_defaults(func=handle)


def parse_time(text: str, option: str = "--now") -> float:
    """Seconds since 1970 from ISO 8601 text; a time without a zone is taken as UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{option}: not an ISO 8601 time such as 2026-11-26T12:00:00Z: {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def read_text(value: str) -> str:
    """The code text from the argument, or from stdin for "-" (one final line break dropped only:
    a space is a Base45 character, so no other trimming is safe)."""
    if value != "-":
        return value
    text = sys.stdin.read()
    return text.removesuffix("\n").removesuffix("\r")


def load_trust(path: str | None) -> TrustList:
    """The trust list at `path`, or an empty one (trusting nothing) when no file is configured."""
    return TrustList.empty() if path is None else TrustList.load(path)


def summary(decision: Decision) -> dict[str, Any]:
    """The decision in the contract's JSON shape; the kid as base64, never the subject."""
    return {
        "verdict": decision.verdict,
        "reason": decision.reason,
        "scheme": decision.scheme,
        "kid": base64.b64encode(decision.kid).decode("ascii") if decision.kid is not None else None,
        "iat": decision.iat,
        "exp": decision.exp,
    }


def handle(args: argparse.Namespace, config: Config) -> int:
    try:
        now = parse_time(args.now) if args.now is not None else time.time()
        trust = load_trust(args.trust or config.trust.file)
        root_path = args.root_key or config.trust.root_key
        root_key = keys.load_public_key(root_path) if root_path else None
        text = read_text(args.text)
    except (EdgeSentryError, OSError, UnicodeDecodeError) as exc:
        print(f"edge-sentry verify: {_one_line(exc)}", file=sys.stderr)
        return 2
    verifier = Verifier.from_config(config, trust, root_key)
    decision = verifier.verify(text, now)
    print(json.dumps(summary(decision)))
    return 0 if decision.accepted else 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
