"""The verifier on HC1 texts: every reason, its precedence, passback and the holder's privacy."""

import dataclasses
import logging
import zlib
from typing import Any

import cbor2
import pytest
from codes_helpers import ISSUER, NOW, trust_list
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dcc_helpers import (
    CI,
    DAY,
    DOB,
    EC_CERT,
    EC_KEY,
    FAMILY_NAME,
    GIVEN_NAME,
    OTHER_EC_KEY,
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
    moment,
    shared_kid_trust,
    sign1,
    sub_of,
    trust,
    verifier,
)

from edge_sentry.codes import base45, dcc, es1
from edge_sentry.codes.trust import TrustList
from edge_sentry.config import DccConfig, DeviceConfig, Es1Config, GateConfig
from edge_sentry.errors import UnsupportedAlgorithmError
from edge_sentry.verifier import Decision, Verifier
from edge_sentry.vocabulary import Reason

EC_KID = kid_of(EC_CERT)
RSA_KID = kid_of(RSA_CERT)
TRUST = trust(EC_CERT, RSA_CERT)


@pytest.fixture
def v() -> Verifier:
    return verifier(TRUST)


def outcome(decision: Decision) -> tuple[str, str, str | None]:
    return decision.verdict, decision.reason, decision.scheme


# -- accept --------------------------------------------------------------------------------------


def test_an_es256_vaccination_is_accepted_with_a_pseudonym_and_no_personal_field(v: Verifier) -> None:
    decision = v.verify(issue(), NOW)
    assert decision == Decision("accept", "ok", "dcc", EC_KID, NOW - DAY, NOW + 30 * DAY, "AT", sub_of(CI))
    assert decision.accepted


def test_a_ps256_certificate_is_accepted(v: Verifier) -> None:
    decision = v.verify(issue(RSA_KEY, RSA_CERT), NOW)
    assert outcome(decision) == ("accept", "ok", "dcc")
    assert decision.kid == RSA_KID


@pytest.mark.parametrize("salt", [32, 0, 64])
def test_ps256_salt_length_is_not_held_against_the_holder(v: Verifier, salt: int) -> None:
    assert v.verify(issue(RSA_KEY, RSA_CERT, salt=salt), NOW).reason == "ok"


@pytest.mark.parametrize("kind", ["test", "pcr", "recovery"])
def test_tests_and_recoveries_are_accepted(v: Verifier, kind: str) -> None:
    assert v.verify(issue(body=dgc(kind)), NOW).reason == "ok"


@pytest.mark.parametrize("kid_in", ["protected", "unprotected", "both"])
def test_the_kid_may_sit_in_either_header(kid_in: str) -> None:
    v = verifier(TRUST, passback_s=0)
    assert v.verify(issue(kid_in=kid_in), NOW).reason == "ok"
    assert v.verify(issue(RSA_KEY, RSA_CERT, kid_in=kid_in, body=dgc("test")), NOW).reason == "ok"


@pytest.mark.parametrize("tags", [(61, 18), (18,), (61,), ()])
def test_cwt_and_cose_tags_may_be_present_or_absent(v: Verifier, tags: tuple[int, ...]) -> None:
    assert v.verify(issue(tags=tags), NOW).reason == "ok"


def test_a_signer_issued_by_a_csca_is_trusted_by_its_own_entry() -> None:
    from dcc_helpers import CSCA_KEY

    cert = certificate(OTHER_EC_KEY, csca=CSCA_KEY)
    assert verifier(trust(cert)).verify(issue(OTHER_EC_KEY, cert), NOW).reason == "ok"


# -- shared kids ---------------------------------------------------------------------------------


def test_of_two_certificates_sharing_a_kid_the_second_verifies() -> None:
    wrong = certificate(OTHER_EC_KEY)
    v = verifier(shared_kid_trust(EC_KID, wrong, EC_CERT))
    assert v.verify(issue(), NOW).reason == "ok"


def test_a_shared_kid_with_keys_of_both_types_verifies_each_algorithm() -> None:
    v = verifier(shared_kid_trust(EC_KID, RSA_CERT, EC_CERT), passback_s=0)
    assert v.verify(issue(kid=EC_KID), NOW).reason == "ok"
    assert v.verify(issue(RSA_KEY, RSA_CERT, kid=EC_KID), NOW).reason == "ok"


