"""A start that fails half-way (a camera source that cannot be built) leaves nothing behind."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest

from edge_sentry.config import from_mapping
from edge_sentry.daemon import Daemon
from edge_sentry.errors import CameraError
from edge_sentry.outbox import Outbox


def test_a_start_that_fails_after_the_outbox_opened_stops_it_again(tmp_path: Path):
    config = from_mapping(
        {
            "device": {"state_dir": str(tmp_path / "state")},
            "camera": {"scene": str(tmp_path / "no-such-scene.toml")},
            "gpio": {"pin_factory": "mock"},
            "outbox": {"path": str(tmp_path / "outbox")},
        }
    )
    with pytest.raises(CameraError):
        Daemon(config, stream=io.StringIO(), clock_probe=lambda: True).run(duration=1.0)
    assert not [t for t in threading.enumerate() if t.name.startswith("outbox-")]
    again = Outbox(tmp_path / "outbox", max_events=100, queue_size=10, retention_days=1)
    again.start()  # the folder's lock was given back
    again.stop()


def test_an_unusable_trust_list_stays_a_fault_when_a_verifier_failure_clears(tmp_path: Path, monkeypatch):
    """The hot loop clears only the fault it raised, never the one for the trust list."""
    import json

    from edge_sentry import daemon as daemon_module
    from edge_sentry.verifier import Verifier

    class FailsOnce(Verifier):
        calls = 0

        def verify(self, text, now):  # type: ignore[override]
            FailsOnce.calls += 1
            if FailsOnce.calls == 1:
                raise RuntimeError("once")
            return super().verify(text, now)

    monkeypatch.setattr(daemon_module, "Verifier", FailsOnce)
    (tmp_path / "scene.json").write_text(json.dumps({"duration": 10, "cues": [
        {"text": "ES1:first", "start": 0.1, "end": 0.4},
        {"text": "ES1:second", "start": 0.7, "end": 1.0},
    ]}))  # fmt: skip
    config = from_mapping(
        {
            "device": {"state_dir": str(tmp_path / "state")},
            "camera": {"scene": str(tmp_path / "scene.json")},
            "gpio": {"pin_factory": "mock"},
            "outbox": {"path": str(tmp_path / "outbox")},
            "log": {"format": "json"},
        }
    )
    out = io.StringIO()
    daemon = Daemon(config, stream=out, clock_probe=lambda: True)
    assert daemon.run(duration=1.5) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in lines].count("trust-invalid") == 1
    assert FailsOnce.calls >= 2
    assert daemon.sentry is not None and daemon.sentry.gate.snapshot()["faults"] != []


def test_a_run_uses_its_identitys_kept_state_moves_old_files_in_and_closes_the_store(tmp_path: Path):
    import json

    from edge_sentry.state import STORE_FILE, Identity, StateStore

    state = tmp_path / "state"
    state.mkdir()
    kept = {"format": 1, "site": {"version": 0, "config": {}},
            "device": {"version": 4, "config": {"gate": {"pulse_ms": 650}}}}  # fmt: skip
    (state / "config.json").write_text(json.dumps(kept))  # as an older sentry left it
    mapping = {
        "device": {"state_dir": str(state), "site": "site", "id": "gate-1"},
        "camera": {"scene": str(tmp_path / "no-such-scene.toml")},
        "gpio": {"pin_factory": "mock"},
        "outbox": {"path": str(tmp_path / "outbox")},
    }
    daemon = Daemon(from_mapping(mapping), stream=io.StringIO(), clock_probe=lambda: True)
    assert daemon.config.gate.pulse_ms == 650 and daemon.shadow.version == 4
    assert not (state / "config.json").exists()  # moved into the store
    with pytest.raises(CameraError):
        daemon.run(duration=1.0)
    with StateStore(state, Identity("site", "gate-1")) as store:  # given back at the end of run
        assert store.applied_config() == kept
    demo = Daemon(from_mapping({**mapping, "device": {**mapping["device"], "id": "demo"}}),
                  stream=io.StringIO(), clock_probe=lambda: True)  # fmt: skip
    assert demo.config.gate.pulse_ms != 650 and demo.shadow.version == 0  # another identity
    demo.store.close()
    assert sorted(p.name for p in state.iterdir()) == [STORE_FILE]
