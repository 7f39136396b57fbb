"""The service unit as systemd itself reads it: `systemd-analyze verify` finds nothing to say, and
`systemd-analyze security` rates its sandbox 3.0 or better, without taking away what the sentry
needs at the entrance (the syscalls of its clock probe, the /proc files it reads, a writable
working folder for lgpio).

The system call filter is also tried for real: the sentry runs under strace, which refuses every
call the unit's filter would refuse, the way systemd would (the unit's SystemCallErrorNumber=, or
SIGSYS without one). The Pi's own native libraries (libcamera, lgpio) are not on this machine, so
that part of the sandbox is checked on the device (README.md, "Running on a Raspberry Pi").

`systemd-analyze` comes with the `systemd` package and `strace` with its own; scripts/setup --dev
installs both where missing. Without them these tests fail with that advice instead of skipping: an
unchecked unit reaches the devices.

`verify` never looks the unit's User=, Group= or SupplementaryGroups= up (systemd 252 says nothing
about an `edge-sentry` user or a `gpio` group this machine lacks), so the copy keeps them as they
are; only the two commands are pointed at this checkout's own `edge-sentry`, which verify requires
to exist and be executable.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from edge_sentry import gpio, health
from edge_sentry.pages.listener import MAX_CONNECTIONS

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "edge-sentry.service"
INSTALLED_PROGRAM = "/opt/edge-sentry/.venv/bin/edge-sentry"
MAX_EXPOSURE = 3.0
#: Groups no part of the sentry needs; @privileged is refused too, but for the clock's reading calls,
#: and @resources but for the deciding loop's real-time priority (`SCHEDULING`).
REFUSED_GROUPS = ("@mount", "@module", "@reboot", "@swap", "@raw-io", "@debug", "@cpu-emulation", "@obsolete")
SCHEDULING = {"sched_setscheduler", "sched_getscheduler", "sched_getparam", "sched_get_priority_max"}
_EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)")


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        advice = f"install the Debian package `{package}` (scripts/setup --dev does)"
        pytest.fail(f"{name} is missing: {advice}", pytrace=False)
    return found


def run_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    command = [tool("systemd-analyze", "systemd"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def this_program() -> Path:
    program = Path(sys.executable).parent / "edge-sentry"
    assert program.is_file(), f"{program} is missing: install the package into this environment"
    return program


def unit_copy(folder: Path, text: str | None = None) -> Path:
    """The unit (or `text`) with its commands pointed at this environment's `edge-sentry`."""
    text = UNIT.read_text() if text is None else text
    assert text.count(INSTALLED_PROGRAM) == 2, "ExecStart= and ExecStopPost= run the installed program"
    copy = folder / UNIT.name
    copy.write_text(text.replace(INSTALLED_PROGRAM, str(this_program())))
    return copy


def verify_output(unit: Path) -> str:
    done = run_analyze("verify", str(unit))
    # verify exits 0 after most complaints (an unknown key, a bad value are "ignoring" warnings):
    # silence is the only clean answer.
    return (done.stdout + done.stderr).strip() + ("" if done.returncode == 0 else f"\nexit {done.returncode}")


def exposure(unit: Path) -> tuple[float, str]:
    done = run_analyze("security", "--offline=true", str(unit))
    found = _EXPOSURE.search(done.stdout)
    assert found, f"no exposure level in:\n{done.stdout}{done.stderr}"
    return float(found.group(1)), done.stdout


def settings(name: str) -> list[str]:
    """Every value `name=` takes in the unit, in order (a key may repeat)."""
    values = []
    for line in UNIT.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == name:
            values.append(value.strip())
    return values


@cache
def syscall_set(group: str) -> frozenset[str]:
    """The system calls of a systemd group (`@system-service`), nested groups expanded."""
    done = run_analyze("syscall-filter", group)
    assert done.returncode == 0, done.stderr
    calls: set[str] = set()
    for line in done.stdout.splitlines()[1:]:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        calls |= syscall_set(entry) if entry.startswith("@") else {entry}
    return frozenset(calls)


def allowed_syscalls() -> frozenset[str]:
    """The calls the unit's SystemCallFilter= lines allow, as systemd.exec(5) combines them: the first
    line is an allow-list, later lines add to it, or take away from it when they start with `~`."""
    lines = settings("SystemCallFilter")
    assert lines and not lines[0].startswith("~"), "the filter starts with an allow-list"
    allowed: set[str] = set()
    for line in lines:
        remove = line.startswith("~")
        names = set()
        for entry in line.lstrip("~").split():
            names |= syscall_set(entry) if entry.startswith("@") else {entry}
        allowed = allowed - names if remove else allowed | names
    return frozenset(allowed)


