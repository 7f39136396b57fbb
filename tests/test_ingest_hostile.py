"""What one compromised sentry could send to stop the fleet's ingestion: every such message must end
as rows the database takes (records or rejects), never as an exception or a batch the store refuses
at every delivery, since an unacknowledged message comes back to every ingester of the group."""

from __future__ import annotations

import csv
import io
import json
import random
import string
from collections.abc import Iterator

import cbor2
import pytest
from ingest_helpers import batch, count, now_ms, scan, topic

from edge_sentry.backend import decode as decode_module
from edge_sentry.backend import report, report_text
from edge_sentry.backend.decode import MAX_TEXT, Decoded, decode_message, storable_text
from edge_sentry.backend.store import Store, open_store
from edge_sentry.link import payloads


def rows(kind: str, data: bytes, content_type: str | None = None) -> Decoded:
    return decode_message(topic(kind), data, content_type, now_ms(), max_future_s=300)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = open_store(db_url)
    yield opened
    opened.close()


def write(store: Store, decoded: Decoded) -> None:
    store.write(decoded.records, decoded.rejects, [], "hostile-test")


@pytest.mark.parametrize("mode", [["scan"], {"a": 1}, 7, None])
def test_a_mode_or_verdict_that_is_not_text_is_a_bad_field_and_the_batch_goes_on(mode: object) -> None:
    events = batch(3)
    events[1]["mode"] = mode
    events[2]["verdict"] = [mode]
    out = rows("scan", payloads.encode(events))
    assert [r.id for r in out.records] == [events[0]["id"]]
    assert [r.reason for r in out.rejects] == ["bad-field", "bad-field"]


def random_text(length: int) -> str:
    """Text no compression shortens, as an index entry would have to hold it whole."""
    chooser = random.Random(length)
    return "".join(chooser.choice(string.ascii_letters + string.digits) for _ in range(length))


def test_texts_for_indexed_columns_are_held_to_their_limit_at_its_edge(store: Store) -> None:
    at_limit = scan(1, entrance=random_text(MAX_TEXT), reason=random_text(MAX_TEXT))
    past = [scan(2, entrance=random_text(MAX_TEXT + 1)), scan(3, reason=random_text(3000)),
            scan(4, issuer=random_text(MAX_TEXT + 1)), scan(5, event="scan" + "x" * MAX_TEXT)]
    out = rows("scan", payloads.encode([at_limit, *past]))
    assert [r.id for r in out.records] == [at_limit["id"]]
    assert [(r.reason, r.event_id) for r in out.rejects] == [("bad-field", e["id"]) for e in past]
    write(store, out)  # PostgreSQL's btree entries take the longest text allowed
    assert count(store, "events") == 1 and count(store, "rejects") == 4


def test_a_rejects_detail_never_carries_what_a_database_refuses(store: Store) -> None:
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    surrogate_key = json.dumps({"\ud800x": deep}).encode()  # JSON may spell a lone surrogate
    nul_key = cbor2.dumps([{"a\x00b": {"c\x00": deep}}])  # a NUL PostgreSQL's text refuses
    decoded = [rows("scan", surrogate_key, "application/json"), rows("scan", nul_key)]
    for out in decoded:
        (reject,) = out.rejects
        assert reject.reason == "malformed" and storable_text(reject.detail)
        write(store, out)
    assert count(store, "rejects") == 2


def test_whatever_the_checks_miss_is_a_malformed_reject_not_an_exception(monkeypatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr(decode_module, "_record", broken)
    data = payloads.encode(batch(2))
    out = rows("scan", data)
    assert out.records == []
    (reject,) = out.rejects
    assert (reject.reason, reject.body) == ("malformed", data)
    assert reject.detail == "could not be read (TypeError)"


def hostile_report() -> report.Report:
    line = report.Line("arena", "=HYPERLINK(\"http://x\")\x1b[2J\nforged  row")
    line.scans = line.deny = 2
    line.reasons.update({"@SUM(A1)": 1, "+1": 1})
    return report.Report(0, 3_600_000, [line], {})


def test_a_senders_words_never_become_a_spreadsheet_formula() -> None:
    (header, first, _total) = list(csv.reader(io.StringIO(report_text.as_csv(hostile_report()))))
    row = dict(zip(header, first, strict=True))
    assert row["entrance"].startswith("'=HYPERLINK")
    assert row["reasons"].startswith("'+1=1")
    assert not any(cell.startswith(("=", "+", "@")) for cell in first)


def test_a_senders_words_cannot_act_on_the_terminal_or_forge_a_table_line() -> None:
    table = report_text.as_table(hostile_report())
    assert "\x1b" not in table and "\\x1b[2J" in table
    assert len(table.splitlines()) == 6  # title, header, the one line, rule, total, retention footer


def test_retention_forgets_the_entrance_names_a_device_used(store: Store) -> None:
    then = now_ms() - 3_600_000
    old = decode_message(topic("scan"), payloads.encode([scan(1, t=then, entrance="old-name")]), None,
                         then, max_future_s=300)
    write(store, old)
    write(store, rows("scan", payloads.encode([scan(2, entrance="north")])))
    assert count(store, "device_entrances") == 2
    store.purge(now_ms() - 60_000, "hostile-test")
    assert [r[0] for r in store.rows("SELECT entrance FROM device_entrances")] == ["north"]
