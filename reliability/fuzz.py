"""Fuzz: mutated and random input at every door a stranger can knock on, in process, for a long time.

Each target (Base45, COSE_Sign1, ES1 and DCC codes through the verifier, trust lists, config, signed
control messages, remote command arguments) takes valid samples, from the sentry's own issuers and
from published test vectors, and changes them: bits and bytes, CBOR structure, Base45 characters, and
hostile content signed by keys of the run; some input is plain random. The hypothesis tests
(tests/test_dcc_fuzz.py, tests/test_base45.py...) cover each layer briefly on every test run; this is
the long-running complement, with no dependency beyond the standard library's `random`.

Checks: no escape (an exception other than the target's documented error class, or one its safety net
had to catch) and no forgery (an input nobody here signed, accepted with another meaning than its
sample's), per target. The seed is printed first; RELIABILITY_SEED replays a run, and each escape or
forgery is printed with its target, input number and input (hex, cut short).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from reliability import _fuzz_codes, _fuzz_link
from reliability._fuzzing import Target, run_target
from reliability.report import Part, Report

LONG_INPUTS = 100_000  # per target


def _seed() -> int:
    given = os.environ.get("RELIABILITY_SEED", "").strip()
    return int(given) if given else random.SystemRandom().randrange(2**32)


def _targets(seed: int, samples: _fuzz_codes.CodeSamples) -> list[Callable[[], Target]]:
    made: list[Callable[[], Target]] = [
        lambda: _fuzz_codes.base45_target(samples),
        lambda: _fuzz_codes.cose_target(samples),
        lambda: _fuzz_codes.es1_target(samples),
        lambda: _fuzz_codes.dcc_target(samples),
    ]
    return [*made, *_fuzz_link.all_targets(seed)]


@contextmanager
def _quiet_package_log() -> Iterator[None]:
    """Hostile input makes the sentry log a refusal per input: kept off the terminal for the run."""
    package = logging.getLogger("edge_sentry")
    null = logging.NullHandler()
    propagate = package.propagate
    package.addHandler(null)
    package.propagate = False
    try:
        yield
    finally:
        package.removeHandler(null)
        package.propagate = propagate


def run(report: Report, long: bool) -> None:
    seed = _seed()
    report.figure("seed (RELIABILITY_SEED replays it)", seed)
    with _quiet_package_log():
        samples = _fuzz_codes.CodeSamples(seed)
        try:
            _run(report, long, seed, samples)
        finally:
            samples.close()
            _fuzz_link.remove_folders()


def _run(report: Report, long: bool, seed: int, samples: _fuzz_codes.CodeSamples) -> None:
    report.check("every valid sample verifies with its own meaning", samples.unchanged())
    total = 0
    for make in _targets(seed, samples):
        target = make()
        tally = run_target(target, seed, LONG_INPUTS if long else target.short, report.say)
        total += tally.inputs
        report.figure(
            f"{tally.target:8}",
            f"inputs {tally.inputs:>7,}  accepted {tally.accepted:>6,} (unchanged {tally.unchanged:>5,})  "
            f"refused {tally.refused:>7,}  escapes {tally.escapes}  forged {tally.forged}  "
            f"{tally.rate:>6,.0f} inputs/s",
        )
        for line in tally.kept:
            report.say(line)
        report.check(f"{tally.target}: escapes = 0", tally.escapes == 0, tally.escapes)
        report.check(f"{tally.target}: forged accepted = 0", tally.forged == 0, tally.forged)
    report.figure("inputs in all", total)


PART = Part("fuzz", 50, "mutated and random input at every parser; no escape, no forgery", run)
