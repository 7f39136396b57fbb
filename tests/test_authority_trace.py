"""`edge-sentry authority trace` on a real back end (SQLite and PostgreSQL): scans sealed with the
sentry's own Sealer to a real authority key, decoded and stored as the ingester does, then traced.

One subject visits three entrances at two sites; others pass the same entrances just inside and just
outside ±30 minutes, at other entrances and at another site. The trace finds the visits and exactly
the co-visitors within the window; a wrong key opens nothing and says so; the database is the same
after a trace; no opened subject reaches a log record or a file; bad input is a clear error."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from ingest_helpers import alarm, now_ms, query, scan, topic
from test_authority import run

from edge_sentry import privacy
from edge_sentry.backend.decode import decode_message
from edge_sentry.backend.reader import open_reader
from edge_sentry.backend.store import PostgresStore, Store, open_store
from edge_sentry.cli import trace as trace_cli
from edge_sentry.link import payloads

MIN = 60_000
T0 = 1_795_000_000_000  # 2026-11-18T11:06:40Z
SINCE, UNTIL = "2026-11-18T00:00:00Z", "2026-11-21T00:00:00Z"
TABLES = ("schema_version", "events", "rejects", "device_status", "counters")


def sub(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()[:16]


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


@dataclass
class Fleet:
    """What was stored: the traced subject's event ids by visit, every subject by name."""

    url: str
    key: Path
    sealer: privacy.Sealer
    events: dict[str, list[str]] = field(default_factory=dict)
    no_subject: str = ""
    alarm: str = ""


def store_scans(store: Store, sealer: privacy.Sealer, scans: list[tuple[str, str, str, str, int]],
                fleet: Fleet) -> None:
    """(subject, site, device, entrance, t) as sealed scans: encoded as a sentry publishes them, decoded
    and written as the ingester does."""
    by_device: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for n, (who, site, device, entrance, t) in enumerate(scans, start=1):
        event = scan(n, site=site, device=device, entrance=entrance, t=t, subject=...)
        event["subject"] = sealer.seal(sub(who), event)
        by_device.setdefault((site, device), []).append(event)
        fleet.events.setdefault(who, []).append(event["id"])
    for (site, device), events in by_device.items():
        decoded = decode_message(topic("scan", site=site, device=device), payloads.encode(events), None,
                                 now_ms(), max_future_s=300)
        assert decoded.rejects == []
        store.write(decoded.records, [], [], "test")


@pytest.fixture
def fleet(db_url: str, tmp_path: Path) -> Fleet:
    key = X25519PrivateKey.generate()
    keys = tmp_path / "keys"
    keys.mkdir()
    privacy.save_key_pair(key, keys / "authority.key.pem", keys / "authority.pub.pem")
    sealer = privacy.Sealer(privacy.load_public_key(keys / "authority.pub.pem"))
    out = Fleet(db_url, keys / "authority.key.pem", sealer)
    store = open_store(db_url)
    try:
        store_scans(store, sealer, [
            ("alice", "arena", "gate-1", "north", T0),
            ("bob", "arena", "gate-1", "north", T0 + 10 * MIN),           # co-visitor
            ("carol", "arena", "gate-2", "north", T0 - 30 * MIN),         # edge, inside (other device)
            ("dave", "arena", "gate-1", "north", T0 + 30 * MIN + 1),      # just outside
            ("erin", "arena", "gate-3", "south", T0 + 5 * MIN),           # other entrance
            ("frank", "museum", "door-1", "north", T0 + 1 * MIN),         # other site, same entrance name
            ("alice", "arena", "gate-3", "south", T0 + 120 * MIN),
            ("erin", "arena", "gate-3", "south", T0 + 125 * MIN),         # co-visitor at the second visit
            ("alice", "museum", "door-1", "north", T0 + 1440 * MIN),
            ("frank", "museum", "door-1", "north", T0 + 1470 * MIN),      # edge, inside
            ("grace", "museum", "door-1", "north", T0 + 1400 * MIN),      # outside
        ], out)  # fmt: skip
        plain = scan(99, t=T0 + 2 * MIN, subject=...)
        out.no_subject = plain["id"]
        forced = alarm("door-forced", t=T0 + 3 * MIN)
        out.alarm = forced["id"]
        decoded = decode_message(topic("scan"), payloads.encode([plain]), None, now_ms(), max_future_s=300)
        events = decode_message(topic("event"), payloads.encode(forced), None, now_ms(), max_future_s=300)
        store.write(decoded.records + events.records, [], [], "test")
    finally:
        store.close()
    return out


