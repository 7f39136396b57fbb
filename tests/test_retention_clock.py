"""Retention measures how long an event waited on this device, whatever the wall clock does.

A Pi without a real-time clock boots on the time it last saved and steps to the true time when NTP
first answers: scans taken offline in between must not look weeks old. A step back must not keep
personal data past the period either. Real files, real restarts of the Outbox; the device's clocks
(wall, CLOCK_BOOTTIME, boot id) are moved by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeDevice

from edge_sentry.outbox import Outbox
from edge_sentry.records import EventIdGenerator
from edge_sentry.storage import EventStore, event_frame

DAY = 86400.0
WAIT = 5.0


def outbox(path: Path, device: FakeDevice, **kwargs) -> Outbox:
    options = {"max_events": 1000, "queue_size": 100, "retention_days": 14.0,
               "retention_check_s": 60.0, **device.clocks()}
    options.update(kwargs)
    return Outbox(path, **options)


def scans(box: Outbox, *ns: int) -> None:
    for n in ns:
        assert box.put({"event": "scan", "n": n}) is not None
    assert box.flush(WAIT)


def run_retention(box: Outbox, n: int) -> None:
    """Let the writer's periodic retention run (the device clock has moved past its interval)."""
    scans(box, n)


def stop_after_scans(path: Path, device: FakeDevice, *ns: int) -> None:
    """Start the outbox, check that nothing it held has expired, add scans, stop it."""
    with outbox(path, device) as box:
        assert box.stats()["dropped_retention"] == 0
        scans(box, *ns)


def kept(box: Outbox) -> list[int]:
    return [e["n"] for e in box.pending(1000)]


def test_scans_stamped_on_a_stale_boot_clock_survive_ntp_stepping_it_weeks_ahead(tmp_path):
    device = FakeDevice()
    device.reboot(wall=device.wall.now - 40 * DAY)  # fake-hwclock: the time saved at the last shutdown
    with outbox(tmp_path / "ob", device) as box:
        scans(box, 0, 1, 2)
        device.wait(3600)
        device.step_wall(40 * DAY)  # NTP answers
        device.wait(120)
        run_retention(box, 3)
        assert kept(box) == [0, 1, 2, 3]
        assert box.stats()["dropped_retention"] == 0
        assert box.stats()["oldest_age_s"] == pytest.approx(3720, abs=1)
    with outbox(tmp_path / "ob", device) as box:  # and at the next start, same boot
        assert kept(box) == [0, 1, 2, 3]
        device.wait(14 * DAY - 3700)
        run_retention(box, 4)
        assert kept(box) == [3, 4]  # 0-2 have now waited 14 days and 20 s on this device
        assert box.stats()["dropped_retention"] == 3


def test_a_wall_clock_stepped_back_does_not_keep_events_past_the_period(tmp_path):
    device = FakeDevice()
    with outbox(tmp_path / "ob", device) as box:
        scans(box, 0, 1)
        device.step_wall(-60 * DAY)  # their ids now say they come from the future
        device.wait(7 * DAY)
        run_retention(box, 2)
        assert kept(box) == [0, 1, 2]
        device.wait(7 * DAY + 1)
        run_retention(box, 3)
        assert kept(box) == [2, 3]
        assert box.stats()["dropped_retention"] == 2


def test_time_the_outbox_was_stopped_counts_within_the_same_boot(tmp_path):
    device = FakeDevice()
    stop_after_scans(tmp_path / "ob", device, 0, 1)
    device.wait(10 * DAY)
    device.step_wall(-30 * DAY)
    stop_after_scans(tmp_path / "ob", device, 2)
    device.wait(4 * DAY + 60)
    with outbox(tmp_path / "ob", device) as box:
        assert kept(box) == [2]
        assert box.stats()["dropped_retention"] == 2