def test_verify_finds_nothing_to_say_about_the_unit(tmp_path):
    assert verify_output(unit_copy(tmp_path)) == ""


def test_verify_would_report_a_broken_unit(tmp_path):
    """What the silence above is worth: this systemd does name a bad key and a bad value."""
    broken = "[Service]\nProtectEverything=yes\nRestrictAddressFamilies=AF_NONSENSE\n"
    text = UNIT.read_text().replace("[Service]\n", broken)
    said = verify_output(unit_copy(tmp_path, text))
    assert "ProtectEverything" in said
    assert "AF_NONSENSE" in said


def test_the_sandbox_rates_at_most_3(tmp_path):
    score, table = exposure(unit_copy(tmp_path))
    exposed = "\n".join(line for line in table.splitlines() if line.startswith("✗"))
    assert score <= MAX_EXPOSURE, f"exposure {score} > {MAX_EXPOSURE}; still open:\n{exposed}"


def test_the_clock_probe_passes_the_system_call_filter():
    """selftest.clock_synchronised reads the sync state with adjtimex(3), which glibc issues as
    clock_adjtime: filtered out, `clock.unsynced_clock = "deny"` would never see an unsynchronised
    clock. ProtectClock= would filter it again whatever SystemCallFilter= says."""
    allowed = allowed_syscalls()
    assert {"adjtimex", "clock_adjtime"} <= allowed
    assert not {"clock_settime", "settimeofday"} & allowed
    assert settings("ProtectClock") in ([], ["no"], ["false"])
    assert settings("CapabilityBoundingSet") == [""]  # so no adjtimex can change the clock


def test_the_filter_still_refuses_the_privileged_groups():
    allowed = allowed_syscalls()
    for group in REFUSED_GROUPS:
        assert not syscall_set(group) & allowed, group


def test_of_the_resource_calls_only_the_loop_priority_passes():
    """The deciding loop raises itself with sched_setscheduler (edge_sentry/priority.py); the rest
    of @resources (rlimits, memory policies, other tasks' affinity) stays refused."""
    allowed = allowed_syscalls()
    assert "sched_setscheduler" in allowed
    assert syscall_set("@resources") & allowed <= SCHEDULING
    assert not {"setrlimit", "setpriority", "sched_setaffinity", "sched_setattr"} & allowed


def test_the_unit_lets_the_loop_reach_its_default_priority_and_no_higher():
    """RestrictRealtime= would refuse any real-time policy; LimitRTPRIO= is what lets an
    unprivileged service ask for one, up to its value: the default must fit under it."""
    from edge_sentry.config import GateConfig

    assert settings("RestrictRealtime") in (["no"], ["false"])
    (limit,) = settings("LimitRTPRIO")
    assert GateConfig().realtime_priority <= int(limit) < 50  # below the kernel's interrupt threads


def test_the_proc_files_the_sentry_reads_stay_visible():
    """ProcSubset=pid hides every /proc file that is not a process's: the health report's memory,
    uptime and load, and the device tree that tells `gpio.pin_factory = "auto"` it runs on a Pi."""
    read = [str(gpio.DEVICE_TREE_MODEL), str(health.Paths().meminfo), str(health.Paths().uptime)]
    assert all(path.startswith("/proc/") and not path.startswith("/proc/self/") for path in read)
    assert settings("ProcSubset") in ([], ["all"])


def test_lgpio_gets_a_writable_private_working_folder():
    """lgpio makes its notification FIFO in the working directory, which ProtectSystem=strict leaves
    read-only everywhere but in the service's own folders."""
    assert settings("ProtectSystem") == ["strict"]
    (runtime,) = settings("RuntimeDirectory")
    assert settings("WorkingDirectory") == [f"/run/{runtime}"]


def test_the_gate_starts_without_waiting_for_network_or_time():
    """The link reconnects by itself and an unsynchronised clock has its own policy: nothing may
    hold the gate until a network or NTP answers."""
    ordering = " ".join(settings("After") + settings("Wants") + settings("Requires"))
    assert "network-online.target" not in ordering
    assert "time-sync.target" not in ordering


#: Calls the sentry's libraries make that the filter refuses and that they do without: OpenBLAS
#: (under numpy) asks for a NUMA memory policy for its buffers and ignores a refusal.
TOLERATED_REFUSALS = {"mbind"}

_SNIPPET = """
from edge_sentry import health, selftest
assert health.run_command(["true"]) == ""
assert "memory" in health.sample(state_dir=".")
print("clock synchronised:", selftest.clock_synchronised())
"""


