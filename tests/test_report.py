"""`fleet report` on real SQLite and PostgreSQL, events written through the store as the ingester
writes them: counts per entrance, deny reasons, alarms, the period's edges (whole hours from the
rollup, the ragged ends from the events), rejects, uptime and outage, backlog, the formats, the CLI."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_helpers import alarm, scan, topic
from PIL import Image

from edge_sentry.backend import report, report_chart, report_text, schema
from edge_sentry.backend.decode import Decoded, decode_message
from edge_sentry.backend.store import Store, open_store
from edge_sentry.cli import main
from edge_sentry.link import payloads

H = schema.HOUR_MS
MIN = 60_000
#: An hour's start, and the period of most tests: 10:00 to 14:00 UTC.
T0 = int(dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC).timestamp() * 1000)
SINCE, UNTIL = T0, T0 + 4 * H
KEYS = ["site", "entrance", "scans", "accept", "deny", "reasons", "manual", "exit", "assisted", "alarms",
        "uptime_min", "outage_min", "backlog_max", "rejected"]


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = open_store(db_url)
    yield opened
    opened.close()


def decoded(kind: str, body: object, arrived: int, device: str = "gate-1", site: str = "arena") -> Decoded:
    data = body if isinstance(body, bytes) else payloads.encode(body)  # type: ignore[arg-type]
    return decode_message(topic(kind, device=device, site=site), data, None, arrived, max_future_s=300)


def write(store: Store, *parts: Decoded) -> None:
    store.write([r for d in parts for r in d.records], [r for d in parts for r in d.rejects],
                [d.status for d in parts if d.status is not None], "report-test")


def scans(store: Store, t: int, n: int = 1, device: str = "gate-1", site: str = "arena",
          **over: object) -> None:
    body = [scan(i + 1, t=t, device=device, site=site, **over) for i in range(n)]
    write(store, decoded("scan", body, T0 + 5 * H, device, site))


def fill(store: Store) -> None:
    """North: 9 scans (3 denied), south: 2, over the period's hours; alarms on both."""
    scans(store, T0 + 10 * MIN, 3)
    scans(store, T0 + H + 5 * MIN, 2, verdict="deny", reason="expired")
    scans(store, T0 + 2 * H, 1, verdict="deny", reason="revoked")
    scans(store, T0 + 2 * H + 1, 1, mode="manual")
    scans(store, T0 + 3 * H, 1, mode="exit")
    scans(store, T0 + 3 * H + 59 * MIN, 1, mode="assisted")
    scans(store, T0 + 30 * MIN, 2, device="gate-2", entrance="south")
    for name, entrance in (("door-forced", "north"), ("door-held", "north"), ("tailgate", "south"),
                           ("tailgate", "south"), ("door-opened", "north")):
        write(store, decoded("event", alarm(name, t=T0 + H, entrance=entrance), T0 + 5 * H))
    write(store, decoded("event", alarm("start", t=T0 + H, entrance="lobby"), T0 + 5 * H))  # not a figure


def lines(store: Store, since: int = SINCE, until: int = UNTIL) -> dict[tuple[str | None, str | None], dict]:
    return {(d["site"], d["entrance"]): d
            for d in (line.as_json() for line in report.build(store, since, until).lines)}


def test_counts_per_entrance_reasons_modes_and_alarms(store: Store) -> None:
    fill(store)
    found = lines(store)
    assert list(found) == [("arena", "north"), ("arena", "south")]
    north, south = found[("arena", "north")], found[("arena", "south")]
    assert list(north) == KEYS
    assert (north["scans"], north["accept"], north["deny"]) == (9, 6, 3)
    assert north["reasons"] == {"expired": 2, "revoked": 1}
    assert (north["manual"], north["exit"], north["assisted"]) == (1, 1, 1)
    assert north["alarms"] == {"door-forced": 1, "door-held": 1, "tailgate": 0}
    assert south["alarms"] == {"door-forced": 0, "door-held": 0, "tailgate": 2}
    assert (south["scans"], south["accept"], south["deny"], south["reasons"]) == (2, 2, 0, {})


def test_a_duplicate_adds_nothing_and_retention_takes_from_the_rollup(store: Store) -> None:
    body = [scan(i + 1, t=T0 + i) for i in range(4)]
    write(store, decoded("scan", body, T0 + H))
    write(store, decoded("scan", body, T0 + 2 * H))  # the same events again: duplicates
    assert lines(store)[("arena", "north")]["scans"] == 4
    scans(store, T0 + 5, 3)  # arrived at T0 + 5 h
    # Arrived two days before: on PostgreSQL their whole day's partition is dropped.
    early = T0 - 2 * schema.DAY_MS
    write(store, decoded("scan", [scan(i + 10, t=early) for i in range(2)], early))
    assert lines(store, early, UNTIL)[("arena", "north")]["scans"] == 9
    purged = store.purge(T0 + 90 * MIN, "report-test")  # six arrived before the cutoff
    assert purged.events == 6
    assert lines(store, early, UNTIL)[("arena", "north")]["scans"] == 3
    assert store.rows("SELECT sum(n) FROM event_hours")[0][0] == 3


