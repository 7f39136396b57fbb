"""The demo: what `edge-sentry run` shows with no config, and what the end-to-end tests drive.

A demo issuer key is made in memory at start (nobody else holds it, so trusting it opens nothing to the
outside), and a synthetic camera plays, pass after pass, a scene that walks through the verdicts a
venue sees: a valid code, an expired one, a forged one, a screenshot that has gone stale, the valid code
passed back to a second person, and a staff-button entry. Each pass issues fresh codes, so the valid
code stays valid however long the demo runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .camera.base import Frame, FrameSource
from .camera.synthetic import Cue, Scene, SyntheticSource
from .codes import base45, cose, es1, keys
from .codes.trust import TrustList
from .config import Config
from .gpio import GateDevices
from .vocabulary import Reason, Verdict

log = logging.getLogger(__name__)

DEMO_ISSUER = "demo-issuer"

#: (start, end) in scene seconds of each step of one pass, and when staff press the button.
STEPS = {
    "valid": (1.0, 2.5),
    "expired": (4.0, 5.5),
    "forged": (7.0, 8.5),
    "stale": (10.0, 11.5),
    "passback": (13.0, 14.5),
}
STAFF_PRESS_AT = 17.0
PASS_S = 20.0

#: What the demo expects each step to be decided as, for the tests and for people reading the log.
EXPECTED = {
    "valid": (Verdict.ACCEPT, Reason.OK),
    "expired": (Verdict.DENY, Reason.EXPIRED),
    "forged": (Verdict.DENY, Reason.BAD_SIGNATURE),
    "stale": (Verdict.DENY, Reason.STALE),
    "passback": (Verdict.DENY, Reason.PASSBACK),
}


@dataclass(frozen=True)
class DemoIssuer:
    """The in-memory issuer whose codes the demo sentry trusts."""

    key: Ed25519PrivateKey
    trust: TrustList

    @classmethod
    def create(cls) -> DemoIssuer:
        key = keys.generate()
        issued = datetime.now(UTC)
        trust = TrustList.empty().with_entry(keys.trust_entry(key, DEMO_ISSUER), issued=issued)
        return cls(key, trust)


def demo_texts(issuer: DemoIssuer, venue: str, now: float) -> dict[str, str]:
    """The code texts of one pass, issued at `now`."""
    iat = int(now)
    valid = es1.issue(issuer.key, issuer=DEMO_ISSUER, lifetime_s=3600, venue=venue, iat=iat)
    expired = es1.issue(issuer.key, issuer=DEMO_ISSUER, lifetime_s=600, iat=iat - 4000)
    stale = es1.issue(issuer.key, issuer=DEMO_ISSUER, lifetime_s=3600, iat=iat - 300)
    # A forger who copied the trusted kid but signs with a key of their own.
    forger = keys.generate()
    claims = es1.Es1Claims(DEMO_ISSUER, b"\x00" * es1.SUB_LENGTH, iat, iat + 3600, 0, None, False)
    forged_cose = cose.sign1(
        forger, es1.encode_claims(claims), alg=cose.ALG_EDDSA, kid=keys.kid_of(issuer.key)
    )
    forged = es1.PREFIX + base45.encode(forged_cose)
    return {"valid": valid, "expired": expired, "forged": forged, "stale": stale, "passback": valid}


def demo_scene(texts: dict[str, str], time_scale: float = 1.0) -> Scene:
    """One pass: each step's code on a phone, held at a slightly different place and angle.

    `time_scale` below 1 plays the same pass faster (the tests use it).
    """
    looks = {
        "valid": {"x": 0.45, "rotation": -8.0},
        "expired": {"x": 0.55, "rotation": 12.0, "blur": 0.6},
        "forged": {"x": 0.5, "rotation": 4.0, "noise": 4.0},
        "stale": {"x": 0.42, "rotation": -15.0},
        "passback": {"x": 0.58, "rotation": 6.0, "blur": 0.4},
    }
    cues = [
        Cue(
            text=texts[step],
            start=start * time_scale,
            end=end * time_scale,
            y=0.5,
            size=0.42,
            **looks[step],
        )
        for step, (start, end) in STEPS.items()
    ]
    return Scene(cues=cues, duration=PASS_S * time_scale)


class DemoSource(FrameSource):
    """The synthetic camera playing the demo scene, re-issued at each pass.

    `on_staff` is called (from the reading thread) when a pass reaches its staff-button moment; the
    daemon presses the simulated button then.
    """

    name = "synthetic"

    def __init__(
        self,
        config: Config,
        issuer: DemoIssuer,
        *,
        on_staff: Callable[[], None] | None = None,
        paced: bool = True,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
    ):
        self._config = config
        self._issuer = issuer
        self._on_staff = on_staff
        self._paced = paced
        self._scale = time_scale
        self._clock = clock
        self._pass: SyntheticSource | None = None
        self._offset = 0
        self._staff_done = False

    def _new_pass(self) -> None:
        cam = self._config.camera
        texts = demo_texts(self._issuer, self._config.device.venue, self._clock())
        self._pass = SyntheticSource(
            demo_scene(texts, self._scale), width=cam.width, height=cam.height, fps=cam.fps, loop=False,
            paced=self._paced,
        )
        self._pass.start()
        self._staff_done = False

    def start(self) -> None:
        self._offset = 0
        self._new_pass()

    def read(self, timeout: float) -> Frame | None:
        if self._pass is None:
            self._new_pass()
        assert self._pass is not None
        frame = self._pass.read(timeout)
        if frame is None and self._pass.exhausted:
            self._offset += int(PASS_S * self._scale * self._config.camera.fps)
            self._new_pass()
            frame = self._pass.read(timeout)
        if frame is None:
            return None
        scene_t = frame.index / self._config.camera.fps
        if not self._staff_done and scene_t >= STAFF_PRESS_AT * self._scale:
            self._staff_done = True
            if self._on_staff is not None:
                self._on_staff()
        return Frame(y=frame.y, t=frame.t, index=frame.index + self._offset)

    def stop(self) -> None:
        if self._pass is not None:
            self._pass.stop()
            self._pass = None


def shut_simulated_door(devices: GateDevices) -> None:
    """A mock door contact floats open (pull-up, nothing wired); the simulated door starts shut."""
    pin = devices.door.pin
    if hasattr(pin, "drive_low"):
        pin.drive_low()


def press_button(button: object, hold_s: float = 0.15) -> None:
    """Press a simulated (mock-pin) button from a short-lived thread, as a person would."""
    pin = getattr(button, "pin", None)
    if pin is None or not hasattr(pin, "drive_low"):
        log.warning("demo: the staff button is not on a simulated pin; not pressing it")
        return

    def press() -> None:
        pin.drive_low()
        time.sleep(hold_s)
        pin.drive_high()

    threading.Thread(target=press, name="demo-staff-press", daemon=True).start()