def test_a_shared_kid_prefers_the_certificate_that_is_still_valid() -> None:
    old = certificate(EC_KEY, not_before=NOW - 800 * DAY, not_after=NOW - 400 * DAY)
    current = certificate(EC_KEY)
    assert verifier(shared_kid_trust(EC_KID, old, current)).verify(issue(), NOW).reason == "ok"
    assert verifier(shared_kid_trust(EC_KID, old)).verify(issue(), NOW).reason == "expired"


def test_a_shared_kid_where_no_certificate_verifies_is_a_bad_signature() -> None:
    v = verifier(shared_kid_trust(EC_KID, certificate(OTHER_EC_KEY), RSA_CERT))
    decision = v.verify(issue(), NOW)
    assert (decision.reason, decision.kid) == ("bad-signature", EC_KID)
    assert decision.sub is None and decision.issuer is None


# -- each denial ---------------------------------------------------------------------------------


def test_a_forged_signature_is_a_bad_signature_and_reveals_nothing(v: Verifier) -> None:
    forged = issue(OTHER_EC_KEY, EC_CERT)  # a stranger's key naming the trusted kid
    decision = v.verify(forged, NOW)
    assert outcome(decision) == ("deny", "bad-signature", "dcc")
    assert (decision.kid, decision.iat, decision.issuer, decision.sub) == (EC_KID, None, None, None)


def test_a_changed_payload_is_a_bad_signature(v: Verifier) -> None:
    payload = claims(dgc(dn=1, sd=1))
    protected = cbor2.dumps({1: -7, 4: EC_KID})
    genuine = cbor2.loads(sign1(EC_KEY, claims(), kid=EC_KID)).value[3]
    text = hc1(cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, genuine])))
    assert v.verify(text, NOW).reason == "bad-signature"


def test_a_signature_of_the_wrong_algorithm_for_the_key_is_a_bad_signature(v: Verifier) -> None:
    assert v.verify(issue(RSA_KEY, RSA_CERT, alg=-7, signature=b"\x01" * 64), NOW).reason == "bad-signature"
    assert v.verify(issue(alg=-37, signature=b"\x01" * 256), NOW).reason == "bad-signature"


def test_an_unknown_kid_is_unknown_key(v: Verifier) -> None:
    stranger = certificate(OTHER_EC_KEY)
    decision = v.verify(issue(OTHER_EC_KEY, stranger), NOW)
    assert outcome(decision) == ("deny", "unknown-key", "dcc")
    assert decision.kid == kid_of(stranger) and decision.iat is None


def test_an_es1_key_with_the_same_kid_is_not_a_dcc_signer() -> None:
    key = Ed25519PrivateKey.generate()
    from edge_sentry.codes import keys

    v = verifier(trust_list(key))
    assert v.verify(issue(kid=keys.kid_of(key)), NOW).reason == "unknown-key"


def test_a_trusted_entry_whose_certificate_cannot_be_read_is_unknown_key() -> None:
    v = verifier(shared_kid_trust(EC_KID, b"0\x82\x01\x00not-really-DER"))
    assert v.verify(issue(), NOW).reason == "unknown-key"


def test_a_revoked_kid_is_revoked() -> None:
    v = verifier(trust(EC_CERT, RSA_CERT, revoked_kids=(EC_KID,)))
    decision = v.verify(issue(), NOW)
    assert outcome(decision) == ("deny", "revoked", "dcc")
    assert v.verify(issue(RSA_KEY, RSA_CERT), NOW).reason == "ok"


def test_a_revoked_certificate_is_revoked_by_the_hash_of_its_pseudonym() -> None:
    v = verifier(trust(EC_CERT, revoked_subs=(sub_of(CI),)), passback_s=0)
    assert v.verify(issue(), NOW).reason == "revoked"
    assert v.verify(issue(body=dgc(ci=CI + "X")), NOW).reason == "ok"


