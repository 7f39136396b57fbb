"""The verifier: every reason of docs/protocol.md 2, their precedence, passback, and no raising."""

import dataclasses
import functools

import cbor2
import pytest
from codes_helpers import (
    ISSUER,
    NOW,
    SUB,
    apply_mutation,
    make_verifier,
    text_of_length,
    trust_doc,
    trust_list,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_sentry.codes import base45, cose, es1, keys, vc1
from edge_sentry.codes.trust import TrustList
from edge_sentry.config import DeviceConfig, Es1Config, GateConfig
from edge_sentry.verifier import Decision, PassbackWindow, Verifier
from edge_sentry.vocabulary import Reason

KEY = Ed25519PrivateKey.generate()
OTHER_SUB = bytes(range(16, 32))


def code(**kwargs) -> str:
    kwargs = {"issuer": ISSUER, "sub": SUB, "lifetime_s": 60, "iat": NOW} | kwargs
    return es1.issue(KEY, **kwargs)


@pytest.fixture
def verifier() -> Verifier:
    return make_verifier(trust_list(KEY))


def forged_with_trusted_kid(changes: dict | None = None) -> str:
    """Claims that would pass, signed by an untrusted key but naming the trusted key's kid."""
    claims = {1: ISSUER, 2: SUB, 6: NOW, 4: NOW + 60, -65537: 0} | (changes or {})
    header = cbor2.dumps({1: -8, 4: keys.kid_of(KEY)})
    payload = cbor2.dumps(claims)
    sig = Ed25519PrivateKey.generate().sign(cose.sig_structure(header, payload))
    return "ES1:" + base45.encode(cose.encode_sign1(header, {}, payload, sig))


def signed_claims(payload: bytes) -> str:
    """Any payload, genuinely signed by the trusted key."""
    return "ES1:" + base45.encode(cose.sign1(KEY, payload, kid=keys.kid_of(KEY)))


# -- accept ----------------------------------------------------------------------------------


def test_fresh_green_code_from_a_trusted_key_is_accepted(verifier: Verifier) -> None:
    decision = verifier.verify(code(), NOW + 5)
    assert decision == Decision(
        "accept", "ok", "es1", keys.kid_of(KEY), NOW, NOW + 60, ISSUER, SUB, False, None
    )
    assert decision.accepted


def test_code_for_this_venue_is_accepted(verifier: Verifier) -> None:
    assert verifier.verify(code(venue="arena"), NOW).reason == "ok"


def test_configured_statuses_are_accepted() -> None:
    verifier = make_verifier(trust_list(KEY), es1=Es1Config(accept_status=[0, 1]))
    assert verifier.verify(code(status=1), NOW).verdict == "accept"


# -- each denial -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "ES1:" + "0" * 4093,
        "ES1:" + "€" * 1400,  # under 4096 characters, over 4096 bytes
        "ES1:abc",
        "ES1:",
        "ES1:" + base45.encode(b"\x00\x01\x02"),
        "ES1:" + base45.encode(cose.sign1(KEY, b"\xa0")),  # no kid
        signed_claims(cbor2.dumps({1: ISSUER})),
        signed_claims(b"\xff"),
    ],
)
def test_malformed(verifier: Verifier, text: str) -> None:
    decision = verifier.verify(text, NOW)
    assert (decision.verdict, decision.reason, decision.scheme) == ("deny", "malformed", "es1")


def padded_code(length: int) -> str:
    """A genuine, acceptable code whose text is exactly `length` characters, grown by a claim the
    verifier ignores (CWT lets an issuer add labels of its own)."""
    claims = {1: ISSUER, 2: SUB, 6: NOW, 4: NOW + 60, -65537: 0}
    return text_of_length(length, lambda size: signed_claims(cbor2.dumps(claims | {-70000: b"x" * size})))


