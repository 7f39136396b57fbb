"""Run the reliability suite's parts and print their figures; exit 1 if a check or a target failed.

Usage: python -m reliability.run [--long] [PART ...]
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reliability.report import Part, Report  # noqa: E402


def parts() -> list[Part]:
    """Every module of this package that declares a `PART`, in their order."""
    found: list[Part] = []
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name in {"run", "report"} or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"reliability.{info.name}")
        part = getattr(module, "PART", None)
        if isinstance(part, Part):
            found.append(part)
    return sorted(found, key=lambda p: p.order)


def main(argv: list[str] | None = None) -> int:
    available = parts()
    names = [p.name for p in available]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="the long form: the figures the README quotes")
    parser.add_argument("part", nargs="*", help=f"parts to run (default: all): {', '.join(names)}")
    args = parser.parse_args(argv)
    unknown = [n for n in args.part if n not in names]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(names)}")
    chosen = [p for p in available if not args.part or p.name in args.part]
    report = Report()
    form = "long" if args.long else "short"
    for part in chosen:
        print(f"== {part.name} ({form} form): {part.summary}", flush=True)
        if part.long_only and not args.long and part.name not in args.part:
            print("  skipped: long form only (--long, or name it)", flush=True)
            continue
        report.part = part.name
        started = time.monotonic()
        part.run(report, args.long)
        print(f"  ({time.monotonic() - started:.0f} s)", flush=True)
    failed = report.failed()
    print()
    if failed:
        print(f"{len(failed)} failed: " + "; ".join(f"{o.part}/{o.name}" for o in failed))
        return 1
    print("all checks and targets held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
