"""Puts the parts together for `edge-sentry run`: config in, a running sentry out, a clean stop.

What it must never do: exit because a part is unwell. A broken trust file, a camera that will not open,
an unreachable broker or a full disk put the gate in its fail mode or raise an event; only a config
error or pins that cannot be claimed stop the start (exit 2 / 1), because then there is no gate to keep
safe. The config in force is the file's overlaid with what operators pushed and this device applied
(the shadow keeps the last good one in the state store), so a restart never loses a pushed config.
The state store is opened once per run, with the daemon, and closed when `run` returns.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from gpiozero.pins.mock import MockFactory

from . import priority, selftest
from .camera import open_source
from .camera.base import FrameSource
from .codes import keys
from .codes.trust import TrustList
from .config import Config, loopback_host
from .decoder import Decoder
from .demo import DemoIssuer, DemoSource, press_button, shut_simulated_door
from .errors import EdgeSentryError, PagesUnavailable
from .eventlog import EventLog
from .gpio import GateDevices, build_devices, drive_relay_off, make_pin_factory
from .health import HealthReporter
from .link.control import ControlGuard
from .link.shadow import ConfigShadow
from .link.topics import Topics
from .link.trustpush import TrustPush, load_initial
from .outbox import Outbox
from .pages import aim
from .pages.hub import PageHub
from .pages.server import PageServer
from .privacy import Sealer
from .sentry import Sentry
from .service import Notifier
from .state import StateStore
from .uplink import RESTART_EXIT, Uplink, figures
from .verifier import Verifier
from .viewfinder import Viewfinder
from .vocabulary import Event, Refusal
from .voice import Voice

log = logging.getLogger(__name__)

_WATCH_S = 60.0


class Daemon:
    """One run of the sentry: build, run until stopped, close everything in reverse order."""

    def __init__(
        self,
        config: Config,
        *,
        stream: TextIO | None = None,
        clock_probe: Callable[[], bool | None] = selftest.clock_synchronised,
    ):
        # The relay first, before anything that could fail: a previous run killed without closing
        # its gate may have left the strike released. gpio.* is never pushed, so the file's pins hold.
        self.pins = make_pin_factory(config.gpio.pin_factory)
        drive_relay_off(config.gpio, self.pins)
        self.store = StateStore.open(config)
        self.shadow = ConfigShadow(config, self.store)
        self.config = self.shadow.current
        self.events = EventLog(self.config.log.format, stream)
        self.stop_event = threading.Event()
        self.notifier = Notifier()
        self.sentry: Sentry | None = None
        self.outbox: Outbox | None = None
        self.uplink: Uplink | None = None
        # The pages' state; fed by `_record` whether or not a server runs (a hand-off that does
        # nothing until one attaches its loop).
        self.hub = PageHub()
        self.pages: PageServer | None = None
        # The camera aiming page's hand-off, only when display.aim turns the page on (the config
        # makes sure pages are served then): without it the hot loop has nothing to hand frames to.
        display = self.config.display
        self.viewfinder = Viewfinder(display.aim_fps) if display.aim else None
        self._page_health: HealthReporter | None = None
        self.voice: Voice | None = None
        self.exit_status = 0
        self._logged_early: set[str] = set()
        self._trust_stale = False
        self._clock_synced: bool | None = None
        self._clock_probe = clock_probe
        self._early_lock = threading.Lock()

    # -- assembly -------------------------------------------------------------------------------

    def _is_demo(self) -> bool:
        cam = self.config.camera
        return cam.source == "synthetic" and cam.scene == "demo"

    def _load_trust(self, demo: DemoIssuer | None) -> tuple[TrustList, str | None]:
        """The trust list (the file's or the newer pushed one), and why it is unusable."""
        config = self.config
        if config.trust.file is None and demo is not None:
            log.warning("no trust.file: trusting only the in-memory demo issuer")
            return demo.trust, None
        trust, problem = load_initial(config.trust.file, self.store)
        if trust is None:
            log.error("trust list unusable: %s", problem)
            return TrustList.empty(), problem
        return trust, None

    def _root_key(self) -> Ed25519PublicKey | None:
        path = self.config.trust.root_key
        if path is None:
            return None
        try:
            return keys.load_public_key(path)
        except EdgeSentryError as exc:
            log.error("trust.root_key unusable: %s", exc)
            return None

    def _source(self, demo: DemoIssuer | None, devices: GateDevices) -> FrameSource:
        if demo is not None:
            return DemoSource(self.config, demo, on_staff=lambda: press_button(devices.staff))
        return open_source(self.config.camera)

    def _record(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Every event's way out: the outbox's queue, then the voice's slot. Both hand over and
        return at once; the hot loop calls this only after the gate has acted."""
        assert self.outbox is not None
        self.hub.publish(event)  # first: the display shows the gate's act before the outbox queues it
        stamped = self.outbox.put(event)
        if self.voice is not None:
            self.voice.announce(event)
        return stamped

    def _on_durable(self, event: dict[str, Any]) -> None:
        with self._early_lock:
            early = event.get("id") in self._logged_early
            self._logged_early.discard(event.get("id"))
        if not early:
            self.events.write(event)
        if self.uplink is not None:
            self.uplink.wake()

    def _on_alarm(self, name: str, details: dict[str, Any]) -> None:
        """Outbox alarms (`disk-low`, `outbox-full`) are logged at once, not once durable: the
        outbox may be the very thing that cannot write. They still go to the outbox for the fleet."""
        log.warning("outbox alarm %s: %s", name, details)
        event = {"event": name, "t": int(time.time() * 1000), **details}
        self.hub.publish(event)
        with self._early_lock:  # held across put(), so on_durable cannot see the id before this does
            stamped = self.outbox.put(event) if self.outbox is not None else None
            if stamped is not None:
                self._logged_early.add(stamped["id"])
                event = stamped
        self.events.write(event)

    def _start_pages(self) -> None:
        """Serve the pages when `display.listen` says so. A port that is taken, or anything else
        that goes wrong here, is logged and the sentry runs without them: the gate never depends
        on its pages."""
        listen = self.config.display.listen
        if not listen:
            return
        server = PageServer(self.config, self.hub)
        server.mount(aim.routes(self.viewfinder))
        try:
            host, port = server.start()
        except PagesUnavailable as exc:
            log.error("pages not served, the sentry runs without them: %s", exc)
            return
        except Exception:
            log.exception("pages not served, the sentry runs without them")
            return
        self.pages = server
        log.info("pages at %s/ (visitor display), %s/staff (staff view)", server.url, server.url)
        if self.viewfinder is not None:
            log.warning("camera aiming page on at %s/aim (display.aim): turn it off once the camera is aimed",
                        server.url)  # fmt: skip
        if not loopback_host(host):
            log.warning("pages served beyond this machine on %s:%d (display.listen)", host, port)
            if self.viewfinder is not None:
                log.warning("camera pictures can be seen beyond this machine while /aim is open")

    def _stop_pages(self) -> None:
        if self._page_health is not None:
            self._page_health.stop()
        if self.pages is not None:
            self.pages.stop()

    def _request_restart(self) -> None:
        log.warning("restart requested by the fleet")
        self.exit_status = RESTART_EXIT
        self.stop_event.set()

    # -- running --------------------------------------------------------------------------------

    def _handle_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        self.stop_event.set()

    def run(self, duration: float | None = None) -> int:
        """Run until stopped; the exit status (0, or RESTART_EXIT after a remote `restart`)."""
        try:
            return self._run(duration)
        finally:
            self.notifier.close()
            self.store.close()  # last: everything that keeps state has stopped by now

    def _run(self, duration: float | None) -> int:
        config = self.config
        sealer = Sealer.from_config(config.privacy)  # a set but unusable key is a config error
        demo = DemoIssuer.create() if self._is_demo() else None
        trust, trust_problem = self._load_trust(demo)
        root_key = self._root_key()
        factory = self.pins
        devices = build_devices(config.gpio, factory)
        if isinstance(factory, MockFactory):
            shut_simulated_door(devices)
        started = time.monotonic()
        self.outbox = Outbox(
            Path(config.outbox.path),
            max_events=config.outbox.max_events,
            queue_size=config.outbox.queue_size,
            retention_days=config.privacy.retention_days,
            on_durable=self._on_durable,
            on_alarm=self._on_alarm,
        )
        try:
            self.outbox.start()
            if config.voice.enabled:
                # Its thread renders what is missing, then plays; the gate never waits for it.
                self.voice = Voice(config)
                self.voice.start()
            verifier = Verifier.from_config(config, trust, root_key)
            self.sentry = sentry = Sentry(
                config,
                self._source(demo, devices),
                Decoder(config.decoder),
                verifier,
                devices,
                self._record,
                on_progress=self.notifier.progress,
                max_wait_s=self.notifier.turn_limit_s,
                sealer=sealer,
                refusal=self._refusal,
                viewfinder=self.viewfinder,
            )
            push = TrustPush(
                trust, root_key, self.store, site=config.device.site, device=config.device.id,
                record=self._record,
            )
            rig = selftest.Rig(
                config, devices=devices, gate=sentry.gate, decoder=sentry.decoder, trust=trust,
                trust_problem=trust_problem, root_key=root_key, voice=self.voice,
            )
            self._follow_pushes(verifier, push, rig, had_problem=trust_problem is not None)
        except BaseException:
            # A start that fails here (a scene file that cannot be read, say) must give back the
            # pins and the outbox's folder lock, and stop its threads.
            if self.sentry is not None:
                self.sentry.close()
            devices.close()
            if self.voice is not None:
                self.voice.stop()
            self.outbox.stop()
            raise
        previous = {}
        if threading.current_thread() is threading.main_thread():  # only there can signals be taken
            previous = {
                sig: signal.signal(sig, self._handle_signal) for sig in (signal.SIGTERM, signal.SIGINT)
            }
        watcher = threading.Thread(
            target=self._watch, args=(push,), name="edge-sentry-watch", daemon=True
        )
        self._start_pages()
        try:
            self._record(self._start_event(trust, started))
            if trust_problem is not None:
                self._record({"event": Event.TRUST_INVALID, "t": int(time.time() * 1000)})
                sentry.gate.set_fault("trust")
            if config.mqtt is not None:
                # The operator keys come from the list in use at each message: a push may change them.
                guard = ControlGuard(
                    Topics(config.device.site, config.device.id), lambda: push.trust, self.store,
                    settings=lambda: self.shadow.current.control, record=self._record,
                )  # fmt: skip
                self.uplink = Uplink(
                    config, self.shadow, push, self.outbox, sentry, rig, self._request_restart,
                    self.store, guard, on_health=self.hub.publish_health,
                )
                self.uplink.start()
            elif self.pages is not None:
                # No broker to report to, but the staff view shows the sentry's health all the same.
                outbox = self.outbox
                self._page_health = HealthReporter(
                    self.hub.publish_health,
                    lambda: figures(sentry, outbox, self.shadow, push),
                    lambda: self.shadow.current.health.interval_s,
                    state_dir=config.device.state_dir,
                    name="edge-sentry-page-health",
                )
                self._page_health.start()
            self._check_trust(push.trust)
            self._check_clock()
            watcher.start()
            self.notifier.ready(f"deciding at {config.device.site}/{config.device.entrance}")
            with priority.favour_the_loop(config.gate.realtime_priority > 0):
                sentry.run(self.stop_event, duration)
        finally:
            self.notifier.stopping()
            self.stop_event.set()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            try:
                sentry.close()  # the gate first: the relay ends off
            finally:
                try:
                    devices.close()
                    if self.voice is not None:
                        self.voice.stop()
                    self._record({"event": Event.STOP, "t": int(time.time() * 1000), **self._summary()})
                    self.outbox.flush(2.0)
                    if self.uplink is not None:
                        self.uplink.stop()
                finally:
                    try:
                        self.outbox.stop()  # whatever failed above, queued events reach the disk
                    finally:
                        self._stop_pages()
            if watcher.is_alive():
                watcher.join(2.0)
        return self.exit_status

    def _follow_pushes(
        self, verifier: Verifier, push: TrustPush, rig: selftest.Rig, *, had_problem: bool
    ) -> None:
        """Apply what operators push to the running parts: plain attribute swaps, read by the hot
        loop at its next code, so a push never waits for a decision and a decision never sees
        half of a push."""
        sentry = self.sentry
        assert sentry is not None
        problem = [had_problem]

        def on_trust(new: TrustList) -> None:
            verifier.trust = new
            rig.trust, rig.trust_problem = new, None
            if problem[0]:
                problem[0] = False
                sentry.gate.clear_fault("trust")

        def on_config(new: Config) -> None:
            verifier.es1 = new.es1
            verifier.dcc = new.dcc
            logging.getLogger().setLevel(new.log.level.upper())

        push.add_listener(on_trust)
        self.shadow.add_listener(on_config)

    def _start_event(self, trust: TrustList, started: float) -> dict[str, Any]:
        config = self.config
        return {
            "event": Event.START,
            "t": int(time.time() * 1000),
            "site": config.device.site,
            "device": config.device.id,
            "entrance": config.device.entrance,
            "camera": config.camera.source,
            "fail_mode": config.gate.fail_mode,
            "trust_version": trust.version,
            "config_version": self.shadow.version,
            "startup_ms": round((time.monotonic() - started) * 1000, 1),
        }

    def _summary(self) -> dict[str, Any]:
        if self.sentry is None:
            return {}
        stats = self.sentry.stats
        return {
            "frames": stats.frames,
            "decisions": stats.decisions,
            "frame_errors": stats.frame_errors,
            "camera_faults": stats.camera_faults,
        }

    def _refusal(self) -> str | None:
        """Why a valid code must not open the gate now, by the configured policies (None: it may).
        Read by the hot loop per decision: two flags, set by the watcher thread."""
        current = self.shadow.current
        if self._trust_stale and current.trust.stale_policy == "deny":
            return Refusal.TRUST_STALE
        if self._clock_synced is False and current.clock.unsynced_clock == "deny":
            return Refusal.CLOCK_UNSYNCED
        return None

    def _check_trust(self, trust: TrustList) -> None:
        policy = self.shadow.current.trust
        stale = bool(trust.version) and trust.is_stale(time.time(), policy.max_age_h)
        if stale and not self._trust_stale:
            self._record(
                {
                    "event": Event.TRUST_STALE,
                    "t": int(time.time() * 1000),
                    "age_h": round(trust.age_s(time.time()) / 3600, 1),
                    "policy": policy.stale_policy,
                }
            )
        self._trust_stale = stale

    def _check_clock(self) -> None:
        synced = self._clock_probe()
        if synced is False and self._clock_synced is not False:
            self._record(
                {
                    "event": Event.CLOCK_UNSYNCED,
                    "t": int(time.time() * 1000),
                    "policy": self.shadow.current.clock.unsynced_clock,
                }
            )
        self._clock_synced = synced

    def _watch(self, push: TrustPush) -> None:
        """Trust-list age and clock synchronisation, checked once a minute beside the hot loop."""
        while not self.stop_event.wait(_WATCH_S):
            self._check_trust(push.trust)
            self._check_clock()
