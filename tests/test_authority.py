"""`edge-sentry authority keygen|open`, run in-process through the command's own parser."""

from __future__ import annotations

import argparse
import io
import json
import os
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from edge_sentry import privacy
from edge_sentry.cli import authority
from edge_sentry.config import Config

SUB = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="edge-sentry")
    authority.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args, Config())


def rows(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.fixture
def keydir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> SimpleNamespace:
    assert run(["authority", "keygen", "--out", str(tmp_path / "keys")]) == 0
    printed = json.loads(capsys.readouterr().out)
    sealer = privacy.Sealer(privacy.load_public_key(printed["public_key"]))
    return SimpleNamespace(printed=printed, sealer=sealer, private=printed["private_key"])


def scan(sealer: privacy.Sealer | None, n: int, sub: bytes = SUB) -> dict[str, object]:
    event: dict[str, object] = {
        "event": "scan", "id": f"0190a0b0-0000-7000-8000-00000000000{n}", "seq": n,
        "t": 1_795_000_000_000 + n, "site": "arena", "device": "sentry-0001", "entrance": "north",
        "mode": "scan", "verdict": "accept", "reason": "ok",
    }  # fmt: skip
    if sealer is not None:
        event["subject"] = sealer.seal(sub, event)
    return event


def json_lines(*events: dict[str, object]) -> str:
    """Events as JSON lines, bytes in lowercase hex: the daemon's `--log-format json` convention."""
    return "".join(json.dumps(event, separators=(",", ":"), default=bytes.hex) + "\n" for event in events)


# -- keygen -------------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_only_its_owner_reads(keydir):
    assert stat.S_IMODE(os.stat(keydir.private).st_mode) == 0o600
    assert Path(keydir.printed["public_key"]).name == "authority.pub.pem"
    assert keydir.printed["kid"] == privacy.key_id(privacy.load_private_key(keydir.private)).hex()
    assert keydir.sealer.kid.hex() == keydir.printed["kid"]


def test_keygen_never_overwrites_a_key(keydir, capsys):
    before = Path(keydir.private).read_bytes()
    assert run(["authority", "keygen", "--out", str(Path(keydir.private).parent)]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and err.count("\n") == 1 and "Traceback" not in err
    assert Path(keydir.private).read_bytes() == before


# -- open ---------------------------------------------------------------------------------------


def test_open_reads_the_daemons_json_log_and_skips_other_events(tmp_path, keydir, capsys):
    export = tmp_path / "events.jsonl"
    export.write_text(
        json_lines({"event": "start", "t": 1}, scan(keydir.sealer, 1), scan(keydir.sealer, 2),
                   {"event": "stop", "t": 2})
    )  # fmt: skip
    assert run(["authority", "open", "--key", keydir.private, str(export)]) == 0
    assert rows(capsys) == [
        {"id": scan(None, n)["id"], "t": scan(None, n)["t"], "site": "arena", "entrance": "north",
         "subject": SUB.hex()}
        for n in (1, 2)
    ]  # fmt: skip


def test_open_reads_cbor_scan_payloads_back_to_back(tmp_path, keydir, capsys):
    payloads = cbor2.dumps([scan(keydir.sealer, 1), scan(keydir.sealer, 2)]) + cbor2.dumps(
        [scan(keydir.sealer, 3)]
    )
    (tmp_path / "scan.cbor").write_bytes(payloads)
    assert run(["authority", "open", "--key", keydir.private, str(tmp_path / "scan.cbor")]) == 0
    assert [(r["t"], r["subject"]) for r in rows(capsys)] == [
        (1_795_000_000_000 + n, SUB.hex()) for n in (1, 2, 3)
    ]


def test_open_reads_a_pretty_printed_json_array(tmp_path, keydir, capsys):
    events = [json.loads(line) for line in json_lines(scan(keydir.sealer, 1)).splitlines()]
    (tmp_path / "export.json").write_text(json.dumps(events, indent=2))
    assert run(["authority", "open", "--key", keydir.private, str(tmp_path / "export.json")]) == 0
    assert [r["subject"] for r in rows(capsys)] == [SUB.hex()]


def test_open_reads_stdin(keydir, capsys, monkeypatch):
    data = json_lines(scan(keydir.sealer, 1)).encode()
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(data)))
    assert run(["authority", "open", "--key", keydir.private, "-"]) == 0
    assert rows(capsys)[0]["subject"] == SUB.hex()


def test_open_reports_each_failure_on_its_line_without_a_traceback(tmp_path, keydir, capsys):
    other = privacy.Sealer(X25519PrivateKey.generate().public_key())
    tampered = json.loads(json_lines(scan(keydir.sealer, 3)))
    tampered["t"] += 1  # the event's time was changed after sealing
    lines = [
        json_lines(scan(keydir.sealer, 1)).strip(),
        json_lines(scan(None, 2)).strip(),  # manual entry: no subject
        json.dumps(tampered),
        json_lines(scan(other, 4)).strip(),
        "this is not json",
        json.dumps({**json.loads(json_lines(scan(keydir.sealer, 5))), "subject": {"v": 1}}),
        "42",
    ]
    (tmp_path / "export.jsonl").write_text("\n".join(lines) + "\n")
    assert run(["authority", "open", "--key", keydir.private, str(tmp_path / "export.jsonl")]) == 1
    out = capsys.readouterr()
    got = [json.loads(line) for line in out.out.splitlines()]
    assert [r.get("subject") or r.get("error") for r in got] == [
        SUB.hex(), "no-subject", "cannot-open", "wrong-key", "not-json", "malformed", "not-an-event"
    ]
    assert got[4] == {"line": 5, "error": "not-json"}
    assert "Traceback" not in out.err


def test_events_without_subjects_alone_are_no_failure(tmp_path, keydir, capsys):
    (tmp_path / "e.jsonl").write_text(json_lines(scan(None, 1)))
    assert run(["authority", "open", "--key", keydir.private, str(tmp_path / "e.jsonl")]) == 0
    assert rows(capsys)[0]["error"] == "no-subject"


def test_truncated_cbor_is_reported_not_raised(tmp_path, keydir, capsys):
    data = cbor2.dumps([scan(keydir.sealer, 1)])
    (tmp_path / "s.cbor").write_bytes(data + data[:-5])
    assert run(["authority", "open", "--key", keydir.private, str(tmp_path / "s.cbor")]) == 1
    assert [r.get("subject") or r.get("error") for r in rows(capsys)] == [SUB.hex(), "not-cbor"]


@pytest.mark.parametrize("what", ["key", "file"])
def test_a_missing_key_or_file_is_a_usage_error(tmp_path, keydir, capsys, what):
    (tmp_path / "e.jsonl").write_text("")
    key = str(tmp_path / "absent.pem") if what == "key" else keydir.private
    file = str(tmp_path / "absent.jsonl") if what == "file" else str(tmp_path / "e.jsonl")
    assert run(["authority", "open", "--key", key, file]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edge-sentry authority open: ") and err.count("\n") == 1


def test_open_refuses_a_private_key_others_can_read(tmp_path, keydir, capsys):
    (tmp_path / "e.jsonl").write_text(json_lines(scan(keydir.sealer, 1)))
    os.chmod(keydir.private, 0o644)
    assert run(["authority", "open", "--key", keydir.private, str(tmp_path / "e.jsonl")]) == 2
    captured = capsys.readouterr()
    assert SUB.hex() not in captured.out
    assert "group or others" in captured.err and "chmod 600" in captured.err and captured.err.count("\n") == 1
