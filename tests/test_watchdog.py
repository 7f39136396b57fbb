"""The systemd watchdog follows the hot loop's liveness, not the camera's frames.

The daemon runs with NOTIFY_SOCKET set to a real unix datagram socket that the test reads, as systemd
would: an unplugged camera must keep the keep-alives coming (and the buttons working), a loop stuck
in a read that ignores its timeout must stop them, and so must a gate whose relay guard has died.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from gate_helpers import wait_until
from gpiozero.pins.mock import MockFactory

from edge_sentry import daemon as daemon_module
from edge_sentry.camera.base import Frame, FrameSource
from edge_sentry.config import Config, from_mapping
from edge_sentry.daemon import Daemon
from edge_sentry.decoder import Decoder
from edge_sentry.demo import DemoIssuer, press_button, shut_simulated_door
from edge_sentry.gpio import build_devices
from edge_sentry.sentry import Sentry
from edge_sentry.service import Notifier
from edge_sentry.verifier import Verifier

WATCHDOG_USEC = 100_000  # a keep-alive every 50 ms at most
PING = "WATCHDOG=1"


class DeadCamera(FrameSource):
    """An unplugged camera: every read waits out its timeout and returns no frame.

    With `hang_after`, the read after that many is one that never returns, timeout or not (a driver
    stuck in the kernel), until the test lets it go with `release`.
    """

    def __init__(self, hang_after: int | None = None) -> None:
        self.reads = 0
        self.hang_after = hang_after
        self.hanging = threading.Event()
        self.release = threading.Event()

    def start(self) -> None:
        pass

    def read(self, timeout: float) -> Frame | None:
        self.reads += 1
        if self.hang_after is not None and self.reads > self.hang_after:
            self.hanging.set()
            self.release.wait()
            return None
        self.release.wait(timeout)
        return None

    def stop(self) -> None:
        self.release.set()


@pytest.fixture
def notify(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """systemd's end of the notify protocol: a bound datagram socket named in the environment."""
    folder = tempfile.mkdtemp(prefix="notify-")  # short: a socket path has ~100 bytes at most
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    try:
        yield sock
    finally:
        sock.close()
        shutil.rmtree(folder)


def receive(sock: socket.socket, count: int, message: str = PING) -> None:
    """Read datagrams until `count` of them begin with `message`; fail if the sender goes quiet first."""
    sock.settimeout(10.0)
    seen = 0
    while seen < count:
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            pytest.fail(f"{seen} of {count} {message!r} before the sender went quiet")
        seen += data.startswith(message)


def drain(sock: socket.socket) -> list[str]:
    sock.setblocking(False)
    got = []
    try:
        while True:
            got.append(sock.recv(4096).decode())
    except BlockingIOError:
        return got
    finally:
        sock.setblocking(True)


def config(tmp_path: Path, timeout_s: float = 0.05) -> Config:
    return from_mapping(
        {
            "device": {"state_dir": str(tmp_path / "state")},
            "camera": {"scene": "unused.toml", "timeout_s": timeout_s, "fault_after_s": 0.1},
            "gpio": {"pin_factory": "mock"},
            "outbox": {"path": str(tmp_path / "outbox")},
            "log": {"format": "json"},
            "gate": {"fail_mode": "secure", "pulse_ms": 50},
        }
    )


@contextmanager
def daemon_with(
    camera: DeadCamera, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Daemon, io.StringIO]]:
    """`edge-sentry run` on its own thread with `camera` for its source, stopped at the block's end."""
    monkeypatch.setattr(daemon_module, "open_source", lambda _cfg: camera)
    out = io.StringIO()
    daemon = Daemon(config(tmp_path), stream=out, clock_probe=lambda: True)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            daemon.run()
        except BaseException as exc:
            failed.append(exc)

    runner = threading.Thread(target=run, name="test-daemon")
    runner.start()
    try:
        yield daemon, out
    finally:
        daemon.stop_event.set()
        camera.release.set()
        runner.join(10)
    assert not runner.is_alive() and not failed


def events(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]


def test_a_dead_camera_keeps_the_watchdog_fed_and_the_staff_button_working(notify, tmp_path, monkeypatch):
    camera = DeadCamera()
    with daemon_with(camera, tmp_path, monkeypatch) as (daemon, out):
        receive(notify, 1, "READY=1")
        receive(notify, 5)  # over many camera timeouts, not a frame among them
        wait_until(lambda: any(e["event"] == "camera-fault" for e in events(out)), what="camera-fault")
        staff = daemon.pins.pin(daemon.config.gpio.staff)
        press_button(SimpleNamespace(pin=staff), 0.05)
        wait_until(lambda: any(e.get("mode") == "manual" for e in events(out)), what="manual entry")
        receive(notify, 5)  # and still fed afterwards
    assert daemon.sentry is not None and daemon.sentry.stats.frames == 0
    manual = [e for e in events(out) if e.get("mode") == "manual"]
    assert [(e["event"], e["verdict"]) for e in manual] == [("scan", "accept")]