def test_a_code_of_exactly_4096_characters_is_read_and_one_of_4098_refused() -> None:
    """Base45 texts grow by 2 or 3 characters, so 4098 is the shortest genuine code over the cap."""
    at_cap = padded_code(4096)
    assert make_verifier(trust_list(KEY)).verify(at_cap, NOW).reason == "ok"
    over = padded_code(4098)
    assert make_verifier(trust_list(KEY)).verify(over, NOW) == Decision("deny", "malformed", "es1")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("XX1:" + "a" * 4092, "unsupported"),  # 4096 bytes: read far enough to see its prefix
        ("XX1:" + "a" * 4093, "malformed"),  # 4097 bytes
        ("XX1:" + "é" * 2046, "unsupported"),  # 2050 characters, 4096 bytes
        ("XX1:" + "é" * 2046 + "a", "malformed"),  # 2051 characters, 4097 bytes
        ("XX1:" + "\ud800" * 1364, "unsupported"),  # a lone surrogate counts as the 3 bytes it takes
        ("XX1:" + "\ud800" * 1364 + "a", "malformed"),
    ],
)
def test_the_cap_is_4096_utf8_bytes_whatever_the_scheme(verifier: Verifier, text: str, reason: str) -> None:
    assert verifier.verify(text, NOW) == Decision("deny", reason, None)


def test_a_dcc_family_text_over_the_cap_is_malformed_at_the_same_edge(verifier: Verifier) -> None:
    assert verifier.verify("HC2:" + "A" * 4092, NOW) == Decision("deny", "unsupported", "dcc")
    assert verifier.verify("HC2:" + "A" * 4093, NOW) == Decision("deny", "malformed", "dcc")


def test_non_text_input_is_malformed(verifier: Verifier) -> None:
    assert verifier.verify(b"ES1:BB8", NOW).reason == "malformed"  # type: ignore[arg-type]
    assert verifier.verify(None, NOW).reason == "malformed"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "scheme"),
    [
        ("HC2:6BFOXN*TS0BI$ZD4N9:9S6RCVN5+O30K3/XIV0W23NTDE", "dcc"),  # a later version of the DCC
        ("HC9:", "dcc"),
        ("HCX:6BFOXN", None),
        ("https://x", None),
        ("", None),
    ],
)
def test_unsupported(verifier: Verifier, text: str, scheme: str | None) -> None:
    decision = verifier.verify(text, NOW)
    assert (decision.verdict, decision.reason, decision.scheme) == ("deny", "unsupported", scheme)


def test_es1_decisions_do_not_depend_on_the_dcc_rule_set() -> None:
    from edge_sentry.config import DccConfig

    for dcc in (DccConfig(), DccConfig(accept=[], skew_s=0)):
        verifier = Verifier(
            Es1Config(), GateConfig(), DeviceConfig(venue="arena"), trust_list(KEY), dcc=dcc
        )
        assert verifier.verify(code(), NOW).reason == "ok"
        assert verifier.verify(code(iat=NOW + 30, sub=OTHER_SUB), NOW).reason == "ok"  # es1.skew_s
        assert verifier.verify(code(iat=NOW + 31), NOW).reason == "not-yet-valid"


def test_an_hc1_text_goes_to_the_dcc_path(verifier: Verifier) -> None:
    decision = verifier.verify("HC1:" + base45.encode(b"\x78\x9c"), NOW)
    assert (decision.verdict, decision.reason, decision.scheme) == ("deny", "malformed", "dcc")


def test_unknown_key(verifier: Verifier) -> None:
    stranger = es1.issue(Ed25519PrivateKey.generate(), issuer="x", lifetime_s=60, iat=NOW)
    decision = verifier.verify(stranger, NOW)
    assert decision == Decision("deny", "unknown-key", "es1", es1.parse(stranger).kid)
    assert decision.iat is None and decision.sub is None  # nothing read from an untrusted payload


def test_a_trusted_key_speaking_for_another_issuer_is_an_unknown_key(verifier: Verifier) -> None:
    decision = verifier.verify(code(issuer="someone-else"), NOW)
    assert decision == Decision("deny", "unknown-key", "es1", keys.kid_of(KEY))  # no claim is reported