def test_the_cwt_is_not_yet_valid_beyond_the_skew(v: Verifier) -> None:
    assert v.verify(issue(claim_args={"iat": NOW + 31}), NOW).reason == "not-yet-valid"
    assert v.verify(issue(claim_args={"iat": NOW + 30}), NOW).reason == "ok"


def test_the_cwt_expires_at_exp_plus_the_skew() -> None:
    v = verifier(TRUST, passback_s=0)
    text = issue(claim_args={"exp": NOW + 100})
    assert v.verify(text, NOW + 129).reason == "ok"
    assert v.verify(text, NOW + 130).reason == "expired"


def test_the_skew_comes_from_the_dcc_section() -> None:
    v = verifier(TRUST, DccConfig(skew_s=0))
    assert v.verify(issue(claim_args={"iat": NOW + 1}), NOW).reason == "not-yet-valid"


def test_an_expired_signer_certificate_expires_its_codes() -> None:
    old = certificate(OTHER_EC_KEY, not_before=NOW - 400 * DAY, not_after=NOW - DAY)
    decision = verifier(trust(old)).verify(issue(OTHER_EC_KEY, old), NOW)
    assert outcome(decision) == ("deny", "expired", "dcc")


def test_a_signer_certificate_not_yet_valid_makes_its_codes_not_yet_valid() -> None:
    future = certificate(OTHER_EC_KEY, not_before=NOW + DAY, not_after=NOW + 400 * DAY)
    assert verifier(trust(future)).verify(issue(OTHER_EC_KEY, future), NOW).reason == "not-yet-valid"


def test_the_signer_certificate_is_valid_through_its_not_after_plus_skew() -> None:
    edge = certificate(OTHER_EC_KEY, not_before=NOW - DAY, not_after=NOW)
    v = verifier(trust(edge), passback_s=0)
    assert v.verify(issue(OTHER_EC_KEY, edge), NOW + 30).reason == "ok"
    assert v.verify(issue(OTHER_EC_KEY, edge), NOW + 31).reason == "expired"


@pytest.mark.parametrize("skew", [0, 30])
def test_a_signer_certificate_is_refused_a_second_before_its_not_before_and_taken_at_it(skew: int) -> None:
    starts = certificate(OTHER_EC_KEY, not_before=NOW, not_after=NOW + 400 * DAY)
    v = verifier(trust(starts), DccConfig(skew_s=skew), passback_s=0)
    text = issue(OTHER_EC_KEY, starts, claim_args={"iat": NOW - DAY})
    assert v.verify(text, NOW - skew - 1).reason == "not-yet-valid"
    assert v.verify(text, NOW - skew).reason == "ok"


def test_of_certificates_sharing_a_kid_one_valid_from_now_minus_skew_is_chosen() -> None:
    """The first certificate has long expired; the second becomes valid (with the skew) exactly now."""
    old = certificate(EC_KEY, not_before=NOW - 800 * DAY, not_after=NOW - 400 * DAY)
    starts = certificate(EC_KEY, not_before=NOW + 30, not_after=NOW + 400 * DAY, name="DSC next")
    v = verifier(shared_kid_trust(EC_KID, old, starts), passback_s=0)
    assert v.verify(issue(), NOW).reason == "ok"
    assert v.verify(issue(), NOW - 1).verdict == "deny"


def test_of_certificates_sharing_a_kid_one_valid_until_now_minus_skew_is_chosen() -> None:
    """The first certificate is not valid for a year yet; the second was valid (with the skew)
    until exactly now."""
    future = certificate(EC_KEY, not_before=NOW + 400 * DAY, not_after=NOW + 800 * DAY)
    ends = certificate(EC_KEY, not_before=NOW - 400 * DAY, not_after=NOW - 30, name="DSC ending")
    v = verifier(shared_kid_trust(EC_KID, future, ends), passback_s=0)
    assert v.verify(issue(), NOW).reason == "ok"
    assert v.verify(issue(), NOW + 1).verdict == "deny"