def test_a_loop_stuck_in_a_read_stops_feeding_the_watchdog(notify, tmp_path, monkeypatch):
    camera = DeadCamera(hang_after=20)
    with daemon_with(camera, tmp_path, monkeypatch):
        receive(notify, 3)  # fed while the reads time out
        assert camera.hanging.wait(10), camera.reads
        drain(notify)  # sent before the read that never returns
        notify.settimeout(10 * WATCHDOG_USEC / 1e6)  # ten watchdog periods of silence
        with pytest.raises(TimeoutError):
            notify.recv(4096)


def test_a_notify_socket_nobody_reads_never_blocks_the_sender(notify):
    """The hot loop sends the keep-alive itself: a full queue at systemd's end drops one, never waits."""
    notifier = Notifier()
    sender = threading.Thread(target=lambda: [notifier.send(PING) for _ in range(100)], daemon=True)
    sender.start()
    sender.join(10)
    assert not sender.is_alive()
    assert 0 < len(drain(notify)) < 100


class CountingCamera(DeadCamera):
    """A dead camera that lets the test wait for a given number of loop turns."""

    def __init__(self) -> None:
        super().__init__()
        self.turned = threading.Condition()

    def read(self, timeout: float) -> Frame | None:
        with self.turned:
            self.reads += 1
            self.turned.notify_all()
        self.release.wait(min(timeout, 0.01))
        return None

    def wait_reads(self, count: int) -> None:
        with self.turned:
            assert self.turned.wait_for(lambda: self.reads >= count, timeout=10)


def test_a_gate_whose_relay_guard_died_stops_the_feeding_while_the_loop_turns():
    """No relay guard, no entry at all (the relay refuses to switch on): a restart brings it back."""
    devices = build_devices(Config().gpio, MockFactory())
    shut_simulated_door(devices)
    cfg = from_mapping({"camera": {"timeout_s": 0.05}, "gate": {"fail_mode": "secure", "pulse_ms": 50}})
    issuer = DemoIssuer.create()
    camera = CountingCamera()
    feeds: list[int] = []
    before = set(threading.enumerate())
    verifier = Verifier(cfg.es1, cfg.gate, cfg.device, issuer.trust)
    sentry = Sentry(cfg, camera, Decoder(cfg.decoder), verifier, devices, lambda e: e,
                    on_progress=lambda: feeds.append(camera.reads))  # fmt: skip
    (guard,) = [t for t in set(threading.enumerate()) - before if t.name == "edge-sentry-relay-guard"]
    switch_off = devices.relay.off
    failures = iter([RuntimeError("relay driver gone")])

    def off_failing_once() -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        switch_off()

    stop = threading.Event()
    runner = threading.Thread(target=sentry.run, args=(stop,), name="test-hot-loop")
    runner.start()
    try:
        camera.wait_reads(3)
        assert feeds  # fed while the camera is dead
        devices.relay.off = off_failing_once  # type: ignore[method-assign]
        press_button(devices.staff, 0.05)  # the pulse's end fails in the guard thread
        guard.join(10)
        assert not guard.is_alive()
        fed = len(feeds)
        camera.wait_reads(camera.reads + 5)
        assert len(feeds) == fed  # the loop turns, the watchdog starves
        assert runner.is_alive()
    finally:
        stop.set()
        runner.join(5)
        sentry.close()
        relay_on = devices.relay.value
        devices.close()
    assert not relay_on


def test_a_camera_timeout_longer_than_the_watchdog_period_still_keeps_it_fed(notify, tmp_path, monkeypatch):
    """`camera.timeout_s` may be up to 60 s; a dead camera's read must not hold the loop past the watchdog."""
    camera = DeadCamera()
    waits: list[float] = []
    honest_read = camera.read

    def read(timeout: float) -> Frame | None:
        waits.append(timeout)
        return honest_read(timeout)

    camera.read = read  # type: ignore[method-assign]
    monkeypatch.setattr(daemon_module, "open_source", lambda _cfg: camera)
    daemon = Daemon(config(tmp_path, timeout_s=60.0), stream=io.StringIO(), clock_probe=lambda: True)
    runner = threading.Thread(target=daemon.run, name="test-daemon")
    runner.start()
    try:
        receive(notify, 1, "READY=1")
        receive(notify, 5)
    finally:
        daemon.stop_event.set()
        camera.release.set()
        runner.join(10)
    assert not runner.is_alive()
    assert waits and max(waits) <= WATCHDOG_USEC / 1e6 / 4


_OUT_OF_DESCRIPTORS = """
import os, resource, socket
from edge_sentry.service import Notifier
notifier = Notifier()
open_now = len(os.listdir("/proc/self/fd"))
resource.setrlimit(resource.RLIMIT_NOFILE, (open_now - 1, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
try:
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    print("a descriptor was still free")
except OSError as exc:
    print("out of descriptors:", exc.strerror)
notifier.send("WATCHDOG=1")
"""


def test_a_process_out_of_file_descriptors_still_feeds_the_watchdog(notify):
    """A flood of connections that uses up the descriptors must not starve the keep-alive."""
    done = subprocess.run([sys.executable, "-c", _OUT_OF_DESCRIPTORS], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert done.stdout.startswith("out of descriptors:"), done.stdout + done.stderr
    assert drain(notify) == [PING]
