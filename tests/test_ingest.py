"""`fleet ingest` against a real Mosquitto, into SQLite and PostgreSQL: every message is stored once and
acknowledged only after its commit, several ingesters share the load, a persistent session keeps
what arrives while the ingester is away, bad input is rejected and counted without stopping it, and
retention goes by arrival time."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from broker import Broker, Subscriber
from ingest_helpers import alarm, batch, count, now_ms, query, topic
from test_authority import run as authority_run
from test_daemon_fleet import make_daemon, running

from edge_sentry.backend.ingest import Ingester
from edge_sentry.backend.postgres import PostgresStore, partition_name
from edge_sentry.backend.store import Purged, SqliteStore, Store, Written, open_store
from edge_sentry.config import IngestConfig, MqttConfig
from edge_sentry.link import payloads

DAY = 86_400_000
WAIT_S = 20.0


def ingester_mqtt(broker: Broker) -> MqttConfig:
    return MqttConfig(host=broker.host, port=broker.port, username=broker.ingester,
                      password=broker.passwords[broker.ingester], keepalive_s=10)


class Running:
    """An ingester on its own thread, as `fleet ingest` runs it."""

    def __init__(self, ingester: Ingester) -> None:
        self.ingester = ingester
        self.stop = threading.Event()
        self.thread = threading.Thread(target=ingester.run, args=(self.stop,), daemon=True)

    def start(self) -> Running:
        self.ingester.connect()
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.ingester.close()

    @property
    def totals(self) -> Any:
        return self.ingester.totals


@pytest.fixture
def group() -> str:
    """A share group of this test's own: another test's sessions never take its messages."""
    return f"g{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings(group: str) -> IngestConfig:
    return IngestConfig(group=group, batch_wait_s=0.05, batch_messages=20, session_expiry_s=600)


@pytest.fixture
def start(broker: Broker, db_url: str, settings: IngestConfig) -> Iterator[Callable[..., Running]]:
    running: list[Running] = []
    stores: list[Store] = []

    def make(*, client_id: str | None = None, store: Store | None = None, **options: Any) -> Running:
        if store is None:
            store = open_store(db_url)
            stores.append(store)
        chosen = replace(settings, **{k: v for k, v in options.items() if hasattr(settings, k)})
        extra = {k: v for k, v in options.items() if not hasattr(settings, k)}
        ingester = Ingester(ingester_mqtt(broker), store, chosen,
                            retention_days=extra.pop("retention_days", 14.0),
                            client_id=client_id or f"ingest-{uuid.uuid4().hex[:8]}", **extra)
        run = Running(ingester).start()
        running.append(run)
        return run

    yield make
    for run in running:
        run.close()
    for store in stores:
        store.close()


@pytest.fixture
def reader(db_url: str) -> Iterator[Store]:
    """A connection of the test's own, to look at what the ingesters committed."""
    store = open_store(db_url)
    yield store
    store.close()


@pytest.fixture
def sentry(subscriber: Callable[..., Subscriber], broker: Broker) -> Callable[[str], Subscriber]:
    """A client logged in as a device, publishing as a sentry does."""

    def make(device: str = "gate-1") -> Subscriber:
        return subscriber([], username=device)

    return make