def test_each_key_is_known_only_for_its_own_issuer() -> None:
    """Two issuers of one fleet: the first one's key cannot sign codes in the second one's name."""
    doc = trust_doc(KEY)
    other = Ed25519PrivateKey.generate()
    doc["keys"].append(keys.trust_entry(other, "venue-b"))
    verifier = make_verifier(TrustList.from_mapping(doc))
    assert verifier.verify(code(issuer="venue-b"), NOW).reason == "unknown-key"
    by_other = functools.partial(es1.issue, other, lifetime_s=60, iat=NOW)
    assert verifier.verify(by_other(issuer=ISSUER), NOW).reason == "unknown-key"
    assert verifier.verify(by_other(issuer="venue-b"), NOW).reason == "ok"
    assert verifier.verify(code(sub=OTHER_SUB), NOW).reason == "ok"


def test_bad_signature(verifier: Verifier) -> None:
    decision = verifier.verify(forged_with_trusted_kid(), NOW)
    assert decision == Decision("deny", "bad-signature", "es1", keys.kid_of(KEY))


def test_signed_claims_off_the_format_are_malformed_under_the_signing_kid(verifier: Verifier) -> None:
    decision = verifier.verify(signed_claims(cbor2.dumps({1: ISSUER})), NOW)
    assert decision == Decision("deny", "malformed", "es1", keys.kid_of(KEY))


def test_not_yet_valid_beyond_the_skew(verifier: Verifier) -> None:
    assert verifier.verify(code(iat=NOW + 31), NOW).reason == "not-yet-valid"
    assert verifier.verify(code(iat=NOW + 30), NOW).reason == "ok"


def test_expired_beyond_the_skew(verifier: Verifier) -> None:
    text = code(lifetime_s=20)  # exp = NOW + 20; skew 30
    assert verifier.verify(text, NOW + 50).reason == "expired"
    assert verifier.verify(text, NOW + 49).reason == "ok"


def test_stale_after_max_age_plus_skew(verifier: Verifier) -> None:
    text = code(lifetime_s=3600)  # still within exp; max_age 60 + skew 30
    assert verifier.verify(text, NOW + 91).reason == "stale"
    assert verifier.verify(text, NOW + 90).reason == "ok"


def test_max_age_comes_from_config() -> None:
    verifier = make_verifier(trust_list(KEY), es1=Es1Config(max_age_s=10, skew_s=0))
    assert verifier.verify(code(), NOW + 11).reason == "stale"


def test_status_not_in_accept_set(verifier: Verifier) -> None:
    for status in (1, 2):
        decision = verifier.verify(code(status=status), NOW)
        assert (decision.verdict, decision.reason) == ("deny", "status")


@pytest.mark.parametrize("what", ["kid", "sub"])
def test_revoked(what: str) -> None:
    revoked = {"revoked_kids": (keys.kid_of(KEY),)} if what == "kid" else {"revoked_subs": (SUB,)}
    verifier = make_verifier(trust_list(KEY, **revoked))
    assert verifier.verify(code(), NOW).reason == "revoked"
    other = verifier.verify(code(sub=OTHER_SUB), NOW)
    assert other.reason == ("revoked" if what == "kid" else "ok")


def test_wrong_venue(verifier: Verifier) -> None:
    decision = verifier.verify(code(venue="stadium"), NOW)
    assert (decision.verdict, decision.reason) == ("deny", "wrong-venue")


def test_passback_within_the_window_only(verifier: Verifier) -> None:
    assert verifier.verify(code(), NOW).verdict == "accept"
    assert verifier.verify(code(iat=NOW + 10), NOW + 10).reason == "passback"
    assert verifier.verify(code(sub=OTHER_SUB, iat=NOW + 10), NOW + 10).reason == "ok"
    assert verifier.verify(code(iat=NOW + 30), NOW + 30).reason == "ok"  # passback_s = 30


def test_passback_window_comes_from_config() -> None:
    verifier = make_verifier(trust_list(KEY), gate=GateConfig(passback_s=0))
    assert verifier.verify(code(), NOW).reason == "ok"
    assert verifier.verify(code(), NOW).reason == "ok"