@pytest.mark.parametrize(
    ("body", "changes"),
    [
        (dgc(dn=1, sd=2), {}),  # incomplete
        (dgc(dt=day(-3)), {}),  # too recent
        (dgc(dt=day(-300)), {}),  # too old
        (dgc("test", tr="260373001"), {}),  # positive
        (dgc("test", sc=moment(-49 * 3600)), {}),  # too old
        (dgc("test", tt="94309-2"), {}),  # wrong type
        (dgc("recovery", fr=day(-200), df=day(-189), du=day(-20)), {}),  # out of its window
        (dgc("test"), {"accept": ["vaccination", "recovery"]}),  # kind excluded
        (dgc(), {"products": ["EU/1/20/1507"]}),
    ],
)
def test_a_rule_failure_is_status(body, changes: dict) -> None:
    decision = verifier(TRUST, dataclasses.replace(DccConfig(), **changes)).verify(issue(body=body), NOW)
    assert outcome(decision) == ("deny", "status", "dcc")
    assert decision.sub == sub_of(CI) and decision.issuer == "AT"


def test_a_sentry_that_takes_no_dcc_calls_them_unsupported_without_checking() -> None:
    v = verifier(TrustList.empty(), DccConfig(accept=[]))
    assert outcome(v.verify(issue(), NOW)) == ("deny", "unsupported", "dcc")
    assert outcome(v.verify("HC1:garbage", NOW)) == ("deny", "unsupported", "dcc")


@pytest.mark.parametrize("alg", [-8, -47, -257])
def test_an_unknown_algorithm_is_unsupported(v: Verifier, alg: int) -> None:
    text = hc1(cbor2.dumps([cbor2.dumps({1: alg, 4: EC_KID}), {}, claims(), b"s" * 64]))
    assert outcome(v.verify(text, NOW)) == ("deny", "unsupported", "dcc")


def test_another_version_of_the_prefix_is_unsupported(v: Verifier) -> None:
    text = issue()
    assert outcome(v.verify("HC2:" + text[4:], NOW)) == ("deny", "unsupported", "dcc")


@pytest.mark.parametrize("prefix", ["HC1", "hc1:", " HC1:", "HC1/"])
def test_a_mangled_prefix_names_no_scheme(v: Verifier, prefix: str) -> None:
    assert outcome(v.verify(prefix + issue()[4:], NOW)) == ("deny", "unsupported", None)


# -- every malformed layer is a denial, never an exception ----------------------------------------


def _layers() -> list[tuple[str, str]]:
    signed = lambda payload: hc1(sign1(EC_KEY, payload, kid=EC_KID))  # noqa: E731
    return [
        ("prefix only", "HC1:"),
        ("base45", "HC1:" + "::::"),
        ("base45", issue()[:-1] + "a"),
        ("base45", issue() + "0"),
        ("zlib", "HC1:" + base45.encode(b"\x78\x9c garbage")),
        ("zlib", "HC1:" + base45.encode(zlib.compress(sign1(EC_KEY, claims(), kid=EC_KID))[:-4])),
        ("zlib bomb", "HC1:" + base45.encode(zlib.compress(b"\xa0" * 2_000_000, 9))),
        ("cbor", "HC1:" + base45.encode(zlib.compress(b"\x9f\x01"))),
        ("cose", "HC1:" + base45.encode(zlib.compress(cbor2.dumps({"a": 1})))),
        ("cose", "HC1:" + base45.encode(zlib.compress(cbor2.dumps(cbor2.CBORTag(18, [1, 2, 3, 4]))))),
        ("cose", hc1(cbor2.dumps(cbor2.CBORTag(18, cbor2.CBORTag(61, []))))),
        ("cose kid", hc1(cbor2.dumps([cbor2.dumps({1: -7}), {}, claims(), b"s" * 64]))),
        ("cwt", signed(b"\xff")),
        ("cwt", signed(cbor2.dumps([1, 2]))),
        ("cwt", signed(claims(exp="soon"))),
        ("cwt iss", signed(claims(iss=REMOVE))),
        ("cwt iss", signed(claims(iss=""))),
        ("hcert", signed(claims(hcert={2: {}}))),
        ("hcert", signed(claims(hcert={1: []}))),
    ]


@pytest.mark.parametrize(("layer", "text"), _layers(), ids=[layer for layer, _ in _layers()])
def test_every_malformed_layer_is_a_malformed_denial(v: Verifier, layer: str, text: str) -> None:
    decision = v.verify(text, NOW)
    assert outcome(decision) == ("deny", "malformed", "dcc")
    assert decision.sub is None and decision.issuer is None