def eventually(check: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    """Poll `check` until it holds or the deadline passes (a bound on waiting, not on speed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def publish(sentry: Subscriber, kind: str, body: Any, *, device: str = "gate-1",
            retain: bool = False) -> None:
    data = body if isinstance(body, bytes) else payloads.encode(body)
    qos = 0 if kind == "health" else 1
    if qos:
        assert sentry.publish_ack(topic(kind, device=device), data, retain=retain) == 0
    else:
        sentry.publish(topic(kind, device=device), data, qos=0, retain=retain)


def test_scans_events_state_and_health_are_stored_and_each_message_acknowledged_once(
        start, reader, sentry, settings) -> None:
    run = start(client_id="ingest-ack")
    device = sentry("gate-1")
    scans = batch(3)
    publish(device, "scan", scans)
    publish(device, "event", alarm("tailgate"))
    publish(device, "state", {"online": True, "t": now_ms(), "firmware": "1.0"}, retain=True)
    publish(device, "health", {"t": now_ms(), "uptime_s": 5}, retain=True)
    assert eventually(lambda: count(reader, "events") == 4
                      and count(reader, "device_status", "device = 'gate-1'") == 2)
    assert sorted(str(r[0]) for r in query(reader, "SELECT id FROM events WHERE kind = 'scan'")) == sorted(
        s["id"] for s in scans)
    assert query(reader, "SELECT event, entrance FROM events WHERE kind = 'event'") == [("tailgate", "north")]
    run.close()
    # The same session again: had anything gone unacknowledged, the broker would send it now,
    # before the retained state and health that the new subscription brings.
    again = start(client_id="ingest-ack")
    assert eventually(lambda: again.totals.statuses >= 2)
    assert (again.totals.stored, again.totals.duplicates) == (0, 0)
    assert count(reader, "events") == 4


def test_a_batch_delivered_twice_is_stored_once(start, reader, sentry) -> None:
    run = start()
    device = sentry("gate-1")
    message = payloads.encode(batch(10))
    publish(device, "scan", message)
    publish(device, "scan", message)
    assert eventually(lambda: run.totals.duplicates == 10)
    assert run.totals.stored == 10
    assert count(reader, "events") == 10
    assert reader.counters()["duplicates"] == 10


class FailingStore:
    """A store whose first `failures` writes fail before anything is committed, as a database that
    went away or a full disk does."""

    def __init__(self, store: Store, failures: int = 1) -> None:
        self.store = store
        self.url = store.url
        self.failures = failures

    def write(self, records: Any, rejects: Any, statuses: Any, source: str) -> Written:
        if records and self.failures > 0:
            self.failures -= 1
            raise OSError("could not write: no space left on device")
        return self.store.write(records, rejects, statuses, source)

    def purge(self, cutoff_ms: int, source: str) -> Purged:
        return self.store.purge(cutoff_ms, source)

    def prepare(self, now_ms: int) -> None:
        self.store.prepare(now_ms)

    def counters(self) -> dict[str, int]:
        return self.store.counters()

    def version(self) -> int:
        return self.store.version()

    def close(self) -> None:
        self.store.close()


def test_a_batch_whose_commit_fails_is_not_acknowledged_and_comes_again(
        start, reader, sentry, db_url) -> None:
    store = FailingStore(open_store(db_url))
    try:
        run = start(store=store)
        device = sentry("gate-1")
        scans = batch(5)
        publish(device, "scan", scans)
        assert eventually(lambda: count(reader, "events") == 5)
        assert run.totals.store_errors == 1 and store.failures == 0
        assert run.totals.duplicates == 0
        stored = sorted(str(r[0]) for r in query(reader, "SELECT id FROM events"))
        assert stored == sorted(s["id"] for s in scans)
    finally:
        store.close()


class FailingCommit(SqliteStore):
    """SQLite whose first commit fails: the batch's transaction is rolled back."""

    failures = 1

    def commit(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise sqlite3.OperationalError("disk I/O error")
        super().commit()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_commit_that_fails_in_sqlite_itself_rolls_back_and_the_batch_comes_again(
        start, reader, sentry, db_url) -> None:
    store = FailingCommit(db_url)
    try:
        run = start(store=store)
        publish(sentry("gate-1"), "scan", batch(4))
        assert eventually(lambda: count(reader, "events") == 4)
        assert run.totals.store_errors == 1 and store.failures == 0
        assert reader.counters() == {"stored": 4}  # the failed transaction's counters went with it
    finally:
        store.close()


def test_two_ingesters_of_one_group_share_the_messages_and_store_each_event_once(
        start, reader, sentry) -> None:
    first, second = start(), start()
    devices = [sentry("gate-1"), sentry("gate-2")]
    sent = 0
    for i in range(20):
        name = f"gate-{i % 2 + 1}"
        publish(devices[i % 2], "scan", batch(5, first_seq=i * 5, device=name), device=name)
        sent += 5
    assert eventually(lambda: count(reader, "events") == sent)
    assert first.totals.stored > 0 and second.totals.stored > 0
    assert first.totals.stored + second.totals.stored == sent
    assert first.totals.duplicates + second.totals.duplicates == 0


def test_what_is_published_while_the_ingester_is_away_arrives_when_it_is_back(start, reader, sentry) -> None:
    start(client_id="ingest-away").close()  # the session and its shared subscription stay on the broker
    device = sentry("gate-1")
    for i in range(3):
        publish(device, "scan", batch(4, first_seq=i * 4))
    publish(device, "event", alarm("door-held", open_s=40.0))
    assert count(reader, "events") == 0
    back = start(client_id="ingest-away")
    assert eventually(lambda: count(reader, "events") == 13)
    assert back.totals.stored == 13


def test_forged_skewed_and_malformed_input_is_rejected_counted_and_the_ingester_goes_on(
        start, reader, sentry) -> None:
    run = start()
    device = sentry("gate-1")
    forged = batch(2, device="gate-2")  # gate-1 speaking for gate-2
    skewed = batch(1, t=now_ms() + 3_600_000)
    publish(device, "scan", forged + skewed + batch(1))
    publish(device, "scan", b"\xff\x00 not cbor")
    publish(device, "event", [1, 2, 3])
    publish(device, "event", alarm("door-forced", site="elsewhere"))
    good = batch(3)
    publish(device, "scan", good)
    assert eventually(lambda: count(reader, "events") == 4 and count(reader, "rejects") == 6)
    assert reader.counters() == {"stored": 4, "rejected:provenance": 3, "rejected:clock-skew": 1,
                                 "rejected:malformed": 2}
    rows = query(reader, "SELECT reason, device FROM rejects")
    assert {device for _, device in rows} == {"gate-1"}  # the topic's, whatever the payload claimed
    assert count(reader, "events", "device = 'gate-2'") == 0
    assert sum(run.totals.rejected.values()) == 6


def test_retention_deletes_by_arrival_time_and_counts_what_it_deleted(start, reader, sentry, db_url) -> None:
    now = now_ms()
    clock = [(now - 20 * DAY) / 1000]
    run = start(clock=lambda: clock[0], retention_check_s=1)
    device = sentry("gate-1")
    publish(device, "scan", batch(4, t=now - 20 * DAY))  # arrives "20 days ago", as the clock says
    assert eventually(lambda: count(reader, "events") == 4)
    if isinstance(reader, PostgresStore):
        assert partition_name((now - 20 * DAY) // DAY) in reader.partitions()
    clock[0] = now / 1000
    publish(device, "scan", batch(2))
    assert eventually(lambda: count(reader, "events") == 2 and reader.counters().get("retention:events") == 4)
    assert eventually(lambda: run.totals.purged == 4)  # its thread adds it after the commit the reader saw
    if isinstance(reader, PostgresStore):
        assert partition_name((now - 20 * DAY) // DAY) not in reader.partitions()
        # That day's and the two made ahead of it (ingest.partitions_ahead_days) then.
        assert reader.counters()["retention:partitions"] == 3


def test_the_progress_line_tells_rate_backlog_and_rejects(start, sentry) -> None:
    out = io.StringIO()
    run = start(progress=out, progress_s=0.1)
    publish(sentry("gate-1"), "scan", batch(3))
    assert eventually(lambda: run.totals.stored == 3 and "stored 3" in out.getvalue())
    line = out.getvalue().splitlines()[-1]
    assert line.startswith("ingest: ") and "events/s" in line and "backlog" in line and "rejects 0" in line


# -- the command ---------------------------------------------------------------------------------


def _command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from edge_sentry.cli import main; sys.exit(main())",
            "--config", str(config), "fleet", "ingest", *args]


def _config(broker: Broker, folder: Path, group: str, *, port: int | None = None) -> Path:
    path = folder / "ingest.toml"
    path.write_text(
        f'[device]\nstate_dir = "{folder / "state"}"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {port or broker.port}\nusername = "{broker.ingester}"\n'
        f'password = "{broker.passwords[broker.ingester]}"\n'
        f'[ingest]\ngroup = "{group}"\nbatch_wait_s = 0.05\nprogress_s = 0.5\n')
    return path


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_fleet_ingest_stores_into_the_state_folder_by_default_and_stops_on_sigterm(
        broker, sentry, tmp_path, group, db_url) -> None:
    config = _config(broker, tmp_path, group)
    proc = subprocess.Popen(_command(config, "--client-id", f"cli-{group}"), stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert "storing into" in first and str(tmp_path / "state" / "fleet.sqlite3") in first
        publish(sentry("gate-1"), "scan", batch(3))
        database = tmp_path / "state" / "fleet.sqlite3"
        reader = open_store(str(database))
        try:
            assert eventually(lambda: count(reader, "events") == 3)
        finally:
            reader.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_fleet_ingest_says_in_one_line_why_it_cannot_start(broker, tmp_path, group, db_url) -> None:
    bare = tmp_path / "bare.toml"
    bare.write_text("")
    no_mqtt = subprocess.run(_command(bare), capture_output=True, text=True, timeout=60)
    assert no_mqtt.returncode == 2 and "[mqtt]" in no_mqtt.stderr
    config = _config(broker, tmp_path, group)
    no_db = subprocess.run(_command(config, "--db", "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2"),
                           capture_output=True, text=True, timeout=60)
    assert no_db.returncode == 5 and "cannot connect" in no_db.stderr
    assert len(no_db.stderr.strip().splitlines()) == 1
    closed = _config(broker, tmp_path, group, port=1)
    no_broker = subprocess.run(_command(closed, "--db", str(tmp_path / "x.sqlite3")), capture_output=True,
                               text=True, timeout=60)
    assert no_broker.returncode == 4, no_broker.stderr
    assert len(no_broker.stderr.strip().splitlines()) == 1


def test_a_sentrys_sealed_scans_reach_the_back_end_and_the_authority_traces_them(
        start, reader, broker, tmp_path, db_url, capsys) -> None:
    """The whole path: a daemon seals each scan's subject to the authority, publishes it through
    Mosquitto, the ingester stores it, and `authority trace` opens it again from the database."""
    keys = tmp_path / "authority"
    assert authority_run(["authority", "keygen", "--out", str(keys)]) == 0
    capsys.readouterr()
    start()
    daemon = make_daemon(broker, tmp_path / "sentry",
                         privacy={"authority_key": str(keys / "authority.pub.pem")})
    sealed = "kind = 'scan' AND subject IS NOT NULL"
    with running(daemon):
        assert eventually(lambda: count(reader, "events", sealed) >= 2)
    ids = [str(row[0]) for row in query(reader, f"SELECT id FROM events WHERE {sealed} ORDER BY t_ms, id")]
    assert count(reader, "rejects") == 0
    code = authority_run(["authority", "trace", "--db", db_url, "--key", str(keys / "authority.key.pem"),
                          "--event", ids[0], "--format", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["failed"] == {}
    assert out["opened"] == out["scans"] >= len(ids)
    # All within seconds at one entrance: each stored scan is a visit of the subject or, another
    # holder's, a co-visitor of its first visit.
    visits = [v["id"] for v in out["visits"]]
    assert visits[0] == ids[0]
    assert set(ids) <= set(visits) | {c["id"] for c in out["visits"][0]["co_visitors"]}
    assert {(v["site"], v["device"]) for v in out["visits"]} == {(broker.site, broker.devices[0])}


def test_the_report_counts_what_came_through_the_broker(start, reader, sentry) -> None:
    from edge_sentry.backend import report

    device = sentry("gate-1")
    # An earlier test's sentry left its retained offline state on this module's broker: cleared, so
    # the state history holds only what this test publishes.
    assert device.publish_ack(topic("state", device="gate-1"), b"", retain=True) == 0
    start()
    t = now_ms() - 60_000
    publish(device, "state", {"online": True, "t": t}, retain=True)
    publish(device, "scan", batch(3, t=t) + batch(2, first_seq=4, t=t, verdict="deny", reason="expired"))
    publish(device, "scan", batch(1, first_seq=6, t=t, entrance="south", mode="exit"))
    publish(device, "event", alarm("door-held", t=t))
    publish(device, "health", {"t": t, "outbox": {"depth": 12}})
    publish(device, "scan", b"\xff\x00")
    assert eventually(lambda: count(reader, "events") == 7 and count(reader, "rejects") == 1
                      and count(reader, "device_hours") == 1 and count(reader, "device_states") == 1)
    until = now_ms() + 600_000
    built = report.build(reader, t - 60_000, until)
    found = {(line.site, line.entrance): line.as_json() for line in built.lines}
    online_since = int(query(reader, "SELECT arrived_ms FROM device_states WHERE online")[0][0])
    north, south = found[("arena", "north")], found[("arena", "south")]
    assert (north["scans"], north["deny"], north["reasons"]) == (5, 2, {"expired": 2})
    assert north["alarms"]["door-held"] == 1 and north["backlog_max"] is None
    assert (south["scans"], south["exit"], south["backlog_max"]) == (1, 1, 12)  # its latest entrance
    assert south["uptime_min"] == round((until - online_since) / 60_000, 1) and south["outage_min"] == 0
    assert found[("arena", None)]["rejected"] == {"malformed": 1}