def trace(fleet: Fleet, *extra: str, key: Path | None = None, fmt: str = "json") -> list[str]:
    return ["authority", "trace", "--db", fleet.url, "--key", str(key or fleet.key), "--since", SINCE,
            "--until", UNTIL, "--format", fmt, *extra]


def report(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    return dict(json.loads(capsys.readouterr().out))


def co_visitors(visit: dict[str, Any]) -> list[str]:
    return [c["subject"] for c in visit["co_visitors"]]


def test_the_subjects_visits_across_sites_and_entrances_and_its_co_visitors_within_the_window(
        fleet, capsys) -> None:
    assert run(trace(fleet, "--subject", b64(sub("alice")))) == 0
    out = report(capsys)
    assert out["subject"] == b64(sub("alice"))
    assert out["scans"] == out["opened"] == 11 and out["failed"] == {}
    assert [(v["site"], v["entrance"], v["device"], v["t_ms"]) for v in out["visits"]] == [
        ("arena", "north", "gate-1", T0), ("arena", "south", "gate-3", T0 + 120 * MIN),
        ("museum", "north", "door-1", T0 + 1440 * MIN)]
    assert [v["id"] for v in out["visits"]] == fleet.events["alice"]
    assert all((v["mode"], v["verdict"]) == ("scan", "accept") for v in out["visits"])
    assert [co_visitors(v) for v in out["visits"]] == [
        [b64(sub("carol")), b64(sub("bob"))], [b64(sub("erin"))], [b64(sub("frank"))]]
    first = out["visits"][0]["co_visitors"]
    assert [(c["delta_s"], c["t_ms"], c["device"]) for c in first] == [
        (-1800.0, T0 - 30 * MIN, "gate-2"), (600.0, T0 + 10 * MIN, "gate-1")]
    assert out["contacts"] == sorted(b64(sub(n)) for n in ("bob", "carol", "erin", "frank"))
    assert out["window_min"] == 30


def test_by_event_the_subject_sealed_in_that_event_is_traced(fleet, capsys) -> None:
    assert run(trace(fleet, "--event", fleet.events["alice"][1].upper())) == 0
    out = report(capsys)
    assert out["subject"] == b64(sub("alice")) and len(out["visits"]) == 3


def test_a_narrower_window_minutes_drops_the_farther_co_visitors(fleet, capsys) -> None:
    assert run(trace(fleet, "--subject", b64(sub("alice")), "--window-min", "10")) == 0
    out = report(capsys)
    assert [co_visitors(v) for v in out["visits"]] == [[b64(sub("bob"))], [b64(sub("erin"))], []]


def test_visits_are_those_inside_since_until_and_a_co_visitor_just_past_the_edge_still_counts(
        fleet, capsys) -> None:
    argv = trace(fleet, "--subject", b64(sub("alice")))
    argv[argv.index("--until") + 1] = "2026-11-18T11:10:00Z"  # after the first visit, before bob
    assert run(argv) == 0
    out = report(capsys)
    assert [v["t_ms"] for v in out["visits"]] == [T0]
    assert co_visitors(out["visits"][0]) == [b64(sub("carol")), b64(sub("bob"))]


def test_the_table_shows_visits_and_co_visitors(fleet, capsys) -> None:
    assert run(trace(fleet, "--subject", b64(sub("alice")), fmt="table")) == 0
    text = capsys.readouterr().out
    assert "3 visit(s)" in text and "scans opened: 11 of 11" in text
    assert "arena / north  (gate-1)  scan accept" in text and "museum / north" in text
    assert b64(sub("bob")) in text and b64(sub("dave")) not in text and b64(sub("grace")) not in text
    assert "4 distinct co-visitor(s)" in text


def test_a_wrong_key_opens_nothing_and_says_so(fleet, tmp_path, capsys) -> None:
    other = tmp_path / "other.pem"
    privacy.save_key_pair(X25519PrivateKey.generate(), other, tmp_path / "other.pub")
    assert run(trace(fleet, "--subject", b64(sub("alice")), key=other)) == 1
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["opened"] == 0 and out["failed"] == {"wrong-key": 11} and out["visits"] == []
    assert "11 of 11 subjects did not open (11 wrong-key)" in captured.err
    assert run(trace(fleet, "--event", fleet.events["alice"][0], key=other)) == 1
    assert "does not open with this key (wrong-key" in capsys.readouterr().err


def test_a_corrupted_subject_is_counted_and_the_others_still_open(fleet, capsys) -> None:
    store = open_store(fleet.url)
    try:
        event = scan(1, t=T0 + 20 * MIN, subject=...)
        sealed = fleet.sealer.seal(sub("mallory"), event)
        event["subject"] = {**sealed, "ct": bytes([sealed["ct"][0] ^ 1]) + sealed["ct"][1:]}
        garbage = scan(2, t=T0 + 21 * MIN, subject=b"\xff not cbor")
        decoded = decode_message(topic("scan"), payloads.encode([event, garbage]), None, now_ms(),
                                 max_future_s=300)
        store.write(decoded.records, [], [], "test")
    finally:
        store.close()
    assert run(trace(fleet, "--subject", b64(sub("alice")))) == 1
    out = report(capsys)
    assert out["failed"] == {"cannot-open": 1, "malformed": 1} and out["opened"] == 11
    assert co_visitors(out["visits"][0]) == [b64(sub("carol")), b64(sub("bob"))]


def test_two_scans_of_one_subject_carry_different_sealed_bytes(fleet) -> None:
    store = open_store(fleet.url)
    try:
        ids = fleet.events["alice"]
        rows = [bytes(query(store, f"SELECT subject FROM events WHERE id = '{i}'")[0][0]) for i in ids]
    finally:
        store.close()
    assert len(set(rows)) == 3
    sealed = [cbor2.loads(r) for r in rows]
    assert len({s["enc"] for s in sealed}) == 3 and len({s["ct"] for s in sealed}) == 3
    assert all(sub("alice") not in r for r in rows)


def snapshot(url: str) -> list[Any]:
    """Every table's rows in a fixed order, and the SQLite file's bytes."""
    store = open_store(url)
    try:
        tables = list(TABLES) + (["event_ids"] if isinstance(store, PostgresStore) else [])
        rows = [sorted(map(repr, query(store, f"SELECT * FROM {t}"))) for t in tables]
    finally:
        store.close()
    if not url.startswith("postgresql"):
        rows.append(hashlib.sha256(Path(url).read_bytes()).hexdigest())
    return rows


def test_a_trace_leaves_the_database_unchanged(fleet, capsys) -> None:
    before = snapshot(fleet.url)
    assert run(trace(fleet, "--subject", b64(sub("alice")))) == 0
    assert run(trace(fleet, "--event", fleet.events["bob"][0], fmt="table")) == 0
    assert snapshot(fleet.url) == before
    assert "alice" not in json.dumps(before)


def test_no_opened_subject_reaches_a_log_record_or_a_file(fleet, tmp_path, caplog, capsys) -> None:
    caplog.set_level(logging.DEBUG)
    assert run(trace(fleet, "--subject", b64(sub("alice")))) == 0
    assert run(trace(fleet, "--event", fleet.events["alice"][0], fmt="table")) == 0
    printed = capsys.readouterr().out
    names = ("alice", "bob", "carol", "dave", "erin", "frank", "grace")
    forms = [f(sub(n)) for n in names for f in (lambda s: s, lambda s: s.hex().encode(),
                                                lambda s: b64(s).encode())]
    assert b64(sub("bob")).encode() in printed.encode()  # what stdout is for
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records).encode()
    assert not [f for f in forms if f in logged]
    for folder, _, files in os.walk(tmp_path):
        for name in files:
            data = (Path(folder) / name).read_bytes()
            assert not [f for f in forms if f in data], name


