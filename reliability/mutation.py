"""Mutation testing of the security-critical core: do the tests notice when its code is changed?

mutmut (configured under `[tool.mutmut]` in pyproject.toml) copies the package to `mutants/`,
makes many small changes ("mutants") to each module named, and runs, for each, the tests that
reach the changed function; a mutant that no test fails on marks code whose behaviour nothing
checks. This module runs it module by module and prints, for each, the mutants, how many were
killed, survived or timed out, and two scores: all mutants, and all but those that only change
a message's text (`mutant_score` says which those are and why they are set apart).

Usage: python -m reliability.mutation [-j N] [--keep | --recheck] [--survivors] [MODULE.py ...]
(scripts/mutation sets up the tools first, then runs this). Long: minutes per module.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reliability.mutant_score import Score, dotted, score  # noqa: E402
from reliability.report import Part, Report  # noqa: E402

TARGET_PERCENT = 90.0
HEADER = (
    f"{'module':<28} {'mutants':>7} {'killed':>6} {'survived':>8} {'timeout':>7} {'score':>6}"
    f"  {'messages':>8} {'score w/o msg':>13}"
)


def mutmut_config(root: Path = ROOT) -> dict[str, Any]:
    with (root / "pyproject.toml").open("rb") as f:
        config: dict[str, Any] = tomllib.load(f)["tool"]["mutmut"]
    return config


def configured_modules(root: Path = ROOT) -> list[str]:
    """The modules mutmut mutates (`only_mutate`), in their order: the default set to run."""
    return list(mutmut_config(root)["only_mutate"])


def unselected_tests(path: str, root: Path = ROOT) -> list[str]:
    """Test files named after the module (`tests/test_<name>*.py`) that mutmut would not run.

    The selection is a fixed list, so that no slow broker test is run for a mutant; a new test
    file must be added to it to count.
    """
    selected = set(mutmut_config(root)["pytest_add_cli_args_test_selection"])
    named = sorted(root.glob(f"tests/test_{Path(path).stem}*.py"))
    return [str(p.relative_to(root)) for p in named if str(p.relative_to(root)) not in selected]


def run_module(path: str, children: int, log: Path, root: Path = ROOT, names: Sequence[str] = ()) -> None:
    """Run mutmut on the mutants of one module (`names`, or all); its (long, spinner-drawn) output
    goes to `log`."""
    chosen = list(names) or [f"{dotted(path)}.*"]
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(children), *chosen],
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"mutmut failed on {path} (exit {done.returncode}): see {log}")


def statuses(root: Path = ROOT) -> dict[str, str]:
    """Every mutant's status as `mutmut results --all` lists it (`name: status`)."""
    listing = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: dict[str, str] = {}
    for line in listing.splitlines():
        name, sep, status = line.strip().partition(": ")
        if sep and "__mutmut_" in name:
            found[name] = status
    return found


def measure(
    modules: Sequence[str],
    *,
    children: int = 2,
    keep: bool = False,
    recheck: bool = False,
    say: Callable[[str], None] = print,
    root: Path = ROOT,
) -> list[Score]:
    """Run mutmut on each module in turn and tally it; starts from a clean `mutants/` unless `keep`.

    `recheck` keeps the last run and tests again only the mutants it did not kill: the quick check
    of new tests (the other verdicts stand only as long as no test or code they rest on changed).
    """
    unknown = [m for m in modules if m not in configured_modules(root)]
    if unknown:
        raise SystemExit(
            f"not set up for mutation: {', '.join(unknown)} (add to only_mutate, and its tests to "
            "pytest_add_cli_args_test_selection, under [tool.mutmut] in pyproject.toml)"
        )
    if not (keep or recheck):
        # a fresh copy: mutmut's caches of which test reaches which function go stale as tests change
        shutil.rmtree(root / "mutants", ignore_errors=True)
    (root / "mutants").mkdir(exist_ok=True)
    scores: list[Score] = []
    for path in modules:
        log = root / "mutants" / f"run-{dotted(path)}.log"
        for name in unselected_tests(path, root):
            say(f"warning: {name} is not in [tool.mutmut] pytest_add_cli_args_test_selection: not run")
        say(f"mutating {path} ({children} at a time; progress in {log.relative_to(root)})")
        started = time.monotonic()
        if recheck and not (root / "mutants" / path).exists():
            raise SystemExit(f"no earlier run of {path} to recheck")
        names = score(path, statuses(root), root).undetected(with_messages=True) if recheck else []
        if recheck and not names:
            say(f"{path}: nothing left to recheck")
        else:
            run_module(path, children, log, root, names)
        result = score(path, statuses(root), root)
        say(f"{path}: {result.total} mutants in {time.monotonic() - started:.0f} s")
        scores.append(result)
    return scores


def table_row(s: Score) -> str:
    return (
        f"{s.module:<28} {s.total:>7} {s.detected - s.count('timeout'):>6} {s.count('survived'):>8}"
        f" {s.count('timeout'):>7} {s.percent:>5.1f}%"
        f"  {len(s.messages):>8} {s.percent_without_messages:>12.1f}%"
    )


def run(report: Report, long: bool) -> None:
    for s in measure(configured_modules(), say=report.say):
        report.figure(f"{s.module} mutants", s.total)
        report.figure(f"{s.module} mutants killed, message-text ones included", round(s.percent, 1), "%")
        report.target(
            f"{s.module} mutants killed",
            round(s.percent_without_messages, 1),
            TARGET_PERCENT,
            "%",
            at_most=False,
        )


PART = Part(
    "mutation",
    60,
    "mutmut on the verifier, the code formats and the gate: share of mutants the tests kill",
    run,
    long_only=True,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="module paths (default: every module under only_mutate)")
    parser.add_argument("-j", "--children", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--keep", action="store_true", help="reuse mutants/ from the last run")
    parser.add_argument(
        "--recheck", action="store_true", help="test again only the mutants the last run did not kill"
    )
    parser.add_argument("--survivors", action="store_true", help="list the surviving mutants of each module")
    args = parser.parse_args(argv)
    started = time.monotonic()
    modules = args.modules or configured_modules()
    scores = measure(modules, children=args.children, keep=args.keep, recheck=args.recheck)
    print()
    print(HEADER)
    for s in scores:
        print(table_row(s))
    print(
        f"\n{time.monotonic() - started:.0f} s. 'score' counts killed and timed-out mutants; 'score w/o msg'"
    )
    print("leaves out the mutants that only change a log or exception message's text.")
    if args.survivors:
        for s in scores:
            names = s.undetected()
            print(
                f"\n{s.module}: {len(names)} not killed (message-text ones left out);"
                " see one: mutmut show NAME"
            )
            for name in names:
                print(f"  {name}: {s.status[name]}")
    return 0 if all(s.percent_without_messages >= TARGET_PERCENT for s in scores) else 1


if __name__ == "__main__":
    sys.exit(main())
