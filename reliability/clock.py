"""Clock jumps: the wall clock steps back and forth by hours while the sentry runs.

What is right when the wall clock is wrong? The sentry has no other calendar, so a code's validity
(iat, exp, the freshness window) can only be judged by its wall clock: a code that expired an hour
ago and passes after the clock jumped two hours back is the clock's fault, counted here as
"accepted on the device clock's word", not as a false accept. What a jump must never do:

- make the sentry accept a code its own clock calls expired, stale or not yet valid (a screenshot
  of a dynamic code stays a screenshot after a forward jump);
- let a replayed code through: anti-passback measures time waited at this entrance, which the
  monotonic clock knows whatever the wall clock says;
- hold the relay on: its timers must run on the monotonic clock (the pin is sampled in the child);
- lose an event: retention must count the time an event waited on the device, not the wall
  clock's idea of it (the retention period is set short here, well below the jumps);
- stop the deciding.

The daemon runs in a child under libfaketime (LD_PRELOAD, offset read from a file on every call,
CLOCK_MONOTONIC left alone); `_clock_rig` runs the real `Daemon` there and samples the relay pin.
Each scan event carries the device's wall time, so every decision is judged by the clock it saw.
"""

from __future__ import annotations

import glob
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from reliability import _daemon as d
from reliability._clock_rig import RELAY_EVENT
from reliability.report import Part, Report

ROOT = Path(__file__).resolve().parent.parent
H = 3600
_MAX_AGE_S = 6 * H
_SKEW_S = 30  # es1.skew_s, the default
_PASSBACK_S = H
_RETENTION_DAYS = 0.01  # 864 s: far below the jumps, far above the run
_MAX_OPEN_S = 2.5  # gate.max_open_s: short, so that overlapping pulses meet the relay's guard
_STUCK_SLACK_S = 0.5  # scheduling on a loaded machine, not a relay left on
_OVERRUN_MS = 100  # the guard thread's wake-up on a loaded machine; heat builds over seconds
_CUE_EVERY_S = 0.8
_CUE_SHOWN_S = 0.5
_SHORT = (0, -2 * H, 2 * H, -2 * H, 0)
_OFFSETS = (-6 * H, -2 * H, -H, 0, H, 2 * H, 6 * H)
_LIVE = 3


@dataclass(frozen=True)
class Code:
    issuer: d.Issuer
    iat: int
    exp: int
    text: str

    def valid_at(self, now: float) -> bool:
        """What the verifier's time rules say at `now` (docs/protocol.md 2.2, rules 6-8)."""
        return self.iat - _SKEW_S <= now < self.exp + _SKEW_S and now - self.iat <= _MAX_AGE_S + _SKEW_S


def _codes(t0: int) -> dict[str, Code]:
    """Live codes issued now; a code to replay (valid on both sides of a 2 h jump); a screenshot
    older than the freshness window; a code that expired an hour ago. One issuer each, so the
    scan events tell them apart (their subjects are random, one per code)."""
    spec = {f"live-{i}": (t0, 6 * H) for i in range(_LIVE)}
    spec.update({"replay": (t0 - 3 * H, 6 * H), "screenshot": (t0 - 7 * H, 24 * H),
                 "expired": (t0 - 5 * H, 4 * H)})  # fmt: skip
    out = {}
    for issuer in d.issuers(list(spec)):
        iat, life = spec[issuer.name]
        out[issuer.name] = Code(issuer, iat, iat + life, issuer.code(iat=iat, lifetime_s=life))
    return out


def _libfaketime() -> str | None:
    # The MT build: the plain one re-reads the offset file without a lock, and a thread that
    # asks for the time meanwhile is told the real time.
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    return found[0] if found else None


