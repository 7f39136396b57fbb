"""The DCC format: envelope layers, the capped inflate, claims and entries, signer certificates."""

import random
import time
import zlib
from datetime import UTC, date, datetime, timedelta, timezone

import cbor2
import pytest
from codes_helpers import NOW, text_of_length
from cryptography.hazmat.primitives.asymmetric import ec
from dcc_helpers import (
    CI,
    DAY,
    EC_CERT,
    EC_KEY,
    REMOVE,
    RSA_CERT,
    RSA_KEY,
    certificate,
    claims,
    day,
    dgc,
    hc1,
    issue,
    kid_of,
    sign1,
    sub_of,
)

from edge_sentry.codes import base45, cose, dcc
from edge_sentry.errors import CodeError, UnsupportedAlgorithmError

KID = kid_of(EC_CERT)


def payload_of(text: str) -> bytes:
    return dcc.parse(text).message.payload


# -- envelope ------------------------------------------------------------------------------------


def test_parse_reads_kid_and_algorithm_without_touching_the_payload() -> None:
    code = dcc.parse(issue())
    assert code.kid == KID
    assert code.message.alg == cose.ALG_ES256
    assert dcc.parse(issue(RSA_KEY, RSA_CERT)).message.alg == cose.ALG_PS256


@pytest.mark.parametrize("kid_in", ["protected", "unprotected", "both"])
def test_the_kid_is_found_in_either_header(kid_in: str) -> None:
    assert dcc.parse(issue(kid_in=kid_in)).kid == KID


def test_the_protected_kid_wins_over_an_unprotected_one() -> None:
    protected = cbor2.dumps({1: -7, 4: KID})
    text = hc1(cbor2.dumps(cbor2.CBORTag(18, [protected, {4: b"otherkid"}, claims(), b"s" * 64])))
    assert dcc.parse(text).kid == KID


@pytest.mark.parametrize("tags", [(61, 18), (18,), (61,), ()])
def test_cwt_and_cose_tags_are_optional(tags: tuple[int, ...]) -> None:
    assert dcc.parse(issue(tags=tags)).kid == KID


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ES1:6BF", "does not start"),
        ("hc1:6BF", "does not start"),
        ("HC1:abc", "base45"),
        ("HC1:" + "0" * 4093, "longer than"),
        ("HC1:" + base45.encode(b"not zlib at all"), "zlib"),
        ("HC1:" + base45.encode(zlib.compress(b"x" * 100)[:-6]), "truncated"),
        ("HC1:" + base45.encode(zlib.compress(b"\xa0") + b"tail"), "after the zlib stream"),
        ("HC1:" + base45.encode(zlib.compress(b"\xff\xff")), "not valid CBOR"),
        ("HC1:" + base45.encode(zlib.compress(cbor2.dumps([1, 2, 3, 4]))), "protected header"),
        (hc1(cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -7}), {}, b"p", b"s"]))), "kid"),
        (hc1(cbor2.dumps([cbor2.dumps({1: -7, 4: b"short"}), {}, b"p", b"s"])), "kid"),
    ],
)
def test_each_broken_layer_is_a_code_error(text: str, message: str) -> None:
    with pytest.raises(CodeError, match=message):
        dcc.parse(text)


@pytest.mark.parametrize("alg", [-8, -47, -257, "ES256"])
def test_other_algorithms_are_unsupported(alg) -> None:
    text = hc1(cbor2.dumps([cbor2.dumps({1: alg, 4: KID}), {}, claims(), b"s" * 64]))
    with pytest.raises(UnsupportedAlgorithmError):
        dcc.parse(text)


def padded_hc1(length: int) -> str:
    """A genuinely signed HC1 text of exactly `length` characters, grown by a claim nobody reads and
    made of bytes zlib cannot shrink."""
    noise = random.Random(7).randbytes(length)
    body = cbor2.loads(claims())
    return text_of_length(
        length, lambda size: hc1(sign1(EC_KEY, cbor2.dumps(body | {-70000: noise[:size]}), kid=KID))
    )


def test_parse_reads_a_text_of_exactly_4096_bytes_and_refuses_the_next_longer_one() -> None:
    assert dcc.parse(padded_hc1(4096)).kid == KID
    with pytest.raises(CodeError, match="longer than 4096"):
        dcc.parse(padded_hc1(4098))  # Base45 has no 4097-character spelling of a message


