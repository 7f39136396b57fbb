"""Each self-test part as its own test: a technician's pass/fail list, with the detail on failure."""

from __future__ import annotations

import pytest

from edge_sentry import selftest


@pytest.mark.parametrize("part", list(selftest.PARTS))
def test_part(rig: selftest.Rig, part: str) -> None:
    (outcome,) = selftest.run_all(rig, [part])
    if outcome["status"] == selftest.SKIP:
        pytest.skip(outcome["detail"])
    assert outcome["status"] == selftest.PASS, outcome["detail"]
