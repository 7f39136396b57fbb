"""Anti-passback in a running sentry counts the time waited at the entrance on the monotonic clock:
a wall clock stepped by hours (NTP after a long outage, an RTC battery gone flat) neither forgets who
just went in nor keeps them out for hours."""

import pytest
from codes_helpers import ISSUER, NOW, SUB, trust_list
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_sentry.codes import es1
from edge_sentry.config import from_mapping
from edge_sentry.verifier import Verifier

H = 3600
KEY = Ed25519PrivateKey.generate()
# Long-lived and fresh for six hours: valid on both sides of a 2 h step, so only passback can refuse it.
CONFIG = from_mapping({"es1": {"max_age_s": 6 * H}, "gate": {"passback_s": 60}})


def code() -> str:
    return es1.issue(KEY, issuer=ISSUER, sub=SUB, iat=NOW - 3 * H, lifetime_s=6 * H)


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("step_h", [-2, 2], ids=["backwards", "forwards"])
def test_a_wall_clock_step_lets_no_replay_through(step_h: int) -> None:
    verifier = Verifier.from_config(CONFIG, trust_list(KEY))
    assert verifier.verify(code(), NOW).reason == "ok"
    assert verifier.verify(code(), NOW + step_h * H).reason == "passback"


def test_the_window_ends_after_passback_s_waited_whatever_the_wall_clock_says() -> None:
    mono = Monotonic()
    verifier = Verifier.from_config(CONFIG, trust_list(KEY), passback_clock=mono)
    assert verifier.verify(code(), NOW).reason == "ok"
    mono.now += 59
    assert verifier.verify(code(), NOW - 2 * H).reason == "passback"
    mono.now += 1
    assert verifier.verify(code(), NOW - 2 * H).reason == "ok"


def test_an_assisted_entry_enters_the_window_by_the_same_clock() -> None:
    mono = Monotonic()
    verifier = Verifier.from_config(CONFIG, trust_list(KEY), passback_clock=mono)
    paper = es1.issue(KEY, issuer=ISSUER, sub=SUB, iat=NOW - 3 * H, lifetime_s=6 * H, paper=True)
    decision = verifier.verify(paper, NOW)
    assert decision.reason == "assist"
    verifier.record_assisted(decision, NOW)
    assert verifier.verify(code(), NOW + 2 * H).reason == "passback"
    mono.now += 60
    assert verifier.verify(code(), NOW + 2 * H).reason == "ok"