def test_only_an_accept_enters_the_passback_window(verifier: Verifier) -> None:
    assert verifier.verify(code(status=2), NOW).reason == "status"
    assert verifier.verify(code(venue="stadium"), NOW).reason == "wrong-venue"
    assert verifier.verify(code(paper=True), NOW).reason == "assist"
    assert verifier.verify(code(), NOW + 1).reason == "ok"


def test_paper_code_needs_assistance_and_is_never_stale(verifier: Verifier) -> None:
    text = code(paper=True, lifetime_s=86400)
    decision = verifier.verify(text, NOW + 3600)
    assert (decision.verdict, decision.reason, decision.scheme) == ("deny", "assist", "es1")
    assert (decision.issuer, decision.kid, decision.paper) == (ISSUER, keys.kid_of(KEY), True)
    assert decision.sub == SUB
    assert verifier.verify(text, NOW + 86400 + 30).reason == "expired"


def test_assisted_grant_enters_the_passback_window(verifier: Verifier) -> None:
    decision = verifier.verify(code(paper=True, lifetime_s=86400), NOW)
    verifier.record_assisted(decision, NOW)
    assert verifier.verify(code(paper=True, lifetime_s=86400), NOW + 5).reason == "passback"


# -- venue codes ------------------------------------------------------------------------------


ROOT = Ed25519PrivateKey.generate()
HERE = {"site": "s1", "venue": "arena", "entrance": "north", "name": "The Arena"}


@pytest.mark.parametrize(
    ("text", "root", "reason"),
    [
        (vc1.issue(ROOT, **HERE), ROOT, "ok"),
        (vc1.issue(ROOT, **HERE | {"entrance": "south"}), ROOT, "wrong-venue"),
        (vc1.issue(ROOT, **HERE | {"site": "s2"}), ROOT, "wrong-venue"),
        (vc1.issue(ROOT, **HERE), None, "unknown-key"),
        (vc1.issue(Ed25519PrivateKey.generate(), **HERE), ROOT, "unknown-key"),
        ("VC1:BB8", ROOT, "malformed"),
    ],
)
def test_venue_code_never_opens_the_gate(text: str, root, reason: str) -> None:
    decision = make_verifier(trust_list(KEY), root=root).verify(text, NOW)
    assert (decision.verdict, decision.reason, decision.scheme) == ("deny", reason, "vc1")
    assert (decision.venue_code is not None) == (reason in ("ok", "wrong-venue"))


def test_forged_venue_code_is_a_bad_signature() -> None:
    header = cbor2.dumps({1: -8, 4: keys.kid_of(ROOT)})
    payload = cbor2.dumps(HERE | {"issued": 1})
    sig = Ed25519PrivateKey.generate().sign(cose.sig_structure(header, payload))
    text = "VC1:" + base45.encode(cose.encode_sign1(header, {}, payload, sig))
    decision = make_verifier(trust_list(KEY), root=ROOT).verify(text, NOW)
    assert (decision.verdict, decision.reason) == ("deny", "bad-signature")


def test_a_root_signed_trust_list_shown_as_a_venue_code_opens_nothing_and_proves_nothing() -> None:
    signed = trust_list(KEY, audience={"sites": ["s1"]}).signed(ROOT)
    decision = make_verifier(trust_list(KEY), root=ROOT).verify("VC1:" + base45.encode(signed), NOW)
    assert (decision.verdict, decision.reason, decision.venue_code) == ("deny", "malformed", None)


def test_genuine_venue_code_carries_its_map() -> None:
    verifier = make_verifier(trust_list(KEY), root=ROOT)
    decision = verifier.verify(vc1.issue(ROOT, **HERE, issued=9), 0)
    assert decision.venue_code == HERE | {"issued": 9}


# -- precedence -------------------------------------------------------------------------------


