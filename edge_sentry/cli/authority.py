"""`edge-sentry authority keygen|open|trace`: the health authority's side of sealed subjects.

keygen makes the authority's X25519 key pair: the public half goes into every sentry's
`privacy.authority_key`, the private half never leaves the authority. open reads exported scan events
and prints, per event, the subject it carries in clear, for contact tracing. trace (cli/trace.py)
does the tracing itself on the fleet's back-end database.

Input of `open` (FILE, or - for stdin), told apart by its first byte:
- JSON text: one event per line, as `edge-sentry run --log-format json` writes them, or a line holding a
  JSON array of events; a fleet export is the same lines (bytes as lowercase hex). Lines of other
  events (`start`, `stop`, alarms) are skipped.
- CBOR: one or more `scan` topic payloads back to back (a CBOR sequence, RFC 8742), each an array of
  scan events as sent over MQTT; a bare event map is taken as well.
Output: one JSON line per scan event, `{"id", "t", "site", "entrance", "subject": hex}` when it opened,
else the same with `"error": reason` instead of `subject` (`no-subject`, `malformed`, `no-context`,
`wrong-key`, `cannot-open`); an input line or item that is not an event gives `{"line"|"item": n,
"error": "not-json"|"not-an-event"}`. Exit 0 when every subject present opened, 1 when any did not (or
some input was unreadable), 2 on bad usage (no key, no file).

The clear subjects printed here are personal data in the authority's hands: nothing is logged.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import cbor2
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from .. import privacy
from ..config import Config
from ..errors import AuthorityKeyError, EdgeSentryError, SubjectError
from ..vocabulary import Event
from . import trace

REPORTED_FIELDS = ("id", "t", "site", "entrance")
PRIVATE_NAME = "authority.key.pem"
PUBLIC_NAME = "authority.pub.pem"

# An event (None when that part of the input is not one) and where it came from in the input.
Where = tuple[Mapping[str, Any] | None, dict[str, Any]]


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "authority",
        help="the health authority's keys; open sealed subjects of exported scans",
        description="Make the health authority's X25519 key pair, or open the sealed subjects of "
        "exported scan events for contact tracing.",
    )
    actions = parser.add_subparsers(dest="authority_command", metavar="ACTION")
    actions.required = True

    keygen = actions.add_parser(
        "keygen",
        help="make the authority's key pair",
        description=f"Write a new X25519 key pair into DIR: {PRIVATE_NAME} (mode 0600, stays with "
        f"the authority) and {PUBLIC_NAME} (for every sentry's privacy.authority_key). Existing "
        "files are never overwritten. Prints {kid, public_key, private_key} as JSON.",
    )
    keygen.add_argument("--out", required=True, metavar="DIR", help="directory for the key files")
    keygen.set_defaults(func=handle_keygen)

    opener = actions.add_parser(
        "open",
        help="print the subjects of exported scan events",
        description="Read scan events (JSON lines from `run --log-format json` or a fleet export, or "
        "CBOR `scan` payloads) and print one JSON line per event: {id, t, site, entrance, subject} "
        "or, for an event whose subject is absent or does not open, {..., error}.",
    )
    opener.add_argument("--key", required=True, metavar="PRIVATE", help="the authority's private key")
    opener.add_argument("file", metavar="FILE|-", help="exported events, or - for stdin")
    opener.set_defaults(func=handle_open)
    trace.register(actions)


def _fail(action: str, message: str, code: int) -> int:
    print(f"edge-sentry authority {action}: {' '.join(message.split())}", file=sys.stderr)
    return code


def handle_keygen(args: argparse.Namespace, _config: Config) -> int:
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        key = X25519PrivateKey.generate()
        privacy.save_key_pair(key, out / PRIVATE_NAME, out / PUBLIC_NAME)
    except OSError as exc:
        return _fail("keygen", f"{exc.filename or out}: {exc.strerror}", 1)
    except EdgeSentryError as exc:
        return _fail("keygen", str(exc), 1)
    print(
        json.dumps(
            {
                "kid": privacy.key_id(key).hex(),
                "public_key": str(out / PUBLIC_NAME),
                "private_key": str(out / PRIVATE_NAME),
            }
        )
    )
    return 0


# --- reading exports ------------------------------------------------------------------------------


def _read_input(name: str) -> bytes:
    if name == "-":
        stream: BinaryIO = sys.stdin.buffer
        return stream.read()
    return Path(name).read_bytes()


def _events_from_json_lines(data: bytes) -> Iterator[Where]:
    """Events of JSON lines (one event, or an array of events, per line)."""
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            yield None, {"line": number, "error": "not-json"}
            continue
        for event in value if isinstance(value, list) else [value]:
            if isinstance(event, Mapping):
                yield event, {"line": number}
            else:
                yield None, {"line": number, "error": "not-an-event"}


def _events_from_items(items: list[Any], start: int = 1) -> Iterator[Where]:
    for number, value in enumerate(items, start=start):
        for event in value if isinstance(value, list) else [value]:
            if isinstance(event, Mapping):
                yield event, {"item": number}
            else:
                yield None, {"item": number, "error": "not-an-event"}


def _events_from_cbor(data: bytes) -> Iterator[Where]:
    """Events of a CBOR sequence of `scan` payloads; undecodable bytes end it with an error row."""
    stream = io.BytesIO(data)
    number = 0
    while stream.tell() < len(data):
        number += 1
        try:
            value = cbor2.load(stream)
        except Exception:  # any decoding failure ends the sequence, whatever cbor2 calls it
            yield None, {"item": number, "error": "not-cbor"}
            return
        yield from _events_from_items([value], start=number)


def read_events(data: bytes) -> Iterator[Where]:
    """(event, where) for each event of an export; event None when an input part is not one.

    JSON text starts with `{` or `[` (a whole-file JSON array, e.g. pretty-printed, or JSON lines);
    anything else is CBOR.
    """
    first = data.lstrip()[:1]
    if first == b"[":
        try:
            whole = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            whole = None
        if isinstance(whole, list):
            return _events_from_items(whole)
    if first in (b"{", b"["):
        return _events_from_json_lines(data)
    return _events_from_cbor(data)


def open_event(event: Mapping[str, Any], key: X25519PrivateKey) -> dict[str, Any]:
    """The report line for one scan event: its identity and its subject in hex, or an error reason."""
    row: dict[str, Any] = {name: event.get(name) for name in REPORTED_FIELDS}
    sealed = event.get("subject")
    if sealed is None:
        row["error"] = "no-subject"
        return row
    try:
        row["subject"] = privacy.open_subject(sealed, key, event).hex()
    except SubjectError as exc:
        row["error"] = exc.reason
    return row


def _is_other_event(event: Mapping[str, Any]) -> bool:
    """A start, stop or alarm line of the daemon's log: not a scan, nothing to open."""
    name = event.get("event")
    return name is not None and name != Event.SCAN


def handle_open(args: argparse.Namespace, _config: Config) -> int:
    try:
        key = privacy.load_private_key(args.key)
        data = _read_input(args.file)
    except AuthorityKeyError as exc:
        return _fail("open", str(exc), 2)
    except OSError as exc:
        return _fail("open", f"{exc.filename or args.file}: {exc.strerror}", 2)
    failed = False
    for event, where in read_events(data):
        if event is None:
            failed = True
            row = where
        elif _is_other_event(event):
            continue
        else:
            row = open_event(event, key)
            failed = failed or row.get("error") not in (None, "no-subject")
        print(json.dumps(row, default=str))
    return 1 if failed else 0
