"""`edge-sentry codes keygen|rootkey|issue|render|poster`, run in-process via their parsers."""

import io
import json
import os
import stat
from pathlib import Path

import pytest
import zxingcpp
from codes_helpers import NOW, iso, run_cli
from PIL import Image

from edge_sentry.codes import es1, keys, vc1
from edge_sentry.codes.trust import TrustList
from edge_sentry.config import Config, DeviceConfig
from edge_sentry.errors import KeyFileError

CONFIG = Config(
    device=DeviceConfig(
        id="t", site="s1", venue="arena", entrance="north", venue_name="The Arena",
        entrance_name="North gate",
    )
)  # fmt: skip


def one_line_error(capsys: pytest.CaptureFixture[str], *fragments: str) -> None:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def scanned(path: Path) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(Image.open(path).convert("L"))]


@pytest.fixture
def issuer_key(tmp_path: Path) -> Path:
    path = tmp_path / "issuer.pem"
    keys.save_private_key(keys.generate(), path)
    return path


# -- keygen -------------------------------------------------------------------------------------


def test_keygen_writes_a_private_key_and_prints_its_entry(tmp_path, capsys) -> None:
    assert run_cli(["codes", "keygen", "--out", str(tmp_path / "k"), "--issuer", "acme"]) == 0
    entry = json.loads(capsys.readouterr().out)
    (pem,) = (tmp_path / "k").glob("*.key.pem")
    assert stat.S_IMODE(os.stat(pem).st_mode) == 0o600
    assert entry == keys.trust_entry(keys.load_private_key(pem), "acme")
    (saved,) = (tmp_path / "k").glob("*.entry.json")
    assert json.loads(saved.read_text()) == entry


def test_keygen_default_issuer_is_the_site(tmp_path, capsys) -> None:
    assert run_cli(["codes", "keygen", "--out", str(tmp_path)], CONFIG) == 0
    assert json.loads(capsys.readouterr().out)["issuer"] == "s1"


def test_keygen_creates_then_grows_a_trust_list(tmp_path, capsys) -> None:
    trust = tmp_path / "trust.json"
    for _ in range(2):
        assert run_cli(["codes", "keygen", "--out", str(tmp_path), "--trust", str(trust)]) == 0
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    loaded = TrustList.load(trust)
    assert loaded.version == 2
    assert [keys.trust_entry(k.public_key, k.issuer) for k in loaded.keys] == entries


def test_keygen_with_a_broken_trust_list_writes_no_key(tmp_path, capsys) -> None:
    trust = tmp_path / "trust.json"
    broken = '{"version": 1, "issued": "2026-11-26T00:00:00Z"}'
    trust.write_text(broken)
    out = tmp_path / "k"
    assert run_cli(["codes", "keygen", "--out", str(out), "--trust", str(trust)]) == 2
    one_line_error(capsys, "keys: missing")
    assert list(out.glob("*.pem")) == []
    assert trust.read_text() == broken


# -- rootkey ------------------------------------------------------------------------------------


def test_rootkey_writes_a_key_pair_and_never_overwrites_it(tmp_path, capsys) -> None:
    assert run_cli(["codes", "rootkey", "--out", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    private = keys.load_private_key(tmp_path / "root.key.pem")
    assert stat.S_IMODE(os.stat(tmp_path / "root.key.pem").st_mode) == 0o600
    public = keys.load_public_key(tmp_path / "root.pub.pem")
    assert keys.raw_public_key(public) == keys.raw_public_key(private)
    assert printed["kid"] == keys.trust_entry(private, "x")["kid"]
    before = (tmp_path / "root.key.pem").read_bytes()
    assert run_cli(["codes", "rootkey", "--out", str(tmp_path)]) == 2
    one_line_error(capsys, "already exists")
    assert (tmp_path / "root.key.pem").read_bytes() == before


# -- issue --------------------------------------------------------------------------------------


def test_issue_prints_a_code_with_the_requested_claims(issuer_key, capsys) -> None:
    argv = ["codes", "issue", "--key", str(issuer_key), "--issuer", "acme", "--status", "yellow",
            "--lifetime", "120", "--venue", "arena", "--sub", "00" * 15 + "ff",
            "--now", iso(NOW)]  # fmt: skip
    assert run_cli(argv) == 0
    text = capsys.readouterr().out.strip()
    code = es1.parse(text)
    assert code.verify(keys.load_private_key(issuer_key).public_key())
    assert code.unverified_claims() == es1.Es1Claims(
        "acme", bytes(15) + b"\xff", NOW, NOW + 120, 1, "arena", False
    )


def test_issue_default_lifetime_is_max_age_or_thirty_days_for_paper(issuer_key, capsys) -> None:
    base = ["codes", "issue", "--key", str(issuer_key), "--issuer", "a", "--now", iso(NOW)]
    assert run_cli(base) == 0
    assert run_cli([*base, "--paper"]) == 0
    phone, paper = (es1.parse(t).unverified_claims() for t in capsys.readouterr().out.splitlines())
    assert (phone.exp - phone.iat, phone.paper) == (60, False)
    assert (paper.exp - paper.iat, paper.paper) == (30 * 86400, True)
    assert phone.sub != paper.sub


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--sub", "xyz"], "--sub: not hexadecimal"),
        (["--sub", "00ff"], "--sub: must be 32 hex digits"),
        (["--now", "tomorrow"], "--now: not an ISO 8601 time"),
    ],
)
def test_issue_refuses_bad_values_in_one_line(issuer_key, capsys, extra, fragment) -> None:
    assert run_cli(["codes", "issue", "--key", str(issuer_key), "--issuer", "a", *extra]) == 2
    one_line_error(capsys, fragment)


