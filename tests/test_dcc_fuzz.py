"""Random and mutated input at each layer of an HC1 text: always a Decision, never an exception, and a
mutated code is never accepted unless it still carries the very same signed bytes."""

import zlib
from typing import Any

import cbor2
from codes_helpers import NOW, apply_mutation
from dcc_helpers import (
    EC_CERT,
    EC_KEY,
    RSA_CERT,
    RSA_KEY,
    claims,
    dgc,
    hc1,
    issue,
    kid_of,
    sign1,
    trust,
    verifier,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge_sentry.codes import base45, cose, dcc
from edge_sentry.errors import CodeError
from edge_sentry.verifier import Decision
from edge_sentry.vocabulary import Reason

FUZZ = verifier(trust(EC_CERT, RSA_CERT), passback_s=0)
EC_KID = kid_of(EC_CERT)
FUZZ_SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))

VALID_ES256 = issue(tags=(61, 18))
VALID_PS256 = issue(RSA_KEY, RSA_CERT, body=dgc("recovery"), kid_in="unprotected", tags=())
VALID_COSE = {text: zlib.decompress(base45.decode(text[4:])) for text in (VALID_ES256, VALID_PS256)}

cbor_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=24),
    st.binary(max_size=24),
)
cbor_values = st.recursive(
    cbor_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(st.integers(-300, 300), st.text(max_size=6)), children, max_size=5),
        st.builds(cbor2.CBORTag, st.sampled_from([0, 1, 2, 18, 24, 61, 100, 258, 1004, 55799]), children),
    ),
    max_leaves=24,
)


def decided(text: str) -> Decision:
    decision = FUZZ.verify(text, NOW)
    assert isinstance(decision, Decision)
    assert decision.verdict in ("accept", "deny")
    assert decision.reason in set(Reason)
    return decision


def signed_content(cose_bytes: bytes) -> tuple[bytes, bytes, bytes] | None:
    """What a signature covers, and the signature: equal for two messages that mean the same."""
    try:
        message = cose.decode_sign1(cose_bytes, cwt_tag=True, kid_in_both=True)
    except CodeError:
        return None
    return message.protected, message.payload, message.signature


def inflated(text: str) -> bytes | None:
    try:
        return dcc.inflate(base45.decode(text[4:]))
    except CodeError:
        return None


def test_the_fuzzed_codes_are_valid_unmutated() -> None:
    assert FUZZ.verify(VALID_ES256, NOW).verdict == "accept"
    assert FUZZ.verify(VALID_PS256, NOW).verdict == "accept"


# -- random input, layer by layer -------------------------------------------------------------------


@FUZZ_SETTINGS
@given(st.binary(max_size=1500))
@example(b"")
@example(b"\x78\x9c")
def test_random_bytes_after_hc1_are_denied(raw: bytes) -> None:
    assert decided("HC1:" + base45.encode(raw)).verdict == "deny"


@FUZZ_SETTINGS
@given(st.text(alphabet=base45.ALPHABET, max_size=1500))
def test_random_base45_text_after_hc1_is_denied(text: str) -> None:
    assert decided("HC1:" + text).verdict == "deny"


@FUZZ_SETTINGS
@given(st.binary(max_size=1500), st.integers(0, 9))
def test_random_zlib_payloads_are_denied(raw: bytes, level: int) -> None:
    assert decided("HC1:" + base45.encode(zlib.compress(raw, level))).verdict == "deny"


@FUZZ_SETTINGS
@given(cbor_values)
def test_random_cbor_in_place_of_the_cose_message_is_denied(item: Any) -> None:
    assert decided(hc1(cbor2.dumps(item))).verdict == "deny"


@FUZZ_SETTINGS
@given(
    st.one_of(st.binary(max_size=40), st.builds(cbor2.dumps, cbor_values)),
    cbor_values,
    st.one_of(st.binary(max_size=300), cbor_values),
    st.one_of(st.binary(max_size=300), cbor_values),
    st.sampled_from([(), (18,), (61,), (61, 18), (18, 61)]),
)
def test_random_cose_parts_are_denied(protected, unprotected, payload, signature, tags) -> None:
    item: Any = [protected, unprotected, payload, signature]
    for tag in reversed(tags):
        item = cbor2.CBORTag(tag, item)
    assert decided(hc1(cbor2.dumps(item))).verdict == "deny"