def test_the_byte_count_decides_for_texts_of_few_characters() -> None:
    with pytest.raises(CodeError, match="longer than 4096"):
        dcc.parse("HC1:" + "é" * 2046 + "a")  # 2051 characters, 4097 bytes
    with pytest.raises(CodeError) as refused:
        dcc.parse("HC1:" + "é" * 2046)  # 4096 bytes: read, and refused only as Base45
    assert "longer" not in str(refused.value)


# -- the inflate cap -----------------------------------------------------------------------------


def test_inflate_takes_a_stream_up_to_the_cap() -> None:
    data = bytes(range(256)) * (dcc.MAX_INFLATED // 256)
    assert dcc.inflate(zlib.compress(data)) == data


def test_a_zlib_bomb_is_refused_at_the_cap_without_inflating_it() -> None:
    bomb = zlib.compress(b"\x00" * (200 * 1024 * 1024), 9)  # 200 MiB from ~200 KB
    small_bomb = zlib.compress(b"\x00" * (dcc.MAX_INFLATED + 1), 9)
    assert len(small_bomb) < 100
    for data in (bomb, small_bomb):
        with pytest.raises(CodeError, match="more than"):
            dcc.inflate(data)


def test_a_bomb_behind_hc1_is_malformed_before_cbor() -> None:
    # ~2.4 KB of text that would inflate a thousand-fold
    text = "HC1:" + base45.encode(zlib.compress(b"\x00" * 2_500_000, 9))
    assert len(text) < dcc.MAX_TEXT_BYTES
    with pytest.raises(CodeError, match="more than"):
        dcc.parse(text)


# -- claims --------------------------------------------------------------------------------------


def test_claims_keep_only_what_a_decision_needs() -> None:
    parsed = dcc.decode_claims(claims())
    assert (parsed.iss, parsed.iat, parsed.exp) == ("AT", NOW - DAY, NOW + 30 * DAY)
    assert parsed.sub == sub_of(CI) == dcc.pseudonym(CI)
    assert parsed.entry == dcc.Vaccination("840539006", "EU/1/20/1528", 2, 2, date.fromisoformat(day(-30)))
    assert "sub=<hidden>" in repr(parsed) and "Musterfrau" not in repr(parsed)
    assert "entry=<vaccination>" in repr(parsed)
    assert "entry=<None>" in repr(dcc.decode_claims(claims(dgc(ci=REMOVE))))


def test_entries_of_each_kind_are_typed() -> None:
    test = dcc.read_entry(dgc("pcr", sc="2026-11-17T10:27:15+02:00"))
    sampled = datetime(2026, 11, 17, 8, 27, 15, tzinfo=UTC)
    assert test == dcc.Test("840539006", "LP6464-4", "260415000", sampled)
    recovery = dcc.read_entry(dgc("recovery", fr="2026-09-01", df="2026-09-12", du="2027-02-28"))
    assert recovery == dcc.Recovery("840539006", date(2026, 9, 1), date(2026, 9, 12), date(2027, 2, 28))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-17T10:27:15Z", datetime(2026, 11, 17, 10, 27, 15, tzinfo=UTC)),
        ("2026-11-17T10:27:15.123Z", datetime(2026, 11, 17, 10, 27, 15, 123000, tzinfo=UTC)),
        ("2026-11-17T10:27:15", datetime(2026, 11, 17, 10, 27, 15, tzinfo=UTC)),  # no offset: UTC
        ("2026-11-17T10:27:15-05:00", datetime(2026, 11, 17, 15, 27, 15, tzinfo=UTC)),
    ],
)
def test_sample_times_in_the_iso_forms_issuers_write(value: str, expected: datetime) -> None:
    assert dcc.read_entry(dgc("test", sc=value)).sampled == expected


@pytest.fixture
def local_time_new_york(monkeypatch: pytest.MonkeyPatch):
    """The machine's local time zone five hours behind UTC, restored afterwards."""
    monkeypatch.setenv("TZ", "EST+05")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("local_time_new_york")
@pytest.mark.parametrize(
    "value", ["2026-11-17T10:27:15", "2026-11-17T10:27:15Z", "2026-11-17T12:27:15+02:00"]
)
def test_sample_times_are_utc_whatever_the_local_time_zone(value: str) -> None:
    sampled = dcc.read_entry(dgc("test", sc=value)).sampled
    assert sampled == datetime(2026, 11, 17, 10, 27, 15, tzinfo=UTC)
    assert (sampled.hour, sampled.utcoffset()) == (10, timedelta(0))


