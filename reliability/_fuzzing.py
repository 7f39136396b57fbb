"""What the fuzz part counts, and the loop that counts it, apart from the targets themselves.

An input either is accepted (its sample's very meaning: `unchanged`; anything else: `accepted`, which
only an input signed by a key of this run may be), refused with the target's documented error class, a
`forgery` (a changed input that nobody here signed, accepted with another meaning than its sample's),
or an `escape`: any other exception, or an exception a safety net had to catch. Escapes and forgeries
must stay at zero; each one is kept with its input so that it can be replayed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reliability._mutate import Mutator

ACCEPTED = "accepted"  # accepted, with a meaning of its own: signed here, or never signed at all
UNCHANGED = "unchanged"  # accepted with exactly its sample's meaning
REFUSED = "refused"
FORGED = "forged"
ESCAPED = "escaped"  # a safety net caught an exception (the target says which)

KEPT_ESCAPES = 5  # per target: enough to reproduce, not a flood


@dataclass(frozen=True)
class Input:
    """One input; `genuine`: signed by a key of this run (accepting any meaning is then right),
    `origin`: the sample's meaning, which the target compares with what it accepted."""

    data: Any
    genuine: bool = False
    origin: Any = None
    how: str = ""  # the mutation family, for the escape report


@dataclass
class Target:
    """One fuzz target: `draw` makes an input, `attempt` returns one of the outcomes above and may
    raise the `documented` error classes (counted as refused); anything else it raises escapes."""

    name: str
    draw: Callable[[Mutator], Input]
    attempt: Callable[[Input], str]
    documented: tuple[type[BaseException], ...]
    short: int  # inputs in the short form


@dataclass
class Tally:
    target: str
    inputs: int = 0
    accepted: int = 0
    unchanged: int = 0
    refused: int = 0
    escapes: int = 0
    forged: int = 0
    seconds: float = 0.0
    kept: list[str] = field(default_factory=list)  # escapes and forgeries, described

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds > 0 else 0.0


def shown(data: Any, limit: int = 160) -> str:
    """An input as a report prints it: hex for bytes, repr for texts, cut at `limit` characters; a
    tuple (form, ..., data) shows its parts so."""
    if isinstance(data, tuple):
        return ", ".join(shown(part, limit) for part in data)
    if isinstance(data, bytes | bytearray):
        text = bytes(data).hex()
        size = f"{len(data)} bytes"
    else:
        try:
            text = repr(data)
        except ValueError:  # an integer past the int-to-text limit somewhere inside
            text = f"<{type(data).__name__} holding an integer too long to print>"
        size = f"{len(text)} chars"
    return (text[:limit] + "...") if len(text) > limit else text + f" ({size})"


def run_target(target: Target, seed: int, count: int, say: Callable[[str], None] | None = None) -> Tally:
    """Feed `count` inputs to `target`, drawn from a generator seeded with `seed` and the target's name
    (one target's inputs do not depend on which others ran)."""
    mutate = Mutator(random.Random(f"{seed}/{target.name}"))
    tally = Tally(target.name)
    step = max(count // 10, 1)
    started = time.perf_counter()
    for i in range(count):
        case = target.draw(mutate)
        try:
            outcome = target.attempt(case)
            problem = "escaped a safety net"
        except target.documented:
            outcome = REFUSED
        except Exception as exc:
            outcome, problem = ESCAPED, f"{type(exc).__name__}: {str(exc)[:160]}"
        tally.inputs += 1
        if outcome == UNCHANGED:
            tally.accepted += 1
            tally.unchanged += 1
        elif outcome == ACCEPTED:
            tally.accepted += 1
        elif outcome == REFUSED:
            tally.refused += 1
        elif outcome == FORGED:
            tally.forged += 1
            problem = "FORGED: accepted with a meaning its sample does not have"
        else:
            tally.escapes += 1
        if outcome in (FORGED, ESCAPED) and len(tally.kept) < KEPT_ESCAPES:
            where = f"seed {seed} target {target.name} input #{i} ({case.how})"
            tally.kept.append(f"{where}: {problem}; input {shown(case.data)}")
        if say is not None and count > 60_000 and (i + 1) % step == 0:  # the long form only
            say(f"{target.name}: {i + 1:,} of {count:,}")
    tally.seconds = time.perf_counter() - started
    return tally