def test_a_signed_container_off_the_format_is_malformed_under_its_kid(v: Verifier) -> None:
    decision = v.verify(hc1(sign1(EC_KEY, claims(iss=REMOVE), kid=EC_KID)), NOW)
    assert decision == Decision("deny", "malformed", "dcc", EC_KID)


def test_malformed_outranks_revoked_and_time() -> None:
    v = verifier(trust(EC_CERT, revoked_kids=(EC_KID,)))
    text = hc1(sign1(EC_KEY, claims(iss=REMOVE, exp=NOW - 9999, iat=NOW - 99999), kid=EC_KID))
    assert v.verify(text, NOW).reason == "malformed"


def _content() -> list[tuple[str, Any]]:
    return [
        ("no entry", {"ver": "1.3.0", "nam": {}, "dob": DOB}),
        ("two kinds", dgc() | {"t": dgc("test")["t"]}),
        ("no v entry", dgc() | {"v": []}),
        ("two v entries", dgc() | {"v": dgc()["v"] * 2}),
        ("no ci", dgc(ci=REMOVE)),
        ("dn", dgc(dn="zwei")),
        ("dn range", dgc(dn=0)),
        ("sd range", dgc(sd=10)),
        ("mp empty", dgc(mp="")),
        ("co empty", dgc(co="")),
        ("tr empty", dgc("test", tr="")),
        ("sc", dgc("test", sc=None)),
        ("du", dgc("recovery", du=[])),
        ("du before df", dgc("recovery", df=day(-5), du=day(-6))),
    ]


@pytest.mark.parametrize(("what", "body"), _content(), ids=[what for what, _ in _content()])
def test_hcert_content_the_rules_cannot_accept_is_status_not_malformed(what: str, body: Any) -> None:
    v = verifier(TRUST, DccConfig(products=["EU/1/20/1528"]))
    decision = v.verify(hc1(sign1(EC_KEY, claims(body), kid=EC_KID)), NOW)
    expected = "ok" if what == "co empty" else "status"  # co is read by no rule
    assert outcome(decision) == ("accept" if expected == "ok" else "deny", expected, "dcc")
    assert decision.issuer == "AT"


def test_unreadable_content_still_ranks_below_revoked_and_time() -> None:
    v = verifier(trust(EC_CERT, revoked_kids=(EC_KID,)))
    assert v.verify(hc1(sign1(EC_KEY, claims(dgc(dn=0)), kid=EC_KID)), NOW).reason == "revoked"
    old = hc1(sign1(EC_KEY, claims({"ver": "1.3.0"}, exp=NOW - 9999, iat=NOW - 99999), kid=EC_KID))
    assert verifier(TRUST).verify(old, NOW).reason == "expired"


def test_the_key_usage_covers_every_kind_the_hcert_names() -> None:
    tests_only = certificate(kinds=("test",))
    both = dgc("test") | {"v": dgc()["v"]}
    decision = verifier(trust(tests_only)).verify(
        hc1(sign1(EC_KEY, claims(both), kid=kid_of(tests_only))), NOW
    )
    assert decision.reason == "bad-signature"


# -- precedence ----------------------------------------------------------------------------------


def test_the_signature_is_checked_before_anything_in_the_payload() -> None:
    v = verifier(trust(EC_CERT, revoked_subs=(sub_of(CI),)))
    forged = issue(OTHER_EC_KEY, EC_CERT, body=dgc(dn="garbage"), claim_args={"exp": NOW - 9999})
    assert v.verify(forged, NOW).reason == "bad-signature"


def test_revocation_outranks_time_and_rules() -> None:
    v = verifier(trust(EC_CERT, revoked_kids=(EC_KID,)))
    text = issue(body=dgc(dn=1, sd=2), claim_args={"exp": NOW + 10})
    assert v.verify(text, NOW + 9999).reason == "revoked"


def test_time_outranks_the_rules(v: Verifier) -> None:
    assert v.verify(issue(body=dgc(dn=1, sd=2), claim_args={"exp": NOW + 10}), NOW + 100).reason == "expired"