def _set_offset(path: Path, offset: int) -> None:
    """Move the child's wall clock to real time + `offset` s (whole file swapped in at once)."""
    tmp = path.with_suffix(".new")
    tmp.write_text(f"{offset:+d}\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class Jump:
    at: float  # time.monotonic() in this process when the offset file was swapped
    before: int
    after: int


@dataclass
class Verdicts:
    decisions: int = 0
    accepts: int = 0
    false_by_clock: int = 0  # accepted though its own clock says invalid
    on_clock_word: int = 0  # accepted, valid by the device's clock, not in real time
    replay_back: int = 0  # accepted again within passback_s, a backward jump in between
    replay_forward: int = 0  # ... forward jumps only in between
    replay_same: int = 0  # ... no jump in between
    replay_shown_after_jump: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


def _judge(lines: list[d.Line], codes: dict[str, Code], zero: tuple[float, float],
           jumps: list[Jump]) -> Verdicts:
    """Each scan decision against the clock it saw, and each accept against the ones before it.

    An event's `t` is read just after the verifier's `now`: when a jump falls between the two (the
    event arrived within a second of a jump), the clock from before the jump counts as well.
    """
    wall0, mono0 = zero
    out = Verdicts()
    accepted: dict[str, float] = {}  # issuer -> arrival of its last accept
    for line in lines:
        event = line.event
        if event.get("event") != "scan" or event.get("mode") != "scan":
            continue
        out.decisions += 1
        out.reasons[str(event.get("reason"))] += 1
        code = codes.get(str(event.get("issuer")))
        if code is None:
            continue
        device_now = int(event["t"]) / 1000
        real_now = wall0 + (line.at - mono0)
        seen_by = [device_now] + [
            device_now - j.after + j.before for j in jumps if line.at - 1.0 <= j.at <= line.at
        ]
        before = accepted.get(code.issuer.name)
        between = [j for j in jumps if before is not None and before <= j.at <= line.at]
        if between:
            out.replay_shown_after_jump += 1
        if event.get("verdict") != "accept":
            continue
        out.accepts += 1
        if not any(code.valid_at(now) for now in seen_by):
            out.false_by_clock += 1
        elif not code.valid_at(real_now):
            out.on_clock_word += 1
        if before is not None and line.at - before < _PASSBACK_S:
            if any(j.after < j.before for j in between):
                out.replay_back += 1
            elif between:
                out.replay_forward += 1
            else:
                out.replay_same += 1
        accepted[code.issuer.name] = line.at
    return out


def _off_schedule(lines: list[d.Line], zero: tuple[float, float], jumps: list[Jump]) -> int:
    """Events whose wall time is not the schedule's (a second's grace after each jump)."""
    wall0, mono0 = zero
    astray = 0
    for line in lines:
        t = line.event.get("t")
        if not isinstance(t, int) or any(line.at - 1.0 <= j.at <= line.at for j in jumps):
            continue
        expected = next((j.after for j in reversed(jumps) if j.at <= line.at), 0)
        if abs(t / 1000 - (wall0 + line.at - mono0) - expected) > 60:
            astray += 1
    return astray


def _schedule(long: bool) -> list[int]:
    if not long:
        return list(_SHORT)
    rng = random.Random(40)
    offsets = [0]
    while len(offsets) < 30:
        nxt = rng.choice(_OFFSETS)
        if nxt != offsets[-1]:
            offsets.append(nxt)
    return offsets


def run(report: Report, long: bool) -> None:
    lib = _libfaketime()
    if lib is None:
        why = "scripts/setup --dev installs the Debian package faketime"
        report.check(f"libfaketime (MT) is installed ({why})", False, "libfaketimeMT.so.1 not found")
        return
    work = Path(tempfile.mkdtemp(prefix="reliability-clock-"))
    child: d.Child | None = None
    try:
        t0 = int(time.time())
        codes = _codes(t0)
        d.write_trust(work / "trust.json", [c.issuer for c in codes.values()])
        loop = len(codes) * _CUE_EVERY_S
        cues = [
            (c.text, i * _CUE_EVERY_S, i * _CUE_EVERY_S + _CUE_SHOWN_S) for i, c in enumerate(codes.values())
        ]
        d.write_scene(work / "scene.json", cues, loop)
        config, outbox = work / "sentry.toml", work / "outbox"
        d.write_config(
            config, state_dir=work / "state", outbox=outbox, trust=work / "trust.json",
            scene=work / "scene.json",
            extra=f"[gate]\npassback_s = {_PASSBACK_S}\nmax_open_s = {_MAX_OPEN_S}\n"
                  f"[es1]\nmax_age_s = {_MAX_AGE_S}\nskew_s = {_SKEW_S}\n"
                  f"[privacy]\nretention_days = {_RETENTION_DAYS}\n",
        )  # fmt: skip
        clock_file = work / "faketime.rc"
        _set_offset(clock_file, 0)
        env = d.child_env(
            work, LD_PRELOAD=lib, FAKETIME_TIMESTAMP_FILE=str(clock_file), FAKETIME_NO_CACHE="1",
            FAKETIME_DONT_FAKE_MONOTONIC="1", FAKETIME_DISABLE_SHM="1", PYTHONPATH=str(ROOT),
        )  # fmt: skip
        wall0, mono0 = time.time(), time.monotonic()
        child = d.Child.spawn([sys.executable, "-m", "reliability._clock_rig", str(config)], env=env,
                              stderr_path=work / "stderr.txt")  # fmt: skip
        first = child.wait_for(lambda line: line.event.get("event") == "scan", 60.0)
        report.check("the daemon decided under libfaketime", first is not None,
                     "" if first is not None else child.stderr_path.read_text(errors="replace")[-300:])
        if first is None:
            return
        schedule = _schedule(long)
        quiet_phases = 0
        jumps: list[Jump] = []
        phase_s = loop + 0.5
        report.say(f"{len(schedule) - 1} jumps of the wall clock, {phase_s:.1f} s apart")
        for i, offset in enumerate(schedule):
            if i:
                child.proc.send_signal(signal.SIGUSR1)  # a staff press: the relay is on across the jump
                time.sleep(0.3)
                _set_offset(clock_file, offset)
                jumps.append(Jump(time.monotonic(), schedule[i - 1], offset))
            since = time.monotonic()
            time.sleep(phase_s)
            decided = [ln for ln in child.snapshot() if ln.at >= since and ln.event.get("event") == "scan"]
            if not decided:
                quiet_phases += 1
            if long and i % 5 == 4:
                report.say(f"{i + 1}/{len(schedule)} clock phases")
        status = child.terminate()
        lines = child.snapshot()
        stored, stored_repeats = d.stored_events(outbox)
        _outcomes(report, lines, codes, (wall0, mono0), jumps, status, (stored, stored_repeats),
                  quiet_phases)  # fmt: skip
    finally:
        if child is not None:
            child.kill()
        shutil.rmtree(work, ignore_errors=True)


def _outcomes(
    report: Report, lines: list[d.Line], codes: dict[str, Code], zero: tuple[float, float],
    jumps: list[Jump], status: int, outbox: tuple[dict[str, int], int], quiet_phases: int,
) -> None:
    wall0, mono0 = zero
    stored, stored_repeats = outbox
    phases = len(jumps) + 1
    v = _judge(lines, codes, zero, jumps)
    ledger = d.Ledger()
    ledger.add(lines)
    relay = [ln.event for ln in lines if ln.event.get("event") == RELAY_EVENT]
    offsets = {round((int(ln.event["t"]) / 1000 - wall0 - (ln.at - mono0)) / H)
               for ln in lines if ln.event.get("event") == "scan"}  # fmt: skip
    report.figure("clock jumps", phases - 1)
    report.figure("device clock offsets seen", ", ".join(f"{o:+d} h" for o in sorted(offsets)))
    report.figure("decisions", v.decisions)
    report.figure("accepts", v.accepts)
    report.figure("verdict reasons", ", ".join(f"{k} {n}" for k, n in sorted(v.reasons.items())))
    report.figure("accepted on the device clock's word (invalid in real time)", v.on_clock_word)
    report.check("the wall clock did jump for the daemon", len(offsets) > 1, len(offsets))
    astray = _off_schedule(lines, zero, jumps)
    report.check("every event stamped by the clock in force (libfaketime did its part)", astray == 0,
                 astray)
    report.check("false accepts by the device's own clock (expired, stale, not yet valid)",
                 v.false_by_clock == 0, v.false_by_clock)
    report.check("replays accepted after a backward jump (anti-passback)", v.replay_back == 0, v.replay_back)
    report.check("replays accepted after forward jumps (anti-passback)", v.replay_forward == 0,
                 v.replay_forward)
    report.check("replays accepted with no jump in between", v.replay_same == 0, v.replay_same)
    report.check("a replay was shown after a jump (the replay checks are not vacuous)",
                 v.replay_shown_after_jump > 0, v.replay_shown_after_jump)
    if relay:
        last = relay[-1]
        longest = float(last["longest_on_s"])
        report.figure("relay switched on", int(last["switched_on"]))
        report.figure("relay longest on", longest, "s")
        # The check catches a stuck relay (a timer on the wall clock holds it for hours); how close
        # the guard keeps to the bound is a timing, printed as a target.
        ok = longest <= _MAX_OPEN_S + _STUCK_SLACK_S and int(last["switched_on"]) > 0 and not last["on"]
        report.check("relay never on longer than gate.max_open_s, off at the end", ok,
                     f"{longest:.3f} s (max {_MAX_OPEN_S:g} s)")
        overrun_ms = max(0.0, longest - _MAX_OPEN_S) * 1000
        report.target("relay on past gate.max_open_s", overrun_ms, _OVERRUN_MS, "ms")
    else:
        report.check("relay never on longer than gate.max_open_s, off at the end", False, "no relay samples")
    lost = ledger.lost(stored)
    report.figure("events logged", ledger.events)
    report.check("events lost (retention must count time waited on the device)", lost == 0, lost)
    report.check("seq repeats", ledger.seq_repeats == 0 and stored_repeats == 0,
                 ledger.seq_repeats + stored_repeats)
    report.check("the daemon kept deciding after every jump", quiet_phases == 0,
                 f"{quiet_phases} of {phases} phases without a decision")
    report.check("the daemon stopped cleanly", status == 0, status)


PART = Part("clock", 40, "wall clock jumps by hours: no false accept, no stuck relay, no lost event", run)
