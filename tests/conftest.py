"""Fixtures shared by the test modules.

MQTT tests run against a real Mosquitto (tests/broker.py), never a mocked client and never the
system broker on 1883:

- `broker` (module scope): a started `Broker` on free loopback ports, its own CA, password file
  and ACL; one per test module, so modules never share retained messages or sessions. Attributes:
  `host`, `port`, `tls_port`, `ca`, `client_certs[user] -> (cert, key)`, `passwords[user]`,
  `site`, `devices` (device users, `devices[0]` is the default), `operator`; methods `stop()` and
  `start()` (a restart on the same ports: persistence keeps retained messages and sessions),
  `kill()`, `log_tail()`, `config(state_dir, device=, tls=, **mqtt)`, `subscriber(topics, **opts)`.
  A test that stops it must start it again (try/finally), for the tests after it in the module.
- `broker_config(device=None, *, tls=False, **mqtt)`: an edge_sentry Config for a sentry logged in
  as `device` (plain listener with its password, or TLS with its client certificate), with its
  state folder and outbox under the test's tmp_path and short reconnect backoffs.
- `subscriber(topics="#", **opts)`: an operator-side `Subscriber` recording what arrives (see
  tests/broker.py for persistent sessions); closed at the end of the test.
- `open_store(folder_or_config, identity=TEST_IDENTITY)`: the device's `StateStore` in a folder
  (or the one a Config names, for its identity). Opening a folder again closes the store open on
  it first, as a restart would; every store is closed at the end of the test.

- `pg_url` (session scope): a fresh PostgreSQL database for the whole run, random name, dropped at
  the end (tests/pg.py: EDGE_SENTRY_TEST_PG, else the local server, else a private cluster).
- `db_url` (parametrised `sqlite`, `postgresql`): the URL of an empty back-end database for one
  test: a SQLite file under tmp_path, or the run's PostgreSQL database emptied first.

If Mosquitto is missing the MQTT tests fail (not skip) with the way to install it: CI installs it.
PostgreSQL likewise.

The embedded default of `display.listen` (127.0.0.1:8080) is turned off for the whole run, in this
process and the daemons it starts as processes: the suite starts many sentries, and a fixed port
would be taken by the first. A test that wants pages names its own listener (tests/pages_helpers.py:
`127.0.0.1:0`, a free port).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pg
import pytest
from broker import MISSING_MOSQUITTO, Broker, Subscriber, find_mosquitto

from edge_sentry.config import DISPLAY_LISTEN_ENV, Config
from edge_sentry.state import Identity, StateStore

os.environ[DISPLAY_LISTEN_ENV] = ""

#: The identity `open_store` gives a bare folder (the device of the tests' local configs).
TEST_IDENTITY = Identity("s1", "sentry-1")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    executable = find_mosquitto()
    if executable is None:
        pytest.fail(MISSING_MOSQUITTO, pytrace=False)
    instance = Broker(tmp_path_factory.mktemp("broker"), executable=executable)
    try:
        instance.start()
        yield instance
    finally:
        instance.close()


@pytest.fixture
def broker_config(broker: Broker, tmp_path: Any) -> Callable[..., Config]:
    made: list[str] = []

    def make(device: str | None = None, *, tls: bool = False, **mqtt: Any) -> Config:
        # Each call gets its own folder, so two sentries in one test do not share an outbox.
        folder = tmp_path / f"sentry-{len(made)}"
        made.append(str(folder))
        return broker.config(folder, device=device, tls=tls, **mqtt)

    return make


@pytest.fixture
def subscriber(broker: Broker) -> Iterator[Callable[..., Subscriber]]:
    opened: list[Subscriber] = []

    def make(topics: Any = "#", **options: Any) -> Subscriber:
        sub = broker.subscriber(topics, **options)
        opened.append(sub)
        return sub

    yield make
    for sub in opened:
        sub.close()


@pytest.fixture
def open_store() -> Iterator[Callable[..., StateStore]]:
    opened: dict[Path, StateStore] = {}

    def make(where: Path | str | Config, identity: Identity = TEST_IDENTITY) -> StateStore:
        if isinstance(where, Config):
            folder, identity = Path(where.device.state_dir), Identity(where.device.site, where.device.id)
        else:
            folder = Path(where)
        previous = opened.pop(folder, None)
        if previous is not None:
            previous.close()
        store = opened[folder] = StateStore(folder, identity)
        return store

    yield make
    for store in opened.values():
        store.close()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("psycopg is not installed: `scripts/setup --dev` installs it", pytrace=False)
    try:
        with pg.server() as server, pg.fresh_database(server) as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "fleet.sqlite3")
    url: str = request.getfixturevalue("pg_url")
    pg.reset(url)
    return url
