"""The fleet link: MQTT topics, payloads and the connection (DESIGN.md section 5).

`topics` and `payloads` are pure (no I/O); `mqtt.Link` owns the connection, drains the outbox and
runs the handlers that the config shadow, the trust push and the commands register; those three
see it through `messages.LinkPort`.
"""

from ..errors import LinkError
from .messages import LinkPort, MessageProperties
from .mqtt import Link
from .payloads import PayloadError, decode, encode
from .topics import TopicError, TopicParts, Topics

__all__ = [
    "Link",
    "LinkError",
    "LinkPort",
    "MessageProperties",
    "PayloadError",
    "TopicError",
    "TopicParts",
    "Topics",
    "decode",
    "encode",
]
