"""Base45 against RFC 9285's examples, its strictness rules, and round trips of arbitrary bytes."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_sentry.codes import base45
from edge_sentry.errors import CodeError

RFC_EXAMPLES = [
    (b"AB", "BB8"),
    (b"Hello!!", "%69 VD92EX0"),
    (b"base-45", "UJCLQE7W581"),
    (b"ietf!", "QED8WEX0"),
]


@pytest.mark.parametrize(("raw", "text"), RFC_EXAMPLES)
def test_encodes_rfc_9285_examples(raw: bytes, text: str) -> None:
    assert base45.encode(raw) == text


@pytest.mark.parametrize(("raw", "text"), RFC_EXAMPLES)
def test_decodes_rfc_9285_examples(raw: bytes, text: str) -> None:
    assert base45.decode(text) == raw


def test_empty_input_is_empty_output() -> None:
    assert base45.encode(b"") == ""
    assert base45.decode("") == b""


def test_extremes_of_each_group_size() -> None:
    assert base45.encode(b"\xff\xff") == "FGW"
    assert base45.decode("FGW") == b"\xff\xff"
    assert base45.encode(b"\xff") == "U5"
    assert base45.encode(b"\x00\x00") == "000"


@pytest.mark.parametrize("text", ["GGW", "ZZZ", ":::"])
def test_three_character_group_above_65535_is_refused(text: str) -> None:
    with pytest.raises(CodeError, match="more than two bytes"):
        base45.decode(text)


def test_two_character_tail_above_255_is_refused() -> None:
    # "V5" is 31 + 5*45 = 256: one more than a byte holds.
    with pytest.raises(CodeError, match="more than one byte"):
        base45.decode("BB8V5")


@pytest.mark.parametrize("text", ["A", "BB8A", "%69 VD92EX0AB"])
def test_length_leaving_one_character_is_refused(text: str) -> None:
    with pytest.raises(CodeError, match="length"):
        base45.decode(text)


@pytest.mark.parametrize("text", ["bb8", "BB#", "BB\n", "ÄB8", "BB=", "BB8\x00A"])
def test_characters_outside_the_alphabet_are_refused(text: str) -> None:
    with pytest.raises(CodeError, match="alphabet"):
        base45.decode(text)


@given(st.binary(max_size=300))
def test_round_trip_of_any_bytes(raw: bytes) -> None:
    text = base45.encode(raw)
    assert set(text) <= set(base45.ALPHABET)
    assert len(text) == len(raw) // 2 * 3 + len(raw) % 2 * 2
    assert base45.decode(text) == raw


@given(st.text(alphabet=base45.ALPHABET, max_size=60))
def test_every_accepted_text_is_the_encoding_of_its_bytes(text: str) -> None:
    # Strictness means one text per byte string: decoding then encoding gives the text back.
    try:
        raw = base45.decode(text)
    except CodeError:
        return
    assert base45.encode(raw) == text