def test_a_sample_time_may_be_a_cbor_date_time() -> None:
    body = dgc("test", sc=datetime(2026, 11, 17, 12, 27, 15, tzinfo=timezone(timedelta(hours=2))))
    entry = dcc.decode_claims(claims(body)).entry
    assert isinstance(entry, dcc.Test)
    assert entry.sampled == datetime(2026, 11, 17, 10, 27, 15, tzinfo=UTC)
    assert entry.sampled.utcoffset() == timedelta(0)


def test_dates_may_be_date_times_or_cbor_dates() -> None:
    assert dcc.read_entry(dgc(dt="2026-10-19T00:00:00Z")).date == date(2026, 10, 19)
    assert dcc.read_entry(dgc(dt=date(2026, 10, 19))).date == date(2026, 10, 19)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (cbor2.dumps([1, 2]), "must be a CBOR map"),
        (b"\xa1\x01", "not valid CBOR"),
        (claims() + b"\x00", "trailing"),
        (claims(iss=""), "iss"),
        (claims(iss=7), "iss"),
        (claims(iat=REMOVE), "iat"),
        (claims(exp="tomorrow"), "exp"),
        (claims(exp=True), "exp"),
        (claims(iat=-1), "out of range"),
        (claims(exp=2**41), "out of range"),
        (claims(iat=NOW, exp=NOW), "after iat"),
        (claims(hcert={}), "hcert"),
        (claims(hcert={1: [1]}), "hcert"),
        (claims(hcert=b"\xa0"), "hcert"),
        (claims(iss=REMOVE), "iss"),
    ],
)
def test_claims_off_the_format_are_code_errors(payload: bytes, message: str) -> None:
    with pytest.raises(CodeError, match=message):
        dcc.decode_claims(payload)


@pytest.mark.parametrize(
    "body",
    [
        {"ver": "1.3.0"},
        dgc() | {"t": dgc("test")["t"]},
        dgc() | {"v": []},
        dgc() | {"v": dgc()["v"] * 2},
        dgc() | {"v": ["entry"]},
        dgc(ci=REMOVE),
        dgc(ci=""),
    ],
)
def test_an_hcert_without_one_entry_and_its_ci_is_read_with_no_entry(body: dict) -> None:
    parsed = dcc.decode_claims(claims(body))
    assert parsed.entry is None
    assert parsed.iss == "AT"


def test_the_kinds_an_hcert_names_are_kept_for_the_key_usage_check() -> None:
    assert dcc.decode_claims(claims(dgc() | {"t": dgc("test")["t"]})).kinds == {"vaccination", "test"}
    assert dcc.decode_claims(claims(dgc("recovery"))).kinds == {"recovery"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (dgc(tg=840539006), "disease"),
        (dgc(tg=""), "disease"),
        (dgc(mp=None), "product"),
        (dgc(mp=""), "product"),
        (dgc(dn="2"), "dose"),
        (dgc(dn=0), "dose"),
        (dgc(sd=10), "doses"),
        (dgc(dn=True), "dose"),
        (dgc(dt="11/10/2026"), "date"),
        (dgc(dt="2026-02-30"), "date"),
        (dgc(dt="2026-10-19\n"), "date"),
        (dgc(dt=20261019), "date"),
        (dgc("test", tt=REMOVE), "test_type"),
        (dgc("test", tr=260415000), "result"),
        (dgc("test", tr=""), "result"),
        (dgc("test", sc="2026-11-17"), "sampled"),
        (dgc("test", sc="2026-11-17T25:00:00Z"), "sampled"),
        (dgc("recovery", fr=REMOVE), "first_positive"),
    ],
)
def test_a_field_off_its_form_is_none_for_the_rules_to_judge(body: dict, field: str) -> None:
    entry = dcc.decode_claims(claims(body)).entry
    assert entry is not None and getattr(entry, field) is None


def test_content_the_rules_judge_is_kept_as_written() -> None:
    entry = dcc.decode_claims(claims(dgc("recovery", df="2026-10-01", du="2026-09-01"))).entry
    assert isinstance(entry, dcc.Recovery) and entry.valid_until < entry.valid_from  # type: ignore[operator]
    fields_no_rule_reads = dgc(co="", vp=REMOVE, ma=7, **{"is": ""})
    assert dcc.decode_claims(claims(fields_no_rule_reads)).entry == dcc.decode_claims(claims()).entry