Run = subprocess.CompletedProcess[str]


def under_the_filter(tmp_path: Path, errno: str, *argv: str) -> tuple[Run, set[str]]:
    """Run `argv` with every system call outside the unit's filter failing with `errno`; the names of
    the calls refused."""
    allowed = ",".join("?" + name for name in sorted(allowed_syscalls()))  # "?": not on this arch is fine
    log = tmp_path / "refused.log"
    command = [
        tool("strace", "strace"), "-f", "-qq", "--seccomp-bpf", "-o", str(log),
        f"--trace=!{allowed}", f"--inject=!{allowed}:error={errno}", *argv,
    ]  # fmt: skip
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path, env=env
    )
    refused = set(re.findall(r"^\d+ (\w+)\(.*\(INJECTED\)", log.read_text(), re.MULTILINE))
    return done, refused


@pytest.mark.skipif(
    os.environ.get("EDGE_SENTRY_EMULATED") == "1",
    reason="EDGE_SENTRY_EMULATED=1: qemu-user has no ptrace, so strace cannot run the sentry under the "
    "unit's filter; checked natively, and on the device by the selftest command",
)
def test_the_sentry_runs_under_the_unit_system_call_filter(tmp_path):
    """The demo (camera, decoder, verifier, gate, outbox, the clock probe at start), the ExecStopPost command,
    the health sampler with its command runner, and the voice (espeak-ng rendering, aplay playing,
    from the command line and inside the daemon), each refused what the unit refuses. Without
    SystemCallErrorNumber= systemd kills the sentry with SIGSYS at the first refused call, so then
    none may be refused at all."""
    (errno,) = settings("SystemCallErrorNumber") or [None]
    tolerated = TOLERATED_REFUSALS if errno else set()
    program = str(this_program())
    mock = tmp_path / "mock.toml"
    mock.write_text('[gpio]\npin_factory = "mock"\n')
    # The voice's children, espeak-ng and aplay, run under the same filter (strace -f follows them);
    # ALSA's null device stands in for the card.
    tool("espeak-ng", "espeak-ng")
    tool("aplay", "alsa-utils")
    voiced = tmp_path / "voice.toml"
    voiced.write_text('[gpio]\npin_factory = "mock"\n[voice]\noutput = "aplay"\ndevice = "null"\n')
    runs = {  # name: (command, what its output shows when it did its work)
        "run": ([program, "run", "--duration", "3"], " stop "),  # started, ran, stopped in order
        "relay-off": ([program, "relay-off", "--config", str(mock)], "relay off: pin 17"),
        "health": ([sys.executable, "-c", _SNIPPET], "clock synchronised: "),
        "voice": ([program, "voice", "play", "welcome", "--config", str(voiced)], "played en/welcome"),
        # Rendering at first start, then the demo's valid code (at 1 s) welcomed through aplay.
        "run-voiced": ([program, "run", "--duration", "4", "--config", str(voiced)], " stop "),
    }
    for name, (argv, shows) in runs.items():
        done, refused = under_the_filter(tmp_path, errno or "ENOSYS", *argv)
        said = done.stdout + done.stderr
        assert done.returncode == 0, f"{name}: exit {done.returncode}\n{said[-3000:]}"
        assert shows in said, f"{name}: {shows!r} not in\n{said[-3000:]}"
        assert "without sound" not in said, f"{name}: the voice failed\n{said[-3000:]}"
        if name == "run-voiced":
            assert re.search(r"voice: played [1-9]", said), f"no prompt played:\n{said[-3000:]}"
        assert refused <= tolerated, f"{name}: refused {sorted(refused - tolerated)} (errno {errno})"
        if name == "run" and may_raise_priority():
            assert "deciding loop at real-time priority 10" in said, said[-3000:]


def may_raise_priority() -> bool:
    """Whether this account may ask for SCHED_FIFO 10: root, or an RLIMIT_RTPRIO (as the unit's
    LimitRTPRIO= gives the service) that reaches it."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
    return os.geteuid() == 0 or soft == resource.RLIM_INFINITY or soft >= 10


def test_the_descriptor_limit_is_set_and_far_above_what_the_pages_may_hold():
    """A flood of connections to the pages is capped well below the unit's descriptor limit."""
    limits = re.findall(r"^LimitNOFILE=(\d+)$", UNIT.read_text(), re.MULTILINE)
    assert len(limits) == 1, "LimitNOFILE= set once, as one number (soft and hard alike)"
    assert int(limits[0]) >= 8 * MAX_CONNECTIONS
