"""The sentry's side of the fleet: the MQTT link and what rides on it, wired to the running parts.

The link drains the outbox; the config shadow, the trust push and the remote commands take what
operators send; the health reporter publishes the figures. Everything here runs beside the hot loop
and reaches into it only through attribute swaps (a new trust list, new ES1 rules) and the gate's own
thread-safe `grant`, so nothing here can stall a decision. Without an `[mqtt]` section none of it
starts.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

from . import selftest
from .config import Config
from .health import HealthReporter
from .link import Link
from .link.control import ControlGuard
from .link.remote_commands import RemoteCommands, builtin_commands
from .link.shadow import ConfigShadow
from .link.trustpush import TrustPush
from .outbox import Outbox
from .sentry import Sentry
from .state import StateStore

log = logging.getLogger(__name__)

#: Exit status of a remote `restart`: systemd starts the sentry again (Restart=always).
RESTART_EXIT = 75


def figures(sentry: Sentry, outbox: Outbox, shadow: ConfigShadow, push: TrustPush) -> dict[str, Any]:
    """The running sentry's figures for a health report (`health.sample`'s inputs), link aside:
    the uplink adds its state; without a broker the pages' health report goes without it."""
    stats = sentry.stats
    return {
        "frames": stats.frames,
        "decode_ms": list(stats.decode_ms),
        "latency_ms": list(stats.latency_ms),
        "loop_priority": stats.priority,
        "outbox": outbox.stats(),
        "gate": str(sentry.gate.state),
        "config_version": shadow.version,
        "trust_version": push.trust.version,
    }


class Uplink:
    """Link, shadow, trust push, commands and health for one run of the daemon; `store` is the
    daemon's open state store (the commands keep their answered ids there); `guard` checks every
    config and command against the operator keys of the trust list in use."""

    def __init__(
        self,
        config: Config,
        shadow: ConfigShadow,
        push: TrustPush,
        outbox: Outbox,
        sentry: Sentry,
        rig: selftest.Rig,
        request_restart: Callable[[], None],
        store: StateStore,
        guard: ControlGuard,
        on_health: Callable[[dict[str, Any]], None] | None = None,
    ):
        self.config = config
        self.shadow = shadow
        self.push = push
        self.outbox = outbox
        self.sentry = sentry
        self.link = Link(config, outbox, boot_counter=store.next_boot_count)
        commands = RemoteCommands(
            store,
            builtin_commands(
                grant=sentry.gate.grant,
                request_restart=request_restart,
                allow_snapshot=lambda: shadow.current.privacy.allow_snapshot,
                snapshot=self._snapshot_source(),
                selftest=selftest.remote_runner(rig),
                selftest_parts=tuple(selftest.PARTS),
            ),
            guard=guard,
            clock_synced=selftest.clock_synchronised,
        )
        shadow.attach(self.link, guard)
        push.attach(self.link)
        commands.attach(self.link)
        self.health = HealthReporter(
            self._publish_health,
            self._collect,
            lambda: shadow.current.health.interval_s,
            state_dir=config.device.state_dir,
        )
        # A report sent while disconnected is lost (QoS 0): send the latest again on every connect,
        # so the retained health never lags a reconnect by a whole interval. Only the reporter's
        # thread samples (a sample may wait on vcgencmd; the link's handler thread must not).
        self._last_health: dict[str, Any] | None = None
        self._on_health = on_health
        self.link.add_connect_hook(self._republish_health)

    def _snapshot_source(self) -> Callable[[], bytes] | None:
        """A JPEG of the camera's main stream, where the camera can take one (the Pi camera)."""
        still = getattr(self.sentry.source, "still", None)
        if still is None:
            return None

        def snapshot() -> bytes:
            from PIL import Image

            out = io.BytesIO()
            Image.fromarray(still()).save(out, format="JPEG", quality=80)
            return out.getvalue()

        return snapshot

    def _publish_health(self, report: dict[str, Any]) -> None:
        self._last_health = report
        self.link.publish("health", report, qos=0, retain=True)
        if self._on_health is not None:
            self._on_health(report)

    def _republish_health(self) -> None:
        report = self._last_health
        if report is not None:
            self.link.publish("health", report, qos=0, retain=True)

    def _collect(self) -> dict[str, Any]:
        return {**figures(self.sentry, self.outbox, self.shadow, self.push), "link": self.link.state()}

    def wake(self) -> None:
        """The outbox has a new durable event: the drain need not wait for its next poll."""
        self.link.wake()

    def start(self) -> None:
        self.link.start()
        self.health.start()

    def stop(self) -> None:
        self.health.stop()
        self.link.stop()