def test_numeric_dates_may_be_floats_or_epoch_tags() -> None:
    assert dcc.decode_claims(claims(iat=NOW - 0.5, exp=float(NOW + 10))).iat == NOW - 1
    tagged = claims(iat=datetime.fromtimestamp(NOW - 10, UTC), exp=NOW + 10)
    assert dcc.decode_claims(tagged).iat == NOW - 10
    with pytest.raises(CodeError):
        dcc.decode_claims(claims(iat=float("nan")))


def test_numeric_dates_run_from_0_to_just_under_2_to_the_40() -> None:
    edges = dcc.decode_claims(claims(iat=0, exp=2**40 - 1))
    assert (edges.iat, edges.exp) == (0, 2**40 - 1)
    assert dcc.decode_claims(claims(iat=0.5, exp=2**40 - 0.5)).iat == 0  # whole seconds, still in range
    for too_far in ({"exp": 2**40}, {"exp": 2.0**40}, {"iat": -0.5}):
        with pytest.raises(CodeError, match="out of range"):
            dcc.decode_claims(claims(**too_far))


def test_doses_run_from_1_to_9() -> None:
    entry = dcc.decode_claims(claims(dgc(dn=1, sd=9))).entry
    assert isinstance(entry, dcc.Vaccination) and (entry.dose, entry.doses) == (1, 9)


def test_iss_is_required() -> None:
    with pytest.raises(CodeError, match="iss"):
        dcc.decode_claims(claims(iss=REMOVE))


def test_the_pseudonym_is_sha256_of_ci_cut_to_16_bytes_and_tells_certificates_apart() -> None:
    assert dcc.pseudonym(CI) == sub_of(CI)
    assert len(dcc.pseudonym(CI)) == 16
    assert dcc.pseudonym(CI) != dcc.pseudonym(CI[:-1] + "C")


def test_verify_needs_the_signers_key() -> None:
    code = dcc.parse(issue())
    assert code.verify(dcc.load_signer(EC_CERT))
    assert not code.verify(dcc.load_signer(RSA_CERT))
    other = dcc.load_signer(certificate(ec.generate_private_key(ec.SECP256R1())))
    assert not code.verify(other)


def test_a_payload_is_not_decoded_by_parse() -> None:
    # A signed payload that is not CBOR parses fine as an envelope: only the claims step refuses it.
    text = hc1(sign1(EC_KEY, b"\xff\xfe", kid=KID))
    code = dcc.parse(text)
    with pytest.raises(CodeError):
        code.unverified_claims()


# -- signer certificates -------------------------------------------------------------------------


def test_a_signer_is_parsed_with_its_validity_and_kinds() -> None:
    signer = dcc.load_signer(certificate(not_before=NOW - 10, not_after=NOW + 10))
    assert signer is not None
    assert (signer.not_before, signer.not_after) == (NOW - 10, NOW + 10)
    assert signer.kinds == frozenset(dcc.KINDS)
    assert isinstance(signer.public_key, ec.EllipticCurvePublicKey)


@pytest.mark.parametrize(
    ("kinds", "extra", "allowed"),
    [
        (("test",), (), {"test"}),
        (("vaccination", "recovery"), (), {"vaccination", "recovery"}),
        ((), ("1.3.6.1.4.1.0.1847.2021.1.2",), {"vaccination"}),  # the alternative OID in circulation
        ((), ("1.3.6.1.5.5.7.3.1",), {"vaccination", "test", "recovery"}),  # unrelated usage: no limit
    ],
)
def test_extended_key_usage_limits_what_a_signer_may_sign(kinds, extra, allowed) -> None:
    signer = dcc.load_signer(certificate(kinds=kinds, extra_eku=extra))
    assert signer is not None
    assert {k for k in dcc.KINDS if signer.may_sign(k)} == allowed


def test_a_signer_issued_by_a_csca_is_parsed_like_a_self_signed_one() -> None:
    from dcc_helpers import CSCA_KEY

    signer = dcc.load_signer(certificate(csca=CSCA_KEY))
    assert signer is not None and signer.public_key.public_numbers() == EC_KEY.public_key().public_numbers()


@pytest.mark.parametrize("der", [b"", b"0\x82\x01\x00not-really-DER", EC_CERT[:-5], b"\x00" * 300])
def test_unusable_certificates_give_no_signer(der: bytes) -> None:
    assert dcc.load_signer(der) is None
