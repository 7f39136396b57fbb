"""`fleet report`'s text formats: an aligned table for a terminal, CSV for spreadsheets, JSON for
scripts (docs/protocol.md section 7.1). The JSON is the array of lines alone; the fleet-wide totals and
retention's deletions (which the counters keep for the database's whole life, not per period) are
the table's footer and the CSV's last row, `site` `TOTAL`."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections import Counter
from collections.abc import Callable

from ..fleet.tail import escaped
from .report import ALARMS, Line, Report

COLUMNS = ("site", "entrance", "scans", "accept", "deny", "manual", "exit", "assisted", "door_forced",
           "door_held", "tailgate", "uptime_min", "outage_min", "backlog_max", "reasons", "rejected")
TOTAL = "TOTAL"
# The cells a sender's words reach (site, entrance, deny and reject reasons): a spreadsheet takes a
# cell that begins with one of these for a formula, so a sentry could put one in a supervisor's sheet.
TEXT_CELLS = (0, 1, 14, 15)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def as_json(report: Report) -> str:
    return json.dumps([line.as_json() for line in report.lines], indent=2) + "\n"


def _pairs(counts: Counter[str]) -> str:
    return " ".join(f"{k}={n}" for k, n in sorted(counts.items()))


def _cells(line: Line) -> list[str]:
    return [line.site or "-", line.entrance or "-", str(line.scans), str(line.accept), str(line.deny),
            str(line.manual), str(line.exit), str(line.assisted),
            *(str(line.alarms[name]) for name in ALARMS),
            f"{line.uptime_min:.1f}", f"{line.outage_min:.1f}",
            "-" if line.backlog_max is None else str(line.backlog_max),
            _pairs(line.reasons), _pairs(line.rejected)]


def total(report: Report) -> Line:
    """The fleet's sums (backlog: the deepest)."""
    out = Line(TOTAL, None)
    for line in report.lines:
        for name in ("scans", "accept", "deny", "manual", "exit", "assisted", "uptime_min", "outage_min"):
            setattr(out, name, getattr(out, name) + getattr(line, name))
        out.reasons.update(line.reasons)
        out.alarms.update(line.alarms)
        out.rejected.update(line.rejected)
        if line.backlog_max is not None:
            out.backlog_max = max(out.backlog_max or 0, line.backlog_max)
    return out


def inert(cell: str) -> str:
    """The cell as text a spreadsheet shows and never evaluates (OWASP's advice: a leading quote)."""
    return "'" + cell if cell != "-" and cell.startswith(FORMULA_START) else cell


def _shown(cells: list[str], show: Callable[[str], str]) -> list[str]:
    return [show(cell) if i in TEXT_CELLS else cell for i, cell in enumerate(cells)]


def as_csv(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*COLUMNS, "retention_deleted"])
    for line in report.lines:
        writer.writerow([*_shown(_cells(line), inert), ""])
    writer.writerow([*_shown(_cells(total(report)), inert), report.retention_events])
    return buffer.getvalue()


def when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def as_table(report: Report) -> str:
    # Escaped: a sender's control characters would act on the terminal or forge a line.
    rows = [list(COLUMNS), *(_shown(_cells(line), escaped) for line in report.lines),
            _shown(_cells(total(report)), escaped)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    numeric = set(range(2, 14))

    def show(row: list[str]) -> str:
        return "  ".join(cell.rjust(w) if i in numeric else cell.ljust(w)
                         for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()

    text = [f"fleet report {when(report.since_ms)} to {when(report.until_ms)}", show(rows[0])]
    text += [show(row) for row in rows[1:-1]]
    text += ["-" * len(show(rows[0])), show(rows[-1]),
             f"retention deleted (since the database began): {report.retention_events} events, "
             f"{report.retention_rejects} rejects"]
    return "\n".join(text) + "\n"
