"""Broker faults: the link breaks every way it can under load; no scan goes missing, no gate waits.

While the synthetic camera shows codes at a steady rate, the broker is stopped and started again, hung
(SIGSTOP: connections stay open and nothing is answered, which only the MQTT keepalive can notice)
and resumed, and the TCP link is cut by a proxy between the sentry and the broker, which then refuses
new connections for a while. At the end, with the broker healthy, everything drains: each event the
sentry logged must have reached the fleet's ingester (a persistent session, as the fleet subscribes),
matched by event id. QoS 1 may deliver an event twice; duplicates are counted, not failed. The gate
never waits on the link: frame -> relay on during the faults is printed against the design's bound.

Short form: one fault of each kind (~45 s). Long form: random faults for 5 minutes (seeded; the seed
is printed). RELIABILITY_FAULTS_S sets the seconds of faults of either form (the long form's faults
are random from the first; the short form keeps its three).
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2

from reliability import _rig
from reliability.report import Part, Report

SHORT_S = 30.0
LONG_S = 300.0
KEEPALIVE_S = 5  # the config's minimum: a hung broker is noticed within about twice this
P99_BOUND_MS = 2.0
DRAIN_S = 90.0
SEED = 20261129


class Proxy:
    """A TCP forwarder between the sentry and the broker that can drop every connection at once and
    refuse new ones for a while (accepted, then closed at once, as a middlebox resetting them)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server((upstream[0], 0))
        self.listener.settimeout(0.2)  # so that close() is noticed: accept() is not woken by it
        self.port: int = self.listener.getsockname()[1]
        self.accepted = 0
        self.refused = 0
        self.cuts = 0
        self._refusing = False
        self._closed = False
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept_loop, "proxy-accept")

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._refusing or self._closed:
                self.refused += 1
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=2.0)
            except OSError:  # the broker is down: the sentry sees the connection closed
                client.close()
                continue
            client.settimeout(None)
            server.settimeout(None)
            with self._lock:
                self._conns.update((client, server))
                self.accepted += 1
            self._spawn(self._pump, "proxy-up", client, server)
            self._spawn(self._pump, "proxy-down", server, client)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(src, dst)

    def _drop(self, *socks: socket.socket) -> None:
        for sock in socks:
            with self._lock:
                self._conns.discard(sock)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def cut(self) -> None:
        """Drop every connection now, both ways."""
        with self._lock:
            conns = list(self._conns)
        self.cuts += 1
        self._drop(*conns)

    def refuse(self, refusing: bool) -> None:
        self._refusing = refusing

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        self.cut()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(2.0)


@dataclass
class Fault:
    kind: str
    length_s: float  # down, hung or refusing for this long
    started: float  # wall seconds
    ended: float = 0.0  # wall seconds: the sentry connected again
    noticed_s: float | None = None  # a hang: how long until the sentry saw its link gone
    back_s: float | None = None  # from the end of the fault to connected again


class Faults:
    """The three faults, each ending only when the sentry is connected again."""

    def __init__(self, broker: _rig.Broker, proxy: Proxy, link: Any, report: Report) -> None:
        self.broker = broker
        self.proxy = proxy
        self.link = link
        self.report = report
        self.done: list[Fault] = []

    def _connected_again(self, fault: Fault, since: float) -> None:
        back = self.link.wait_connected(_rig.WAIT_S)
        fault.ended = time.time()
        fault.back_s = time.monotonic() - since if back else None
        self.done.append(fault)

    def restart(self, down_s: float) -> Fault:
        fault = Fault("restart", down_s, time.time())
        self.broker.stop()
        time.sleep(down_s)
        self.broker.start()
        self._connected_again(fault, time.monotonic())
        self.report.say(f"broker restarted after {down_s:.1f} s down; sentry back in {_s(fault.back_s)}")
        return fault

    def hang(self, hang_s: float) -> Fault:
        fault = Fault("hang", hang_s, time.time())
        t0 = time.monotonic()
        self.broker.pause()
        try:
            if self.link.wait_state("disconnected", "connecting", timeout=hang_s):
                fault.noticed_s = time.monotonic() - t0
            time.sleep(max(0.0, hang_s - (time.monotonic() - t0)))
        finally:
            self.broker.resume()
        self._connected_again(fault, time.monotonic())
        self.report.say(
            f"broker hung {hang_s:.1f} s; noticed after {_s(fault.noticed_s)}, back in {_s(fault.back_s)}"
        )
        return fault

    def cut(self, refuse_s: float) -> Fault:
        fault = Fault("cut", refuse_s, time.time())
        self.proxy.refuse(True)
        self.proxy.cut()
        time.sleep(refuse_s)
        self.proxy.refuse(False)
        self._connected_again(fault, time.monotonic())
        self.report.say(f"link cut, refused {refuse_s:.1f} s; back in {_s(fault.back_s)}")
        return fault


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def _schedule(faults: Faults, long: bool, duration: float) -> None:
    """Short: one of each, healthy spells between. Long: random faults until `duration` has passed."""
    if not long:
        time.sleep(3.0)
        faults.restart(2.0)
        time.sleep(3.0)
        faults.hang(3 * KEEPALIVE_S)
        time.sleep(3.0)
        faults.cut(3.0)
        return
    rng = random.Random(SEED)
    faults.report.say(f"random faults for {duration:g} s, seed {SEED}")
    t_end = time.monotonic() + duration
    while time.monotonic() < t_end:
        time.sleep(rng.uniform(1.0, 8.0))
        kind = rng.choice(("restart", "hang", "cut"))
        if kind == "restart":
            faults.restart(rng.uniform(0.2, 6.0))
        elif kind == "hang":
            faults.hang(rng.uniform(1.0, 4 * KEEPALIVE_S))
        else:
            faults.cut(rng.uniform(0.0, 5.0))


