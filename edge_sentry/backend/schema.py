"""The back end's tables, as numbered migrations per database (docs/protocol.md, "The fleet back end").

Each database records the migrations it has taken in `schema_version`; opening a store applies the
missing ones in one transaction, so every ingester (and the reports built on these tables) finds the
same schema whichever started first. Step N of one dialect and step N of the other describe the same
tables: both are written from one list of columns per table. Never change what a released step
makes: add the next one.

- `events`: one row per scan or event, keyed by its `id`. Times are integers of milliseconds since
  the epoch: `t_ms` the sentry's clock, `arrived_ms` the ingester's when the message arrived, which
  retention goes by (a sentry's clock may be wrong; the arrival is ours). On PostgreSQL the table
  is partitioned by day of arrival (`events_pYYYYMMDD`, UTC days), so retention drops whole days;
  the key of a partitioned table must hold the partition key, so uniqueness of `id` across days is
  kept by `event_ids`, which every insert passes first.
- `rejects`: what was not stored as a record, with its reason, keyed by a digest of its topic and
  bytes (a redelivery adds nothing).
- `device_status`: the latest retained `state` and `health` of each sentry.
- `counters`: running totals (stored, duplicates, rejects by reason, retention's deletions), one
  row per name and ingester, so concurrent ingesters never wait on one row; sum over `source`.

Step 2, for `fleet report` (which must read a million events in well under a second, faster than
any GROUP BY over `events` can):

- `event_hours`: the count of stored events per hour of `t_ms`, site, entrance, event, mode,
  verdict and reason (a missing text is `''`, since a key holds no null), added to in the same
  transaction as the events, for the rows actually inserted only, and taken from again by retention
  for the rows it deletes: at every commit it equals a GROUP BY over `events`.
- `device_hours`: the deepest outbox a device's `health` reported per hour of arrival.
- `device_states`: every `state` message's `online` per device and arrival, the history that
  uptime and outage are measured from (`device_status` keeps the latest only).
- `device_entrances`: the entrances each device's events named, with the latest `t_ms`, which tells
  whose entrance a device's outage and backlog are (dropped with retention when `last_ms` passes the
  cutoff: an entrance name is a sender's text).
"""

from __future__ import annotations

SCHEMA_VERSION = 2

SQLITE, POSTGRES = "sqlite", "postgres"

# Column types by dialect: SQLite keeps ids, JSON and flags as text and integers.
_TYPES = {
    SQLITE: {"text": "TEXT", "int": "INTEGER", "real": "REAL", "bytes": "BLOB", "json": "TEXT",
             "uuid": "TEXT", "bool": "INTEGER"},
    POSTGRES: {"text": "text", "int": "bigint", "real": "double precision", "bytes": "bytea",
               "json": "jsonb", "uuid": "uuid", "bool": "boolean"},
}

Columns = tuple[tuple[str, str, bool], ...]


def _columns(spec: str) -> Columns:
    """`name type` pairs apart by `;`, a `?` after the type when the column may be null."""
    out = []
    for line in spec.split(";"):
        name, kind = line.split()
        out.append((name, kind.rstrip("?"), kind.endswith("?")))
    return tuple(out)


# The tables of step 1, their columns in the order the stores write their rows.
EVENTS = _columns("id uuid; site text; device text; kind text; event text; seq int; t_ms int; "
                  "arrived_ms int; entrance text?; mode text?; scheme text?; verdict text?; reason text?; "
                  "issuer text?; refused text?; latency_ms real?; subject bytes?; details json")
REJECTS = _columns("key text; arrived_ms int; topic text; site text?; device text?; reason text; "
                   "detail text; event_id uuid?; body bytes")
STATUS = _columns("site text; device text; kind text; arrived_ms int; t_ms int?; online bool?; body json")
COUNTERS = _columns("name text; source text; value int")
EVENT_IDS = _columns("id uuid; arrived_ms int")
EVENT_HOURS = _columns("hour_ms int; site text; entrance text; event text; mode text; verdict text; "
                       "reason text; n int")
