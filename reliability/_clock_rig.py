"""The clock part's child: the real `Daemon`, run as `edge-sentry run` runs it, with the relay watched.

Usage: python -m reliability._clock_rig CONFIG

The parent starts it under libfaketime, which moves the wall clock (time.time, datetime.now) and
leaves CLOCK_MONOTONIC alone. Once the daemon has stopped, it prints as a last line of the event
log the longest stretch the relay's mock pin was on: a relay timer that followed the wall clock
would hold the strike released across a backward jump, and only the pin itself can tell.

One primitive is swapped before the sentry is imported: libfaketime 0.9.10 (Debian 12) mangles
clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME), which Python 3.11's time.sleep uses, even with
monotonic time left unfaked (the call fails with EINVAL). time.sleep becomes a wait on an event
nobody sets, which sleeps on the same monotonic clock through a call libfaketime leaves alone.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import signal
import sys
import threading
import time
from types import FrameType, SimpleNamespace
from typing import Any

RELAY_EVENT = "rig-relay"


def relay_event(pin: Any) -> dict[str, Any]:
    """The relay's record from its mock pin: every change, timed by gpiozero on the monotonic clock
    when it happened (`states`: (seconds since the previous change, new state)), so no stretch on,
    however short or long, is missed or misjudged by a sampler that was late."""
    states = list(pin.states)
    longest = 0.0
    switched_on = 0
    for before, after in itertools.pairwise(states):
        if before.state and not after.state:
            longest = max(longest, float(after.timestamp))
        elif after.state and not before.state:
            switched_on += 1
    return {"event": RELAY_EVENT, "longest_on_s": round(longest, 4), "switched_on": switched_on,
            "on": bool(states[-1].state) if states else False}  # fmt: skip


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
    relay = daemon.pins.pin(config.gpio.relay)

    def press_staff(_signum: int, _frame: FrameType | None) -> None:
        # The parent's way to switch the relay on just before it moves the clock: a staff press.
        press_button(SimpleNamespace(pin=daemon.pins.pin(config.gpio.staff)))

    signal.signal(signal.SIGUSR1, press_staff)
    try:
        status = daemon.run()
    finally:
        daemon.events.write(relay_event(relay))  # the relay is off for good by now, or stuck
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
