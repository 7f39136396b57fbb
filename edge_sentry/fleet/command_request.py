"""Remote commands from the operator's side: the request, where its answer goes, how to print it.

The sentry (`link.remote_commands`) takes `{"deadline": ms since 1970, "args": {...}}` on
`cmd/{name}`, as the body of a control message signed by an operator key for exactly that topic
(codes/control.py; the CLI signs), with an MQTT 5 response topic and correlation data, runs it at most
once per correlation id and answers `{"status", "result" | "error", "t"}` on the response topic. Under
the broker's ACL a sentry may publish only under its own prefix, so the response topic is
`{prefix}/reply/{random}`: unique per call (one call's answer is never taken for another's), outside
`cmd/+` (the sentry never takes it for a request), and readable by an operator. The correlation data
is 16 random bytes, which is also the request's identity for the sentry's at-most-once rule.

Pure: nothing here touches the network or the clock except through parameters.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ArgError
from ..link import topics
from .client import device_topic

REPLY = "reply"


def parse_args(items: Iterable[str]) -> dict[str, Any]:
    """`["parts=[\"camera\"]", "note=hello"]` -> `{"parts": ["camera"], "note": "hello"}`.

    A value that reads as JSON (a number, true/false, null, a list, an object, a quoted string) is
    taken as that; anything else is text. So `n=3` sends the number 3 and `n='"3"'` the text "3".
    """
    args: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ArgError(f"--arg {item!r}: must be KEY=VALUE")
        if key in args:
            raise ArgError(f"--arg {key!r}: given twice")
        try:
            args[key] = json.loads(value)
        except ValueError:
            args[key] = value
    return args


def request(deadline_ms: int, args: Mapping[str, Any]) -> dict[str, Any]:
    """The request map; `args` left out when empty (a command that takes none then sees none)."""
    body: dict[str, Any] = {"deadline": int(deadline_ms)}
    if args:
        body["args"] = dict(args)
    return body


def new_correlation() -> bytes:
    return secrets.token_bytes(16)


def response_topic(site: str, device: str) -> str:
    """A fresh topic under the sentry's prefix for one answer."""
    return device_topic(site, device, f"{REPLY}/{secrets.token_hex(8)}")


def request_topic(site: str, device: str, name: str) -> str:
    return device_topic(site, device, f"{topics.CMD}/{topics.check_segment(name, 'command name')}")


def printable(value: Any) -> Any:
    """The response with bytes (a snapshot's JPEG) as base64 text, so it prints as JSON."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(v) for v in value]
    return value
