"""The fleet link: MQTT topics, payloads and the connection (docs/protocol.md section 6).

`topics` and `payloads` are pure (no I/O); `mqtt.Link` owns the connection, drains the outbox and
runs the handlers that the config shadow, the trust push and the commands register.
"""

from ..errors import PayloadError, TopicError
from .mqtt import Link, LinkError, MessageProperties
from .payloads import decode, encode
from .topics import TopicParts, Topics

__all__ = [
    "Link",
    "LinkError",
    "MessageProperties",
    "PayloadError",
    "TopicError",
    "TopicParts",
    "Topics",
    "decode",
    "encode",
]