def _received(ingest: _rig.Subscriber, topics: list[str]) -> Counter[str]:
    """Event ids as they arrived at the ingester (a scan batch is a list, another event one map)."""
    ids: Counter[str] = Counter()
    for message in [m for topic in topics for m in ingest.on(topic)]:
        body = cbor2.loads(message.payload)
        for event in body if isinstance(body, list) else [body]:
            if isinstance(event, dict) and "id" in event:
                ids[str(event["id"])] += 1
    return ids


def run(report: Report, long: bool) -> None:
    duration = _rig.seconds("RELIABILITY_FAULTS_S", SHORT_S, LONG_S, long)
    with _rig.setting("edge-sentry-faults-") as where:
        broker, logs = where.broker, where.logs
        proxy = Proxy((broker.host, broker.port))
        where.cleanup.callback(proxy.close)
        scene = _rig.write_scene(where.folder)
        config = _rig.daemon_config(
            broker, where.folder / "sentry", scene, port=proxy.port, keepalive_s=KEEPALIVE_S
        )
        prefix = f"sentry/v1/{config.device.site}/{config.device.id}"
        # The fleet's ingester: a persistent session, so what arrives while it is away waits for it.
        topics = [f"{prefix}/scan", f"{prefix}/event"]
        ingest = _rig.Subscriber(broker, topics, client_id="ingest", clean_start=False, session_expiry_s=3600)
        where.cleanup.callback(ingest.close)
        ingest.start()
        tap = _rig.EventTap(keep_ids=True)
        running = _rig.start_daemon(where, config, tap, report)
        if running is None:
            return
        daemon = running.daemon
        assert daemon.uplink is not None and daemon.outbox is not None
        link, outbox = daemon.uplink.link, daemon.outbox
        faults = Faults(broker, proxy, link, report)
        t_faults = time.time()
        _schedule(faults, long, duration)
        faults_over = time.time()
        report.say("faults over; draining")
        logged = tap.id_map()
        t_drain = time.monotonic()
        drained = False
        while not drained and time.monotonic() - t_drain < DRAIN_S:
            got = _received(ingest, topics)
            drained = all(i in got for i in logged) and outbox.stats()["depth"] == 0
            time.sleep(0.25)
        drain_s = time.monotonic() - t_drain
        time.sleep(1.0)  # a last redelivery, counted with the others
        got = _received(ingest, topics)
        until_wall = time.time()
        alive = running.alive
        link_stats = link.stats()
        running.stop()
    assert daemon.camera is not None
    scans = [i for i, name in logged.items() if name == "scan"]
    missing_scans = [i for i in scans if i not in got]
    missing = [i for i in logged if i not in got]
    report.check("scans missing at the broker", not missing_scans, f"{len(missing_scans)} of {len(scans)}")
    report.check(
        "events missing at the broker",
        not missing,
        f"{len(missing)} of {len(logged)} (drained in {drain_s:.1f} s)",
    )
    report.check("outbox drained", drained, "depth 0" if drained else "not in time")
    duplicates = sum(n - 1 for n in got.values() if n > 1)
    report.figure(
        "duplicates delivered (QoS 1 allows them)", f"{duplicates} of {sum(got.values())} deliveries"
    )
    verdicts = _rig.judge(scene.cues, tap.scan_list(), daemon.camera.started_wall, until_wall)
    report.check("every decision made, and right", verdicts.ok, verdicts.summary())
    report.check("daemon still running", alive and running.status == 0, f"exit status {running.status}")
    kinds = Counter(f.kind for f in faults.done)
    back = [f for f in faults.done if f.back_s is not None]
    report.check(
        "link back after every fault", len(back) == len(faults.done), f"{len(back)} of {len(faults.done)}"
    )
    long_hangs = [f for f in faults.done if f.kind == "hang" and f.length_s >= 2.5 * KEEPALIVE_S]
    noticed = [f.noticed_s for f in long_hangs if f.noticed_s is not None]
    if long_hangs:
        report.check(
            f"hangs longer than 2.5 x keepalive ({KEEPALIVE_S} s) noticed",
            len(noticed) == len(long_hangs),
            f"{len(noticed)} of {len(long_hangs)}, within {max(noticed, default=0):.1f} s",
        )
    report.figure(
        "faults",
        ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + f" over {faults_over - t_faults:.0f} s",
    )
    report.figure("reconnection, slowest", f"{max((f.back_s or 0 for f in faults.done), default=0):.1f}", "s")
    report.figure(
        "sentry link", f"{link_stats.get('connects')} connects, {proxy.accepted} through the proxy, "
        f"{proxy.refused} refused",
    )  # fmt: skip
    tracebacks = [e for e in logs.errors if e.endswith(_rig.TRACEBACK)]
    report.check(
        "no exceptions logged",
        not tracebacks,
        f"{len(tracebacks)}" + (f": {tracebacks[0]}" if tracebacks else ""),
    )
    common = Counter(e[:100] for e in logs.errors).most_common(3)
    report.figure(
        "errors logged (the link says what broke)",
        f"{len(logs.errors)}" + "".join(f"; {n} x {text!r}" for text, n in common),
    )
    during = [ms for f in faults.done for ms in _rig.relay_latencies(tap.scan_list(), f.started, f.ended)]
    report.figure("frame -> relay on during faults, p50", _rig.pct(during, 50), "ms")
    report.target(
        f"frame -> relay on during faults, p99 ({len(during)} grants)",
        _rig.pct(during, 99),
        P99_BOUND_MS,
        "ms",
    )


PART = Part(
    "broker-faults",
    20,
    "broker restarts, hangs and cut links under load: nothing missing, the gate never waits",
    run,
)
