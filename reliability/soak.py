"""Soak: the daemon at 30 fps for minutes, with scans, button presses and signed remote commands.

What must hold all along: every code decided as it should be (valid granted, a stranger's or a non-code
denied, a code shown again denied as passback), every staff and exit press logged as an entry, every
signed command answered, nothing logged as an error; what must not creep: memory, open descriptors,
threads. Frame -> relay on is printed against the design's bound.

Short form 25 s, long form 10 minutes; RELIABILITY_SOAK_S sets the seconds of either.
Memory, descriptors and threads are this process's: the daemon runs in it (see _rig), beside the
drivers and the operator's MQTT client, whose own share is small. What the rig keeps is bounded or a
few bytes per decision, and the mock pins' history of states (gpiozero keeps it for assertions) is
emptied each minute, so a slope is the daemon's. Python's allocated blocks are printed beside the
resident memory: objects kept show there, while the C heap's fragmentation shows only in the RSS.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable

from edge_sentry import selftest
from reliability import _rig
from reliability.report import Part, Report

SHORT_S = 25.0
LONG_S = 600.0
PRESS_EVERY_S = 2.5  # staff and exit in turn
# Often, so that the sentry's memory of answered requests (its last 256, in the state store) is full
# within the first half of the long form: the second half's slopes then show what is not bounded.
COMMAND_EVERY_S = 1.0
# Commands come at random moments (a gap drawn between half and one and a half times the mean, from
# this seed), as an operator's would: on a fixed beat they would keep one phase against the scene's
# codes for the whole run, meeting every decision or none, and the latency figures would depend on
# where that phase fell at start-up.
COMMAND_SEED = 20261129
P99_BOUND_MS = 2.0


def run(report: Report, long: bool) -> None:
    duration = _rig.seconds("RELIABILITY_SOAK_S", SHORT_S, LONG_S, long)
    with _rig.setting("edge-sentry-soak-") as where:
        broker, logs = where.broker, where.logs
        scene = _rig.write_scene(where.folder)
        config = _rig.daemon_config(broker, where.folder / "sentry", scene)
        tap = _rig.EventTap()
        running = _rig.start_daemon(where, config, tap, report)
        if running is None:
            return
        daemon = running.daemon
        prefix = f"sentry/v1/{config.device.site}/{config.device.id}"
        operator = _rig.Operator(broker, prefix)
        where.cleanup.callback(operator.close)
        operator.start()
        report.say(f"daemon deciding at {_rig.FPS:g} fps; driving it for {duration:g} s")
        sampler = _rig.Sampler(5.0 if duration > 120 else 1.0).start()
        where.cleanup.callback(sampler.stop)
        presses = _drive(report, daemon, operator, duration, sampler)
        _settle(tap, operator, presses)
        until_wall = time.time()
        alive = running.alive
        sampler.stop()
        running.stop()
    assert daemon.camera is not None and daemon.sentry is not None
    scans = tap.scan_list()
    verdicts = _rig.judge(scene.cues, scans, daemon.camera.started_wall, until_wall)
    report.check("every scan decided correctly", verdicts.ok, verdicts.summary())
    modes = Counter(s.mode for s in scans)
    pressed_ok = modes["manual"] == presses["staff"] and modes["exit"] == presses["exit"]
    report.check(
        "every button press logged as an entry", pressed_ok,
        f"staff {modes['manual']}/{presses['staff']}, exit {modes['exit']}/{presses['exit']}",
    )  # fmt: skip
    operator.collect()
    sent = sum(operator.wanted.values())
    granted = operator.wanted[("pulse-gate", "ok")]
    pulses = tap.count("gate-pulse")
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(operator.statuses.items()))
    report.check(
        "every signed command answered as it must be",
        sent > 0 and operator.right == sent and not operator.stray and pulses == granted,
        f"{operator.right} of {sent} ({statuses}); remote pulses logged {pulses}/{granted}",
    )
    stats = daemon.sentry.stats
    report.check(
        "no errors or exceptions logged", not logs.errors and not tap.bad_lines,
        f"{len(logs.errors)}" + (f": {logs.errors[0]}" if logs.errors else ""),
    )  # fmt: skip
    report.check(
        "no frame errors or camera faults", stats.frame_errors == 0 and stats.camera_faults == 0,
        f"{stats.frame_errors} frame errors, {stats.camera_faults} camera faults",
    )  # fmt: skip
    report.check("daemon ran to the end", alive and running.status == 0, f"exit status {running.status}")
    report.figure("warnings logged", sum(logs.warnings.values()))
    if logs.warnings:
        report.figure("most frequent warning", logs.warnings.most_common(1)[0][0])
    report.figure("frames handled", f"{stats.frames} ({stats.frames / duration:.1f} fps)")
    _resources(report, sampler.samples, duration)
    relay = _rig.relay_latencies(scans)
    denies = [s.latency_ms for s in scans if s.mode == "scan" and s.verdict == "deny" and s.latency_ms]
    report.figure("frame -> relay on, p50", _rig.pct(relay, 50), "ms")
    report.target("frame -> relay on, p99", _rig.pct(relay, 99), P99_BOUND_MS, "ms")
    report.figure("frame -> red light (denials), p99", _rig.pct(denies, 99), "ms")


def _drive(
    report: Report, daemon: _rig.RigDaemon, operator: _rig.Operator, duration: float, sampler: _rig.Sampler
) -> Counter[str]:
    """Press the buttons and send commands on their schedules until `duration` has passed."""
    gpio = daemon.config.gpio
    pins = {"staff": daemon.pins.pin(gpio.staff), "exit": daemon.pins.pin(gpio.exit)}
    presses: Counter[str] = Counter()
    # A remote pulse is refused while the clock is known to be unsynchronised (the daemon asks the
    # kernel as this does): the answer it must get depends on this machine.
    unsynced = selftest.clock_synchronised() is False
    rng = random.Random(COMMAND_SEED)
    t0 = time.monotonic()
    next_press, next_command, next_say = t0 + 1.0, t0 + 2.0, t0 + 60.0
    while (now := time.monotonic()) < t0 + duration:
        if now >= next_press:
            which = "staff" if presses.total() % 2 == 0 else "exit"
            _rig.press(pins[which])
            presses[which] += 1
            next_press += PRESS_EVERY_S
        if now >= next_command:
            operator.collect()
            if sum(operator.wanted.values()) % 2 == 0:
                operator.command("pulse-gate", expect="rejected" if unsynced else "ok")
            else:
                operator.command("selftest", {"parts": ["trust", "outbox"]})
            next_command += rng.uniform(0.5, 1.5) * COMMAND_EVERY_S
        if now >= next_say:
            _rig.forget_pin_history(daemon.pins)
            last = sampler.samples[-1] if sampler.samples else _rig.sample()
            report.say(
                f"{(now - t0) / 60:.0f} min: RSS {last.rss_kb / 1024:.1f} MB, {last.fds} fds, "
                f"{last.threads} threads"
            )
            next_say += 60.0
        time.sleep(0.02)
    return presses


def _settle(
    tap: _rig.EventTap, operator: _rig.Operator, presses: Counter[str], timeout: float = 15.0
) -> None:
    """Wait (a second at least) for the last presses' events and the last commands' answers."""
    time.sleep(1.0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        modes = Counter(s.mode for s in tap.scan_list())
        pressed = modes["manual"] >= presses["staff"] and modes["exit"] >= presses["exit"]
        if pressed and operator.collect() == 0:
            return
        time.sleep(0.1)


def _resources(report: Report, samples: list[_rig.Sample], duration: float) -> None:
    """Start/end values and least-squares slopes after a warm-up (a fifth of the run, at most a
    minute), and the slopes of the second half alone, once every bounded record is full."""
    if len(samples) < 4:
        return
    warm = samples[0].t + min(60.0, duration / 5)
    kept = [s for s in samples if s.t >= warm] or samples
    half = [s for s in samples if s.t >= (samples[0].t + samples[-1].t) / 2]
    first, last = kept[0], kept[-1]

    def per_hour(value: Callable[[_rig.Sample], float], which: list[_rig.Sample]) -> float:
        return _rig.slope([(s.t, value(s)) for s in which]) * 3600

    def mb(s: _rig.Sample) -> float:
        return s.rss_kb / 1024

    span = f"over {(last.t - first.t) / 60:.1f} min after warm-up, {len(kept)} samples"
    report.figure(
        f"resident memory (this process), {span}",
        f"{mb(first):.1f} -> {mb(last):.1f} MB, slope {per_hour(mb, kept):+.1f} MB/h, "
        f"second half {per_hour(mb, half):+.1f} MB/h",
    )
    counts: list[tuple[str, Callable[[_rig.Sample], float], str]] = [
        ("open file descriptors", lambda s: s.fds, "+.1f"),
        ("threads", lambda s: s.threads, "+.1f"),
        ("Python's allocated blocks (objects kept)", lambda s: s.blocks, "+,.0f"),
    ]
    for name, value, spec in counts:
        report.figure(
            name,
            f"{value(first):,.0f} -> {value(last):,.0f}, slope {per_hour(value, kept):{spec}}/h, "
            f"second half {per_hour(value, half):{spec}}/h",
        )


PART = Part(
    "soak",
    10,
    "the daemon at 30 fps with scans, button presses and signed commands; nothing creeps",
    run,
)
