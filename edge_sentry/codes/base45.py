"""Base45 (RFC 9285): the text form of entry codes.

Base45 exists because its 45 characters are exactly QR's alphanumeric mode, which packs 5.5 bits per
character instead of byte mode's 8, so the same signed bytes make a smaller, easier-to-scan symbol.

Decoding is strict: a text that is not the encoding of some byte string is refused with CodeError
rather than repaired, because a lenient decoder turns many texts into the same bytes and hides
damage. Pure functions, no I/O.
"""

from __future__ import annotations

import sys
from array import array

from ..errors import CodeError

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_VALUES = {ch: i for i, ch in enumerate(ALPHABET)}
_INVALID = 0xFF
_TABLE = bytes(_VALUES.get(chr(b), _INVALID) for b in range(256))


def encode(data: bytes) -> str:
    """Encode bytes as Base45: each pair of bytes gives three characters, a last odd byte two."""
    out: list[str] = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        n, c = divmod(n, 45)
        e, d = divmod(n, 45)
        out += (ALPHABET[c], ALPHABET[d], ALPHABET[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out += (ALPHABET[c], ALPHABET[d])
    return "".join(out)


def decode(text: str) -> bytes:
    """Decode Base45 text; CodeError on a foreign character, a bad length or a value overflow."""
    if len(text) % 3 == 1:
        raise CodeError(f"base45: length {len(text)} is not a valid encoding length")
    # One C-level pass maps characters to values, so the per-group work below is plain arithmetic:
    # this runs on the hot path for every code in view.
    try:
        values = text.encode("ascii").translate(_TABLE)
    except UnicodeEncodeError:
        values = b"\xff"
    if _INVALID in values:
        bad = next(ch for ch in text if ch not in _VALUES)
        raise CodeError(f"base45: character {bad!r} is not in the alphabet")
    full = len(values) - len(values) % 3
    groups = [
        c + d * 45 + e * 2025
        for c, d, e in zip(values[0:full:3], values[1:full:3], values[2:full:3], strict=True)
    ]
    if groups and max(groups) > 0xFFFF:
        i = next(i for i, n in enumerate(groups) if n > 0xFFFF)
        raise CodeError(f"base45: group at {3 * i} encodes {groups[i]}, more than two bytes")
    pairs = array("H", groups)
    if sys.byteorder == "little":
        pairs.byteswap()
    out = pairs.tobytes()
    if full < len(values):
        n = values[full] + values[full + 1] * 45
        if n > 0xFF:
            raise CodeError(f"base45: final group encodes {n}, more than one byte")
        out += bytes((n,))
    return out
