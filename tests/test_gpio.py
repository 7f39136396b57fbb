"""Pin factory choice and device construction: hardware decides "auto", failures name their key."""

from __future__ import annotations

import sys

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from edge_sentry.config import GpioConfig
from edge_sentry.errors import GpioError
from edge_sentry.gpio import build_devices, is_raspberry_pi, make_pin_factory


@pytest.fixture
def factory():
    pins = MockFactory()
    yield pins
    pins.reset()


@pytest.fixture
def no_real_gpio_libraries(monkeypatch):
    """Make lgpio and RPi.GPIO unimportable, whatever this machine has installed."""
    for name in ("lgpio", "RPi", "RPi.GPIO", "gpiozero.pins.lgpio", "gpiozero.pins.rpigpio"):
        monkeypatch.setitem(sys.modules, name, None)


def model_file(tmp_path, text: str):
    path = tmp_path / "model"
    path.write_bytes(text.encode() + b"\x00")  # the device tree's strings end with a NUL
    return path


def test_mock_factory_by_name():
    assert isinstance(make_pin_factory("mock"), MockFactory)


def test_auto_uses_the_mock_off_a_raspberry_pi(tmp_path):
    qemu = model_file(tmp_path, "QEMU Virtual Machine")
    assert isinstance(make_pin_factory("auto", model_path=qemu), MockFactory)
    missing = tmp_path / "absent"
    assert isinstance(make_pin_factory("auto", model_path=missing), MockFactory)


@pytest.mark.usefixtures("no_real_gpio_libraries")
def test_auto_on_a_raspberry_pi_insists_on_lgpio_rather_than_falling_back_to_the_mock(tmp_path):
    model = model_file(tmp_path, "Raspberry Pi 4 Model B Rev 1.4")
    assert is_raspberry_pi(model)

    with pytest.raises(GpioError, match=r"gpio\.pin_factory: 'lgpio' needs lgpio"):
        make_pin_factory("auto", model_path=model)


@pytest.mark.usefixtures("no_real_gpio_libraries")
@pytest.mark.parametrize(("name", "library"), [("lgpio", "lgpio"), ("rpigpio", "RPi.GPIO")])
def test_a_real_factory_without_its_library_is_a_clear_gpio_error(name, library):
    with pytest.raises(GpioError, match=rf"{name}.*{library}"):
        make_pin_factory(name)


def test_an_unknown_factory_name_is_a_gpio_error():
    with pytest.raises(GpioError, match=r"^gpio\.pin_factory: unknown factory 'pigpio'"):
        make_pin_factory("pigpio")


def test_devices_are_built_on_the_given_factory_without_touching_the_global_one(factory):
    before = Device.pin_factory
    devices = build_devices(GpioConfig(), factory)
    try:
        assert Device.pin_factory is before
        for device in (devices.relay, devices.green, devices.door, devices.staff, devices.exit):
            assert device.pin_factory is factory
        assert devices.relay.value == 0
        assert factory.pin(17).state is False
    finally:
        devices.close()


def test_an_active_low_relay_starts_at_its_off_level(factory):
    devices = build_devices(GpioConfig(relay_active_high=False), factory)
    try:
        assert devices.relay.value == 0
        assert factory.pin(17).state is True
    finally:
        devices.close()


def test_the_door_reads_shut_when_its_contact_pulls_the_pin_low(factory):
    devices = build_devices(GpioConfig(door=24), factory)
    try:
        door = factory.pin(24)
        door.drive_low()
        assert devices.door.is_active  # shut
        door.drive_high()
        assert not devices.door.is_active  # open, or the wire is cut
    finally:
        devices.close()


def test_inputs_are_pulled_up_and_debounced_from_bounce_ms(factory):
    devices = build_devices(GpioConfig(bounce_ms=30), factory)
    try:
        for key in ("door", "staff", "exit"):
            pin = getattr(devices, key).pin
            assert pin.pull == "up"
            assert pin.bounce == pytest.approx(0.03)
    finally:
        devices.close()


def test_zero_bounce_ms_means_no_debounce(factory):
    devices = build_devices(GpioConfig(bounce_ms=0), factory)
    try:
        assert devices.staff.pin.bounce is None
    finally:
        devices.close()


def test_a_pin_conflict_names_the_key_and_frees_what_was_built(factory):
    with pytest.raises(GpioError, match=r"^gpio\.red: cannot use pin 27"):
        build_devices(GpioConfig(green=27, red=27), factory)

    devices = build_devices(GpioConfig(), factory)  # every pin is free again
    devices.close()


def test_a_pin_held_by_someone_else_names_the_key(factory):
    other = build_devices(GpioConfig(), factory)
    try:
        with pytest.raises(GpioError, match=r"^gpio\.relay: cannot use pin 17"):
            build_devices(GpioConfig(), factory)
    finally:
        other.close()


def test_a_pin_the_board_does_not_have_names_the_key(factory):
    with pytest.raises(GpioError, match=r"^gpio\.exit: cannot use pin 40"):
        build_devices(GpioConfig(exit=40), factory)


def test_close_closes_every_device(factory):
    devices = build_devices(GpioConfig(), factory)
    devices.close()

    for key in ("relay", "green", "red", "buzzer", "door", "staff", "exit"):
        assert getattr(devices, key).closed, key
    devices.close()  # twice is harmless