@FUZZ_SETTINGS
@given(cbor_values, st.booleans())
def test_random_cbor_as_a_genuinely_signed_payload_is_denied(item: Any, as_hcert: bool) -> None:
    payload = claims(hcert={1: item}) if as_hcert else cbor2.dumps(item)
    assert decided(hc1(sign1(EC_KEY, payload, kid=EC_KID))).verdict == "deny"


@FUZZ_SETTINGS
@given(
    st.sampled_from(["vaccination", "test", "recovery"]),
    st.sampled_from(["tg", "mp", "dn", "sd", "dt", "tt", "tr", "sc", "fr", "df", "du", "ci", "co", "vp"]),
    cbor_values,
)
@example("recovery", "df", cbor2.CBORTag(1, False))  # decodes to 1970-01-01T00:00Z: a date-time
def test_a_genuinely_signed_certificate_with_any_field_value_is_decided(kind, field, value) -> None:
    body = dgc(kind, **{field: value})
    decision = decided(hc1(sign1(EC_KEY, claims(body), kid=EC_KID)))
    if decision.verdict == "accept":
        # An accepted certificate is one the format reader takes, as the verifier sees it: decoded,
        # with CBOR's date tags already turned into dates.
        assert dcc.read_entry(cose.loads(cbor2.dumps(body))) is not None


@FUZZ_SETTINGS
@given(
    st.one_of(cbor_values, st.integers()),
    st.one_of(cbor_values, st.integers()),
    st.one_of(cbor_values, st.text(max_size=4)),
)
def test_any_signed_claim_values_are_decided(iat, exp, iss) -> None:
    decided(hc1(sign1(EC_KEY, claims(iat=iat, exp=exp, iss=iss), kid=EC_KID)))


# -- mutations of valid codes ---------------------------------------------------------------------


def _text_mutation(length: int) -> st.SearchStrategy:
    return st.one_of(
        st.tuples(st.just("replace"), st.integers(0, length - 1), st.sampled_from(base45.ALPHABET)),
        st.tuples(st.just("insert"), st.integers(0, length), st.sampled_from(base45.ALPHABET)),
        st.tuples(st.just("delete"), st.integers(0, length - 1), st.just("")),
        st.tuples(st.just("truncate"), st.integers(0, length - 1), st.just("")),
    )


@FUZZ_SETTINGS
@given(st.sampled_from([VALID_ES256, VALID_PS256]), st.data())
def test_a_mutated_text_is_never_accepted_unless_it_inflates_to_the_same_message(original, data) -> None:
    text = original
    for mutation in data.draw(st.lists(_text_mutation(len(original)), min_size=1, max_size=4)):
        text = apply_mutation(text, mutation)
    if decided(text).verdict == "accept":
        # Only bits the format ignores may have changed (say, deflate's padding in its last byte).
        assert inflated(text) == VALID_COSE[original]


@FUZZ_SETTINGS
@given(st.sampled_from([VALID_ES256, VALID_PS256]), st.data())
def test_a_mutated_cose_message_is_never_accepted_unless_its_signed_bytes_stay(original, data) -> None:
    raw = bytearray(VALID_COSE[original])
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        if action == "flip":
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "set":
            raw[i] = data.draw(st.integers(0, 255))
        elif action == "insert":
            raw.insert(i, data.draw(st.integers(0, 255)))
        elif len(raw) > 1:
            del raw[i]
    mutated = bytes(raw)
    if decided(hc1(mutated)).verdict == "accept":
        assert signed_content(mutated) == signed_content(VALID_COSE[original])


@FUZZ_SETTINGS
@given(st.sampled_from([VALID_ES256, VALID_PS256]), st.data())
def test_a_mutated_zlib_stream_is_never_accepted_unless_it_inflates_the_same(original, data) -> None:
    raw = bytearray(base45.decode(original[4:]))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    text = "HC1:" + base45.encode(bytes(raw))
    if decided(text).verdict == "accept":
        assert inflated(text) == VALID_COSE[original]
