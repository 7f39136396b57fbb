"""Policies that withhold a grant from a valid code: a stale trust list and an unsynchronised clock.

The code is still reported valid (`reason: ok`), but the entry is refused (`verdict: deny`, with
`refused` saying why) and left to staff; with the `verify` policies the same code opens the gate.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edge_sentry.codes import es1, keys
from edge_sentry.codes.trust import TrustList
from edge_sentry.config import from_mapping
from edge_sentry.daemon import Daemon


def run_daemon(tmp_path: Path, *, issued: datetime, synced: bool | None, **sections: Any) -> list[dict]:
    key = keys.generate()
    trust = TrustList.empty().with_entry(keys.trust_entry(key, "venue"), issued=issued)
    (tmp_path / "trust.json").write_text(trust.to_json())
    text = es1.issue(key, issuer="venue", lifetime_s=3600)
    (tmp_path / "scene.json").write_text(
        json.dumps({"duration": 10, "cues": [{"text": text, "start": 0.2, "end": 1.0}]})
    )
    mapping: dict[str, Any] = {
        "device": {"state_dir": str(tmp_path / "state")},
        "trust": {"file": str(tmp_path / "trust.json")},
        "camera": {"scene": str(tmp_path / "scene.json")},
        "gpio": {"pin_factory": "mock"},
        "outbox": {"path": str(tmp_path / "outbox")},
        "log": {"format": "json"},
    }
    for name, section in sections.items():
        mapping.setdefault(name, {}).update(section)
    out = io.StringIO()
    daemon = Daemon(from_mapping(mapping), stream=out, clock_probe=lambda: synced)
    assert daemon.run(duration=2.0) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


def scans(lines: list[dict]) -> list[tuple[str, str, str | None]]:
    return [(e["verdict"], e["reason"], e.get("refused")) for e in lines if e["event"] == "scan"]


def names(lines: list[dict]) -> list[str]:
    return [e["event"] for e in lines]


def test_unsynced_clock_with_deny_policy_refuses_a_valid_code(tmp_path):
    lines = run_daemon(
        tmp_path, issued=datetime.now(UTC), synced=False, clock={"unsynced_clock": "deny"}
    )
    assert scans(lines) == [("deny", "ok", "clock-unsynced")]
    assert "clock-unsynced" in names(lines)


def test_unsynced_clock_with_verify_policy_lets_it_in(tmp_path):
    lines = run_daemon(tmp_path, issued=datetime.now(UTC), synced=False)
    assert scans(lines) == [("accept", "ok", None)]
    assert "clock-unsynced" in names(lines)  # still said, for the fleet to see


def test_stale_trust_list_with_deny_policy_refuses_a_valid_code(tmp_path):
    old = datetime.now(UTC) - timedelta(hours=30)
    lines = run_daemon(tmp_path, issued=old, synced=True, trust={"stale_policy": "deny"})
    assert scans(lines) == [("deny", "ok", "trust-stale")]
    stale = [e for e in lines if e["event"] == "trust-stale"]
    assert stale and stale[0]["policy"] == "deny" and stale[0]["age_h"] >= 30


def test_stale_trust_list_with_verify_policy_keeps_verifying(tmp_path):
    old = datetime.now(UTC) - timedelta(hours=30)
    lines = run_daemon(tmp_path, issued=old, synced=True)
    assert scans(lines) == [("accept", "ok", None)]
    assert "trust-stale" in names(lines)
    assert "clock-unsynced" not in names(lines)
