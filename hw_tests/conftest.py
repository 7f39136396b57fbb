"""Hardware tests for a technician at the entrance: the self-test parts, one test each, plus checks
that need a person (press the staff button, open the door).

    .venv/bin/python -m pytest hw_tests --sentry-config /etc/edge-sentry/sentry.toml [--interactive]

The pins and camera are the ones the config names: on a Pi with `gpio.pin_factory = "lgpio"` they are
the real ones, so stop the service first (`systemctl stop edge-sentry`), which holds them. With the
mock pin factory the person is simulated too, so the suite runs on any machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_sentry import selftest
from edge_sentry.cli.selftest import open_rig
from edge_sentry.config import Config, load

DEFAULT_CONFIG = "/etc/edge-sentry/sentry.toml"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--sentry-config",
        default=os.environ.get("EDGE_SENTRY_CONFIG"),
        help=f"the sentry's TOML config (default: $EDGE_SENTRY_CONFIG, else {DEFAULT_CONFIG} if present)",
    )
    parser.addoption(
        "--interactive", action="store_true", help="also run the checks that need a person at the gate"
    )
    parser.addoption(
        "--person-timeout", type=float, default=20.0, help="seconds to wait for each person's action"
    )


@pytest.fixture(scope="session")
def config(request: pytest.FixtureRequest) -> Config:
    path = request.config.getoption("--sentry-config")
    if path is None and Path(DEFAULT_CONFIG).exists():
        path = DEFAULT_CONFIG
    return load(path)


@pytest.fixture(scope="session")
def rig(config: Config) -> Iterator[selftest.Rig]:
    with open_rig(config, list(selftest.PARTS)) as opened:
        yield opened


@pytest.fixture
def interactive(request: pytest.FixtureRequest) -> float:
    if not request.config.getoption("--interactive"):
        pytest.skip("needs a person at the gate: run with --interactive")
    return request.config.getoption("--person-timeout")
