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
    assert (alive["boot"], alive["mono"], alive["d"], alive["gap"]) == ("a", 1060.0, 60_000, None)
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


def test_time_off_is_settled_once_when_synchronized_and_only_if_the_checkpoint_was_kept():
    up, wall, synced = FakeClock(50.0), FakeClock(1_000_000.0), [True]
    before = DeviceClock(up, lambda: "a", wall, lambda: synced[0])
    before.resume(None)
    alive = before.alive()
    up.now, wall.now, synced[0] = 10.0, 1_000_500.0, False  # off 490 s, then 10 s up
    after = DeviceClock(up, lambda: "b", wall, lambda: synced[0])
    after.resume(alive, first_seq=7)
    assert after.settle(lambda _doc: True) is None  # no NTP yet
    synced[0] = True
    assert after.settle(lambda _doc: False) is None  # not kept: try again later
    kept: list[dict] = []
    assert after.settle(lambda doc: kept.append(doc) or True) == (7, 490_000)
    assert kept[0]["gap"] is None and after.settle(lambda _doc: True) is None


def test_no_time_off_is_guessed_from_a_clock_nobody_synchronized_or_that_went_back():
    up, wall = FakeClock(50.0), FakeClock(1_000_000.0)
    unsynced = DeviceClock(up, lambda: "a", wall, lambda: False)
    unsynced.resume(None)
    alive = unsynced.alive()
    up.now, wall.now = 10.0, 2_000_000.0
    after = DeviceClock(up, lambda: "b", wall, lambda: True)
    after.resume(alive)
    assert after.settle(lambda _doc: True) is None
    synced = DeviceClock(up, lambda: "b", wall, lambda: True)
    synced.resume(None)
    alive = synced.alive()
    up.now, wall.now = 5.0, 1_000_000.0  # rebooted onto a clock set back
    again = DeviceClock(up, lambda: "c", wall, lambda: True)
    again.resume(alive)
    assert again.settle(lambda _doc: True) is None
