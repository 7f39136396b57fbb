"""How many of a module's mutants the tests killed, counted twice: all of them, and all but those
that only change a message's text.

Why a second count: a mutant that turns `raise CodeError("ES1: bad kid")` into
`raise CodeError("XXES1: bad kidXX")` changes what a person reads in a log, not what the sentry
decides, and a test written to kill it would pin wording, not behaviour. The rule for such a
*message-text mutant* is kept narrow so that it can never hide a change of behaviour:

- the mutated function differs from its original only in string literals, each replaced by
  another string (a literal replaced by None, or an argument dropped, is a real mutant: it can
  make the call fail), and
- every such literal lies inside a message argument: the format string of a call on a
  `logging.Logger` (or the `logging` module), or the message of an exception constructor, which
  is the single argument of an exception class that keeps a builtin constructor, or the argument
  bound to the `message` parameter of one with its own constructor (other parameters, such as a
  `reason` that an event carries, are data, not text).

Names are resolved in the imported, unmutated module, so `CodeError` or `log` means what the
module means by it. The mutants are read from the file mutmut writes, where each mutated
function sits beside an unmutated copy (`<name>__mutmut_orig`, `<name>__mutmut_<n>`).
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# mutmut's words for a mutant the tests noticed: a failing test, a run that had to be stopped,
# or a crashed test process.
DETECTED = frozenset({"killed", "timeout", "segfault", "caught by type check"})
LOG_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "fatal"})
ORIG_SUFFIX = "__mutmut_orig"


@dataclass
class Score:
    """The tally of one module's mutants, named as mutmut names them (`edge_sentry.gate.x_f__mutmut_3`)."""

    module: str
    status: dict[str, str] = field(default_factory=dict)
    messages: set[str] = field(default_factory=set)

    def count(self, status: str) -> int:
        return sum(1 for s in self.status.values() if s == status)

    @property
    def total(self) -> int:
        return len(self.status)

    @property
    def detected(self) -> int:
        return sum(1 for s in self.status.values() if s in DETECTED)

    @property
    def percent(self) -> float:
        return _percent(self.detected, self.total)

    @property
    def percent_without_messages(self) -> float:
        rest = [s for name, s in self.status.items() if name not in self.messages]
        return _percent(sum(1 for s in rest if s in DETECTED), len(rest))

    def undetected(self, *, with_messages: bool = False) -> list[str]:
        """Mutants no test noticed, message-text ones left out unless asked for."""
        return sorted(
            name
            for name, s in self.status.items()
            if s not in DETECTED and (with_messages or name not in self.messages)
        )


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 100.0


def dotted(path: str) -> str:
    """`edge_sentry/codes/es1.py` -> `edge_sentry.codes.es1`."""
    return path.removesuffix(".py").replace("/", ".")


def score(path: str, status_by_mutant: dict[str, str], root: Path) -> Score:
    """Tally the mutants of the module at `path` (relative to `root`) from mutmut's statuses."""
    module = dotted(path)
    mine = {name: s for name, s in status_by_mutant.items() if name.rpartition(".")[0] == module}
    mutated = root / "mutants" / path
    return Score(path, mine, message_mutants(mutated, module, mine))


def message_mutants(mutated: Path, module: str, names: Iterable[str]) -> set[str]:
    """The mutants among `names` that only change a message's text (see the module docstring)."""
    functions = {
        node.name: node
        for node in ast.walk(ast.parse(mutated.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    namespace = vars(importlib.import_module(module))
    found: set[str] = set()
    for name in names:
        local = name.rpartition(".")[2]
        original = functions.get(local.rpartition("__mutmut_")[0] + ORIG_SUFFIX)
        mutant = functions.get(local)
        if original is not None and mutant is not None and _only_message_text(original, mutant, namespace):
            found.add(name)
    return found


def _only_message_text(original: ast.AST, mutant: ast.AST, namespace: dict[str, object]) -> bool:
    changes = list(_differences(original, mutant, (), skip={"name"}))
    return bool(changes) and all(
        _is_str(old) and _is_str(new) and _in_message((*chain, old), namespace) for chain, old, new in changes
    )


def _is_str(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


Change = tuple[tuple[ast.AST, ...], ast.AST, ast.AST]


def _differences(
    a: ast.AST, b: ast.AST, chain: tuple[ast.AST, ...], skip: set[str] | None = None
) -> Iterator[Change]:
    """The smallest differing node pairs of two trees, each with the chain of `a`'s ancestors."""
    if type(a) is not type(b):
        yield chain, a, b
        return
    if isinstance(a, ast.Constant) and isinstance(b, ast.Constant):
        if type(a.value) is not type(b.value) or a.value != b.value:
            yield chain, a, b
        return
    inner = (*chain, a)
    for name in a._fields:
        if skip and name in skip:
            continue
        left, right = getattr(a, name, None), getattr(b, name, None)
        if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
            for x, y in zip(left, right, strict=True):
                if isinstance(x, ast.AST) and isinstance(y, ast.AST):
                    yield from _differences(x, y, inner)
                elif x != y:
                    yield chain, a, b
        elif isinstance(left, ast.AST) and isinstance(right, ast.AST):
            yield from _differences(left, right, inner)
        elif left != right or isinstance(left, list):  # lists of another length, or a node against None
            yield chain, a, b


def _in_message(chain: tuple[ast.AST, ...], namespace: dict[str, object]) -> bool:
    """Whether the last node of `chain` lies inside a message argument of one of its calls."""
    for depth, node in enumerate(chain[:-1]):
        if isinstance(node, ast.Call):
            below = chain[depth + 1 :]
            if any(arg is inner for arg in _message_args(node, namespace) for inner in below):
                return True
    return False


def _message_args(call: ast.Call, namespace: dict[str, object]) -> list[ast.expr]:
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in LOG_METHODS | {"log"}:
        owner = _resolve(func.value, namespace)
        if isinstance(owner, logging.Logger) or owner is logging:
            position = 1 if func.attr == "log" else 0
            return _bound(call, position, "msg")
        return []
    target = _resolve(func, namespace)
    if not (isinstance(target, type) and issubclass(target, BaseException)):
        return []
    constructor = next(cls for cls in target.__mro__ if "__init__" in vars(cls))
    if constructor.__module__ == "builtins":
        return list(call.args) if len(call.args) == 1 and not call.keywords else []
    try:
        parameters = list(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return []
    if "message" not in parameters:
        return []
    return _bound(call, parameters.index("message"), "message")


def _bound(call: ast.Call, position: int, keyword: str) -> list[ast.expr]:
    """The argument a call passes at `position`, or as `keyword`."""
    if len(call.args) > position and not any(isinstance(a, ast.Starred) for a in call.args[: position + 1]):
        return [call.args[position]]
    return [k.value for k in call.keywords if k.arg == keyword]


def _resolve(node: ast.expr, namespace: dict[str, object]) -> object:
    """What a name or dotted attribute means in the module, or None when it cannot be told."""
    if isinstance(node, ast.Name):
        if node.id in namespace:
            return namespace[node.id]
        return getattr(builtins, node.id, None)
    if isinstance(node, ast.Attribute):
        owner = _resolve(node.value, namespace)
        return None if owner is None else getattr(owner, node.attr, None)
    return None
