"""The mutation score's rule for a message-text mutant: only a string changed, and only in a message."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reliability.mutant_score import Score, message_mutants  # noqa: E402

MODULE = """
import logging

log = logging.getLogger(__name__)


class Refused(Exception):
    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def check(x):
    if x < 0:
        log.warning("negative %s, %s", x, "kept")
        raise ValueError("x must not be negative")
    if x > 9:
        raise Refused("too-big", message="x is over 9")
    return {"value": x}
"""

# Each mutant of `check`, as mutmut writes it beside the unmutated copy; True: message text only.
MUTANTS = {
    "log format": ('"negative %s, %s", x', '"XXnegative %s, %sXX", x', True),
    "logged value": ('x, "kept"', 'x, "XXkeptXX"', False),
    "log message dropped": ('"negative %s, %s", x, "kept"', 'None, x, "kept"', False),
    "exception text": ('"x must not be negative"', '"X MUST NOT BE NEGATIVE"', True),
    "exception class": ("ValueError(", "TypeError("),
    "message parameter": ('message="x is over 9"', 'message="XXx is over 9XX"', True),
    "reason parameter": ('"too-big"', '"XXtoo-bigXX"', False),
    "returned data": ('{"value": x}', '{"XXvalueXX": x}', False),
    "text and logic": ('0:\n        log.warning("negative', '1:\n        log.warning("XXnegative', False),
}


@pytest.fixture
def mutated(tmp_path, monkeypatch):
    """A module and its 'mutated' file: the original function and one copy per mutant."""
    (tmp_path / "sample_mutated.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("sample_mutated", None)
    body = MODULE.split("def check(x):", 1)[1]
    functions = [f"def x_check__mutmut_orig(x):{body}"]
    for i, (old, new, *_) in enumerate(MUTANTS.values(), start=1):
        assert old in body
        functions.append(f"def x_check__mutmut_{i}(x):{body.replace(old, new)}")
    path = tmp_path / "mutants.py"
    path.write_text(textwrap.dedent("\n\n".join(functions)))
    return path


def test_only_a_changed_message_text_is_set_apart(mutated):
    names = {f"sample_mutated.x_check__mutmut_{i}": label for i, label in enumerate(MUTANTS, start=1)}
    found = {names[n] for n in message_mutants(mutated, "sample_mutated", names)}

    assert found == {label for label, change in MUTANTS.items() if change[2:] == (True,)}


def test_the_scores_count_timeouts_as_killed_and_leave_messages_out_of_the_second():
    s = Score(
        "m.py",
        {"m.a": "killed", "m.b": "timeout", "m.c": "survived", "m.d": "survived", "m.e": "no tests"},
        messages={"m.c"},
    )
    assert (s.total, s.detected) == (5, 2)
    assert s.percent == pytest.approx(40.0)
    assert s.percent_without_messages == pytest.approx(50.0)
    assert s.undetected() == ["m.d", "m.e"]
    assert s.undetected(with_messages=True) == ["m.c", "m.d", "m.e"]
