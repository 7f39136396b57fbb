"""The fleet's back end: what the sentries report, stored (`edge-sentry fleet ingest`).

`decode` turns one MQTT message into rows (records, rejects, a device status), `schema` holds the
tables as migrations, `store` the SQLite store and the interface that `postgres` implements too, and
`ingest` the MQTT side that feeds them. See docs/protocol.md, "The fleet back end".
"""
