"""The gate's hardware: the pin factory chosen by config, and the gpiozero devices built on it.

Everything that constructs gpiozero objects lives here, so the gate state machine (`gate.py`)
receives ready devices and runs on gpiozero's MockFactory in tests exactly as on a Pi.

Rules this module keeps:
- the factory is chosen by `gpio.pin_factory`; "auto" looks at the hardware
  (`/proc/device-tree/model`), never at whether tests are running, so the mock is never silently
  used on a Raspberry Pi;
- every device gets its factory explicitly; the process-wide `Device.pin_factory` is never touched,
  so two gates (or two tests) cannot share pins by accident;
- every failure becomes a `GpioError` naming the config key to fix (`gpio.staff: ...`).

Wiring assumed (BCM numbers from `GpioConfig`):
- relay: the strike's relay driver; `gpio.relay_active_high` says which level energises it;
- green, red: indicator lights, high = lit; buzzer: an active buzzer, high = sounding;
- door: a contact that is CLOSED (joins the pin to ground) while the door is shut. The pin is
  pulled up, so a shut door reads LOW, which gpiozero calls active ("pressed" for a button). A cut
  wire or an unplugged contact reads HIGH, "door open", so a wiring fault raises an alarm instead
  of hiding a forced door. It is a DigitalInputDevice rather than a Button: a Button runs a
  hold-detection thread that, on a contact active nearly all the time, only adds work and makes
  closing wait up to its hold time;
- staff (manual entry) and exit (request-to-exit): push-to-make buttons to ground, pulled up,
  pressed = LOW.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from gpiozero import LED, Button, Buzzer, Device, DigitalInputDevice, OutputDevice
from gpiozero.pins import Factory
from gpiozero.pins.mock import MockFactory

from .config import GpioConfig
from .errors import GpioError

log = logging.getLogger(__name__)

PIN_FACTORIES = ("auto", "mock", "lgpio", "rpigpio")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")

# factory name -> (gpiozero module, class, what to install when the library is missing)
_REAL_FACTORIES: dict[str, tuple[str, str, str]] = {
    "lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory", "lgpio (apt: python3-lgpio)"),
    "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory", "RPi.GPIO (apt: python3-rpi-lgpio)"),
}


def is_raspberry_pi(model_path: str | Path = DEVICE_TREE_MODEL) -> bool:
    """True when the device tree names a Raspberry Pi board.

    The device tree describes the board itself, so no environment variable or test runner can
    change the answer.
    """
    try:
        model = Path(model_path).read_bytes()
    except OSError:
        return False
    return b"Raspberry Pi" in model


def make_pin_factory(name: str, *, model_path: str | Path = DEVICE_TREE_MODEL) -> Factory:
    """Build the pin factory named by `gpio.pin_factory`: "auto", "mock", "lgpio" or "rpigpio".

    Real factories are imported only when asked for, so a laptop without lgpio still runs the
    mock. "auto" means lgpio on a Raspberry Pi and the mock elsewhere; on a Pi without lgpio it
    raises instead of falling back to the mock, because a sentry driving fake pins at a real
    entrance looks alive while the door never opens.
    """
    if name == "auto":
        name = "lgpio" if is_raspberry_pi(model_path) else "mock"
        log.info("gpio.pin_factory auto: using %s", name)
    if name == "mock":
        return MockFactory()
    if name not in _REAL_FACTORIES:
        known = ", ".join(PIN_FACTORIES)
        raise GpioError(f"gpio.pin_factory: unknown factory {name!r} (one of {known})")
    module_name, class_name, package = _REAL_FACTORIES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise GpioError(f"gpio.pin_factory: {name!r} needs {package}, not installed") from exc
    try:
        return getattr(module, class_name)()
    except Exception as exc:  # each library has its own error types (lgpio.error, RuntimeError)
        raise GpioError(f"gpio.pin_factory: cannot open the {name} factory: {exc}") from exc


def drive_relay_off(cfg: GpioConfig, factory: Factory) -> None:
    """Drive the relay pin to its off level (the strike not released) and leave it driven there.

    For the moments when no gate holds the pin: after a process that had it ended without closing
    the gate (a watchdog abort, an OOM kill), and before the daemon builds its devices. It works on
    the bare pin, not a gpiozero device: closing a device turns the pin back into an undriven input,
    and what a floating input does to a relay driver depends on the board. Raises GpioError naming
    `gpio.relay` when the pin cannot be driven (another process holding it, say).
    """
    off_level = not cfg.relay_active_high
    try:
        factory.pin(cfg.relay).output_with_state(off_level)
    except Exception as exc:  # each pin library has its own error types
        raise GpioError(f"gpio.relay: cannot drive pin {cfg.relay} to its off level: {exc}") from exc
    log.info("gpio.relay: pin %d driven %s (off)", cfg.relay, "high" if off_level else "low")


@dataclass
class GateDevices:
    """The gpiozero devices of one gate, built together and closed together.

    `door.is_active` is True while the door is SHUT (see the module docstring for the wiring).
    Whoever built the devices closes them; the gate only drives them.
    """

    relay: OutputDevice
    green: LED
    red: LED
    buzzer: Buzzer
    door: DigitalInputDevice
    staff: Button
    exit: Button

    def close(self) -> None:
        """Close every device, relay first so the strike is de-energised before anything else."""
        for item in fields(self):
            _close_quietly(item.name, getattr(self, item.name))


def _close_quietly(key: str, device: Device) -> None:
    # Closing must reach every device even when one fails: a half-closed gate keeps pins reserved.
    try:
        device.close()
    except Exception:
        log.exception("gpio.%s: closing the device failed", key)


def build_devices(cfg: GpioConfig, factory: Factory) -> GateDevices:
    """Construct the gate's devices on `factory`; raise GpioError naming the key that failed.

    Devices already built are closed again on failure, so a corrected retry finds the pins free.
    """
    bounce = cfg.bounce_ms / 1000 if cfg.bounce_ms > 0 else None

    def button(pin: int) -> Button:
        return Button(pin, pull_up=True, bounce_time=bounce, pin_factory=factory)

    makers: dict[str, Callable[[], Any]] = {
        # relay first: it is the output that must reach its safe (off) level soonest after boot
        "relay": lambda: OutputDevice(
            cfg.relay,
            active_high=cfg.relay_active_high,
            initial_value=False,
            pin_factory=factory,
        ),
        "green": lambda: LED(cfg.green, initial_value=False, pin_factory=factory),
        "red": lambda: LED(cfg.red, initial_value=False, pin_factory=factory),
        "buzzer": lambda: Buzzer(cfg.buzzer, initial_value=False, pin_factory=factory),
        "door": lambda: DigitalInputDevice(cfg.door, pull_up=True, bounce_time=bounce, pin_factory=factory),
        "staff": lambda: button(cfg.staff),
        "exit": lambda: button(cfg.exit),
    }
    built: dict[str, Any] = {}
    for key, make in makers.items():
        try:
            built[key] = make()
        except Exception as exc:
            for done_key, device in built.items():
                _close_quietly(done_key, device)
            raise GpioError(f"gpio.{key}: cannot use pin {getattr(cfg, key)}: {exc}") from exc
    return GateDevices(**built)
