"""The deciding loop at real-time priority: raised on its own thread, given back, refusals survived.

Raising needs CAP_SYS_NICE or an RLIMIT_RTPRIO of 10 (the service unit's LimitRTPRIO=); where this
account has neither, the tests that need it are skipped with that reason. The refusal is made by the
kernel's own seccomp path through strace, as the unit's filter or a missing limit would make it.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from test_sentry import devices, fast_config, make_sentry, run_for  # noqa: F401 (fixture)

from edge_sentry import priority
from edge_sentry.camera.base import Frame, FrameSource
from edge_sentry.camera.synthetic import Cue, Scene, SyntheticSource
from edge_sentry.codes import es1
from edge_sentry.demo import DemoIssuer


def policy() -> int:
    """This thread's scheduling policy, without the reset-on-fork flag the loop adds to it."""
    return os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK


def may_raise(level: int = 10) -> bool:
    soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
    return os.geteuid() == 0 or soft == resource.RLIM_INFINITY or soft >= level


needs_rt = pytest.mark.skipif(
    not may_raise(), reason="needs CAP_SYS_NICE or RLIMIT_RTPRIO >= 10 (the unit's LimitRTPRIO=)"
)


class PolicySpy(FrameSource):
    """A synthetic camera that notes the scheduling of the thread reading it, frame by frame."""

    def __init__(self, inner: SyntheticSource) -> None:
        self.inner = inner
        self.seen: set[tuple[int, int]] = set()

    def start(self) -> None:
        self.inner.start()

    def read(self, timeout: float) -> Frame | None:
        self.seen.add((policy(), os.sched_getparam(0).sched_priority))
        return self.inner.read(timeout)

    def stop(self) -> None:
        self.inner.stop()


def spied_sentry(gate_devices: Any, **gate: Any) -> tuple[Any, Any, PolicySpy]:
    issuer = DemoIssuer.create()
    text = es1.issue(issuer.key, issuer="demo-issuer", lifetime_s=60)
    scene = Scene([Cue(text=text, start=0, end=10)], duration=10)
    spy = PolicySpy(SyntheticSource(scene, fps=15))
    sentry, recorder = make_sentry(fast_config(**gate), spy, gate_devices, issuer)
    return sentry, recorder, spy


@needs_rt
def test_the_loop_decides_at_real_time_priority_and_gives_the_thread_back(devices):  # noqa: F811
    before = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)  # flags and all
    sentry, recorder, spy = spied_sentry(devices, realtime_priority=10)
    seen_priority: list[int] = []
    threading.Timer(0.3, lambda: seen_priority.append(sentry.stats.priority)).start()
    run_for(sentry, 0.8)  # on this (the test's) thread
    assert spy.seen == {(os.SCHED_FIFO, 10)}
    assert seen_priority == [10]  # what health reports read while it runs
    assert recorder.scans()[:1] == [("scan", "accept", "ok")]
    assert (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) == before
    assert sentry.stats.priority == 0


def test_priority_zero_leaves_the_loop_to_the_ordinary_scheduler(devices):  # noqa: F811
    sentry, recorder, spy = spied_sentry(devices, realtime_priority=0)
    run_for(sentry, 0.5)
    assert {seen for seen, _ in spy.seen} == {policy()} != {os.SCHED_FIFO}
    assert recorder.scans()[:1] == [("scan", "accept", "ok")]


@needs_rt
def test_threads_the_loop_starts_do_not_inherit_its_priority():
    got: dict[str, tuple[int, int]] = {}

    def child() -> None:
        got["child"] = (policy(), os.sched_getparam(0).sched_priority)

    def loop() -> None:
        with priority.realtime(5) as level:
            got["loop"] = (policy(), level)
            started = threading.Thread(target=child)
            started.start()
            started.join()

    runner = threading.Thread(target=loop)
    runner.start()
    runner.join()
    assert got["loop"] == (os.SCHED_FIFO, 5)
    assert got["child"][0] != os.SCHED_FIFO and got["child"][1] == 0


def test_a_priority_above_the_system_maximum_is_clamped():
    if not may_raise(99):
        pytest.skip("needs CAP_SYS_NICE or an unlimited RLIMIT_RTPRIO")
    got: list[int] = []

    def loop() -> None:
        with priority.realtime(1000) as level:
            got.append(level)

    runner = threading.Thread(target=loop)
    runner.start()
    runner.join()
    assert got == [os.sched_get_priority_max(os.SCHED_FIFO)]