DEVICE_HOURS = _columns("hour_ms int; site text; device text; backlog_max int")
DEVICE_STATES = _columns("site text; device text; arrived_ms int; online bool")
DEVICE_ENTRANCES = _columns("site text; device text; entrance text; last_ms int")
HOUR_MS = 3_600_000
#: The key of `event_hours`, in the order of its columns.
EVENT_HOUR_KEY = tuple(c[0] for c in EVENT_HOURS[:-1])

INDEXES = """CREATE INDEX events_t ON events (t_ms);
CREATE INDEX events_site_t ON events (site, t_ms);
CREATE INDEX events_site_entrance_t ON events (site, entrance, t_ms);
CREATE INDEX events_arrived ON events (arrived_ms);
CREATE INDEX rejects_arrived ON rejects (arrived_ms);
"""


def _table(dialect: str, name: str, columns: Columns, key: str, after: str = "") -> str:
    lines = [f"{column} {_TYPES[dialect][kind]}{'' if nullable else ' NOT NULL'}"
             for column, kind, nullable in columns]
    body = ",\n    ".join([*lines, f"PRIMARY KEY ({key})"])
    return f"CREATE TABLE {name} (\n    {body}\n){after};\n"


def _step1(dialect: str) -> str:
    """Step 1 in `dialect`. On PostgreSQL `events` is partitioned by arrival, so its key holds
    `arrived_ms`, and `event_ids` keeps `id` unique across partitions."""
    partitioned = dialect == POSTGRES
    parts = [
        _table(dialect, "events", EVENTS, "id, arrived_ms" if partitioned else "id",
               " PARTITION BY RANGE (arrived_ms)" if partitioned else ""),
        _table(dialect, "rejects", REJECTS, "key"),
        _table(dialect, "device_status", STATUS, "site, device, kind"),
        _table(dialect, "counters", COUNTERS, "name, source"),
        INDEXES,
    ]
    if partitioned:
        parts += [_table(dialect, "event_ids", EVENT_IDS, "id"),
                  "CREATE INDEX event_ids_arrived ON event_ids (arrived_ms);\n"]
    return "".join(parts)


def _step2(dialect: str) -> str:
    """Step 2: the report's rollup and the devices' history (they start empty: events stored before
    are added by `_BACKFILL`)."""
    return "".join([
        _table(dialect, "event_hours", EVENT_HOURS, ", ".join(EVENT_HOUR_KEY)),
        _table(dialect, "device_hours", DEVICE_HOURS, "hour_ms, site, device"),
        _table(dialect, "device_states", DEVICE_STATES, "site, device, arrived_ms"),
        "CREATE INDEX device_states_arrived ON device_states (arrived_ms);\n",
        _table(dialect, "device_entrances", DEVICE_ENTRANCES, "site, device, entrance"),
        _BACKFILL,
    ])


# The events a database held before step 2, into the rollup once.
_BACKFILL = (f"INSERT INTO event_hours SELECT t_ms - t_ms % {HOUR_MS}, site, coalesce(entrance, ''), event, "
             "coalesce(mode, ''), coalesce(verdict, ''), coalesce(reason, ''), count(*) FROM events "
             f"GROUP BY t_ms - t_ms % {HOUR_MS}, site, coalesce(entrance, ''), event, coalesce(mode, ''), "
             "coalesce(verdict, ''), coalesce(reason, '');\n")


#: The migrations of each dialect; step N of one is step N of the other.
STEPS: dict[str, tuple[str, ...]] = {d: (_step1(d), _step2(d)) for d in (SQLITE, POSTGRES)}

assert all(len(steps) == SCHEMA_VERSION for steps in STEPS.values())

VERSION_TABLE = ("CREATE TABLE IF NOT EXISTS schema_version "
                 "(version integer PRIMARY KEY, applied_ms bigint NOT NULL)")

# Columns in the order both stores write them.
EVENT_COLUMNS = tuple(c[0] for c in EVENTS)
REJECT_COLUMNS = tuple(c[0] for c in REJECTS)
STATUS_COLUMNS = tuple(c[0] for c in STATUS)

DAY_MS = 86_400_000

# Counter names.
STORED = "stored"
DUPLICATES = "duplicates"
REJECTED = "rejected:"  # + the reason
RETENTION_EVENTS = "retention:events"
RETENTION_REJECTS = "retention:rejects"
RETENTION_PARTITIONS = "retention:partitions"
