"""The exception tree: every exception class of the package lives in `edge_sentry.errors`, derives
from EdgeSentryError, and is caught by the builtin a caller reaches for; a usage error exits 2."""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil

import pytest

import edge_sentry
from edge_sentry import errors
from edge_sentry.cli import main
from edge_sentry.cli import verify as verify_cli
from edge_sentry.config import Config


def _package_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(edge_sentry.__path__, "edge_sentry."):
        module = importlib.import_module(info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__.startswith("edge_sentry"):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


def test_every_exception_of_the_package_is_defined_in_errors() -> None:
    strays = {name for name, cls in _package_exceptions().items() if cls.__module__ != "edge_sentry.errors"}
    assert strays == set()


def test_every_error_derives_from_the_base_and_says_what_it_is() -> None:
    for cls in _package_exceptions().values():
        assert issubclass(cls, errors.EdgeSentryError), cls
        assert cls.__doc__, cls


@pytest.mark.parametrize(
    ("cls", "builtin"),
    [
        (errors.ConfigError, ValueError),
        (errors.UsageError, ValueError),
        (errors.ArgError, errors.UsageError),
        (errors.CodeError, ValueError),
        (errors.UnsupportedAlgorithmError, errors.CodeError),
        (errors.ContentTypeError, errors.CodeError),
        (errors.TrustListError, ValueError),
        (errors.SubjectError, ValueError),
        (errors.AuthorityKeyError, errors.KeyFileError),
        (errors.TopicError, ValueError),
        (errors.PayloadError, ValueError),
        (errors.ConfigRejected, ValueError),
        (errors.TrustRefused, ValueError),
        (errors.CommandError, RuntimeError),
        (errors.CommandRejected, ValueError),
        (errors.FleetError, ConnectionError),
    ],
)
def test_errors_are_caught_by_the_builtin_a_caller_reaches_for(
    cls: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(cls, builtin)


@pytest.mark.parametrize("cls", [errors.KeyFileError, errors.StorageError])
def test_file_errors_the_operator_must_fix_are_not_os_errors(cls: type[Exception]) -> None:
    # An OSError is a disk that may recover (retried, or exit 1); these need a person.
    assert not issubclass(cls, OSError)


def test_a_usage_error_from_any_command_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(args: argparse.Namespace, config: Config) -> int:
        raise errors.UsageError("--now: not a time")

    monkeypatch.setattr(verify_cli, "handle", refuse)
    assert main(["verify", "x"]) == 2
    assert capsys.readouterr().err.strip() == "edge-sentry: --now: not a time"
