"""The clock part's child: the real `Daemon`, run as `edge-sentry run` runs it, with the relay watched.

Usage: python -m reliability._clock_rig CONFIG

The parent starts it under libfaketime, which moves the wall clock (time.time, datetime.now) and
leaves CLOCK_MONOTONIC alone. A thread samples the relay's mock pin every few milliseconds on the
monotonic clock and prints, as lines of the event log, the longest stretch it saw the relay on: a
relay timer that followed the wall clock would hold the strike released across a backward jump,
and only a look at the pin itself can tell.

One primitive is swapped before the sentry is imported: libfaketime 0.9.10 (Debian 12) mangles
clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME), which Python 3.11's time.sleep uses, even with
monotonic time left unfaked (the call fails with EINVAL). time.sleep becomes a wait on an event
nobody sets, which sleeps on the same monotonic clock through a call libfaketime leaves alone.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import threading
import time
from types import FrameType, SimpleNamespace
from typing import Any

RELAY_EVENT = "rig-relay"
_SAMPLE_S = 0.002
_REPORT_S = 0.5


class RelayWatch:
    """Longest continuous 'on' of one pin, on the monotonic clock."""

    def __init__(self, pin: Any) -> None:
        self.pin = pin
        self.longest_s = 0.0
        self.switched_on = 0
        self.samples = 0
        self._on_since: float | None = None
        self._lock = threading.Lock()

    def sample(self) -> None:
        now = time.monotonic()
        on = bool(self.pin.state)
        with self._lock:
            self.samples += 1
            if on and self._on_since is None:
                self._on_since = now
                self.switched_on += 1
            elif not on and self._on_since is not None:
                self.longest_s = max(self.longest_s, now - self._on_since)
                self._on_since = None
            if self._on_since is not None:
                self.longest_s = max(self.longest_s, now - self._on_since)

    def event(self) -> dict[str, Any]:
        with self._lock:
            return {"event": RELAY_EVENT, "longest_on_s": round(self.longest_s, 4),
                    "switched_on": self.switched_on, "samples": self.samples,
                    "on": self._on_since is not None}  # fmt: skip


_NEVER = threading.Event()


def _sleep(seconds: float) -> None:
    if seconds > 0:
        _NEVER.wait(seconds)


def main(argv: list[str]) -> int:
    time.sleep = _sleep  # type: ignore[assignment]  # before the sentry's modules bind it (see above)
    from edge_sentry.config import load
    from edge_sentry.daemon import Daemon
    from edge_sentry.demo import press_button

    config = load(argv[0])
    config = dataclasses.replace(config, log=dataclasses.replace(config.log, format="json"))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    daemon = Daemon(config, stream=sys.stdout)
    watch = RelayWatch(daemon.pins.pin(config.gpio.relay))
    stop = threading.Event()

    def sampler() -> None:
        last = time.monotonic()
        while not stop.wait(_SAMPLE_S):
            watch.sample()
            if time.monotonic() - last >= _REPORT_S:
                last = time.monotonic()
                daemon.events.write(watch.event())  # the log's own lock keeps lines whole

    def press_staff(_signum: int, _frame: FrameType | None) -> None:
        # The parent's way to switch the relay on just before it moves the clock: a staff press.
        press_button(SimpleNamespace(pin=daemon.pins.pin(config.gpio.staff)))

    signal.signal(signal.SIGUSR1, press_staff)
    thread = threading.Thread(target=sampler, name="rig-relay-watch", daemon=True)
    thread.start()
    try:
        status = daemon.run()
    finally:
        stop.set()
        thread.join(2)
        watch.sample()
        daemon.events.write(watch.event())
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
