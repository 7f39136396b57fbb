"""A full disk under the outbox: the gate keeps deciding, `disk-low` is raised at once, nothing crashes."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import threading

import pytest

from edge_sentry.config import from_mapping
from edge_sentry.daemon import Daemon


@pytest.fixture
def full_fs(tmp_path):
    """A real 512 KiB tmpfs, filled to the brim before the sentry starts."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount_point)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (mount_point / "outbox").mkdir()
        fd = os.open(mount_point / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass  # full
        finally:
            os.close(fd)
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def test_the_gate_keeps_deciding_on_a_full_disk(full_fs, tmp_path):
    config = from_mapping(
        {
            "device": {"state_dir": str(tmp_path / "state")},
            "gpio": {"pin_factory": "mock"},
            "outbox": {"path": str(full_fs / "outbox")},
            "log": {"format": "json"},
        }
    )
    out = io.StringIO()
    daemon = Daemon(config, stream=out)
    outcome: dict[str, object] = {}
    thread = threading.Thread(target=lambda: outcome.update(status=daemon.run(duration=3.0)))
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert outcome.get("status") == 0
    assert daemon.sentry is not None and daemon.sentry.stats.decisions >= 1  # the demo's first code
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert any(line["event"] == "disk-low" for line in lines), lines
    assert daemon.sentry.gate.snapshot()["relay"]["activations"] >= 1  # the valid code's pulse
