"""The back end's tables, as numbered migrations per database (docs/protocol.md, "The fleet back end").

Each database records the migrations it has taken in `schema_version`; opening a store applies the
missing ones in one transaction, so every ingester (and the reports built on these tables) finds the
same schema whichever started first. Step N of one dialect and step N of the other describe the same
tables. Never edit a released step: add the next one.

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
"""

from __future__ import annotations

SCHEMA_VERSION = 1

SQLITE: tuple[str, ...] = (
    """
    CREATE TABLE events (
        id TEXT PRIMARY KEY,
        site TEXT NOT NULL,
        device TEXT NOT NULL,
        kind TEXT NOT NULL,
        event TEXT NOT NULL,
        seq INTEGER NOT NULL,
        t_ms INTEGER NOT NULL,
        arrived_ms INTEGER NOT NULL,
        entrance TEXT,
        mode TEXT,
        scheme TEXT,
        verdict TEXT,
        reason TEXT,
        issuer TEXT,
        refused TEXT,
        latency_ms REAL,
        subject BLOB,
        details TEXT NOT NULL
    );
    CREATE INDEX events_t ON events (t_ms);
    CREATE INDEX events_site_t ON events (site, t_ms);
    CREATE INDEX events_site_entrance_t ON events (site, entrance, t_ms);
    CREATE INDEX events_arrived ON events (arrived_ms);
    CREATE TABLE rejects (
        key TEXT PRIMARY KEY,
        arrived_ms INTEGER NOT NULL,
        topic TEXT NOT NULL,
        site TEXT,
        device TEXT,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        event_id TEXT,
        body BLOB NOT NULL
    );
    CREATE INDEX rejects_arrived ON rejects (arrived_ms);
    CREATE TABLE device_status (
        site TEXT NOT NULL,
        device TEXT NOT NULL,
        kind TEXT NOT NULL,
        arrived_ms INTEGER NOT NULL,
        t_ms INTEGER,
        online INTEGER,
        body TEXT NOT NULL,
        PRIMARY KEY (site, device, kind)
    );
    CREATE TABLE counters (
        name TEXT NOT NULL,
        source TEXT NOT NULL,
        value INTEGER NOT NULL,
        PRIMARY KEY (name, source)
    );
    """,
)

POSTGRES: tuple[str, ...] = (
    """
    CREATE TABLE event_ids (
        id uuid PRIMARY KEY,
        arrived_ms bigint NOT NULL
    );
    CREATE INDEX event_ids_arrived ON event_ids (arrived_ms);
    CREATE TABLE events (
        id uuid NOT NULL,
        site text NOT NULL,
        device text NOT NULL,
        kind text NOT NULL,
        event text NOT NULL,
        seq bigint NOT NULL,
        t_ms bigint NOT NULL,
        arrived_ms bigint NOT NULL,
        entrance text,
        mode text,
        scheme text,
        verdict text,
        reason text,
        issuer text,
        refused text,
        latency_ms double precision,
        subject bytea,
        details jsonb NOT NULL,
        PRIMARY KEY (id, arrived_ms)
    ) PARTITION BY RANGE (arrived_ms);
    CREATE INDEX events_t ON events (t_ms);
    CREATE INDEX events_site_t ON events (site, t_ms);
    CREATE INDEX events_site_entrance_t ON events (site, entrance, t_ms);
    CREATE INDEX events_arrived ON events (arrived_ms);
    CREATE TABLE rejects (
        key text PRIMARY KEY,
        arrived_ms bigint NOT NULL,
        topic text NOT NULL,
        site text,
        device text,
        reason text NOT NULL,
        detail text NOT NULL,
        event_id uuid,
        body bytea NOT NULL
    );
    CREATE INDEX rejects_arrived ON rejects (arrived_ms);
    CREATE TABLE device_status (
        site text NOT NULL,
        device text NOT NULL,
        kind text NOT NULL,
        arrived_ms bigint NOT NULL,
        t_ms bigint,
        online boolean,
        body jsonb NOT NULL,
        PRIMARY KEY (site, device, kind)
    );
    CREATE TABLE counters (
        name text NOT NULL,
        source text NOT NULL,
        value bigint NOT NULL,
        PRIMARY KEY (name, source)
    );
    """,
)

assert len(SQLITE) == len(POSTGRES) == SCHEMA_VERSION

VERSION_TABLE = ("CREATE TABLE IF NOT EXISTS schema_version "
                 "(version integer PRIMARY KEY, applied_ms bigint NOT NULL)")

# Columns of `events`, in the order both stores write them.
EVENT_COLUMNS = ("id", "site", "device", "kind", "event", "seq", "t_ms", "arrived_ms", "entrance", "mode",
                 "scheme", "verdict", "reason", "issuer", "refused", "latency_ms", "subject", "details")
REJECT_COLUMNS = ("key", "arrived_ms", "topic", "site", "device", "reason", "detail", "event_id", "body")
STATUS_COLUMNS = ("site", "device", "kind", "arrived_ms", "t_ms", "online", "body")

DAY_MS = 86_400_000

# Counter names.
STORED = "stored"
DUPLICATES = "duplicates"
REJECTED = "rejected:"  # + the reason
RETENTION_EVENTS = "retention:events"
RETENTION_REJECTS = "retention:rejects"
RETENTION_PARTITIONS = "retention:partitions"
