"""Health samples: real figures where this machine has them, the Pi's own sources read from fake files
and a fake vcgencmd, and never a guessed value where a source is missing."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from edge_sentry import health
from edge_sentry.health import HealthReporter, Paths, parse_throttled, percentiles, sample
from edge_sentry.outbox import Outbox
from edge_sentry.sentry import LoopStats

MEMINFO = "MemTotal:         948280 kB\nMemFree:          100000 kB\nMemAvailable:     474140 kB\n"


def fake_pi(tmp_path: Path) -> Paths:
    (tmp_path / "temp").write_text("48312\n")
    (tmp_path / "meminfo").write_text(MEMINFO)
    (tmp_path / "uptime").write_text("3600.52 7000.00\n")
    (tmp_path / "status").write_text("Name:\tpython\nVmRSS:\t   41234 kB\n")
    return Paths(
        thermal=tmp_path / "temp",
        meminfo=tmp_path / "meminfo",
        uptime=tmp_path / "uptime",
        status=tmp_path / "status",
        vcgencmd="vcgencmd",
    )


def nothing_there(tmp_path: Path) -> Paths:
    missing = tmp_path / "missing"
    return Paths(thermal=missing, meminfo=missing, uptime=missing, status=missing, vcgencmd=None)


def vcgencmd(answer: str | None):
    calls: list[list[str]] = []

    def run(argv: list[str]) -> str | None:
        calls.append(argv)
        return answer

    run.calls = calls  # type: ignore[attr-defined]
    return run


# -- parsing ------------------------------------------------------------------------------------


def test_throttled_bits_now_and_since_boot():
    found = parse_throttled("throttled=0x50005\n")
    assert found is not None and found["raw"] == "0x50005"
    assert found["now"] == {"under_voltage": True, "freq_capped": False, "throttled": True,
                            "soft_temp_limit": False}  # fmt: skip
    assert found["since_boot"] == {"under_voltage": True, "freq_capped": False, "throttled": True,
                                   "soft_temp_limit": False}  # fmt: skip


def test_a_healthy_pi_has_every_flag_false():
    found = parse_throttled("throttled=0x0")
    assert found is not None
    assert not any(found["now"].values()) and not any(found["since_boot"].values())


def test_past_trouble_shows_only_since_boot():
    found = parse_throttled("throttled=0x80000")
    assert found is not None
    assert found["since_boot"]["soft_temp_limit"] and not found["now"]["soft_temp_limit"]


@pytest.mark.parametrize("text", ["", "error=1", "throttled=zz", "VCHI initialization failed"])
def test_anything_else_is_not_a_throttled_answer(text: str):
    assert parse_throttled(text) is None


def test_percentiles_by_nearest_rank():
    assert percentiles(range(1, 101)) == {"p50": 50, "p99": 99}
    assert percentiles([7.0]) == {"p50": 7.0, "p99": 7.0}
    assert percentiles([]) is None


# -- sampling -----------------------------------------------------------------------------------


def test_a_pi_sample_reads_every_source(tmp_path: Path):
    run = vcgencmd("throttled=0x50005\n")
    report = sample(paths=fake_pi(tmp_path), run=run, state_dir=tmp_path, uptime_s=12.34)
    assert report["cpu_temp_c"] == 48.3
    assert report["throttled"]["now"]["under_voltage"] is True
    assert run.calls == [["vcgencmd", "get_throttled"]]
    assert report["memory"] == {"total_kb": 948280, "available_kb": 474140, "used_pct": 50.0}
    assert report["system_uptime_s"] == 3600.5 and report["uptime_s"] == 12.3
    assert report["process_rss_kb"] == 41234
    assert report["disk"]["total_bytes"] > 0 and 0 <= report["disk"]["free_pct"] <= 100
    assert isinstance(report["t"], int)


def test_missing_sources_leave_their_fields_out(tmp_path: Path):
    report = sample(paths=nothing_there(tmp_path), run=vcgencmd(None), state_dir=tmp_path / "gone")
    for name in ("cpu_temp_c", "throttled", "memory", "system_uptime_s", "process_rss_kb", "disk",
                 "fps", "decode_ms", "latency_ms", "outbox", "link"):  # fmt: skip
        assert name not in report


def test_a_failing_vcgencmd_is_no_throttling_report(tmp_path: Path):
    report = sample(paths=fake_pi(tmp_path), run=vcgencmd("VCHI initialization failed"))
    assert "throttled" not in report


def test_garbage_in_the_files_is_left_out(tmp_path: Path):
    paths = fake_pi(tmp_path)
    paths.thermal.write_text("hot\n")
    paths.meminfo.write_text("MemTotal: lots\n")
    paths.uptime.write_text("\n")
    report = sample(paths=paths, run=vcgencmd(None))
    assert "cpu_temp_c" not in report and "memory" not in report and "system_uptime_s" not in report


def test_a_sample_on_this_machine_has_what_it_has(tmp_path: Path):
    report = sample(state_dir=tmp_path)
    assert ("cpu_temp_c" in report) == Path("/sys/class/thermal/thermal_zone0/temp").exists()
    if shutil.which("vcgencmd") is None:
        assert "throttled" not in report
    if Path("/proc/meminfo").exists():
        assert report["memory"]["total_kb"] > 0
    if hasattr(os, "getloadavg"):
        assert len(report["load"]) == 3
    assert report["disk"]["free_bytes"] >= 0


def test_fps_is_the_rate_over_the_interval():
    report = sample(paths=Paths(vcgencmd=None), frames=130, previous=(100, 10.0), now_mono=12.0)
    assert report["fps"] == 15.0
    assert "fps" not in sample(paths=Paths(vcgencmd=None), frames=130, previous=None, now_mono=12.0)
    # a counter that went backwards (a new loop) gives no rate rather than a negative one
    assert "fps" not in sample(paths=Paths(vcgencmd=None), frames=5, previous=(100, 10.0), now_mono=12.0)


def test_latencies_come_from_the_loop_stats():
    stats = LoopStats()
    stats.decode_ms.extend(float(i) for i in range(1, 101))
    stats.latency_ms.extend([3.0, 5.0])
    report = sample(paths=Paths(vcgencmd=None), decode_ms=stats.decode_ms, latency_ms=stats.latency_ms)
    assert report["decode_ms"] == {"p50": 50.0, "p99": 99.0}
    assert report["latency_ms"] == {"p50": 3.0, "p99": 5.0}
    assert "latency_ms" not in sample(paths=Paths(vcgencmd=None), latency_ms=LoopStats().latency_ms)


def test_the_outbox_backlog_from_a_real_outbox(tmp_path: Path):
    with Outbox(tmp_path / "outbox", max_events=1000, queue_size=100, retention_days=14) as outbox:
        outbox.put({"event": "door-opened", "t": 1})
        assert outbox.flush(5.0)
        report = sample(paths=Paths(vcgencmd=None), outbox=outbox.stats(), link="connected",
                        config_version=3, trust_version=7, gate="idle")  # fmt: skip
    assert report["outbox"]["depth"] == 1
    assert report["outbox"]["oldest_age_s"] >= 0
    assert report["outbox"]["dropped"] == {"full": 0, "size": 0, "retention": 0}
    assert (report["link"], report["config_version"], report["trust_version"]) == ("connected", 3, 7)
    assert report["gate"] == "idle"


# -- the reporter thread ------------------------------------------------------------------------


class Published:
    def __init__(self, want: int = 1) -> None:
        self.reports: list[dict[str, Any]] = []
        self.want = want
        self.enough = threading.Event()

    def __call__(self, report: dict[str, Any]) -> None:
        self.reports.append(report)
        if len(self.reports) >= self.want:
            self.enough.set()


def test_the_reporter_publishes_at_start_and_stops_on_request(tmp_path: Path):
    published = Published()
    stats = LoopStats(frames=10)
    reporter = HealthReporter(
        published,
        lambda: {"frames": stats.frames, "link": "connected"},
        lambda: 60.0,
        state_dir=tmp_path,
        paths=nothing_there(tmp_path),
        run=vcgencmd(None),
    )
    reporter.start()
    assert published.enough.wait(5.0)
    reporter.stop()
    assert not reporter._thread.is_alive()
    assert reporter._thread.name == "edge-sentry-health"
    assert published.reports[0]["link"] == "connected" and "fps" not in published.reports[0]


def test_the_reporter_measures_fps_between_its_samples(tmp_path: Path):
    now = [100.0]
    stats = LoopStats()
    reporter = HealthReporter(
        lambda r: None, lambda: {"frames": stats.frames}, lambda: 60.0,
        paths=nothing_there(tmp_path), run=vcgencmd(None), clock=lambda: now[0],
    )  # fmt: skip
    reporter.sample_now()
    stats.frames += 150
    now[0] += 10.0
    assert reporter.sample_now()["fps"] == 15.0


def test_a_failing_sample_does_not_end_the_reporter(tmp_path: Path):
    published = Published()
    rounds = [0]

    def collect() -> dict[str, Any]:
        rounds[0] += 1
        if rounds[0] == 1:
            raise RuntimeError("counter gone")
        return {}

    reporter = HealthReporter(published, collect, lambda: 0.0, paths=nothing_there(tmp_path),
                              run=vcgencmd(None))  # fmt: skip
    reporter.start()
    try:
        assert published.enough.wait(10.0)
    finally:
        reporter.stop()
    assert rounds[0] >= 2


def test_run_command_gives_none_for_a_missing_program():
    assert health.run_command(["edge-sentry-no-such-program", "x"]) is None
    assert health.run_command(["true"]) == ""
    assert health.run_command(["false"]) is None
