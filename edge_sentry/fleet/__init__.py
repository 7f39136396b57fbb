"""The operator's side of the fleet link (docs/protocol.md sections 6 and 7): read what the sentries report,
push desired configs and trust lists, send commands, follow scans and events.

`client` is the one module that talks to the broker; `status`, `push`, `command` and `tail` turn
messages into decisions and lines of text and do no I/O of their own, so they are tested without a
broker. The `edge-sentry fleet ...` command in `edge_sentry.cli.fleet` ties them together.
Nothing here ever connects as a device: operator client ids start with `fleet-`.
"""
