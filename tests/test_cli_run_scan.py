"""`edge-sentry run` and `edge-sentry scan` as a technician runs them: real processes, real files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import smallcodes
from PIL import Image

from edge_sentry.codes import es1, keys, render
from edge_sentry.codes.trust import TrustList
from edge_sentry.demo import EXPECTED
from edge_sentry.outbox import Outbox

EXE = str(Path(sys.executable).with_name("edge-sentry"))


def sentry(*args: str, tmp_path: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL
    )


def test_run_with_no_config_plays_the_demo_and_logs_json(tmp_path):
    result = sentry("run", "--duration", "20.5", "--log-format", "json", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert all("event" in line and isinstance(line["t"], int) for line in lines)
    scans = [line for line in lines if line["event"] == "scan"]
    assert [(s["mode"], s["verdict"], s["reason"]) for s in scans] == [
        ("scan", *EXPECTED[step]) for step in EXPECTED
    ] + [("manual", "accept", "ok")]
    for scan in scans:
        assert {"id", "verdict", "reason", "mode", "latency_ms"} <= scan.keys()
    assert all(s["latency_ms"] > 0 for s in scans if s["mode"] == "scan")
    assert lines[0]["event"] == "start" and lines[-1]["event"] == "stop"
    assert "Traceback" not in result.stderr


def test_every_logged_decision_is_in_the_outbox(tmp_path):
    result = sentry("run", "--duration", "3", "--log-format", "json", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    logged = {json.loads(line)["id"] for line in result.stdout.splitlines()}
    outbox = Outbox(
        tmp_path / "state" / "edge-sentry" / "outbox", max_events=1000, queue_size=100, retention_days=1
    )
    with outbox:
        stored = {event["id"] for event in outbox.pending(1000)}
    assert logged and logged <= stored


def test_run_human_format_is_one_line_per_event(tmp_path):
    result = sentry("run", "--duration", "3", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert "start" in first and not first.startswith("{")


def test_config_error_names_the_key_and_exits_2(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[gate]\npulse_ms = "soon"\n[camera]\nsorce = "replay"\n')
    result = sentry("run", "--duration", "1", "--config", str(config), tmp_path=tmp_path)
    assert result.returncode == 2
    assert "gate.pulse_ms: must be an integer, not str" in result.stderr
    assert "camera.sorce: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_usage_exits_2(tmp_path):
    assert sentry("run", "--duration", "-1", tmp_path=tmp_path).returncode == 2
    assert sentry("frobnicate", tmp_path=tmp_path).returncode == 2


@pytest.fixture
def issuer(tmp_path):
    key = keys.generate()
    trust = TrustList.empty().with_entry(keys.trust_entry(key, "venue-co"), issued=datetime.now(UTC))
    path = tmp_path / "trust.json"
    path.write_text(trust.to_json())
    return key, path


def test_scan_reports_each_image_by_hash_only(tmp_path, issuer):
    key, trust = issuer
    good = es1.issue(key, issuer="venue-co", lifetime_s=60, iat=1_800_000_000)
    expired = es1.issue(key, issuer="venue-co", lifetime_s=60, iat=1_700_000_000)
    (tmp_path / "good.png").write_bytes(render.code_png(good))
    (tmp_path / "expired.png").write_bytes(render.code_png(expired))
    (tmp_path / "garbage.png").write_bytes(b"not a picture")
    result = sentry(
        "scan", "--trust", str(trust), "--now", "2027-01-15T08:00:10Z",
        str(tmp_path / "good.png"), str(tmp_path / "expired.png"), str(tmp_path / "garbage.png"),
        str(tmp_path / "absent.png"), tmp_path=tmp_path,
    )
    assert result.returncode == 1  # some images could not be read
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"].rsplit("/", 1)[1] for r in rows] == [
        "good.png", "expired.png", "garbage.png", "absent.png"
    ]
    assert [(c["scheme"], c["verdict"], c["reason"]) for c in rows[0]["codes"]] == [
        ("es1", "accept", "ok")
    ]
    assert rows[1]["codes"][0]["reason"] == "expired"
    assert rows[0]["ms"] >= 0
    assert rows[2]["error"] == "not an image format this sentry reads"
    assert rows[3]["error"] == "no such file"
    assert good not in result.stdout and good not in result.stderr
    assert rows[0]["codes"][0]["text_sha256"] == hashlib.sha256(good.encode()).hexdigest()


def test_scan_images_are_independent_no_passback_between_them(tmp_path, issuer):
    key, trust = issuer
    text = es1.issue(key, issuer="venue-co", lifetime_s=60)
    (tmp_path / "a.png").write_bytes(render.code_png(text))
    result = sentry(
        "--config", "/dev/null", "scan", "--trust", str(trust), str(tmp_path / "a.png"),
        str(tmp_path / "a.png"), tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    reasons = [json.loads(line)["codes"][0]["reason"] for line in result.stdout.splitlines()]
    assert reasons == ["ok", "ok"]


def test_scan_with_a_broken_trust_file_is_a_usage_error(tmp_path):
    broken = tmp_path / "trust.json"
    broken.write_text('{"version": "seven"}')
    (tmp_path / "a.png").write_bytes(b"")
    result = sentry("scan", "--trust", str(broken), str(tmp_path / "a.png"), tmp_path=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("edge-sentry scan: ") and len(result.stderr.splitlines()) == 1


def test_scan_of_an_image_too_small_for_a_code_reports_no_codes_and_goes_on(tmp_path, issuer):
    from PIL import Image

    key, trust = issuer
    Image.new("L", (10, 10), 255).save(tmp_path / "icon.png")
    (tmp_path / "good.png").write_bytes(render.code_png(es1.issue(key, issuer="venue-co", lifetime_s=60)))
    result = sentry(
        "scan", "--trust", str(trust), str(tmp_path / "icon.png"), str(tmp_path / "good.png"),
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[0]["codes"] == []
    assert [c["reason"] for c in rows[1]["codes"]] == ["ok"]


def test_scan_reads_small_and_light_on_dark_pictures_with_the_daemon_settings(tmp_path, issuer):
    key, trust = issuer
    text = es1.issue(key, issuer="venue-co", lifetime_s=60)
    names = []
    for side, inverted in ((180, False), (240, True), (380, True)):
        y = smallcodes.render(text, side, np.random.default_rng(side), inverted=inverted, blur=0.5)
        names.append(str(tmp_path / f"{side}-{inverted}.png"))
        Image.fromarray(y).save(names[-1])
    result = sentry("scan", "--trust", str(trust), *names, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        row = json.loads(line)
        assert [(c["verdict"], c["reason"]) for c in row["codes"]] == [("accept", "ok")], row
        # Found by the fast path: nothing marked thorough, no thorough read run.
        assert "thorough" not in row["codes"][0] and "thorough_ms" not in row


def test_scan_falls_back_to_a_thorough_read_and_marks_what_it_finds(tmp_path, issuer):
    key, trust = issuer
    text = es1.issue(key, issuer="venue-co", lifetime_s=60)
    # Light on dark with coarse modules filling a large picture: the daemon's settings do not try
    # it inverted (too few edges per pixel for a code's texture); zxing-cpp's defaults read it.
    y = smallcodes.render(text, 1200, np.random.default_rng(1), inverted=True, fill=0.9, blur=1.0)
    Image.fromarray(y).save(tmp_path / "dark.png")
    Image.new("L", (400, 300), 200).save(tmp_path / "blank.png")
    result = sentry(
        "scan", "--trust", str(trust), str(tmp_path / "dark.png"), str(tmp_path / "blank.png"),
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    dark, blank = (json.loads(line) for line in result.stdout.splitlines())
    assert [(c["verdict"], c["reason"], c["thorough"]) for c in dark["codes"]] == [("accept", "ok", True)]
    assert dark["codes"][0]["text_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert dark["ms"] >= 0 and dark["thorough_ms"] > 0
    # Nothing anywhere: the thorough read ran (its time is there) and found nothing either.
    assert blank["codes"] == [] and blank["thorough_ms"] >= 0
    assert text not in result.stdout
