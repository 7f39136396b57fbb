"""The fleet link: MQTT topics, payloads and the connection (docs/protocol.md section 6).

`topics` and `payloads` are pure (no I/O). `mqtt.Link` owns the connection and composes the parts,
one concern per module, each thread's work in its own: `supervisor` (connecting, backoff,
refusals; thread `link-supervisor`), `drain` (outbox to broker, acked on PUBACK; `link-drain`),
`dispatch` (subscriptions and the handlers; `link-handlers`), `outgoing` (publishing, holding while
offline, PUBACK matching), `presence` (the `state` topic), `connection`, `credentials`, `boot`,
`stats`. paho's network thread only runs callbacks that record and hand over. The config shadow,
the trust push and the remote commands attach to the link through `messages.LinkPort`.
"""

from ..errors import LinkError, PayloadError, TopicError
from .connection import LinkState
from .messages import LinkPort, MessageProperties
from .mqtt import Link
from .payloads import decode, encode
from .topics import TopicParts, Topics

__all__ = [
    "Link",
    "LinkError",
    "LinkPort",
    "LinkState",
    "MessageProperties",
    "PayloadError",
    "TopicError",
    "TopicParts",
    "Topics",
    "decode",
    "encode",
]
