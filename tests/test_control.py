"""Signed control messages and operator keys, without a broker: the trust list's `operators`
(parsed strictly, by path), the COSE_Sign1 rules of codes/control.py, the guard's memory of jti,
and `edge-sentry codes operator`."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import cbor2
import pytest
from codes_helpers import run_cli
from control_helpers import OPERATOR, guard, operator_entry, operator_trust, signed_command, signed_config

from edge_sentry.codes import control, cose, keys
from edge_sentry.codes.trust import TrustList
from edge_sentry.errors import ControlRefused, TrustListError
from edge_sentry.link.topics import Topics

TOPICS = Topics("s1", "sentry-1")
NOW = 1_795_000_000.0
NOW_MS = int(NOW * 1000)


def verify(payload: bytes, trust: TrustList | None = None, *, topic: str | None = None,
           site: str = "s1", role: str = "command") -> control.Control:  # fmt: skip
    lookup = (trust or operator_trust()).operator
    return control.verify(payload, lookup, topic=topic or TOPICS.cmd("pulse-gate"), site=site, role=role)


def refusal(payload: bytes, **options: Any) -> tuple[str, bytes | None]:
    with pytest.raises(ControlRefused) as caught:
        verify(payload, **options)
    return caught.value.reason, caught.value.operator


# -- operators in the trust list -----------------------------------------------------------------


def test_operators_round_trip_through_json_and_cbor():
    trust = operator_trust(operator_entry(sites=["s1", "s2"], roles=["command"], name="night shift"))
    (op,) = trust.operators
    assert op.kid == keys.kid_of(OPERATOR) and op.roles == ("command",) and op.sites == ("s1", "s2")
    assert trust.operator(op.kid) is op and trust.operator(b"\0" * 8) is None
    assert TrustList.from_json(trust.to_json()) == trust
    assert TrustList.from_cbor(trust.to_cbor()).operators == trust.operators


def test_a_list_without_operators_reads_as_before_and_writes_no_operators_key():
    trust = TrustList.from_mapping({"version": 1, "issued": "2026-11-26T00:00:00Z", "keys": []})
    assert trust.operators == () and "operators" not in trust.to_mapping()


@pytest.mark.parametrize("sites, site, covered", [
    (["*"], "anywhere", True), (["s1"], "s1", True), (["s1"], "s2", False), (["s1", "s2"], "s2", True),
])  # fmt: skip
def test_sites_scope_and_the_star_for_every_site(sites: list[str], site: str, covered: bool):
    (op,) = operator_trust(operator_entry(sites=sites)).operators
    assert op.covers(site) is covered


def bad(entry_change: dict[str, Any]) -> dict[str, Any]:
    entry = operator_entry()
    entry.update(entry_change)
    return entry


OTHER = keys.generate()
BAD_OPERATORS = {
    "unknown role": ([bad({"roles": ["admin"]})], "operators[0].roles[0]"),
    "no roles": ([bad({"roles": []})], "operators[0].roles"),
    "role twice": ([bad({"roles": ["config", "config"]})], "operators[0].roles"),
    "no sites": ([bad({"sites": []})], "operators[0].sites"),
    "star beside a site": ([bad({"sites": ["s1", "*"]})], "operators[0].sites[1]"),
    "site with a wildcard": ([bad({"sites": ["s+"]})], "operators[0].sites[0]"),
    "site not a text": ([bad({"sites": [7]})], "operators[0].sites[0]"),
    "kid of another key": ([bad({"kid": operator_entry(OTHER)["kid"]})], "operators[0].kid"),
    "not a key": ([bad({"public_key": "AAAA"})], "operators[0].public_key"),
    "unknown field": ([bad({"admin": True})], "operators[0].admin"),
    "missing name": ([{k: v for k, v in operator_entry().items() if k != "name"}], "operators[0].name"),
    "same key twice": ([operator_entry(), operator_entry(name="again")], "operators[1].kid"),
    "not a list": ({"kid": "x"}, "operators"),
}


@pytest.mark.parametrize("operators, path", BAD_OPERATORS.values(), ids=BAD_OPERATORS.keys())
def test_a_bad_operator_entry_is_a_trust_list_error_by_path(operators: Any, path: str):
    doc = {"version": 1, "issued": "2026-11-26T00:00:00Z", "keys": [], "operators": operators}
    with pytest.raises(TrustListError) as caught:
        TrustList.from_mapping(doc)
    assert str(caught.value).startswith(f"{path}:"), caught.value


# -- signing and verifying -----------------------------------------------------------------------


def test_a_signed_command_verifies_with_its_operator_body_iat_and_jti():
    jti = os.urandom(16)
    payload = signed_command(TOPICS.cmd("pulse-gate"), NOW_MS + 5000, iat_ms=NOW_MS, jti=jti, args={"x": 1})
    found = verify(payload)
    assert found.operator.kid == keys.kid_of(OPERATOR)
    assert (found.aud, found.iat, found.jti) == (TOPICS.cmd("pulse-gate"), NOW_MS, jti)
    assert found.body == {"deadline": NOW_MS + 5000, "args": {"x": 1}}


def test_the_protected_header_names_the_algorithm_the_kid_and_the_control_content_type():
    message = cose.decode_sign1(signed_config(TOPICS.config_desired, 1, {}))
    assert dict(message.protected_header) == {
        1: -8,
        4: keys.kid_of(OPERATOR),
        3: "application/vnd.edge-sentry.control+cbor",
    }
    assert len(cbor2.loads(message.payload)["jti"]) == 16


def resigned(payload: bytes, header: dict[int, Any] | None = None, claims: Any = None) -> bytes:
    """The message re-signed by the test operator with another header or payload."""
    message = cose.decode_sign1(payload)
    protected = cose.encode_header(header if header is not None else dict(message.protected_header))
    body = cbor2.dumps(claims) if claims is not None else message.payload
    signature = OPERATOR.sign(cose.sig_structure(protected, body))
    return cose.encode_sign1(protected, {}, body, signature)


GOOD = signed_command(TOPICS.cmd("pulse-gate"), NOW_MS + 5000, iat_ms=NOW_MS)
KID = keys.kid_of(OPERATOR)
UNSIGNED = {
    "JSON": b'{"deadline": 1}',
    "bare CBOR": cbor2.dumps({"deadline": 1}),
    "empty": b"",
    "no content type": resigned(GOOD, {1: -8, 4: KID}),
    "a trust list's content type": resigned(
        GOOD, {1: -8, 4: KID, 3: "application/vnd.edge-sentry.trust+cbor"}
    ),
    "another algorithm": resigned(GOOD, {1: -7, 4: KID, 3: control.CONTENT_TYPE}),
    "no kid": resigned(GOOD, {1: -8, 3: control.CONTENT_TYPE}),
    "payload not a map": resigned(GOOD, claims=[1, 2]),
    "payload without jti": resigned(
        GOOD, claims={"aud": TOPICS.cmd("pulse-gate"), "iat": NOW_MS, "body": {}}
    ),
    "short jti": resigned(
        GOOD, claims={"aud": TOPICS.cmd("pulse-gate"), "iat": NOW_MS, "jti": b"x", "body": {}}
    ),
    "iat a text": resigned(
        GOOD, claims={"aud": TOPICS.cmd("pulse-gate"), "iat": "now", "jti": b"j" * 16, "body": {}}
    ),
    # past a float: the freshness checks subtract it from the clock
    "iat an integer past 1e308": resigned(
        GOOD, claims={"aud": TOPICS.cmd("pulse-gate"), "iat": 10**400, "jti": b"j" * 16, "body": {}}
    ),
    "iat 2^53": resigned(
        GOOD, claims={"aud": TOPICS.cmd("pulse-gate"), "iat": 2**53, "jti": b"j" * 16, "body": {}}
    ),
}


@pytest.mark.parametrize("payload", UNSIGNED.values(), ids=UNSIGNED.keys())
def test_anything_but_a_well_formed_control_message_is_unsigned(payload: bytes):
    assert refusal(payload)[0] == "unsigned"


def test_the_checks_come_in_order_and_name_the_operator_once_its_signature_holds():
    stranger = keys.generate()
    assert refusal(signed_command(TOPICS.cmd("pulse-gate"), 1, iat_ms=NOW_MS, key=stranger)) == (
        "unknown-operator",
        None,
    )
    forged = bytearray(GOOD)
    forged[-1] ^= 1
    assert refusal(bytes(forged)) == ("bad-signature", None)
    config_only = operator_trust(operator_entry(roles=["config"]))
    assert refusal(GOOD, trust=config_only) == ("role", KID)
    assert refusal(GOOD, trust=operator_trust(operator_entry(sites=["s2"]))) == ("scope", KID)
    assert refusal(GOOD, topic=TOPICS.cmd("restart")) == ("audience", KID)
    assert refusal(GOOD, topic=Topics("s1", "sentry-2").cmd("pulse-gate")) == ("audience", KID)


def test_freshness_deadline_and_version_checks():
    found = verify(GOOD)
    control.check_fresh(found, now_ms=NOW_MS + 30_000, skew_s=30)
    for now in (NOW_MS + 30_001, NOW_MS - 30_001):
        with pytest.raises(ControlRefused, match="stale"):
            control.check_fresh(found, now_ms=now, skew_s=30)
    control.check_deadline(found, NOW_MS + 300_000, max_deadline_s=300)
    with pytest.raises(ControlRefused, match="deadline"):
        control.check_deadline(found, NOW_MS + 300_001, max_deadline_s=300)
    for version in (2**53, -1):
        doc = verify(
            signed_config(TOPICS.config_desired, version, {}), topic=TOPICS.config_desired, role="config"
        )
        with pytest.raises(ControlRefused, match="version"):
            control.check_config_version(doc)
    control.check_config_version(
        verify(
            signed_config(TOPICS.config_desired, 2**53 - 1, {}), topic=TOPICS.config_desired, role="config"
        )
    )


# -- the guard's memory --------------------------------------------------------------------------


def test_a_jti_is_kept_while_its_command_could_pass_and_then_forgotten(tmp_path: Path, open_store):
    clock = [NOW]
    events: list[dict[str, Any]] = []
    topic = TOPICS.cmd("pulse-gate")
    store = open_store(tmp_path)
    checks = guard(TOPICS, store, clock=lambda: clock[0], record=events.append)
    first = checks.command(topic, GOOD, retained=False)
    checks.admit(topic, first, NOW_MS + 5000)
    # Kept past its 5 s deadline, for as long as its iat is fresh (control.skew_s, 30 s by default).
    fresh_until = first.iat + 30_000
    assert store.control_ids() == {first.jti.hex(): fresh_until}
    again = guard(TOPICS, open_store(tmp_path), clock=lambda: clock[0], record=events.append)  # a restart
    with pytest.raises(ControlRefused, match="replay"):
        again.admit(topic, again.command(topic, GOOD, retained=False), NOW_MS + 5000)
    assert events[-1] == {"event": "control-rejected", "t": NOW_MS, "topic": topic, "reason": "replay",
                          "operator": operator_entry()["kid"]}  # fmt: skip
    clock[0] = NOW + 6  # past its deadline, then the clock steps back inside its freshness
    newer = signed_command(topic, NOW_MS + 20_000, iat_ms=NOW_MS + 6000)
    again.admit(topic, again.command(topic, newer, retained=False), NOW_MS + 20_000)
    clock[0] = NOW + 1
    with pytest.raises(ControlRefused, match="replay"):
        again.admit(topic, again.command(topic, GOOD, retained=False), NOW_MS + 5000)
    clock[0] = NOW + 31  # no longer fresh anywhere: its jti is dropped at the next write
    later = signed_command(topic, NOW_MS + 50_000, iat_ms=NOW_MS + 31_000)
    again.admit(topic, again.command(topic, later, retained=False), NOW_MS + 50_000)
    assert first.jti.hex() not in again.store.control_ids()


def test_refusals_anyone_can_cause_are_recorded_once_a_minute_with_a_count(tmp_path: Path, open_store):
    clock = [NOW]
    events: list[dict[str, Any]] = []
    checks = guard(TOPICS, open_store(tmp_path), clock=lambda: clock[0], record=events.append)
    for n in range(5):  # junk on topics of the sender's choosing
        with pytest.raises(ControlRefused, match="unsigned"):
            checks.command(TOPICS.cmd(f"junk-{n}"), b"not signed", retained=False)
    stranger = signed_command(TOPICS.cmd("pulse-gate"), NOW_MS + 5000, iat_ms=NOW_MS, key=keys.generate())
    with pytest.raises(ControlRefused, match="unknown-operator"):
        checks.command(TOPICS.cmd("pulse-gate"), stranger, retained=False)
    recorded = [(e["reason"], e.get("held_back")) for e in events]
    assert recorded == [("unsigned", None), ("unknown-operator", None)]
    clock[0] = NOW + 61
    with pytest.raises(ControlRefused, match="unsigned"):
        checks.command(TOPICS.cmd("pulse-gate"), b"still not signed", retained=False)
    assert (events[-1]["reason"], events[-1]["held_back"]) == ("unsigned", 4)
    # A refusal that needs an operator's signature is always recorded.
    for _ in range(2):
        with pytest.raises(ControlRefused, match="audience"):
            checks.command(TOPICS.cmd("selftest"), GOOD, retained=False)
    assert [e["reason"] for e in events[-2:]] == ["audience", "audience"]


# -- edge-sentry codes operator ------------------------------------------------------------------


def test_codes_operator_writes_a_private_key_and_prints_its_entry(tmp_path, capsys):
    out = tmp_path / "ops"
    trust = tmp_path / "trust.json"
    argv = ["codes", "operator", "--out", str(out), "--name", "ops-1", "--role", "config",
            "--role", "command", "--site", "s1", "--sites", "s2,s3", "--trust", str(trust)]  # fmt: skip
    assert run_cli(argv) == 0
    entry = json.loads(capsys.readouterr().out)
    (pem,) = out.glob("*.key.pem")
    assert stat.S_IMODE(os.stat(pem).st_mode) == 0o600
    key = keys.load_private_key(pem)
    assert entry == keys.operator_entry(key, "ops-1", ["config", "command"], ["s1", "s2", "s3"])
    (saved,) = out.glob("*.entry.json")
    assert json.loads(saved.read_text()) == entry
    listed = TrustList.load(trust)
    assert listed.version == 1 and listed.operator(keys.kid_of(key)) is not None


def test_codes_operator_refuses_a_bad_role_or_site_before_writing_a_key(tmp_path, capsys):
    for extra, fragment in ((["--role", "admin", "--site", "s1"], "roles[0]"),
                            (["--role", "config", "--site", "s1,*"], "sites[1]")):  # fmt: skip
        argv = ["codes", "operator", "--out", str(tmp_path / "ops"), "--name", "x", *extra]
        assert run_cli(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and fragment in err
    assert list((tmp_path / "ops").glob("*.pem")) == []
