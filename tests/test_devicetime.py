"""Device time: exact within a boot, a lower bound across boots, deaf to the wall clock."""

from __future__ import annotations

from fakes import FakeClock

from edge_sentry.devicetime import DeviceClock, boottime, read_boot_id


def clock(up: FakeClock, boot: list[str]) -> DeviceClock:
    return DeviceClock(up, lambda: boot[0])


def test_the_same_boot_counts_the_time_between_checkpoint_and_restart():
    up, boot = FakeClock(1000.0), ["a"]
    first = clock(up, boot)
    first.resume(None)
    up.now += 60
    alive = first.alive()
    assert alive == {"boot": "a", "mono": 1060.0, "d": 60_000}
    up.now += 3600  # stopped for an hour, the device up
    again = clock(up, boot)
    again.resume(alive)
    assert again.now_ms() == 3_660_000


def test_a_new_boot_counts_its_own_uptime_but_not_the_time_off():
    up, boot = FakeClock(1000.0), ["a"]
    first = clock(up, boot)
    first.resume({"boot": "a", "mono": 1000.0, "d": 7_000})
    up.now += 10
    alive = first.alive()
    boot[0], up.now = "b", 42.0  # rebooted, off for who knows how long
    again = clock(up, boot)
    again.resume(alive)
    assert again.now_ms() == 17_000 + 42_000


def test_unknown_boot_or_bad_checkpoint_never_count_time_twice_and_stored_times_are_a_floor():
    up = FakeClock(5000.0)
    unknown = clock(up, [""])
    unknown.resume({"boot": "", "mono": 10.0, "d": 1_000})
    assert unknown.now_ms() == 1_000  # perhaps the same boot: its uptime may be counted already
    for bad in ({"boot": "a", "mono": "x", "d": 5}, {"boot": "a", "mono": 1.0, "d": 1.5},
                {"d": 5}, [1, 2, 3], None):
        fresh = clock(up, ["a"])
        fresh.resume(bad, floor_ms=250)
        assert fresh.now_ms() == 250


def test_the_real_clocks_are_readable():
    assert boottime() > 0
    assert isinstance(read_boot_id(), str)