def test_authenticity_is_checked_before_any_claim() -> None:
    verifier = make_verifier(trust_list(KEY, revoked_subs=(SUB,)))
    expired_forgery = forged_with_trusted_kid({6: NOW - 9999, 4: NOW - 9000, -65537: 2})
    assert verifier.verify(expired_forgery, NOW).reason == "bad-signature"
    garbage_forgery = forged_with_trusted_kid({1: 42})
    assert verifier.verify(garbage_forgery, NOW).reason == "bad-signature"


def test_revocation_outranks_time_and_status() -> None:
    verifier = make_verifier(trust_list(KEY, revoked_subs=(SUB,)))
    assert verifier.verify(code(status=2, lifetime_s=10), NOW + 9999).reason == "revoked"


def test_time_outranks_status_and_venue(verifier: Verifier) -> None:
    text = code(status=2, venue="stadium", lifetime_s=10)
    assert verifier.verify(text, NOW + 100).reason == "expired"
    assert verifier.verify(code(status=2, venue="stadium", iat=NOW + 100), NOW).reason == (
        "not-yet-valid"
    )


def test_status_outranks_venue_and_venue_outranks_passback(verifier: Verifier) -> None:
    assert verifier.verify(code(status=1, venue="stadium"), NOW).reason == "status"
    assert verifier.verify(code(), NOW).reason == "ok"
    assert verifier.verify(code(venue="stadium"), NOW).reason == "wrong-venue"


def test_passback_outranks_assist(verifier: Verifier) -> None:
    assert verifier.verify(code(), NOW).reason == "ok"
    assert verifier.verify(code(paper=True), NOW).reason == "passback"


def test_every_reason_is_reachable_and_listed() -> None:
    assert set(Reason) == {
        "ok", "malformed", "unsupported", "unknown-key", "bad-signature", "expired",
        "not-yet-valid", "stale", "revoked", "status", "passback", "wrong-venue", "assist",
    }  # fmt: skip


# -- privacy ----------------------------------------------------------------------------------


def test_decision_repr_hides_the_subject(verifier: Verifier) -> None:
    decision = verifier.verify(code(), NOW)
    for shown in (repr(decision), str(decision), f"{decision}"):
        assert repr(SUB) not in shown
        assert SUB.hex() not in shown
        assert "sub=<hidden>" in shown
    assert dataclasses.replace(decision, sub=None).__repr__().count("sub=None") == 1


# -- passback window --------------------------------------------------------------------------


def test_passback_window_forgets_after_its_window() -> None:
    window = PassbackWindow(30)
    window.record(b"a", 100)
    window.record(b"b", 110)
    assert window.seen(b"a", 129.9)
    assert not window.seen(b"a", 130)
    assert len(window) == 1
    assert not window.seen(b"b", 140)
    assert len(window) == 0


def test_passback_window_memory_is_bounded() -> None:
    window = PassbackWindow(3600, max_entries=100)
    for i in range(1000):
        window.record(i.to_bytes(16, "big"), 1000 + i * 0.001)
    assert len(window) == 100
    assert window.seen((999).to_bytes(16, "big"), 1001)
    assert not window.seen((0).to_bytes(16, "big"), 1001)


def test_passback_window_survives_a_clock_step_backwards() -> None:
    window = PassbackWindow(30)
    window.record(b"a", 1000)
    assert window.seen(b"a", 990)  # clock stepped back 10 s: still the same presentation
    assert not window.seen(b"a", 900)


def test_passback_window_holds_10000_subjects_by_default_and_forgets_the_oldest_first() -> None:
    window = PassbackWindow(3600)
    for i in range(10_001):
        window.record(i.to_bytes(16, "big"), 1000)
    assert len(window) == 10_000
    assert not window.seen((0).to_bytes(16, "big"), 1000)
    assert window.seen((1).to_bytes(16, "big"), 1000)
    assert window.seen((10_000).to_bytes(16, "big"), 1000)


def test_a_subject_let_in_again_is_the_newest_when_the_cap_forgets() -> None:
    window = PassbackWindow(3600, max_entries=2)
    window.record(b"a", 1000)
    window.record(b"b", 1001)
    window.record(b"a", 1002)  # in again: now the most recent
    window.record(b"c", 1003)
    assert (window.seen(b"a", 1003), window.seen(b"b", 1003), window.seen(b"c", 1003)) == (True, False, True)


