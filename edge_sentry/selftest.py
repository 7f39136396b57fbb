"""Hardware self-tests, shared by `edge-sentry selftest`, the MQTT `selftest` command and hw_tests/.

Each part answers one question a technician asks at the entrance and returns
`{"part", "status": "pass" | "fail" | "skip", "detail"}` (plus `data` where a figure helps):

- relay: the strike output switches on, then off (through the running gate when there is one, so
  the pulse is bounded by the relay guard and logged like any grant);
- lights, buzzer: each indicator switches on, then off;
- door: the contact is readable; reports open or closed;
- buttons: staff and exit buttons are readable and not stuck pressed;
- camera: N frames arrive within the timeout; measured fps and frame shape;
- decoder: a freshly issued code, rendered into a frame of the camera's size, decodes;
- trust: a trust list is loaded, trusts something and is not stale;
- venue-poster: a VC1 poster in view is genuine and names this sentry's site, venue and entrance
  (skip when none is seen within the timeout, or no trust-root key is configured);
- outbox: its folder takes a write and an fsync;
- clock: the kernel says the clock is synchronised (skip where that cannot be asked);
- voice: the prompts of the configured language are rendered and readable, and the sound device
  plays a short silence (skip when the voice is off or its output is simulated).

`skip` means "could not be judged here", never "passed": callers decide what a skip is worth. A
part that raises is a `fail` naming the exception type. Never logs or reports a code's text.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .camera.base import Frame
from .codes import es1, keys, vc1
from .codes.trust import TrustList
from .config import Config
from .devicetime import kernel_clock_synchronised
from .files import fsync_dir
from .gpio import GateDevices
from .vocabulary import Mode

log = logging.getLogger(__name__)

PASS = "pass"
FAIL = "fail"
SKIP = "skip"

_POLL_S = 0.01


class Decodes(Protocol):
    def decode(self, y: Any) -> list[Any]: ...


class ChecksVoice(Protocol):
    def check(self) -> tuple[str, str]: ...


class GrantsGate(Protocol):
    def grant(self, mode: str = Mode.SCAN, context: object | None = None) -> float | None: ...

    def snapshot(self) -> dict[str, Any]: ...


def clock_synchronised() -> bool | None:
    """Whether the kernel's clock is synchronised (NTP); None when this machine cannot say.

    The kernel's own flag first (devicetime.kernel_clock_synchronised); timedatectl is the
    fallback where libc lacks adjtimex(2) or it is refused.
    """
    synced = kernel_clock_synchronised()
    if synced is not None:
        return synced
    if shutil.which("timedatectl"):
        try:
            done = subprocess.run(
                ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                capture_output=True, text=True, timeout=2.0, check=False,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None
        answer = done.stdout.strip()
        if done.returncode == 0 and answer in ("yes", "no"):
            return answer == "yes"
    return None


@dataclass
class Rig:
    """What the self-tests may touch; a part whose parts are missing reports `skip` (or `fail`
    with the recorded problem, when setting it up failed).

    `gate`: the running gate, when the daemon owns the relay (the relay test then grants through
    it, mode "selftest"); otherwise the relay device is switched directly. `read_frame(timeout)`
    reads the camera. `trust` and `root_key` as loaded by the caller, with the problems met.
    """

    config: Config
    devices: GateDevices | None = None
    gpio_problem: str | None = None
    gate: GrantsGate | None = None
    read_frame: Callable[[float], Frame | None] | None = None
    camera_problem: str | None = None
    decoder: Decodes | None = None
    trust: TrustList | None = None
    trust_problem: str | None = None
    root_key: Ed25519PublicKey | None = None
    root_key_problem: str | None = None
    clock_synced: Callable[[], bool | None] = clock_synchronised
    voice: ChecksVoice | None = None
    frames: int = 10
    poster_timeout_s: float = 5.0
    indicator_s: float = 0.2
    pulse_s: float | None = None
    now: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    extra: dict[str, Any] = field(default_factory=dict)


def result(part: str, status: str, detail: str, **data: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"part": part, "status": status, "detail": detail}
    if data:
        out["data"] = data
    return out


# -- GPIO -----------------------------------------------------------------------------------------


def _no_gpio(rig: Rig, part: str) -> dict[str, Any] | None:
    if rig.devices is not None:
        return None
    if rig.gpio_problem:
        return result(part, FAIL, rig.gpio_problem)
    return result(part, SKIP, "no GPIO devices here")


def _wait_for(predicate: Callable[[], bool], rig: Rig, timeout: float) -> bool:
    deadline = rig.monotonic() + timeout
    while not predicate():
        if rig.monotonic() >= deadline:
            return False
        rig.sleep(_POLL_S)
    return True


def check_relay(rig: Rig) -> dict[str, Any]:
    """The strike output goes on, then off again."""
    pulse = rig.pulse_s if rig.pulse_s is not None else rig.config.gate.pulse_ms / 1000
    if rig.gate is not None:
        gate = rig.gate
        if gate.grant("selftest") is None:
            return result("relay", FAIL, "the gate refused the pulse (a fault in secure mode, or closed)")
        went_on = _wait_for(lambda: gate.snapshot()["relay_on"], rig, rig.config.gate.max_open_s)
        went_off = _wait_for(lambda: not gate.snapshot()["relay_on"], rig, rig.config.gate.max_open_s + 1)
        if went_on and went_off:
            return result("relay", PASS, "pulsed on, then off, through the gate")
        why = "stayed on" if went_on else "did not switch on"
        return result("relay", FAIL, f"pulsed through the gate: the relay {why}")
    missing = _no_gpio(rig, "relay")
    if missing:
        return missing
    assert rig.devices is not None
    relay = rig.devices.relay
    relay.on()
    went_on = bool(relay.is_active)
    rig.sleep(pulse)
    relay.off()
    went_off = not relay.is_active
    if went_on and went_off:
        return result("relay", PASS, f"on, then off after {pulse * 1000:.0f} ms")
    return result("relay", FAIL, ("switched on" if went_on else "did not switch on")
                  + (", then off" if went_off else ", did not switch off"))  # fmt: skip


def _toggle(rig: Rig, part: str, names: Sequence[str]) -> dict[str, Any]:
    missing = _no_gpio(rig, part)
    if missing:
        return missing
    assert rig.devices is not None
    problems = []
    for name in names:
        device = getattr(rig.devices, name)
        device.on()
        on = bool(device.is_active)
        rig.sleep(rig.indicator_s)
        device.off()
        if not on or device.is_active:
            problems.append(f"{name} did not switch {'on' if not on else 'off'}")
    if problems:
        return result(part, FAIL, "; ".join(problems))
    return result(part, PASS, ", ".join(names) + " on, then off")


def check_lights(rig: Rig) -> dict[str, Any]:
    return _toggle(rig, "lights", ("green", "red"))


def check_buzzer(rig: Rig) -> dict[str, Any]:
    return _toggle(rig, "buzzer", ("buzzer",))


def check_door(rig: Rig) -> dict[str, Any]:
    """Readable, and which way: the contact is closed (active) while the door is shut."""
    missing = _no_gpio(rig, "door")
    if missing:
        return missing
    assert rig.devices is not None
    state = "closed" if rig.devices.door.is_active else "open"
    return result("door", PASS, f"contact readable: door {state}", door=state)


def check_buttons(rig: Rig) -> dict[str, Any]:
    """Readable and released: a button pressed during the test is stuck, or held by someone."""
    missing = _no_gpio(rig, "buttons")
    if missing:
        return missing
    assert rig.devices is not None
    pressed = [name for name in ("staff", "exit") if getattr(rig.devices, name).is_pressed]
    if pressed:
        return result("buttons", FAIL, " and ".join(pressed) + " pressed: stuck, or held during the test")
    return result("buttons", PASS, "staff and exit readable, released")


# -- camera and codes -----------------------------------------------------------------------------


def _no_camera(rig: Rig, part: str) -> dict[str, Any] | None:
    if rig.read_frame is not None:
        return None
    if rig.camera_problem:
        return result(part, FAIL, rig.camera_problem)
    return result(part, SKIP, "no camera here")


def check_camera(rig: Rig) -> dict[str, Any]:
    """N frames within a timeout that allows twice the configured frame interval per frame."""
    missing = _no_camera(rig, "camera")
    if missing:
        return missing
    assert rig.read_frame is not None
    cam = rig.config.camera
    timeout = cam.timeout_s + 2 * rig.frames / cam.fps
    deadline = rig.monotonic() + timeout
    got: list[Frame] = []
    while len(got) < rig.frames and rig.monotonic() < deadline:
        frame = rig.read_frame(min(cam.timeout_s, max(0.0, deadline - rig.monotonic())))
        if frame is not None:
            got.append(frame)
    if not got:
        return result("camera", FAIL, f"no frame within {timeout:.1f} s")
    shape = list(got[-1].y.shape)
    fps = (len(got) - 1) / (got[-1].t - got[0].t) if len(got) > 1 and got[-1].t > got[0].t else None
    data: dict[str, Any] = {"frames": len(got), "shape": shape}
    if fps is not None:
        data["fps"] = round(fps, 2)
    if got[-1].y.ndim != 2 or str(got[-1].y.dtype) != "uint8":
        return result("camera", FAIL, f"frames are not 2-D uint8 luminance planes: {shape}", **data)
    if len(got) < rig.frames:
        return result("camera", FAIL, f"{len(got)} of {rig.frames} frames within {timeout:.1f} s", **data)
    rate = f" at {fps:.1f} fps" if fps is not None else ""
    return result("camera", PASS, f"{len(got)} frames of {shape[1]}x{shape[0]}{rate}", **data)


def _decoder(rig: Rig) -> Decodes:
    if rig.decoder is None:
        from .decoder import Decoder

        rig.decoder = Decoder(rig.config.decoder)
    return rig.decoder


def check_decoder(rig: Rig) -> dict[str, Any]:
    """A code issued now by a throwaway key, drawn on a phone in a frame of the camera's size."""
    from .camera.synthetic import Cue, Scene

    key = keys.generate()
    text = es1.issue(key, issuer="selftest", lifetime_s=60, iat=int(rig.now()))
    cam = rig.config.camera
    scene = Scene(cues=[Cue(text=text, start=0.0, end=1.0, size=0.45)], duration=1.0)
    y = scene.render_at(0.5, cam.width, cam.height)
    started = rig.monotonic()
    found = _decoder(rig).decode(y)
    ms = (rig.monotonic() - started) * 1000
    if any(code.text == text for code in found):
        return result("decoder", PASS, f"a rendered code decoded in {ms:.0f} ms", ms=round(ms, 1))
    return result("decoder", FAIL, f"a rendered {cam.width}x{cam.height} code did not decode")