def test_issue_explains_an_unusable_key(tmp_path, capsys) -> None:
    (tmp_path / "k.pem").write_text("not a key")
    (tmp_path / "k.pem").chmod(0o600)
    assert run_cli(["codes", "issue", "--key", str(tmp_path / "k.pem"), "--issuer", "a"]) == 2
    one_line_error(capsys, "k.pem", "not a PEM private key")
    assert run_cli(["codes", "issue", "--key", str(tmp_path / "none.pem"), "--issuer", "a"]) == 2
    one_line_error(capsys, "none.pem", "no such key file")


def test_issue_status_must_be_a_colour(issuer_key) -> None:
    with pytest.raises(SystemExit) as caught:
        run_cli(["codes", "issue", "--key", str(issuer_key), "--issuer", "a", "--status", "blue"])
    assert caught.value.code == 2


# -- render -------------------------------------------------------------------------------------


def test_render_draws_the_text_as_a_scannable_png(tmp_path) -> None:
    text = "ES1:" + "0123456789ABCDEF" * 5
    assert run_cli(["codes", "render", text, "--out", str(tmp_path / "c.png"), "--scale", "3"]) == 0
    assert scanned(tmp_path / "c.png") == [text]


def test_render_reads_the_text_from_stdin(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("HELLO WORLD \n"))
    assert run_cli(["codes", "render", "-", "--out", str(tmp_path / "c.png")]) == 0
    assert scanned(tmp_path / "c.png") == ["HELLO WORLD "]  # trailing space is Base45, kept


def test_render_refuses_empty_text_and_reports_unwritable_output(tmp_path, capsys) -> None:
    assert run_cli(["codes", "render", "", "--out", str(tmp_path / "c.png")]) == 2
    one_line_error(capsys, "empty")
    assert run_cli(["codes", "render", "X", "--out", str(tmp_path / "no" / "c.png")]) == 1
    one_line_error(capsys, "c.png")


# -- poster -------------------------------------------------------------------------------------


def test_poster_is_a_genuine_venue_code_for_this_entrance(tmp_path, capsys) -> None:
    assert run_cli(["codes", "rootkey", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    out = tmp_path / "poster.png"
    argv = ["codes", "poster", "--root-key", str(tmp_path / "root.key.pem"), "--out", str(out)]
    assert run_cli(argv, CONFIG) == 0
    text = capsys.readouterr().out.strip()
    assert scanned(out) == [text]
    reason, venue_code = vc1.verify(text, keys.load_public_key(tmp_path / "root.pub.pem"))
    assert reason == "ok"
    assert venue_code.as_dict() | {"issued": 0} == {
        "site": "s1", "venue": "arena", "entrance": "north", "name": "The Arena", "issued": 0,
    }  # fmt: skip


def test_poster_needs_a_usable_root_key(tmp_path, capsys) -> None:
    argv = ["codes", "poster", "--root-key", str(tmp_path / "x.pem"), "--out", str(tmp_path / "p")]
    assert run_cli(argv) == 2
    one_line_error(capsys, "x.pem")
    assert not (tmp_path / "p").exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_private_key_others_can_read_is_refused_and_signs_nothing(issuer_key, capsys, mode) -> None:
    issuer_key.chmod(mode)
    assert run_cli(["codes", "issue", "--key", str(issuer_key), "--issuer", "a"]) == 2
    one_line_error(capsys, str(issuer_key), f"{mode:04o}", "chmod 600")
    with pytest.raises(KeyFileError, match="group or others"):
        keys.load_private_key(issuer_key)
    # Its public half is public: reading it from the same file is not refused.
    assert keys.kid_of(keys.load_public_key(issuer_key))
    issuer_key.chmod(0o400)
    assert keys.load_private_key(issuer_key)
