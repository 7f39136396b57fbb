"""The reliability suite's short form, run as part of the tests: every correctness check must hold.

Targets (times against bounds) are printed by `scripts/reliability` and not asserted here: a time measured
on a loaded test machine says more about the machine than about the sentry.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reliability.report import Report  # noqa: E402
from reliability.run import parts  # noqa: E402

SHORT_PARTS = [p for p in parts() if not p.long_only]


@pytest.mark.parametrize("part", SHORT_PARTS, ids=[p.name for p in SHORT_PARTS])
def test_short_form_holds_every_check(part) -> None:  # type: ignore[no-untyped-def]
    report = Report(out=None, part=part.name)
    part.run(report, False)
    checks = [o for o in report.outcomes if o.kind == "check"]
    assert checks, f"{part.name} checked nothing"
    assert report.failed(("check",)) == []