def test_long_windows_show_progress_on_stderr(fleet, capsys, monkeypatch) -> None:
    monkeypatch.setattr(trace_cli, "PROGRESS_EVERY", 4)
    assert run(trace(fleet, "--subject", b64(sub("alice")))) == 0
    err = capsys.readouterr().err
    assert [line.rsplit(" ", 1)[1] for line in err.splitlines()] == ["4/11", "8/11", "11/11"]


# -- errors -------------------------------------------------------------------------------------------


def test_bad_usage_is_one_clear_line_and_exit_2(fleet, tmp_path, capsys) -> None:
    ed = tmp_path / "ed25519.pem"
    ed.write_bytes(Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8,
                                                              NoEncryption()))
    ed.chmod(0o600)
    exposed = tmp_path / "exposed.pem"
    exposed.write_bytes(fleet.key.read_bytes())
    exposed.chmod(0o644)
    alice = b64(sub("alice"))
    cases = [
        (trace(fleet, "--subject", alice, key=tmp_path / "missing.pem"), "missing.pem"),
        (trace(fleet, "--subject", alice, key=ed), "not an X25519 key"),
        (trace(fleet, "--subject", alice, key=exposed), "chmod 600"),
        (trace(fleet, "--event", "0190a0b0-0000-7000-8000-000000000000"), "no event"),
        (trace(fleet, "--event", "not-an-id"), "not an event id"),
        (trace(fleet, "--event", fleet.no_subject), "carries no subject"),
        (trace(fleet, "--event", fleet.alarm), "carries no subject"),
        (trace(fleet, "--subject", "not base64!"), "not base64"),
        (trace(fleet, "--subject", alice, "--window-min", "-1"), "--window-min"),
        (trace(fleet, "--subject", alice, "--since", "yesterday"), "--since: not an ISO 8601 time"),
        (trace(fleet, "--subject", alice, "--since", UNTIL), "before --until"),
    ]
    for argv, said in cases:
        assert run(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("edge-sentry authority trace: ") and said in err, (argv, err)
        assert len(err.splitlines()) == 1


def test_an_unreadable_database_is_exit_5(fleet, tmp_path, capsys) -> None:
    alice = b64(sub("alice"))
    not_ours = tmp_path / "other.sqlite3"
    not_ours.write_bytes(b"")
    for db in (str(tmp_path / "none.sqlite3"), str(not_ours), "postgresql://nobody@127.0.0.1:1/none"):
        argv = trace(fleet, "--subject", alice)
        argv[argv.index("--db") + 1] = db
        assert run(argv) == 5, db
        assert capsys.readouterr().err.startswith("edge-sentry authority trace: ")
    assert not (tmp_path / "none.sqlite3").exists()


def test_event_and_subject_are_one_or_the_other(fleet) -> None:
    with pytest.raises(SystemExit) as raised:
        run(["authority", "trace", "--db", fleet.url, "--key", str(fleet.key)])
    assert raised.value.code == 2


def test_the_reader_cannot_write_even_by_mistake(fleet) -> None:
    reader = open_reader(fleet.url)
    try:
        db = reader._db  # type: ignore[attr-defined]
        with pytest.raises(Exception, match=r"(?i)read.?only"):
            if fleet.url.startswith("postgresql"):
                with db.transaction():
                    db.execute("DELETE FROM counters")
            else:
                db.execute("DELETE FROM counters")
    finally:
        reader.close()


def test_an_event_outside_the_window_is_said_to_be_no_visit(fleet, capsys) -> None:
    argv = trace(fleet, "--event", fleet.events["alice"][2])
    argv[argv.index("--until") + 1] = "2026-11-19T00:00:00Z"
    assert run(argv) == 0
    captured = capsys.readouterr()
    assert "lies outside the window" in captured.err
    assert len(json.loads(captured.out)["visits"]) == 2
