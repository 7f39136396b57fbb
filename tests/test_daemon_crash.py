"""kill -9 of the real daemon while it writes, again and again: every event it logged (a logged line
means durable) is still in the outbox, the outbox opens, and no seq is ever issued twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from edge_sentry.codes import es1, keys
from edge_sentry.codes.trust import TrustList
from edge_sentry.outbox import Outbox

EXE = str(Path(sys.executable).with_name("edge-sentry"))
LOG_DEADLINE_S = 300.0


def busy_config(tmp_path: Path) -> Path:
    """A scene that shows a new valid code every half second, for a steady stream of writes."""
    key = keys.generate()
    trust = TrustList.empty().with_entry(keys.trust_entry(key, "crash"), issued=datetime.now(UTC))
    (tmp_path / "trust.json").write_text(trust.to_json())
    cues = [
        {"text": es1.issue(key, issuer="crash", lifetime_s=3600), "start": i * 0.5, "end": i * 0.5 + 0.3}
        for i in range(40)
    ]
    (tmp_path / "scene.json").write_text(json.dumps({"duration": 20, "cues": cues}))
    config = tmp_path / "sentry.toml"
    config.write_text(
        f'[device]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[trust]\nfile = "{tmp_path / "trust.json"}"\n'
        f'[camera]\nscene = "{tmp_path / "scene.json"}"\nfps = 15\n'
        f'[gate]\npassback_s = 0\n'
        f'[gpio]\npin_factory = "mock"\n'
        f'[outbox]\npath = "{tmp_path / "outbox"}"\n'
    )
    return config


def wait_for_logged(lines: list[str], count: int, proc: subprocess.Popen[str]) -> None:
    """Wait until the daemon has written `count` whole lines (a deadline far beyond any machine's need
    only stops a daemon that logs nothing from hanging the test)."""
    deadline = time.monotonic() + LOG_DEADLINE_S
    while sum(line.endswith("\n") for line in list(lines)) < count:
        assert proc.poll() is None, f"the daemon exited ({proc.returncode}) before logging {count} events"
        assert time.monotonic() < deadline, f"fewer than {count} events logged in {LOG_DEADLINE_S}s"
        time.sleep(0.05)


def test_kill_9_during_writes_loses_no_logged_event(tmp_path):
    config = busy_config(tmp_path)
    rng = random.Random(7)
    logged: dict[str, int] = {}
    for _ in range(5):
        proc = subprocess.Popen(
            [EXE, "--config", str(config), "run", "--log-format", "json"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
            env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "xdg")},
        )
        assert proc.stdout is not None
        lines: list[str] = []
        reader = threading.Thread(target=lines.extend, args=(proc.stdout,), daemon=True)
        reader.start()
        # Kill once the daemon has logged a few events, then at a random instant among its next writes:
        # counted, not timed, as a Pi Zero 2 W or an emulated arm64 logs far fewer in a given time.
        wait_for_logged(lines, rng.randint(2, 4), proc)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        reader.join(10)
        proc.stdout.close()
        buffer = "".join(lines)
        for line in buffer.splitlines():
            if line.endswith("}"):  # a line cut by the kill was never complete, so never logged
                event = json.loads(line)
                assert event["id"] not in logged, "an id was issued twice"
                logged[event["id"]] = event["seq"]
    assert len(logged) >= 10
    assert len(set(logged.values())) == len(logged), "a seq was issued twice"
    with Outbox(tmp_path / "outbox", max_events=100_000, queue_size=100, retention_days=1) as box:
        stored = {event["id"]: event["seq"] for event in box.pending(100_000)}
    missing = set(logged) - set(stored)
    assert not missing, f"{len(missing)} logged events lost"
    assert all(stored[i] == seq for i, seq in logged.items())