def test_the_rules_outrank_passback(v: Verifier) -> None:
    assert v.verify(issue(), NOW).reason == "ok"
    assert v.verify(issue(body=dgc(dn=1, sd=2)), NOW + 1).reason == "status"


# -- extended key usage ----------------------------------------------------------------------------


def test_a_test_centre_key_cannot_vouch_for_a_vaccination() -> None:
    test_centre = certificate(OTHER_EC_KEY, kinds=("test",))
    v = verifier(trust(test_centre), passback_s=0)
    assert v.verify(issue(OTHER_EC_KEY, test_centre, body=dgc("test")), NOW).reason == "ok"
    decision = v.verify(issue(OTHER_EC_KEY, test_centre, body=dgc()), NOW)
    assert decision == Decision("deny", "bad-signature", "dcc", kid_of(test_centre))  # nothing else read


# -- passback ------------------------------------------------------------------------------------


def test_the_same_certificate_is_refused_within_the_passback_window(v: Verifier) -> None:
    assert v.verify(issue(), NOW).reason == "ok"
    assert v.verify(issue(kid_in="unprotected"), NOW + 10).reason == "passback"  # same ci, other bytes
    assert v.verify(issue(body=dgc(ci=CI + "2")), NOW + 10).reason == "ok"
    assert v.verify(issue(), NOW + 30).reason == "ok"


def test_es1_and_dcc_codes_are_verified_side_by_side_by_one_verifier() -> None:
    key = Ed25519PrivateKey.generate()
    doc = trust(EC_CERT).to_mapping()
    doc["keys"] += trust_list(key).to_mapping()["keys"]
    both = verifier(TrustList.from_mapping(doc))
    assert both.verify(issue(), NOW).reason == "ok"
    assert both.verify(es1.issue(key, issuer=ISSUER, lifetime_s=60, iat=NOW), NOW).reason == "ok"
    assert both.verify(issue(), NOW + 1).reason == "passback"


# -- privacy -------------------------------------------------------------------------------------


PERSONAL = (FAMILY_NAME, GIVEN_NAME, DOB, "GOESSINGER", "Gößinger", "Musterfrau", CI)


def _everything_shown(decision: Decision) -> str:
    fields = [repr(getattr(decision, f.name)) for f in dataclasses.fields(decision)]
    return " ".join([repr(decision), str(decision), f"{decision}", *fields])


@pytest.mark.parametrize("reason", ["ok", "status", "passback", "revoked", "expired", "bad-signature"])
def test_no_decision_carries_the_name_the_birth_date_or_the_certificate_id(reason: str) -> None:
    v = verifier(trust(EC_CERT, revoked_subs=(sub_of(CI),) if reason == "revoked" else ()))
    text = {
        "ok": issue(),
        "status": issue(body=dgc(dn=1, sd=2)),
        "passback": issue(),
        "revoked": issue(),
        "expired": issue(claim_args={"exp": NOW - 999}),
        "bad-signature": issue(OTHER_EC_KEY, EC_CERT),
    }[reason]
    if reason == "passback":
        v.verify(text, NOW)
    decision = v.verify(text, NOW)
    assert decision.reason == reason
    shown = _everything_shown(decision)
    for personal in PERSONAL:
        assert personal not in shown
    assert sub_of(CI).hex() not in shown and repr(sub_of(CI)) not in repr(decision)
    assert decision.venue_code is None and decision.paper is False


def test_nothing_personal_is_logged_even_when_verification_breaks(v: Verifier, caplog) -> None:
    class Broken:
        def dcc_signers(self, kid: bytes) -> tuple:
            raise RuntimeError(f"cannot look up {FAMILY_NAME}")

    v.trust = Broken()  # type: ignore[assignment]
    text = issue()
    with caplog.at_level(logging.DEBUG):
        decision = v.verify(text, NOW)
        v.trust = TRUST
        v.verify(text, NOW)
        v.verify(issue(body=dgc(dn=1, sd=2)), NOW)
    assert outcome(decision) == ("deny", "malformed", "dcc")
    for personal in (*PERSONAL, text, text[4:40]):
        assert personal not in caplog.text