def test_a_subject_let_in_again_restarts_its_window_behind_older_ones() -> None:
    window = PassbackWindow(30)
    window.record(b"a", 1000)
    window.record(b"b", 1010)
    window.record(b"a", 1020)
    assert not window.seen(b"b", 1040)  # b's window ends, even though a was recorded first
    assert window.seen(b"a", 1049)
    assert len(window) == 1


def test_passback_window_ends_exactly_after_window_s_behind_a_clock_step() -> None:
    """After the clock stepped back, an entry recorded later sits behind an older-looking one, so
    expiry (which stops at the first live entry) keeps it: `seen` alone must end its window."""
    window = PassbackWindow(30)
    window.record(b"a", 2000)
    window.record(b"b", 1000)  # the clock stepped back
    assert window.seen(b"b", 1029)
    assert not window.seen(b"b", 1030)


@pytest.mark.parametrize("window_s", [1, 0.5])
def test_a_passback_window_of_a_second_or_less_still_works(window_s: float) -> None:
    window = PassbackWindow(window_s)
    window.record(b"a", 1000)
    assert window.seen(b"a", 1000 + window_s / 2)
    assert not window.seen(b"a", 1000 + window_s)


def test_a_one_second_passback_from_config_refuses_the_same_code_within_it() -> None:
    verifier = make_verifier(trust_list(KEY), gate=GateConfig(passback_s=1))
    assert verifier.verify(code(), NOW).reason == "ok"
    assert verifier.verify(code(), NOW).reason == "passback"
    assert verifier.verify(code(), NOW + 1).reason == "ok"


def test_a_zero_passback_window_remembers_nobody() -> None:
    window = PassbackWindow(0)
    window.record(b"a", 1000)
    assert len(window) == 0
    assert not window.seen(b"a", 1000)


def test_a_withdrawn_accept_does_not_count_as_a_passback(verifier: Verifier) -> None:
    granted = verifier.verify(code(), NOW)
    verifier.withdraw(granted)
    verifier.withdraw(granted)  # twice, or for a subject the window never held: no error
    assert verifier.verify(code(), NOW + 1).reason == "ok"


def test_withdrawing_a_denial_leaves_the_window_alone(verifier: Verifier) -> None:
    assert verifier.verify(code(), NOW).reason == "ok"
    refused = verifier.verify(code(), NOW + 1)
    assert (refused.reason, refused.sub) == ("passback", SUB)
    verifier.withdraw(refused)
    assert verifier.verify(code(), NOW + 2).reason == "passback"


def test_withdrawing_one_holder_keeps_the_others(verifier: Verifier) -> None:
    granted = verifier.verify(code(), NOW)
    assert verifier.verify(code(sub=OTHER_SUB), NOW).reason == "ok"
    verifier.withdraw(granted)
    assert verifier.verify(code(sub=OTHER_SUB), NOW + 1).reason == "passback"
    assert verifier.verify(code(), NOW + 1).reason == "ok"


def test_from_config_takes_each_section_that_rules_a_decision() -> None:
    from edge_sentry.config import Config, DccConfig

    config = Config(
        device=DeviceConfig(id="t", site="s1", venue="stadium", entrance="north"),
        es1=Es1Config(skew_s=0),
        gate=GateConfig(passback_s=60),
        dcc=DccConfig(accept=[]),
    )
    waited = [1000.0]
    verifier = Verifier.from_config(
        config, trust_list(KEY), ROOT.public_key(), passback_clock=lambda: waited[0]
    )
    assert verifier.verify(code(iat=NOW + 1), NOW).reason == "not-yet-valid"  # es1: no skew
    assert verifier.verify(code(venue="arena"), NOW).reason == "wrong-venue"  # device: the stadium
    assert verifier.verify(code(venue="stadium"), NOW).reason == "ok"
    waited[0] += 59
    assert verifier.verify(code(), NOW).reason == "passback"  # gate: 60 s
    waited[0] += 1
    assert verifier.verify(code(), NOW).reason == "ok"
    assert verifier.verify("HC1:6BF", NOW).reason == "unsupported"  # dcc: takes none
    here = vc1.issue(ROOT, site="s1", venue="stadium", entrance="north", name="The Stadium")
    assert verifier.verify(here, NOW).reason == "ok"  # the root key


