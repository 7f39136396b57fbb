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