def test_every_dcc_reason_is_a_listed_reason(v: Verifier) -> None:
    for text in (issue(), "HC1:x", "HC2:", issue(OTHER_EC_KEY, EC_CERT)):
        assert v.verify(text, NOW).reason in set(Reason)


def test_a_verifier_built_without_a_dcc_section_uses_the_defaults() -> None:
    v = Verifier(Es1Config(), GateConfig(), DeviceConfig(), TRUST)
    assert v.dcc == DccConfig()
    assert v.verify(issue(), NOW).reason == "ok"
    assert v.verify(issue(RSA_KEY, RSA_CERT, body=dgc(dt=day(-5))), NOW).reason == "status"


# -- what issuers in the field send ---------------------------------------------------------------


P384_KEY = ec.generate_private_key(ec.SECP384R1())
P384_CERT = certificate(P384_KEY)


@pytest.mark.parametrize("alg", [-7, -35, -36])
def test_ecdsa_on_p384_verifies_under_each_label_the_hash_from_the_alg(alg: int) -> None:
    v = verifier(trust(P384_CERT))
    assert v.verify(issue(P384_KEY, P384_CERT, alg=alg), NOW).reason == "ok"


def test_a_p384_signature_under_another_labels_hash_or_forged_is_a_bad_signature() -> None:
    v = verifier(trust(P384_CERT))
    text = issue(P384_KEY, P384_CERT, alg=-35)
    code = dcc.parse(text)
    relabelled = sign1(
        P384_KEY, code.message.payload, kid=kid_of(P384_CERT), alg=-7, signature=code.message.signature
    )
    assert v.verify(hc1(relabelled), NOW).reason == "bad-signature"
    assert v.verify(issue(P384_KEY, P384_CERT, alg=-7, signature=b"\x00" * 96), NOW).reason == "bad-signature"
    assert v.verify(issue(OTHER_EC_KEY, P384_CERT, alg=-7), NOW).reason == "bad-signature"


def test_es256_on_a_curve_other_than_p256_and_p384_is_a_bad_signature() -> None:
    p521 = ec.generate_private_key(ec.SECP521R1())
    cert = certificate(p521)
    assert verifier(trust(cert)).verify(issue(p521, cert, alg=-7), NOW).reason == "bad-signature"
    k1 = ec.generate_private_key(ec.SECP256K1())
    cert = certificate(k1)
    assert verifier(trust(cert)).verify(issue(k1, cert, alg=-7), NOW).reason == "bad-signature"


def test_alg_only_in_the_unprotected_header_counts_when_nothing_is_protected() -> None:
    for key, cert in ((EC_KEY, EC_CERT), (RSA_KEY, RSA_CERT), (P384_KEY, P384_CERT)):
        text = issue(key, cert, alg_in="unprotected", kid_in="unprotected")
        assert dcc.parse(text).message.protected == b""
        assert verifier(trust(cert)).verify(text, NOW).reason == "ok"


def test_an_unprotected_alg_of_another_key_type_is_a_bad_signature() -> None:
    v = verifier(trust(EC_CERT))
    text = issue(alg_in="unprotected", kid_in="unprotected")
    message = dcc.parse(text).message
    for alg in (-37, -35):
        swapped = cbor2.dumps(
            cbor2.CBORTag(18, [b"", {1: alg, 4: EC_KID}, message.payload, message.signature])
        )
        assert v.verify(hc1(swapped), NOW).reason == "bad-signature"


def test_an_unprotected_alg_is_ignored_when_the_protected_header_holds_anything() -> None:
    text = issue(alg_in="unprotected", kid_in="protected")
    with pytest.raises(UnsupportedAlgorithmError):
        dcc.parse(text)
    assert verifier(TRUST).verify(text, NOW).reason == "unsupported"


def test_a_protected_kid_of_the_wrong_length_is_malformed_whatever_else() -> None:
    for alg in (-7, -257):
        body = [cbor2.dumps({1: alg, 4: EC_KID[:7]}), {4: EC_KID}, claims(), b"s" * 64]
        assert verifier(TRUST).verify(hc1(cbor2.dumps(body)), NOW).reason == "malformed"