def check_trust(rig: Rig) -> dict[str, Any]:
    trust = rig.trust
    if trust is None:
        return result("trust", FAIL, rig.trust_problem or "no trust list loaded")
    if trust.version == 0 or not trust.keys:
        return result("trust", FAIL, f"trust list version {trust.version} trusts no key")
    age_h = trust.age_s(rig.now()) / 3600
    max_h = rig.config.trust.max_age_h
    data = {"version": trust.version, "keys": len(trust.keys), "age_h": round(age_h, 1)}
    if trust.is_stale(rig.now(), max_h):
        return result("trust", FAIL, f"version {trust.version} is stale: {age_h:.1f} h old, "
                      f"more than {max_h:g} h", **data)  # fmt: skip
    detail = f"version {trust.version}, {len(trust.keys)} keys, {age_h:.1f} h old"
    return result("trust", PASS, detail, **data)


def check_venue_poster(rig: Rig) -> dict[str, Any]:
    """The first VC1 seen decides: genuine and ours (pass), or not (fail); none seen: skip."""
    missing = _no_camera(rig, "venue-poster")
    if missing:
        return missing
    assert rig.read_frame is not None
    if rig.root_key is None:
        if rig.root_key_problem:
            return result("venue-poster", FAIL, rig.root_key_problem)
        return result("venue-poster", SKIP, "no trust.root_key configured: a poster cannot be checked")
    decoder = _decoder(rig)
    here = rig.config.device
    deadline = rig.monotonic() + rig.poster_timeout_s
    while rig.monotonic() < deadline:
        frame = rig.read_frame(min(rig.config.camera.timeout_s, max(0.0, deadline - rig.monotonic())))
        if frame is None:
            continue
        for code in decoder.decode(frame.y):
            if not code.text.startswith(vc1.PREFIX):
                continue
            reason, poster = vc1.verify(code.text, rig.root_key)
            if poster is None:
                return result("venue-poster", FAIL, f"a poster in view is not genuine ({reason})")
            where = f"{poster.site}/{poster.venue}/{poster.entrance}"
            if not poster.matches(site=here.site, venue=here.venue, entrance=here.entrance):
                return result("venue-poster", FAIL, f"a genuine poster for another place: {where}",
                              poster=poster.as_dict())  # fmt: skip
            return result("venue-poster", PASS, f"genuine poster for {where}", poster=poster.as_dict())
    return result("venue-poster", SKIP, f"no venue poster seen within {rig.poster_timeout_s:g} s")


