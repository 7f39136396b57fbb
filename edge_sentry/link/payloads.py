"""MQTT payloads: CBOR maps with text keys out; CBOR or hand-typed JSON in (docs/protocol.md section 1).
The sentry's control topics take neither: only signed control messages (codes/control.py).

Incoming payloads come from the network, so `decode()` treats them as hostile: the size cap is
checked before a single byte is parsed, a CBOR item is walked header by header (depth, declared
lengths, tags, trailing bytes) before cbor2 builds anything, and every failure, whatever its cause,
leaves as one `PayloadError` with a message a person can act on. Messages never quote the payload:
a malformed scan batch could carry an event. This module does no I/O and never logs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import cbor2

from ..errors import PayloadError

CBOR = "application/cbor"
JSON = "application/json"

DEFAULT_MAX_PAYLOAD = 256 * 1024  # the default of mqtt.max_payload
DEFAULT_MAX_DEPTH = 16  # a desired config is 4 levels deep; a trust list 4


def encode(obj: Mapping[str, Any] | list[Any], *, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """CBOR bytes of a map (or an array of maps); raise PayloadError for non-text keys or values
    that CBOR cannot carry, since the other side of the contract reads text keys only."""
    if not isinstance(obj, Mapping | list | tuple):
        raise PayloadError(f"a payload must be a map or an array, not {type(obj).__name__}")
    _check_tree(obj, max_depth)
    try:
        return cbor2.dumps(obj)
    except Exception as exc:  # cbor2 raises several types for values it cannot encode
        raise PayloadError(f"cannot encode payload as CBOR: {type(exc).__name__}") from None


def media_type(content_type: str | None) -> str | None:
    """`application/json; charset=utf-8` -> `application/json` (None stays None)."""
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def sniff(data: bytes) -> str:
    """CBOR or JSON, from the first byte: a CBOR map or array never starts with `{` or `[` (those
    bytes are a text or byte string header), and JSON may start with whitespace."""
    first = data.lstrip(b" \t\r\n")[:1]
    return JSON if first in (b"{", b"[") else CBOR


def decode(
    data: bytes | bytearray | memoryview,
    content_type: str | None = None,
    *,
    max_size: int = DEFAULT_MAX_PAYLOAD,
    max_depth: int = DEFAULT_MAX_DEPTH,
    expect: type[dict[Any, Any]] | type[list[Any]] | None = dict,
) -> Any:
    """Decode one incoming payload; raise PayloadError and nothing else.

    `content_type` `application/cbor` or `application/json` decides the format; anything else,
    or none, is sniffed. `expect` is the top-level type asked for (None: a map or an array).
    Maps must have text keys; nesting deeper than `max_depth` containers is refused.
    """
    try:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise PayloadError(f"a payload is bytes, not {type(data).__name__}")
        size = memoryview(data).nbytes
        if size > max_size:
            raise PayloadError(f"payload of {size} bytes is over the {max_size}-byte limit")
        raw = bytes(data)
        if not raw.strip():
            raise PayloadError("empty payload")
        kind = media_type(content_type)
        if kind not in (CBOR, JSON):
            kind = sniff(raw)
        value = _decode_json(raw, max_depth) if kind == JSON else _decode_cbor(raw, max_depth)
        _check_top(value, expect)
        _check_tree(value, max_depth)
        return value
    except PayloadError:
        raise
    except Exception as exc:  # a decoder bug or MemoryError must still read as a bad payload
        raise PayloadError(f"payload could not be decoded ({type(exc).__name__})") from None


def _decode_json(raw: bytes, max_depth: int) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"JSON payload is not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise PayloadError(f"JSON payload is nested more than {max_depth} levels deep") from None
    except json.JSONDecodeError as exc:
        raise PayloadError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise PayloadError(f"JSON object repeats the key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise PayloadError(f"JSON payload uses {name}, which is not a number")


def _decode_cbor(raw: bytes, max_depth: int) -> Any:
    scan_cbor(raw, max_depth)
    try:
        return cbor2.loads(raw)
    except cbor2.CBORDecodeError as exc:
        raise PayloadError(f"malformed CBOR: {exc}") from None


# Bignums only (RFC 8949 section 3.4.3): integers of 2**64 and over. Other tags would ask cbor2 for
# dates, shared references (cycles), sets... that no payload of the contract uses.
_ALLOWED_TAGS = (2, 3)


def scan_cbor(data: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    """Check that `data` is exactly one well-formed CBOR item without tags (bignums aside),
    indefinite-length strings or nesting deeper than `max_depth`, by reading item headers only
    (RFC 8949 section 3 and appendix C). Declared lengths are checked against the bytes left,
    so a 9-byte header claiming a billion items is refused before anything is allocated."""
    pos, end = 0, len(data)
    todo = [1]  # items still expected at each open level; -1: until a break byte
    while todo:
        if todo[-1] == 0:
            todo.pop()
            continue
        if pos >= end:
            raise PayloadError("malformed CBOR: truncated")
        initial = data[pos]
        pos += 1
        if initial == 0xFF:
            if todo[-1] != -1:
                raise PayloadError("malformed CBOR: unexpected break")
            todo.pop()
            continue
        if todo[-1] > 0:
            todo[-1] -= 1
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            arg: int | None = info
        elif info < 28:
            width = 1 << (info - 24)
            if pos + width > end:
                raise PayloadError("malformed CBOR: truncated")
            arg = int.from_bytes(data[pos:pos + width], "big")
            pos += width
        elif info == 31 and major in (4, 5):
            arg = None
        elif info == 31 and major in (2, 3):
            raise PayloadError("CBOR indefinite-length strings are not accepted")
        else:
            raise PayloadError("malformed CBOR: reserved header")
        if major in (2, 3):
            assert arg is not None
            if arg > end - pos:
                raise PayloadError("malformed CBOR: truncated string")
            pos += arg
        elif major in (4, 5):
            if len(todo) > max_depth:
                raise PayloadError(f"CBOR payload is nested more than {max_depth} levels deep")
            if arg is None:
                todo.append(-1)
            else:
                count = arg * 2 if major == 5 else arg
                if count > end - pos:  # every item takes at least one byte
                    raise PayloadError("malformed CBOR: truncated container")
                todo.append(count)
        elif major == 6:
            if arg not in _ALLOWED_TAGS:
                raise PayloadError(f"CBOR tag {arg} is not accepted")
            if todo[-1] >= 0:
                todo[-1] += 1  # a tag wraps the next item; it is not an item of its own
    if pos != end:
        raise PayloadError(f"malformed CBOR: {end - pos} bytes after the item")


def _type_name(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a map"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


def _check_top(value: Any, expect: type[dict[Any, Any]] | type[list[Any]] | None) -> None:
    if expect is dict and not isinstance(value, dict):
        raise PayloadError(f"payload must be a map, not {_type_name(value)}")
    if expect is list and not isinstance(value, list):
        raise PayloadError(f"payload must be an array, not {_type_name(value)}")
    if expect is None and not isinstance(value, dict | list):
        raise PayloadError(f"payload must be a map or an array, not {_type_name(value)}")


_LEAVES = frozenset({str, int, float, bool, bytes, type(None)})
_TEXT = frozenset({str})


def _check_tree(value: Any, max_depth: int) -> None:
    """Text keys everywhere and bounded depth; iterative, so depth costs no Python stack. The fast
    pass keeps no paths (it runs on every outgoing batch); only a problem found pays for a second
    pass that names where it is."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            _raise_located(value, max_depth)
        if isinstance(node, Mapping):
            if not _TEXT.issuperset(map(type, node)):
                _raise_located(value, max_depth)
            children: Iterable[Any] = node.values()
        else:
            children = node
        if _LEAVES.issuperset(map(type, children)):  # the usual case, decided in C
            continue
        for child in children:
            if type(child) not in _LEAVES and isinstance(child, Mapping | list | tuple):
                stack.append((child, depth + 1))


def _raise_located(value: Any, max_depth: int) -> None:
    stack: list[tuple[Any, int, str]] = [(value, 1, "$")]
    while stack:
        node, depth, path = stack.pop()
        if not isinstance(node, Mapping | list | tuple):
            continue
        if depth > max_depth:
            raise PayloadError(f"payload is nested more than {max_depth} levels deep at {path}")
        if isinstance(node, Mapping):
            for key, child in node.items():
                if not isinstance(key, str):
                    raise PayloadError(f"map keys must be text: {path} has a {type(key).__name__} key")
                stack.append((child, depth + 1, f"{path}.{key}"))
        else:
            stack.extend((child, depth + 1, f"{path}[{i}]") for i, child in enumerate(node))
    raise PayloadError("payload has non-text keys or is nested too deeply")
