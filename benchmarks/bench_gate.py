"""grant() -> relay-on latency, beside gpiozero switching the same kind of pin bare.

`Gate.grant` ends the frame -> relay latency: it takes the gate's lock, asks the relay guard for a
pulse and switches the pin before lights, buzzer and events. This measures, on gpiozero's mock
pins, the time from calling grant() to the relay being on (its return value), and the whole call;
the baseline is a bare `OutputDevice.on()` in the same run, so the ratio is what the gate adds.
docs/architecture.md (budgets) asks for the frame -> relay p99 well inside one frame interval.

Run: .venv/bin/python benchmarks/bench_gate.py [ROUNDS]
"""

from __future__ import annotations

import dataclasses
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gpiozero import OutputDevice
from gpiozero.pins.mock import MockFactory

from edge_sentry.config import GateConfig, GpioConfig
from edge_sentry.gate import Gate
from edge_sentry.gpio import build_devices

FRAME_INTERVAL_MS = 1000 / 30


def _percentiles(samples_s: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_s)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1e6, p99 * 1e6


def main(rounds: int = 2000) -> int:
    factory = MockFactory()
    gpio = GpioConfig(pin_factory="mock")
    devices = build_devices(gpio, factory)
    door = factory.pin(gpio.door)
    door.drive_low()
    bare = OutputDevice(26, pin_factory=factory)  # a free pin for the baseline
    clock = time.perf_counter
    cfg = dataclasses.replace(GateConfig(), grant_window_s=120)
    gate = Gate(cfg, devices, lambda name, detail: None, clock=clock)

    to_relay: list[float] = []
    whole: list[float] = []
    baseline: list[float] = []
    gc.disable()
    try:
        for i in range(rounds + 100):
            t0 = clock()
            bare.on()
            t1 = clock()
            bare.off()
            t2 = clock()
            t_relay = gate.grant("scan")
            t3 = clock()
            if t_relay is None or not devices.relay.value:
                print("bench_gate: the grant did not switch the relay on", file=sys.stderr)
                return 1
            # the person walks through: the door cycle ends the pulse, ready for the next round
            door.drive_high()
            door.drive_low()
            if i >= 100:  # warm-up done
                baseline.append(t1 - t0)
                to_relay.append(t_relay - t2)
                whole.append(t3 - t2)
    finally:
        gc.enable()
        gate.close()
        bare.close()
        devices.close()

    relay_p50, relay_p99 = _percentiles(to_relay)
    whole_p50, whole_p99 = _percentiles(whole)
    bare_p50, bare_p99 = _percentiles(baseline)
    print(f"gate grants on mock pins, {rounds} rounds")
    print(f"{'':34} {'p50 µs':>9} {'p99 µs':>9}")
    print(f"{'grant() -> relay on':34} {relay_p50:9.1f} {relay_p99:9.1f}")
    print(f"{'grant() whole call (lights, beep)':34} {whole_p50:9.1f} {whole_p99:9.1f}")
    print(f"{'bare OutputDevice.on()':34} {bare_p50:9.1f} {bare_p99:9.1f}")
    ratio_p50, ratio_p99 = relay_p50 / bare_p50, relay_p99 / bare_p99
    print(f"{'ratio grant -> relay / bare':34} {ratio_p50:9.2f} {ratio_p99:9.2f}")
    share = relay_p99 / 1000 / FRAME_INTERVAL_MS
    print(f"grant -> relay p99 is {share:.2%} of a 30 fps frame interval")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