# -- storage and time -----------------------------------------------------------------------------


def check_outbox(rig: Rig) -> dict[str, Any]:
    """A file in the outbox folder takes a write and an fsync (the outbox's own files untouched)."""
    folder = Path(rig.config.outbox.path)
    probe = folder / f".selftest-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                probe.unlink()
        fsync_dir(folder)
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        return result("outbox", FAIL, f"{folder}: {exc.strerror or exc}")
    return result("outbox", PASS, f"writable, fsync works; {free / 1e6:.0f} MB free", free_bytes=free)


def check_clock(rig: Rig) -> dict[str, Any]:
    synced = rig.clock_synced()
    if synced is None:
        return result("clock", SKIP, "cannot ask this machine whether its clock is synchronised")
    if synced:
        return result("clock", PASS, "synchronised")
    policy = rig.config.clock.unsynced_clock
    return result("clock", FAIL, f"not synchronised: time checks follow clock.unsynced_clock = {policy}")


def check_voice(rig: Rig) -> dict[str, Any]:
    """The running sentry's voice, or one built from the config (its thread not started)."""
    voice = rig.voice
    if voice is None:
        from .voice import Voice

        voice = Voice(rig.config)
    status, detail = voice.check()
    return result("voice", status, detail)


PARTS: dict[str, Callable[[Rig], dict[str, Any]]] = {
    "relay": check_relay,
    "lights": check_lights,
    "buzzer": check_buzzer,
    "door": check_door,
    "buttons": check_buttons,
    "camera": check_camera,
    "decoder": check_decoder,
    "trust": check_trust,
    "venue-poster": check_venue_poster,
    "outbox": check_outbox,
    "clock": check_clock,
    "voice": check_voice,
}

