"""A PostgreSQL server for the tests, and a fresh database on it for each test run.

Where the server comes from, first that works:

1. `EDGE_SENTRY_TEST_PG`: the URL of a server on which the tests may create and drop a database;
2. a server already running on this machine (127.0.0.1:5432, user `postgres`, trust or peer
   authentication), as a developer's machine or CI has it;
3. a private cluster, made for the run as the tests make their Mosquitto: `initdb` of Debian's
   `postgresql` package (`/usr/lib/postgresql/*/bin`) into a temporary folder, started with
   `pg_ctl` on a free loopback port and stopped at the end. PostgreSQL refuses to run as root, so
   as root the cluster belongs to the `postgres` account and its commands run through `runuser`.

The run's database has a random name and is dropped (WITH FORCE) when the run ends.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from broker import HOST, free_port

ENV = "EDGE_SENTRY_TEST_PG"
LOCAL = ("postgresql://postgres@127.0.0.1:5432/postgres", "postgresql://postgres@127.0.0.1:5432/test")
MISSING = ("PostgreSQL is not available: the back-end tests run a real server. Install it with "
           "`scripts/setup --dev` (Debian's postgresql package), or set EDGE_SENTRY_TEST_PG to a server URL.")


def reachable(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def find_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class PrivateCluster:
    """A throw-away cluster in a temporary folder, trust authentication, loopback only."""

    def __init__(self) -> None:
        initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise RuntimeError(MISSING)
        self.initdb, self.pg_ctl = initdb, pg_ctl
        self.folder = Path(tempfile.mkdtemp(prefix="edge-sentry-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self._owner = "postgres" if os.geteuid() == 0 else None
        if self._owner is not None:
            entry = pwd.getpwnam(self._owner)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str) -> None:
        command = list(args)
        if self._owner is not None:
            command = ["runuser", "-u", self._owner, "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)

    def start(self) -> str:
        self._run(self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-h {HOST} -p {self.port} -k {self.folder} -F"
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.folder / "log"), "-o", options, "-w",
                  "start")
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def server() -> Iterator[str]:
    """The URL of a server on which a database may be created (see the module docstring)."""
    explicit = os.environ.get(ENV)
    if explicit:
        yield explicit
        return
    for url in LOCAL:
        if reachable(url):
            yield url
            return
    cluster = PrivateCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new database with a random name; dropped at the end, whoever is still connected."""
    import psycopg

    name = f"edge_sentry_test_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def reset(url: str) -> None:
    """Empty the database for the next test: every table, partition and schema version."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