def test_after_a_reboot_waiting_resumes_from_the_last_time_the_device_saw_itself_up(tmp_path):
    device = FakeDevice()
    with outbox(tmp_path / "ob", device) as box:
        scans(box, 0, 1)
        device.wait(10 * DAY)
        run_retention(box, 2)  # the last sign of life before the power went
    device.reboot(wall=device.wall.now + 90 * DAY)  # off for months, NTP never vouched for a clock
    with outbox(tmp_path / "ob", device) as box:
        assert kept(box) == [0, 1, 2]
        device.wait(4 * DAY - 60)
        run_retention(box, 3)
        assert kept(box) == [0, 1, 2, 3]
    device.reboot(wall=device.wall.now - 200 * DAY)  # and back on a clock far in the past
    with outbox(tmp_path / "ob", device) as box:
        device.wait(120)
        run_retention(box, 4)
        assert kept(box) == [2, 3, 4]  # 0 and 1 have waited 14 days and a minute while up
        assert box.stats()["dropped_retention"] == 2
    device.reboot()
    device.wait(10 * DAY)  # up for 10 days before the outbox starts: that counts too
    with outbox(tmp_path / "ob", device) as box:
        assert kept(box) == [3, 4]
        assert box.stats()["dropped_retention"] == 1


def test_time_off_counts_once_ntp_vouches_for_both_ends_and_only_for_what_was_stored_before(tmp_path):
    device = FakeDevice()
    device.synced = True
    with outbox(tmp_path / "ob", device) as box:
        scans(box, 0, 1)
        device.wait(5 * DAY)
        run_retention(box, 2)
    shutdown = device.wall.now
    device.reboot(wall=shutdown)  # off for 10 days; fake-hwclock restores the time it saved
    device.synced = False
    stop_after_scans(tmp_path / "ob", device, 3)  # offline scans, then a restart before NTP
    device.wait(3600)
    with outbox(tmp_path / "ob", device) as box:
        assert kept(box) == [0, 1, 2, 3]
        scans(box, 4)
        device.wait(120)
        device.wall.now = shutdown + 10 * DAY + 5 + 3720  # NTP answers
        device.synced = True
        run_retention(box, 5)
        assert kept(box) == [2, 3, 4, 5]  # 0 and 1: 5 days up, then 10 off
        assert box.stats()["dropped_retention"] == 2
    stop_after_scans(tmp_path / "ob", device)  # the time off is counted once, not at each start
    device.wait(4 * DAY)
    with outbox(tmp_path / "ob", device) as box:
        assert kept(box) == [3, 4, 5]  # 2: 10 days and 4 days up, 10 off between
        assert box.stats()["dropped_retention"] == 1


def test_time_off_is_not_counted_when_the_clock_was_not_synchronized_before_it(tmp_path):
    device = FakeDevice()
    stop_after_scans(tmp_path / "ob", device, 0)
    device.reboot(wall=device.wall.now + 30 * DAY)
    device.synced = True
    with outbox(tmp_path / "ob", device) as box:
        device.wait(120)
        run_retention(box, 1)
        assert kept(box) == [0, 1]


def test_events_from_before_device_time_age_from_their_ids_once_then_on_device_time(tmp_path):
    device = FakeDevice()
    folder = tmp_path / "ob"
    folder.mkdir()
    # A log as the outbox wrote it before it kept stored times: the age is in the ids only.
    ids = EventIdGenerator(device.wall)
    store = EventStore(folder / "events.log")
    store.open()
    events = []
    for n, age in enumerate([20 * DAY, 10 * DAY, 10 * DAY, -5 * DAY]):
        device.wall.now -= age
        events.append({"event": "scan", "n": n, "id": ids(), "seq": n + 1})
        device.wall.now += age
    store.write([(e["seq"], e["id"], event_frame(e["seq"], e)) for e in events], [])
    store.close()
    with outbox(folder, device) as box:
        assert kept(box) == [1, 2, 3]  # 20 days old by its id
        assert box.stats()["dropped_retention"] == 1
        assert box.stats()["oldest_age_s"] == pytest.approx(10 * DAY, abs=2)
        device.step_wall(60 * DAY)
        device.wait(120)
        run_retention(box, 4)
        assert kept(box) == [1, 2, 3, 4]
    device.reboot(wall=device.wall.now - 100 * DAY)
    with outbox(folder, device) as box:
        device.wait(4 * DAY - 60)
        run_retention(box, 5)
        assert kept(box) == [3, 4, 5]  # the id from the future counted as just stored
        device.wait(10 * DAY + 120)
        run_retention(box, 6)
        assert kept(box) == [5, 6]