def test_decision_repr_names_verdict_and_reason(verifier: Verifier) -> None:
    shown = repr(verifier.verify(code(status=2), NOW))
    assert "verdict='deny', reason='status', scheme='es1'" in shown


# -- no input makes it raise, no mutation makes it accept ---------------------------------------


def _fuzz_verifier() -> Verifier:
    return Verifier(
        Es1Config(),
        GateConfig(passback_s=0),
        DeviceConfig(id="t", site="s1", venue="arena", entrance="north"),
        trust_list(KEY),
        ROOT.public_key(),
    )


FUZZ = _fuzz_verifier()
VALID = code(lifetime_s=3600, venue="arena")
FUZZ_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


def test_the_fuzzed_code_is_valid_unmutated() -> None:
    assert FUZZ.verify(VALID, NOW).verdict == "accept"


@FUZZ_SETTINGS
@given(st.text(max_size=5000))
def test_random_text_always_gives_a_denial(text: str) -> None:
    decision = FUZZ.verify(text, NOW)
    assert decision.verdict == "deny"
    assert decision.reason in set(Reason)


@FUZZ_SETTINGS
@given(st.sampled_from(["ES1:", "VC1:", "HC1:"]), st.binary(max_size=600))
def test_random_bytes_behind_a_prefix_always_give_a_denial(prefix: str, raw: bytes) -> None:
    decision = FUZZ.verify(prefix + base45.encode(raw), NOW)
    assert decision.verdict == "deny"
    assert decision.reason in set(Reason)


@FUZZ_SETTINGS
@given(st.binary(max_size=300))
def test_any_genuinely_signed_payload_is_decided_without_raising(payload: bytes) -> None:
    decision = FUZZ.verify(signed_claims(payload), NOW)
    assert decision.verdict == "deny"
    assert decision.reason == "malformed"


_mutation = st.one_of(
    st.tuples(st.just("replace"), st.integers(0, len(VALID) - 1), st.sampled_from(base45.ALPHABET)),
    st.tuples(st.just("insert"), st.integers(0, len(VALID)), st.sampled_from(base45.ALPHABET)),
    st.tuples(st.just("delete"), st.integers(0, len(VALID) - 1), st.just("")),
    st.tuples(st.just("truncate"), st.integers(0, len(VALID) - 1), st.just("")),
)


@FUZZ_SETTINGS
@given(st.lists(_mutation, min_size=1, max_size=4))
def test_a_mutated_valid_code_is_never_accepted(mutations: list) -> None:
    text = VALID
    for mutation in mutations:
        text = apply_mutation(text, mutation)
    if text == VALID:
        return
    decision = FUZZ.verify(text, NOW)
    assert decision.verdict == "deny"
    assert decision.reason in set(Reason)


def test_trust_list_swap_takes_effect() -> None:
    verifier = make_verifier(TrustList.empty())
    assert verifier.verify(code(), NOW).reason == "unknown-key"
    verifier.trust = trust_list(KEY)
    assert verifier.verify(code(), NOW).reason == "ok"


def test_an_internal_failure_is_a_malformed_denial_not_an_exception(verifier, caplog) -> None:
    class Broken:
        def es1_key(self, kid: bytes) -> None:
            raise RuntimeError("message that could quote a code")

    verifier.trust = Broken()  # type: ignore[assignment]
    text = code()
    decision = verifier.verify(text, NOW)
    assert (decision.verdict, decision.reason, decision.scheme) == ("deny", "malformed", "es1")
    assert "RuntimeError" in caplog.text  # the type is logged, never the message or the text
    assert "could quote" not in caplog.text and text not in caplog.text
