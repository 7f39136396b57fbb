"""Self-tests on mock pins and the synthetic camera: each part passes on working parts, fails on the
fault it exists to catch, and skips (never passes) what it cannot judge."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from codes_helpers import trust_list
from gate_helpers import gate_rig, level_intervals
from gpiozero.pins.mock import MockFactory

from edge_sentry import selftest
from edge_sentry.camera.synthetic import Cue, Scene, SyntheticSource
from edge_sentry.cli import selftest as selftest_cli
from edge_sentry.codes import keys, vc1
from edge_sentry.config import Config, GpioConfig, from_mapping
from edge_sentry.errors import GpioError
from edge_sentry.gpio import GateDevices, build_devices
from edge_sentry.selftest import FAIL, PASS, SKIP, Rig

SITE, VENUE, ENTRANCE = "s1", "arena", "north"


def config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    data: dict[str, Any] = {
        "device": {"site": SITE, "venue": VENUE, "entrance": ENTRANCE, "state_dir": str(tmp_path / "state")},
        "gpio": {"pin_factory": "mock"},
        "outbox": {"path": str(tmp_path / "outbox")},
        "camera": {"width": 640, "height": 360, "fps": 15.0},
        "gate": {"pulse_ms": 50, "max_open_s": 0.5},
    }
    for name, keys_ in sections.items():
        data.setdefault(name, {}).update(keys_)
    return from_mapping(data)


class FakeTime:
    """A monotonic clock that moves on by itself, so waiting parts end without real waiting."""

    def __init__(self, step: float = 0.05) -> None:
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def pins() -> Iterator[tuple[MockFactory, GateDevices]]:
    factory = MockFactory()
    devices = build_devices(GpioConfig(pin_factory="mock"), factory)
    factory.pin(GpioConfig().door).drive_low()  # the door is shut
    try:
        yield factory, devices
    finally:
        devices.close()
        factory.reset()


def scene_source(*texts: str, width: int = 640, height: int = 360) -> SyntheticSource:
    """Unpaced frames whose timestamps step at 15 fps: the measured rate is exact."""
    cues = [Cue(text=t, start=0.0, end=10.0, size=0.8, x=0.5) for t in texts]
    ticks = itertools.count()
    source = SyntheticSource(Scene(cues=cues, duration=10.0), width=width, height=height, fps=15.0,
                             paced=False, clock=lambda: next(ticks) / 15.0)  # fmt: skip
    source.start()
    return source


# -- GPIO parts ---------------------------------------------------------------------------------


def test_relay_switches_on_then_off(tmp_path: Path, pins):
    factory, devices = pins
    since = time.monotonic()
    factory.pin(17).clear_states()
    found = selftest.check_relay(Rig(config(tmp_path), devices=devices, pulse_s=0.01))
    assert found["status"] == PASS, found
    assert len(level_intervals(factory.pin(17), since)) == 1
    assert not devices.relay.is_active


class StuckRelay:
    is_active = False

    def on(self) -> None: ...

    def off(self) -> None: ...


def test_a_relay_output_that_does_not_follow_fails(tmp_path: Path, pins):
    _, devices = pins
    broken = dataclasses.replace(devices, relay=StuckRelay())
    found = selftest.check_relay(Rig(config(tmp_path), devices=broken, pulse_s=0.0))
    assert found["status"] == FAIL and "did not switch on" in found["detail"]


def test_with_a_running_gate_the_relay_is_pulsed_through_it(tmp_path: Path):
    with gate_rig() as rig:
        found = selftest.check_relay(Rig(config(tmp_path), devices=rig.devices, gate=rig.gate))
        assert found["status"] == PASS, found
        assert [d["mode"] for d in rig.events.of("grant")] == ["selftest"]
        assert len(rig.intervals("relay")) == 1


def test_a_gate_in_secure_fault_refuses_the_relay_test(tmp_path: Path):
    with gate_rig() as rig:
        rig.gate.set_fault("camera")
        found = selftest.check_relay(Rig(config(tmp_path), devices=rig.devices, gate=rig.gate))
        assert found["status"] == FAIL
        assert rig.intervals("relay") == []


@pytest.mark.parametrize("part, outputs", [("lights", (27, 22)), ("buzzer", (23,))])
def test_indicators_switch_on_then_off(tmp_path: Path, pins, part: str, outputs: tuple[int, ...]):
    factory, devices = pins
    since = time.monotonic()
    for pin in outputs:
        factory.pin(pin).clear_states()
    found = selftest.PARTS[part](Rig(config(tmp_path), devices=devices, indicator_s=0.0))
    assert found["status"] == PASS
    for pin in outputs:
        assert len(level_intervals(factory.pin(pin), since)) == 1


def test_door_reports_closed_and_open(tmp_path: Path, pins):
    factory, devices = pins
    rig = Rig(config(tmp_path), devices=devices)
    found = selftest.check_door(rig)
    assert (found["status"], found["data"]["door"]) == (PASS, "closed")
    factory.pin(24).drive_high()
    found = selftest.check_door(rig)
    assert (found["status"], found["data"]["door"]) == (PASS, "open")


def test_a_button_held_down_is_reported_stuck(tmp_path: Path, pins):
    factory, devices = pins
    rig = Rig(config(tmp_path), devices=devices)
    assert selftest.check_buttons(rig)["status"] == PASS
    factory.pin(25).drive_low()  # the staff button, pressed and not let go
    found = selftest.check_buttons(rig)
    assert found["status"] == FAIL and "staff" in found["detail"] and "exit" not in found["detail"]


@pytest.mark.parametrize("part", sorted(selftest.GPIO_PARTS))
def test_without_gpio_the_gpio_parts_skip_or_fail_with_the_setup_problem(tmp_path: Path, part: str):
    assert selftest.PARTS[part](Rig(config(tmp_path)))["status"] == SKIP
    failed = selftest.PARTS[part](Rig(config(tmp_path), gpio_problem="gpio.relay: pin 17 busy"))
    assert (failed["status"], failed["detail"]) == (FAIL, "gpio.relay: pin 17 busy")


# -- camera and codes ---------------------------------------------------------------------------


def test_camera_gets_its_frames_and_measures_the_rate(tmp_path: Path):
    source = scene_source()
    found = selftest.check_camera(Rig(config(tmp_path), read_frame=source.read))
    assert found["status"] == PASS, found
    assert found["data"] == {"frames": 10, "shape": [360, 640], "fps": 15.0}


def test_a_camera_that_delivers_too_few_frames_fails(tmp_path: Path):
    source = scene_source()
    frames = [source.read(0.1) for _ in range(3)]
    fake = FakeTime()

    def read(_timeout: float):
        return frames.pop(0) if frames else None

    rig = Rig(config(tmp_path), read_frame=read, monotonic=fake, sleep=fake.sleep)
    found = selftest.check_camera(rig)
    assert found["status"] == FAIL and found["data"]["frames"] == 3


def test_a_dark_camera_fails_and_a_missing_one_skips(tmp_path: Path):
    fake = FakeTime()
    rig = Rig(config(tmp_path), read_frame=lambda t: None, monotonic=fake, sleep=fake.sleep)
    assert selftest.check_camera(rig)["status"] == FAIL
    assert selftest.check_camera(Rig(config(tmp_path)))["status"] == SKIP
    broken = selftest.check_camera(Rig(config(tmp_path), camera_problem="camera: no device"))
    assert (broken["status"], broken["detail"]) == (FAIL, "camera: no device")


def test_decoder_reads_a_code_rendered_at_the_camera_size(tmp_path: Path):
    found = selftest.check_decoder(Rig(config(tmp_path)))
    assert found["status"] == PASS, found


class BlindDecoder:
    def decode(self, y: Any) -> list[Any]:
        return []


def test_a_decoder_that_reads_nothing_fails(tmp_path: Path):
    assert selftest.check_decoder(Rig(config(tmp_path), decoder=BlindDecoder()))["status"] == FAIL


NOW = 1_795_000_000


def test_trust_passes_fresh_and_fails_stale_empty_or_missing(tmp_path: Path):
    issuer = keys.generate()
    cfg = config(tmp_path)
    fresh = trust_list(issuer, issued="2026-11-18T00:00:00Z")
    found = selftest.check_trust(Rig(cfg, trust=fresh, now=lambda: NOW))
    assert found["status"] == PASS and found["data"]["version"] == 1
    stale = trust_list(issuer, issued="2026-11-01T00:00:00Z")
    assert selftest.check_trust(Rig(cfg, trust=stale, now=lambda: NOW))["status"] == FAIL
    empty = trust_list(issued="2026-11-18T00:00:00Z")
    assert selftest.check_trust(Rig(cfg, trust=empty, now=lambda: NOW))["status"] == FAIL
    missing = selftest.check_trust(Rig(cfg, trust_problem="trust.json: no such trust-list file"))
    assert (missing["status"], missing["detail"]) == (FAIL, "trust.json: no such trust-list file")


def poster(root, **where: str) -> str:
    place = {"site": SITE, "venue": VENUE, "entrance": ENTRANCE, "name": "Arena, north door"}
    place.update(where)
    return vc1.issue(root, issued=NOW, **place)


def poster_rig(tmp_path: Path, root_public, *texts: str) -> Rig:
    fake = FakeTime()
    source = scene_source(*texts)
    return Rig(config(tmp_path), read_frame=source.read, root_key=root_public, monotonic=fake,
               sleep=fake.sleep, poster_timeout_s=2.0)  # fmt: skip


def test_the_genuine_poster_of_this_entrance_passes(tmp_path: Path):
    root = keys.generate()
    found = selftest.check_venue_poster(poster_rig(tmp_path, root.public_key(), poster(root)))
    assert found["status"] == PASS, found
    assert found["data"]["poster"]["entrance"] == ENTRANCE


def test_a_moved_poster_fails(tmp_path: Path):
    root = keys.generate()
    found = selftest.check_venue_poster(
        poster_rig(tmp_path, root.public_key(), poster(root, entrance="south"))
    )
    assert found["status"] == FAIL and "another place" in found["detail"]


def test_a_forged_poster_fails(tmp_path: Path):
    root, forger = keys.generate(), keys.generate()
    found = selftest.check_venue_poster(poster_rig(tmp_path, root.public_key(), poster(forger)))
    assert found["status"] == FAIL and "not genuine" in found["detail"]


def test_no_poster_in_view_or_no_root_key_skips(tmp_path: Path):
    root = keys.generate()
    assert selftest.check_venue_poster(poster_rig(tmp_path, root.public_key()))["status"] == SKIP
    assert selftest.check_venue_poster(poster_rig(tmp_path, None, poster(root)))["status"] == SKIP
    rig = poster_rig(tmp_path, None, poster(root))
    rig.root_key_problem = "trust.root_key: not a PEM public key"
    assert selftest.check_venue_poster(rig)["status"] == FAIL


# -- storage and time ---------------------------------------------------------------------------


def test_outbox_folder_takes_a_write_and_an_fsync(tmp_path: Path):
    found = selftest.check_outbox(Rig(config(tmp_path)))
    assert found["status"] == PASS and found["data"]["free_bytes"] > 0
    assert list((tmp_path / "outbox").iterdir()) == []  # the probe is gone


def test_an_outbox_folder_that_cannot_be_made_fails(tmp_path: Path):
    (tmp_path / "file").write_text("x")
    cfg = config(tmp_path, outbox={"path": str(tmp_path / "file" / "outbox")})
    assert selftest.check_outbox(Rig(cfg))["status"] == FAIL


@pytest.mark.parametrize("synced, status", [(True, PASS), (False, FAIL), (None, SKIP)])
def test_clock(tmp_path: Path, synced: bool | None, status: str):
    assert selftest.check_clock(Rig(config(tmp_path), clock_synced=lambda: synced))["status"] == status


def test_this_machine_can_be_asked_about_its_clock_or_says_it_cannot():
    assert selftest.clock_synchronised() in (True, False, None)


# -- running several ----------------------------------------------------------------------------


def test_run_all_keeps_the_order_and_runs_only_what_is_asked(tmp_path: Path):
    rig = Rig(config(tmp_path), clock_synced=lambda: True)
    results = selftest.run_all(rig, ["clock", "outbox"])
    assert [r["part"] for r in results] == ["outbox", "clock"]
    with pytest.raises(ValueError, match="warp"):
        selftest.run_all(rig, ["warp"])


def test_a_part_that_raises_is_a_failure_not_a_crash(tmp_path: Path, monkeypatch):
    def boom(rig: Rig) -> dict[str, Any]:
        raise OSError("gone")

    monkeypatch.setitem(selftest.PARTS, "clock", boom)
    (found,) = selftest.run_all(Rig(config(tmp_path)), ["clock"])
    assert found == {"part": "clock", "status": FAIL, "detail": "the test itself failed (OSError)"}


def test_skips_do_not_fail_a_run():
    assert selftest.passed([{"status": PASS}, {"status": SKIP}])
    assert not selftest.passed([{"status": PASS}, {"status": FAIL}])


def test_the_remote_default_leaves_the_strike_alone(tmp_path: Path):
    assert "relay" not in selftest.REMOTE_DEFAULT
    assert set(selftest.REMOTE_DEFAULT) | {"relay"} == set(selftest.PARTS)
    run = selftest.remote_runner(Rig(config(tmp_path), clock_synced=lambda: True))
    assert [r["part"] for r in run(["clock"])] == ["clock"]
    assert [r["part"] for r in run(None)] == list(selftest.REMOTE_DEFAULT)


# -- the command line ---------------------------------------------------------------------------


def cli(argv: list[str], cfg: Config, capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="edge-sentry")
    sub = parser.add_subparsers(dest="command", required=True)
    selftest_cli.register(sub)
    args = parser.parse_args(argv)
    code = args.func(args, cfg)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_on_mock_pins_and_the_synthetic_camera_with_a_poster(tmp_path: Path, capsys):
    root = keys.generate()
    keys.save_public_key(root, tmp_path / "root.pem")
    scene = tmp_path / "scene.json"
    scene.write_text(json.dumps({"duration": 5, "cues": [{"text": poster(root), "start": 0, "end": 5,
                                                          "size": 0.8}]}))  # fmt: skip
    trust = tmp_path / "trust.json"
    trust.write_text(
        trust_list(keys.generate(), issued=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())).to_json()
    )
    cfg = config(
        tmp_path,
        camera={"source": "synthetic", "scene": str(scene), "fps": 30.0},
        trust={"file": str(trust), "root_key": str(tmp_path / "root.pem")},
    )
    parts = "relay,lights,buzzer,door,buttons,camera,decoder,trust,venue-poster,outbox"
    code, out, _ = cli(["selftest", "--json", "--only", parts], cfg, capsys)
    report = json.loads(out)
    statuses = {r["part"]: r["status"] for r in report["parts"]}
    assert statuses == dict.fromkeys(parts.split(","), PASS), report
    assert report["passed"] is True and code == 0


def test_cli_table_and_exit_1_when_a_part_fails(tmp_path: Path, capsys):
    code, out, _ = cli(["selftest", "--only", "trust", "--only", "outbox"], config(tmp_path), capsys)
    lines = out.splitlines()
    assert lines[0].split() == ["PART", "STATUS", "DETAIL"]
    assert lines[1].split()[:2] == ["trust", "fail"] and lines[2].split()[:2] == ["outbox", "pass"]
    assert code == 1


def test_cli_only_what_is_asked_is_opened(tmp_path: Path, capsys, monkeypatch):
    def no_pins(*_: Any) -> Any:
        raise AssertionError("pins opened for a clock test")

    monkeypatch.setattr("edge_sentry.gpio.build_devices", no_pins)
    code, out, _ = cli(["selftest", "--json", "--only", "clock"], config(tmp_path), capsys)
    assert [r["part"] for r in json.loads(out)["parts"]] == ["clock"]
    assert code in (0, 1)


def test_cli_unknown_part_is_bad_usage(tmp_path: Path, capsys):
    code, out, err = cli(["selftest", "--only", "relay,warp-drive"], config(tmp_path), capsys)
    assert code == 2 and "warp-drive" in err and out == ""


def test_cli_reports_pins_it_cannot_use_as_failures(tmp_path: Path, capsys, monkeypatch):
    def busy(name: str) -> Any:
        raise GpioError("gpio.pin_factory: cannot open the lgpio factory: busy")

    monkeypatch.setattr("edge_sentry.gpio.make_pin_factory", busy)
    code, out, _ = cli(["selftest", "--json", "--only", "door"], config(tmp_path), capsys)
    (found,) = json.loads(out)["parts"]
    assert found["status"] == FAIL and "gpio.pin_factory" in found["detail"]
    assert code == 1