@pytest.mark.skipif(
    os.environ.get("EDGE_SENTRY_EMULATED") == "1",
    reason="EDGE_SENTRY_EMULATED=1: qemu-user has no ptrace, so strace cannot inject the refusal; checked "
    "natively",
)
def test_a_refused_priority_is_logged_and_the_sentry_still_decides(tmp_path: Path):
    """The system says no (as a unit without LimitRTPRIO=, or a container, would): one warning,
    and the demo decides as before at ordinary priority."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.fail("strace is missing: install the Debian package `strace` (scripts/setup --dev does)")
    program = Path(sys.executable).parent / "edge-sentry"
    command = [
        strace, "-f", "-qq", "-o", "/dev/null", "--inject=sched_setscheduler:error=EPERM",
        str(program), "run", "--duration", "4",
    ]  # fmt: skip
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said[-3000:]
    assert said.count("could not raise the deciding loop to real-time priority 10") == 1, said[-3000:]
    assert "ACCEPT" in said, said[-3000:]  # the demo's first code still opens the gate
    assert "Traceback" not in said


def test_the_config_bounds_the_priority():
    from edge_sentry.config import from_mapping
    from edge_sentry.errors import ConfigError

    assert from_mapping({"gate": {"realtime_priority": 0}}).gate.realtime_priority == 0
    for bad in (-1, 100, "high"):
        with pytest.raises(ConfigError, match=r"gate\.realtime_priority"):
            from_mapping({"gate": {"realtime_priority": bad}})


@needs_rt
def test_the_priority_asked_for_stays_within_what_the_unit_allows(monkeypatch):
    """Configured above the service's LimitRTPRIO=, the loop takes the limit rather than nothing
    (the kernel would refuse the whole request, leaving it at ordinary priority)."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # an unprivileged account, as the unit runs it
    monkeypatch.setattr(resource, "getrlimit", lambda which: (5, 5))
    got: list[tuple[int, int]] = []

    def loop() -> None:
        with priority.realtime(10) as level:
            got.append((level, os.sched_getparam(0).sched_priority))

    runner = threading.Thread(target=loop)
    runner.start()
    runner.join()
    assert got == [(5, 5)]


def test_a_pushed_config_cannot_move_the_loop_priority():
    from edge_sentry.config import Config
    from edge_sentry.errors import ConfigRejected
    from edge_sentry.link import desired

    with pytest.raises(ConfigRejected) as refused:
        desired.build(Config(), {"gate": {"realtime_priority": 50}}, {})
    assert [path for path, _ in refused.value.problems] == ["gate.realtime_priority"]


@pytest.mark.parametrize("level", [10, 0])
def test_while_the_daemon_decides_the_interpreter_favours_its_loop_then_is_given_back(tmp_path, level):
    """A short switch interval and start-up's objects frozen while it runs (with a real-time
    priority configured); both as they were once it has stopped."""
    import gc
    import io

    from edge_sentry.config import from_mapping
    from edge_sentry.daemon import Daemon

    mapping = {
        "device": {"state_dir": str(tmp_path / "state")},
        "gpio": {"pin_factory": "mock"},
        "outbox": {"path": str(tmp_path / "outbox")},
        "gate": {"realtime_priority": level},
    }
    daemon = Daemon(from_mapping(mapping), stream=io.StringIO(), clock_probe=lambda: True)
    before = (sys.getswitchinterval(), gc.get_freeze_count())
    seen: list[tuple[float, int]] = []

    def look() -> None:
        while daemon.sentry is None or daemon.sentry.stats.frames < 3:  # deciding, start-up done
            if daemon.stop_event.wait(0.05):
                return
        seen.append((sys.getswitchinterval(), gc.get_freeze_count()))

    watcher = threading.Thread(target=look)
    watcher.start()
    assert daemon.run(duration=2.0) == 0
    watcher.join(5)
    assert (sys.getswitchinterval(), gc.get_freeze_count()) == before
    (during,) = seen
    if level:
        assert during[0] == priority.SWITCH_INTERVAL_S and during[1] > 10_000
    else:
        assert during == before