GPIO_PARTS = frozenset({"relay", "lights", "buzzer", "door", "buttons"})
CAMERA_PARTS = frozenset({"camera", "venue-poster"})
#: What a remote `selftest` runs unless parts are named: everything but the strike, which a
#: remote request should release only when someone asks for exactly that.
REMOTE_DEFAULT = tuple(name for name in PARTS if name != "relay")


def unknown_parts(names: Iterable[str]) -> list[str]:
    return sorted(set(names) - set(PARTS))


def run_all(rig: Rig, only: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Run the named parts (all when None) in the order of PARTS; ValueError for an unknown name."""
    wanted = list(PARTS) if only is None else list(only)
    bad = unknown_parts(wanted)
    if bad:
        raise ValueError("unknown self-test parts: " + ", ".join(bad))
    out = []
    for name, check in PARTS.items():
        if name not in wanted:
            continue
        try:
            out.append(check(rig))
        except Exception as exc:
            log.exception("self-test %s failed", name)
            out.append(result(name, FAIL, f"the test itself failed ({type(exc).__name__})"))
    return out


def remote_runner(rig: Rig) -> Callable[[Sequence[str] | None], list[dict[str, Any]]]:
    """What the MQTT `selftest` command calls: the named parts, or REMOTE_DEFAULT when none are."""
    return lambda parts: run_all(rig, REMOTE_DEFAULT if parts is None else parts)


def passed(results: Iterable[dict[str, Any]]) -> bool:
    """True when no part failed (skips are not failures)."""
    return all(r["status"] != FAIL for r in results)
