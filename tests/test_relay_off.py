"""The relay is driven to its off level by `edge-sentry relay-off` and at the daemon's start."""

from __future__ import annotations

import configparser
import io
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from edge_sentry import daemon as daemon_module
from edge_sentry.cli import main
from edge_sentry.cli.relay_off import handle
from edge_sentry.config import Config, GpioConfig, from_mapping
from edge_sentry.errors import GpioError
from edge_sentry.gpio import drive_relay_off

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "edge-sentry.service"


def energised(factory: MockFactory, cfg: GpioConfig):
    """The relay pin as a killed process leaves it: an output at the level that releases the strike."""
    pin = factory.pin(cfg.relay)
    pin.output_with_state(cfg.relay_active_high)
    return pin


@pytest.mark.parametrize("active_high", [True, False])
def test_drive_relay_off_drives_the_pin_to_its_off_level_and_keeps_it_driven(active_high):
    cfg = GpioConfig(relay=22, relay_active_high=active_high)
    factory = MockFactory()
    pin = energised(factory, cfg)
    drive_relay_off(cfg, factory)
    assert pin.function == "output"  # driven, not left floating as a closed device's input
    assert pin.state == (not active_high)
    assert factory.pin(17).function == "input"  # no other pin touched


def test_the_command_drives_the_configured_pin_on_the_configured_factory(monkeypatch, capsys):
    cfg = GpioConfig(relay=5, relay_active_high=False, pin_factory="mock")
    factory = MockFactory()
    pin = energised(factory, cfg)
    asked: list[str] = []

    def make(name: str) -> MockFactory:
        asked.append(name)
        return factory

    monkeypatch.setattr("edge_sentry.cli.relay_off.make_pin_factory", make)
    assert handle(None, Config(gpio=cfg)) == 0  # type: ignore[arg-type]
    assert asked == ["mock"]
    assert pin.state is True and pin.function == "output"
    assert capsys.readouterr().out == "relay off: pin 5 high\n"


def test_the_command_line_runs_it_with_the_config_file_given(tmp_path, capsys):
    config = tmp_path / "sentry.toml"
    config.write_text('[gpio]\npin_factory = "mock"\nrelay = 26\n')
    assert main(["relay-off", "--config", str(config)]) == 0
    assert "relay off: pin 26 low" in capsys.readouterr().out
    config.write_text('[gpio]\npin_factory = "mock"\nrelay = 26\nrelay_active_high = false\n')
    assert main(["relay-off", "--config", str(config)]) == 0
    assert "relay off: pin 26 high" in capsys.readouterr().out


def test_a_pin_that_cannot_be_driven_is_a_gpio_error_naming_the_key():
    class Stuck(MockFactory):
        def pin(self, name):  # type: ignore[no-untyped-def]
            raise OSError("GPIO busy")

    with pytest.raises(GpioError, match=r"gpio\.relay: cannot drive pin 6 .*GPIO busy"):
        drive_relay_off(GpioConfig(relay=6), Stuck())


def test_the_daemon_releases_the_relay_before_anything_else_that_can_fail(tmp_path, monkeypatch):
    config = from_mapping({"device": {"state_dir": str(tmp_path / "state")}, "gpio": {"pin_factory": "mock"}})
    factory = MockFactory()
    pin = energised(factory, config.gpio)
    monkeypatch.setattr(daemon_module, "make_pin_factory", lambda name: factory)

    def broken_store(_config: Config) -> None:
        assert pin.state is False, "the state store was opened while the strike was still released"
        raise OSError("state store unreadable")

    monkeypatch.setattr(daemon_module.StateStore, "open", broken_store)
    with pytest.raises(OSError, match="unreadable"):
        daemon_module.Daemon(config, stream=io.StringIO())
    assert pin.state is False and pin.function == "output"


def test_the_unit_runs_relay_off_after_every_stop():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNIT)
    service = unit["Service"]
    start = service["ExecStart"].split()
    stop_post = service["ExecStopPost"].split()
    assert stop_post[0] == start[0]  # the same installed program
    assert stop_post[1] == "relay-off"
    assert stop_post[stop_post.index("--config") + 1] == start[start.index("--config") + 1]