@pytest.mark.parametrize(("since", "until"), [
    (SINCE, UNTIL),  # whole hours: the rollup alone
    (T0 + 10 * MIN, T0 + 3 * H),  # an edge on an event, one on an hour
    (T0 + 10 * MIN + 1, T0 + 3 * H + 1),  # one after each
    (T0 + H + 5 * MIN, T0 + H + 6 * MIN),  # within one hour
    (T0 + 2 * H, T0 + 2 * H + 1),
    (T0 - 5 * H, T0 + 10 * MIN),  # ends just before the first events
])
def test_the_period_includes_its_start_and_excludes_its_end(store: Store, since: int, until: int) -> None:
    fill(store)
    rows = store.rows("SELECT entrance, t_ms FROM events WHERE kind = 'scan'")
    expected = Counter(str(e) for e, t in rows if since <= int(str(t)) < until)
    found = {k[1]: v["scans"] for k, v in lines(store, since, until).items()}
    assert found == dict(expected)


def test_rejects_are_counted_by_reason_on_their_site_without_an_entrance(store: Store) -> None:
    fill(store)
    write(store, decoded("scan", [scan(t=T0, device="gate-9")], T0 + H))  # provenance
    write(store, decoded("scan", b"\xff\x00", T0 + H), decoded("event", b"\xff\x01", T0 + 2 * H))
    write(store, decoded("scan", b"\xff\x02", T0 + 4 * H))  # arrived at the end: outside
    write(store, decoded("scan", b"\xff\x03", T0 + H, site="dock"))
    found = lines(store)
    assert found[("arena", None)]["rejected"] == {"malformed": 2, "provenance": 1}
    assert found[("dock", None)]["rejected"] == {"malformed": 1}
    assert found[("arena", None)]["scans"] == 0
    assert found[("arena", "north")]["rejected"] == {}


def test_uptime_outage_and_backlog_from_the_devices_history(store: Store) -> None:
    scans(store, T0 + MIN, 1, device="gate-3", entrance="east")
    for arrived, online in ((T0 - 10 * MIN, True), (T0 + 30 * MIN, False), (T0 + 50 * MIN, True),
                            (T0 + 3 * H, False), (T0 + 5 * H, True)):
        body = {"online": online, "t": arrived} if online else {"online": False, "reason": "lost"}
        write(store, decoded("state", body, arrived, "gate-3"))
    for arrived, depth in ((T0 - 2 * H, 90), (T0 + H, 7), (T0 + 2 * H, 3), (T0 + 4 * H, 50)):
        write(store, decoded("health", {"t": arrived, "outbox": {"depth": depth}}, arrived, "gate-3"))
    east = lines(store)[("arena", "east")]
    assert (east["uptime_min"], east["outage_min"]) == (30 + 130, 20 + 60)
    assert east["backlog_max"] == 7
    assert lines(store, T0 + 20 * MIN, T0 + 40 * MIN)[("arena", "east")]["outage_min"] == 10


def test_a_device_without_history_has_no_uptime_and_no_backlog(store: Store) -> None:
    fill(store)
    north = lines(store)[("arena", "north")]
    assert (north["uptime_min"], north["outage_min"], north["backlog_max"]) == (0, 0, None)


def test_the_rollup_takes_in_the_events_stored_before_it_existed(db_url: str) -> None:
    first = open_store(db_url)
    fill(first)
    expected = lines(first)
    for statement in ("DROP TABLE event_hours", "DROP TABLE device_hours", "DROP TABLE device_states",
                      "DROP TABLE device_entrances", "DELETE FROM schema_version WHERE version = 2"):
        _execute(first, statement)
    first.close()
    again = open_store(db_url)  # migrates to step 2 again, which fills the rollup from the events
    assert lines(again) == expected
    again.close()


def _execute(store: Store, statement: str) -> None:
    db = store._db  # type: ignore[attr-defined]
    if hasattr(db, "transaction"):
        with db.transaction():
            db.execute(statement)
    else:
        db.execute(statement)


# -- formats --------------------------------------------------------------------------------------


