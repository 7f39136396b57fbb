"""What a part of the reliability suite found: figures to print, checks that must hold.

Two kinds of outcome, kept apart on purpose: a *check* is correctness (events lost = 0, nothing forged
accepted) and fails the run anywhere, tests included; a *target* is a figure against a bound (p99
frame-to-relay <= 2 ms), printed with its verdict and failing only the standalone command, because a
time measured on a loaded CI machine says more about the machine than about the sentry.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO


@dataclass(frozen=True)
class Part:
    """One part of the suite: its name on the command line, its place in the run, and its entry point.

    `run(report, long)` does the work; `long` is the `--long` flag (the figures the README quotes).
    `long_only` parts (mutation testing) are skipped in the short form, with that said.
    """

    name: str
    order: int
    summary: str
    run: Callable[[Report, bool], None]
    long_only: bool = False


@dataclass(frozen=True)
class Outcome:
    part: str
    name: str
    value: str
    ok: bool | None  # None: a figure with no bound
    kind: str  # "figure", "check" or "target"


@dataclass
class Report:
    """Collects outcomes and prints each as it comes, so a long run shows its progress."""

    out: TextIO | None = field(default_factory=lambda: sys.stdout)
    part: str = ""
    outcomes: list[Outcome] = field(default_factory=list)

    def say(self, text: str) -> None:
        """Progress for the person watching a long run (not an outcome)."""
        if self.out is not None:
            print(f"  .. {text}", file=self.out, flush=True)

    def figure(self, name: str, value: float | int | str, unit: str = "") -> None:
        self._add(Outcome(self.part, name, _fmt(value, unit), None, "figure"))

    def check(self, name: str, ok: bool, value: float | int | str = "", unit: str = "") -> None:
        """A correctness condition: fails the run wherever it runs."""
        self._add(Outcome(self.part, name, _fmt(value, unit), bool(ok), "check"))

    def target(self, name: str, value: float, bound: float, unit: str = "", *, at_most: bool = True) -> None:
        """A measured figure against its bound (`at_most`: value <= bound, else value >= bound)."""
        ok = value <= bound if at_most else value >= bound
        sign = "<=" if at_most else ">="
        text = f"{_fmt(value, unit)} (target {sign} {_fmt(bound, unit)})"
        self._add(Outcome(self.part, name, text, ok, "target"))

    def failed(self, kinds: tuple[str, ...] = ("check", "target")) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind in kinds and o.ok is False]

    def _add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if self.out is not None:
            mark = {None: "    ", True: "ok  ", False: "FAIL"}[outcome.ok]
            print(f"  {mark} {outcome.name}: {outcome.value}", file=self.out, flush=True)


def _fmt(value: float | int | str, unit: str) -> str:
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    else:
        text = str(value)
    return f"{text} {unit}".strip()
