"""Mutations for the fuzz part: bytes, CBOR items and Base45 texts, each derived from a valid sample.

Random bytes rarely get past the first length check of a parser; a valid sample changed in one place
reaches the layer behind it. So every mutation here starts from a sample and changes a little: bits and
bytes (flips, inserts, deletes, truncation, splices with another sample), CBOR items (a value of another
type, integers past 64 bits and past Python's 4300-digit text limit, deep nesting, long strings,
duplicate map keys, tags, lengths written longer than needed), and Base45 texts (characters at the
alphabet's edges and outside it, groups just past their largest value, lengths no encoding has).

CBOR is written by `encode` here rather than by cbor2, since cbor2 cannot write what a hostile sender
can: a map with a key twice, a length in more bytes than it needs, an item nested thousands deep.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Any

import cbor2

B45_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
# What a scanner could hand over where a Base45 character should be: the alphabet's first and last,
# QR's own look-alikes (lower case), separators, a NUL, text beyond ASCII and a lone surrogate.
_ODD_CHARS = [
    "0",
    ":",
    " ",
    "$",
    "%",
    "*",
    "+",
    "-",
    ".",
    "/",
    "a",
    "z",
    "\n",
    "\0",
    "~",
    "=",
    "é",
    "\ud800",
    "€",
]
_TAGS = [0, 1, 2, 3, 4, 5, 18, 21, 24, 25, 28, 29, 30, 32, 35, 36, 37, 55799, 61, 256, 258, 260, 261, 1004]


@dataclass(frozen=True)
class DupMap:
    """A CBOR map written as given, keys repeated or not."""

    pairs: tuple[tuple[Any, Any], ...]


@dataclass(frozen=True)
class Raw:
    """Bytes written as they are in place of an item."""

    data: bytes


@dataclass(frozen=True)
class Long:
    """An item whose head (type and length or value) is written in more bytes than it needs."""

    value: Any


def _head(major: int, n: int, *, wide: bool = False) -> bytes:
    if n < 24 and not wide:
        return bytes([major << 5 | n])
    if n < 0x100 and not wide:
        return bytes([major << 5 | 24, n])
    if n < 0x10000 and not wide:
        return bytes([major << 5 | 25]) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes([major << 5 | 27 if wide else major << 5 | 26]) + n.to_bytes(8 if wide else 4, "big")
    return bytes([major << 5 | 27]) + n.to_bytes(8, "big")


def encode(item: Any, *, wide: bool = False) -> bytes:
    """CBOR of `item` (bool, None, int of any size, float, bytes, str, list, tuple, dict, CBORTag,
    DupMap, Raw, Long); `wide` writes this item's head in eight bytes."""
    if isinstance(item, Raw):
        return item.data
    if isinstance(item, Long):
        return encode(item.value, wide=True)
    if item is None:
        return b"\xf6"
    if item is True:
        return b"\xf5"
    if item is False:
        return b"\xf4"
    if isinstance(item, int):
        if 0 <= item < 2**64:
            return _head(0, item, wide=wide)
        if -(2**64) <= item < 0:
            return _head(1, -1 - item, wide=wide)
        tag, n = (2, item) if item >= 0 else (3, -1 - item)
        return _head(6, tag) + encode(n.to_bytes((n.bit_length() + 7) // 8, "big"))
    if isinstance(item, float):
        return b"\xfb" + struct.pack(">d", item)
    if isinstance(item, bytes):
        return _head(2, len(item), wide=wide) + item
    if isinstance(item, str):
        data = item.encode("utf-8", "surrogatepass")
        return _head(3, len(data), wide=wide) + data
    if isinstance(item, list | tuple):
        return _head(4, len(item), wide=wide) + b"".join(encode(v) for v in item)
    if isinstance(item, dict):
        item = DupMap(tuple(item.items()))
    if isinstance(item, DupMap):
        return _head(5, len(item.pairs), wide=wide) + b"".join(encode(k) + encode(v) for k, v in item.pairs)
    if isinstance(item, cbor2.CBORTag):
        return _head(6, item.tag, wide=wide) + encode(item.value)
    # Anything else cbor2 decoded (a date, a Decimal, a FrozenDict...) goes back through cbor2.
    return cbor2.dumps(item)


def loads(data: bytes) -> Any:
    """cbor2's reading of a sample, with maps as plain dicts (a FrozenDict key stays as it is)."""
    return cbor2.loads(data)


class Mutator:
    """Mutations drawn from one `random.Random`, so a seed replays the same inputs."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    # -- bytes ------------------------------------------------------------------------------

    def mutate_bytes(self, data: bytes, others: list[bytes] | None = None) -> bytes:
        """One to four byte-level changes to `data` (splices take a piece of one of `others`)."""
        rng = self.rng
        out = bytearray(data)
        for _ in range(rng.choice((1, 1, 1, 2, 3, 4))):
            kind = rng.randrange(9)
            at = rng.randrange(len(out) + 1)
            if kind == 0 and out:  # flip one bit
                i = rng.randrange(len(out))
                out[i] ^= 1 << rng.randrange(8)
            elif kind == 1 and out:  # set one byte to an interesting value
                out[rng.randrange(len(out))] = rng.choice(
                    (0, 1, 0x7F, 0x80, 0xFF, 0x17, 0x18, 0x1F, 0xBF, 0xFB, rng.randrange(256))
                )
            elif kind == 2:  # insert bytes
                out[at:at] = rng.randbytes(rng.choice((1, 1, 2, 4, 8, rng.randrange(1, 64))))
            elif kind == 3 and out:  # delete a range
                out[at : at + rng.randrange(1, 9)] = b""
            elif kind == 4:  # truncate
                del out[at:]
            elif kind == 5 and others:  # splice in a piece of another sample
                other = rng.choice(others)
                i = rng.randrange(len(other) + 1)
                out[at : at + rng.randrange(0, 16)] = other[i : i + rng.randrange(1, 64)]
            elif kind == 6 and out:  # duplicate a range
                i = rng.randrange(len(out))
                out[at:at] = out[i : i + rng.randrange(1, 32)]
            elif kind == 7:  # append junk
                out += rng.randbytes(rng.randrange(1, 16))
            elif out:  # swap two bytes
                i, j = rng.randrange(len(out)), rng.randrange(len(out))
                out[i], out[j] = out[j], out[i]
        return bytes(out)

    def random_bytes(self) -> bytes:
        return self.rng.randbytes(self.rng.choice((0, 1, 2, 3, 8, 32, 100, 400, 2000)))

    # -- CBOR items -------------------------------------------------------------------------

    def odd_value(self, depth_budget: int = 3) -> Any:
        """A value of any CBOR type, leaning to the ones parsers get wrong."""
        rng = self.rng
        kind = rng.randrange(16)
        if kind == 0:
            return rng.choice((0, 1, -1, 23, 24, 255, 256, 2**31, 2**32, 2**53, 2**63, 2**64 - 1, -(2**64)))
        if kind == 1:  # beyond 64 bits: a bignum; sometimes beyond Python's int-to-text limit
            bits = rng.choice((65, 100, 521, 4096, 14300, 15000, 20000))
            n = rng.getrandbits(bits) | (1 << (bits - 1))
            return n if rng.random() < 0.5 else -n
        if kind == 2:
            return rng.choice(
                (0.0, -0.0, 1.5, 1e308, -1e308, float("nan"), float("inf"), float("-inf"), 5e-324)
            )
        if kind == 3:
            return rng.choice((True, False, None, Raw(b"\xf7"), Raw(b"\xf0"), Raw(b"\xf8\xff")))
        if kind == 4:
            return "".join(
                rng.choice(("a", "Z", "0", "/", "+", "#", " ", "\0", "é", "\u202e"))
                for _ in range(rng.choice((0, 1, 5, 40)))
            )
        if kind == 5:  # long strings
            n = rng.choice((100, 1000, 5000, 70000))
            return rng.choice(("x" * n, b"\0" * n))
        if kind == 6:
            return rng.randbytes(rng.choice((0, 1, 8, 16, 32, 33, 64)))
        if kind == 7:  # deep nesting
            depth = rng.choice((17, 30, 100, 1000, 5000))
            opener = rng.choice((b"\x81", b"\xa1\x00", b"\xd8\x18", b"\x9f"))
            closer = b"\xff" * depth if opener == b"\x9f" else b""
            return Raw(opener * depth + b"\x00" + closer)
        if kind == 8:
            return cbor2.CBORTag(rng.choice(_TAGS), self.odd_value(depth_budget - 1) if depth_budget else 0)
        if kind == 9:
            return []
        if kind == 10:
            return {}
        if kind == 11 and depth_budget:
            return [self.odd_value(depth_budget - 1) for _ in range(rng.randrange(1, 4))]
        if kind == 12 and depth_budget:
            key = self.odd_value(0)
            return DupMap(((key, self.odd_value(depth_budget - 1)), (key, self.odd_value(depth_budget - 1))))
        if kind == 13:  # an indefinite-length or reserved encoding
            return Raw(
                rng.choice(
                    (
                        b"\x5f\x41a\xff",
                        b"\x7f\x61a\xff",
                        b"\xbf\x01\x02\xff",
                        b"\x1c",
                        b"\xfc",
                        b"\xff",
                        b"\x5f\x61a\xff",
                    )
                )
            )
        if kind == 14:
            return rng.choice(
                (
                    "2026-01-01",
                    "2026-02-30",
                    "9999-12-31T23:59:59Z",
                    "0000-00-00",
                    "2021-05-03T10:00:00+25:00",
                )
            )
        return rng.randrange(-(2**40), 2**40)

    def item(self, item: Any, depth_budget: int = 6) -> Any:
        """`item` with one place inside it changed (a map may also get a duplicate key)."""
        rng = self.rng
        if isinstance(item, dict) and item and depth_budget and rng.random() < 0.75:
            pairs = list(item.items())
            i = rng.randrange(len(pairs))
            key, value = pairs[i]
            move = rng.randrange(6)
            if move == 0:  # duplicate a key with another value (and sometimes the same one)
                pairs.insert(
                    rng.randrange(len(pairs) + 1), (key, value if rng.random() < 0.3 else self.odd_value())
                )
                return DupMap(tuple(pairs))
            if move == 1:  # change a key
                pairs[i] = (self.odd_value(1), value)
                return DupMap(tuple(pairs))
            if move == 2:  # drop a key, or add one
                if rng.random() < 0.5:
                    del pairs[i]
                else:
                    pairs.append((self.odd_value(1), self.odd_value()))
                return DupMap(tuple(pairs))
            pairs[i] = (key, self.item(value, depth_budget - 1))
            return DupMap(tuple(pairs))
        if isinstance(item, list | tuple) and item and depth_budget and rng.random() < 0.75:
            out = list(item)
            i = rng.randrange(len(out))
            move = rng.randrange(5)
            if move == 0:
                del out[i]
            elif move == 1:
                out.insert(i, self.odd_value())
            else:
                out[i] = self.item(out[i], depth_budget - 1)
            return out
        if isinstance(item, cbor2.CBORTag) and rng.random() < 0.7:
            if rng.random() < 0.3:
                return cbor2.CBORTag(rng.choice(_TAGS), item.value)
            return cbor2.CBORTag(item.tag, self.item(item.value, depth_budget))
        if isinstance(item, bytes) and item and depth_budget and rng.random() < 0.5:
            try:
                inner = loads(item)
            except Exception:  # not CBOR inside: change its bytes instead
                return self.mutate_bytes(item)
            return encode(self.item(inner, depth_budget - 1))
        move = rng.randrange(5)
        if move == 0:
            return (
                Long(item)
                if isinstance(item, int | bytes | str | list | dict) and not isinstance(item, bool)
                else self.odd_value()
            )
        if move == 1:
            return cbor2.CBORTag(rng.choice(_TAGS), item)
        if move == 2 and isinstance(item, int) and not isinstance(item, bool):
            return item + rng.choice((-1, 1, 2**64, -(2**64), 2**70))
        if move == 3 and isinstance(item, str | bytes) and item:
            return item[: rng.randrange(len(item))]
        return self.odd_value()

    def cbor(self, data: bytes, others: list[bytes] | None = None) -> bytes:
        """`data` (one CBOR item) changed structurally most times, byte by byte otherwise."""
        if self.rng.random() < 0.7:
            try:
                return encode(self.item(loads(data)))
            except Exception:  # the sample itself is not what cbor2 reads back: fall back to bytes
                pass
        return self.mutate_bytes(data, others)

    # -- Base45 texts -----------------------------------------------------------------------

    def base45_text(self, text: str) -> str:
        """A Base45 text with one to three changes at the alphabet's edges."""
        rng = self.rng
        chars = list(text)
        for _ in range(rng.choice((1, 1, 2, 3))):
            kind = rng.randrange(8)
            at = rng.randrange(len(chars) + 1)
            if kind == 0 and chars:
                chars[rng.randrange(len(chars))] = rng.choice(_ODD_CHARS)
            elif kind == 1 and chars:
                chars[rng.randrange(len(chars))] = rng.choice(B45_ALPHABET)
            elif kind == 2:
                chars[at:at] = rng.choice(B45_ALPHABET)
            elif kind == 3 and chars:
                del chars[at : at + rng.choice((1, 1, 2, 3))]
            elif kind == 4:
                del chars[at:]
            elif kind == 5:  # a group just past its largest value, or exactly at it
                group = rng.choice(("FGW", "GGW", ":::", "::", "U5", "V5", "000"))
                at -= at % 3
                chars[at : at + len(group)] = group
            elif kind == 6:  # a length no encoding has
                chars.append(rng.choice(B45_ALPHABET))
            else:
                chars[at:at] = rng.choice(_ODD_CHARS) * rng.randrange(1, 4)
        return "".join(chars)

    def random_text(self) -> str:
        rng = self.rng
        pool = B45_ALPHABET if rng.random() < 0.7 else B45_ALPHABET + "".join(_ODD_CHARS)
        return "".join(rng.choice(pool) for _ in range(rng.choice((0, 1, 2, 3, 4, 5, 30, 300, 3000))))
