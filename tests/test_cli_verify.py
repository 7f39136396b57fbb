"""`edge-sentry verify`: the contract's JSON object, exit codes 0/1/2, and one-line usage errors."""

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from codes_helpers import ISSUER, NOW, iso, run_cli, trust_doc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_sentry.codes import es1, keys, vc1
from edge_sentry.config import Config, DeviceConfig, TrustConfig

KEY = Ed25519PrivateKey.generate()
TEXT = es1.issue(KEY, issuer=ISSUER, lifetime_s=60, iat=NOW)
KID = base64.b64encode(keys.kid_of(KEY)).decode()
FIELDS = {"verdict", "reason", "scheme", "kid", "iat", "exp"}


@pytest.fixture
def trust_file(tmp_path: Path) -> Path:
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(trust_doc(KEY)))
    return path


def output(capsys: pytest.CaptureFixture[str]) -> dict:
    captured = capsys.readouterr()
    assert captured.err == ""
    (line,) = captured.out.splitlines()
    result = json.loads(line)
    assert set(result) == FIELDS
    return result


def usage_error(capsys: pytest.CaptureFixture[str], *fragments: str) -> None:
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith("edge-sentry verify: ")
    for fragment in fragments:
        assert fragment in captured.err


def test_accept_prints_the_decision_and_exits_0(trust_file, capsys) -> None:
    assert run_cli(["verify", "--now", iso(NOW + 5), "--trust", str(trust_file), TEXT]) == 0
    assert output(capsys) == {
        "verdict": "accept", "reason": "ok", "scheme": "es1", "kid": KID,
        "iat": NOW, "exp": NOW + 60,
    }  # fmt: skip


def test_deny_exits_1_with_the_reason(trust_file, capsys) -> None:
    assert run_cli(["verify", "--now", iso(NOW + 3600), "--trust", str(trust_file), TEXT]) == 1
    result = output(capsys)
    assert (result["verdict"], result["reason"], result["kid"]) == ("deny", "expired", KID)


def test_unrecognised_text_gives_nulls(capsys) -> None:
    assert run_cli(["verify", "hello"]) == 1
    assert output(capsys) == {
        "verdict": "deny", "reason": "unsupported", "scheme": None, "kid": None,
        "iat": None, "exp": None,
    }  # fmt: skip


def test_output_never_contains_the_code_text(trust_file, capsys) -> None:
    run_cli(["verify", "--now", iso(NOW), "--trust", str(trust_file), TEXT])
    assert TEXT[4:20] not in capsys.readouterr().out


def test_without_a_trust_file_nothing_is_trusted(capsys) -> None:
    assert run_cli(["verify", "--now", iso(NOW), TEXT]) == 1
    assert output(capsys)["reason"] == "unknown-key"


def test_trust_file_defaults_to_config(trust_file, capsys) -> None:
    config = Config(trust=TrustConfig(file=str(trust_file)))
    assert run_cli(["verify", "--now", iso(NOW), TEXT], config) == 0
    assert output(capsys)["verdict"] == "accept"


def test_text_from_stdin(trust_file, capsys, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(TEXT + "\n"))
    assert run_cli(["verify", "--now", iso(NOW), "--trust", str(trust_file), "-"]) == 0


@pytest.mark.parametrize(
    ("now", "verdict"),
    [
        (iso(NOW + 10), "accept"),
        ("2026-11-18T12:06:50+01:00", "accept"),  # NOW + 10 s, written in UTC+1
        (iso(NOW + 10).removesuffix("Z"), "accept"),  # no zone: UTC
        (iso(NOW - 3600), "deny"),
    ],
)
def test_now_is_any_iso_8601_time(trust_file, capsys, now, verdict) -> None:
    run_cli(["verify", "--now", now, "--trust", str(trust_file), TEXT])
    assert output(capsys)["verdict"] == verdict


def test_bad_now_is_a_usage_error(trust_file, capsys) -> None:
    assert run_cli(["verify", "--now", "yesterday", "--trust", str(trust_file), TEXT]) == 2
    usage_error(capsys, "--now", "yesterday")


def test_missing_trust_file_is_a_usage_error(tmp_path, capsys) -> None:
    assert run_cli(["verify", "--trust", str(tmp_path / "nope.json"), TEXT]) == 2
    usage_error(capsys, "nope.json", "no such trust-list file")


def test_malformed_trust_file_is_a_usage_error_naming_the_key(tmp_path, capsys) -> None:
    doc = trust_doc(KEY)
    doc["keys"][0]["public_key"] = "not base64!"
    (tmp_path / "t.json").write_text(json.dumps(doc))
    assert run_cli(["verify", "--trust", str(tmp_path / "t.json"), TEXT]) == 2
    usage_error(capsys, "keys[0].public_key: not base64")


def test_venue_code_is_checked_against_the_root_key_and_never_accepted(tmp_path, capsys) -> None:
    root = Ed25519PrivateKey.generate()
    keys.save_public_key(root, tmp_path / "root.pub.pem")
    device = DeviceConfig(id="t", site="s1", venue="arena", entrance="north")
    text = vc1.issue(root, site="s1", venue="arena", entrance="north", name="The Arena")
    assert run_cli(["verify", "--root-key", str(tmp_path / "root.pub.pem"), text],
                   Config(device=device)) == 1  # fmt: skip
    assert output(capsys)["reason"] == "ok"
    config = Config(device=device, trust=TrustConfig(root_key=str(tmp_path / "root.pub.pem")))
    assert run_cli(["verify", text], config) == 1  # root key from trust.root_key
    result = output(capsys)
    assert (result["scheme"], result["reason"]) == ("vc1", "ok")
    assert run_cli(["verify", text]) == 1  # no root key anywhere
    assert output(capsys)["reason"] == "unknown-key"


def test_unusable_root_key_is_a_usage_error(tmp_path, capsys) -> None:
    assert run_cli(["verify", "--root-key", str(tmp_path / "none.pem"), "x"]) == 2
    usage_error(capsys, "none.pem")


def test_end_to_end_keygen_issue_verify(tmp_path, capsys) -> None:
    trust = tmp_path / "trust.json"
    assert run_cli(["codes", "keygen", "--out", str(tmp_path), "--issuer", "acme",
                    "--trust", str(trust)]) == 0  # fmt: skip
    (pem,) = tmp_path.glob("*.key.pem")
    capsys.readouterr()
    assert run_cli(["codes", "issue", "--key", str(pem), "--issuer", "acme"]) == 0
    text = capsys.readouterr().out.removesuffix("\n")
    assert run_cli(["verify", "--trust", str(trust), text]) == 0
    assert output(capsys)["reason"] == "ok"


def test_json_goes_to_stdout_of_a_real_process(trust_file) -> None:
    # The handler as a separate interpreter runs it: stdout carries JSON only, the exit code is 1.
    program = (
        "import sys; from codes_helpers import run_cli; "
        "sys.exit(run_cli(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, "verify", "--now", iso(NOW + 9999), "--trust",
         str(trust_file), TEXT],
        capture_output=True, text=True, cwd=Path(__file__).parent, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert json.loads(result.stdout)["reason"] == "expired"
    assert result.stderr == ""
