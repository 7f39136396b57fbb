"""Base45 (RFC 9285): the text form of entry codes.

Base45 exists because its 45 characters are exactly QR's alphanumeric mode, which packs 5.5 bits per
character instead of byte mode's 8, so the same signed bytes make a smaller, easier-to-scan symbol.

Decoding is strict: a text that is not the encoding of some byte string is refused with CodeError
rather than repaired, because a lenient decoder turns many texts into the same bytes and hides
damage. Pure functions, no I/O.
"""

from __future__ import annotations

from ..errors import CodeError

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_VALUES = {ch: i for i, ch in enumerate(ALPHABET)}


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
    try:
        values = [_VALUES[ch] for ch in text]
    except KeyError as exc:
        raise CodeError(f"base45: character {exc.args[0]!r} is not in the alphabet") from None
    out = bytearray()
    full = len(values) - len(values) % 3
    for i in range(0, full, 3):
        n = values[i] + values[i + 1] * 45 + values[i + 2] * 45 * 45
        if n > 0xFFFF:
            raise CodeError(f"base45: group at {i} encodes {n}, more than two bytes")
        out += n.to_bytes(2, "big")
    if full < len(values):
        n = values[full] + values[full + 1] * 45
        if n > 0xFF:
            raise CodeError(f"base45: final group encodes {n}, more than one byte")
        out.append(n)
    return bytes(out)