def test_csv_and_table_carry_every_line_and_the_fleet_totals(store: Store) -> None:
    fill(store)
    store.purge(T0 + 6 * H, "report-test")  # everything arrived at T0 + 5 h: retention counts 17
    fill(store)
    built = report.build(store, SINCE, UNTIL)
    parsed = list(csv.DictReader(io.StringIO(report_text.as_csv(built))))
    assert [(r["site"], r["entrance"]) for r in parsed] == [("arena", "north"), ("arena", "south"),
                                                            ("TOTAL", "-")]
    assert parsed[0]["scans"] == "9" and parsed[0]["reasons"] == "expired=2 revoked=1"
    assert parsed[2]["scans"] == "11" and parsed[2]["tailgate"] == "2"
    assert parsed[2]["retention_deleted"] == "17"
    table = report_text.as_table(built).splitlines()
    assert table[0] == "fleet report 2026-11-20T10:00:00Z to 2026-11-20T14:00:00Z"
    assert table[1].split()[:4] == ["site", "entrance", "scans", "accept"]
    assert table[2].split()[:5] == ["arena", "north", "9", "6", "3"]
    assert table[-1] == "retention deleted (since the database began): 17 events, 0 rejects"


def test_the_chart_is_a_picture_with_each_entrances_colour_and_the_deny_bars(store: Store) -> None:
    fill(store)
    built = report.build(store, SINCE, UNTIL)
    image = Image.open(io.BytesIO(report_chart.render(built)))
    assert image.format == "PNG" and image.size == (report_chart.WIDTH, report_chart.HEIGHT)
    pixels = Counter({colour: n for n, colour in image.convert("RGB").getcolors(1 << 20) or []})
    assert len(pixels) > 20  # text and lines, not a blank page
    palette = report_chart.colours(built)
    assert set(palette) == {("arena", "north"), ("arena", "south")}
    assert palette[("arena", "north")] != palette[("arena", "south")]
    for colour in [*palette.values(), report_chart.BAR]:
        assert pixels[colour] > 150, colour  # a legend swatch (16x14) and its line, or the bars
    unused = report_chart.PALETTE[2]
    assert pixels[unused] == 0


# -- the command ----------------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["fleet", "report", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_prints_json_csv_and_table_and_draws_the_png(db_url: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    store = open_store(db_url)
    fill(store)
    store.close()
    period = ["--db", db_url, "--since", "2026-11-20T10:00:00Z", "--until", "2026-11-20T14:00:00+00:00"]
    code, out, _ = run(capsys, *period, "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert [list(line) for line in data] == [KEYS, KEYS]
    assert data[0]["scans"] == 9
    code, out, _ = run(capsys, *period, "--since", "2026-11-20T12:00", "--format", "csv")
    assert code == 0 and next(csv.DictReader(io.StringIO(out)))["scans"] == "4"
    code, out, _ = run(capsys, *period)
    assert code == 0 and "north" in out and "TOTAL" in out
    chart = tmp_path / "chart.png"
    code, out, _ = run(capsys, *period, "--format", "png", "--out", str(chart))
    assert code == 0 and out == ""
    assert Image.open(chart).size == (report_chart.WIDTH, report_chart.HEIGHT)


def test_bad_usage_exits_2_and_a_missing_database_5(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "fleet.sqlite3"
    open_store(str(db)).close()
    code, out, err = run(capsys, "--db", str(db), "--since", "yesterday")
    assert (code, out) == (2, "") and "--since: not an ISO 8601 time" in err
    code, _, err = run(capsys, "--db", str(db), "--since", "2026-11-20T12:00Z",
                       "--until", "2026-11-20T12:00Z")
    assert code == 2 and "period is empty" in err
    code, _, err = run(capsys, "--db", str(db), "--format", "png")
    assert code == 2 and "--out" in err
    missing = tmp_path / "none" / "fleet.sqlite3"
    code, _, err = run(capsys, "--db", str(missing))
    assert code == 5 and f"no database at {missing}" in err
    assert not missing.parent.exists()  # nothing made
    code, _, err = run(capsys, "--db", "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2")
    assert code == 5 and "cannot connect" in err


def test_without_db_the_report_reads_the_configured_database(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "configured.sqlite3"
    store = open_store(str(db))
    fill(store)
    store.close()
    config = tmp_path / "ingest.toml"
    config.write_text(f'[ingest]\ndb = "{db}"\n')
    code = main(["--config", str(config), "fleet", "report", "--since", "2026-11-20T10:00Z",
                 "--until", "2026-11-20T14:00Z", "--format", "json"])
    out, _ = capsys.readouterr()
    assert code == 0 and sum(line["scans"] for line in json.loads(out)) == 11
