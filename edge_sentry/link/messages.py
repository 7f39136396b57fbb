"""What the link's users see of it: an incoming message's properties, the handler signature, and
`LinkPort`, the part of the link that the config shadow, the remote commands and the trust push use.

Depending on `LinkPort` rather than the link itself keeps those modules free of paho and of the
connection's threads: a test hands them a fake, the daemon hands them the real link. Nothing here
does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .topics import Topics

#: What publish() and respond() take: a map or list is sent as CBOR, bytes as they are.
Payload = Mapping[str, Any] | list[Any] | bytes


@dataclass(frozen=True)
class MessageProperties:
    """What a handler learns about an incoming message besides its topic and payload (paho's types
    stay inside the link)."""

    qos: int = 0
    retain: bool = False
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    message_expiry_s: int | None = None
    user_properties: tuple[tuple[str, str], ...] = ()


Handler = Callable[[str, bytes, MessageProperties], None]


class LinkPort(Protocol):
    """What a module attached to the link may ask of it (edge_sentry.link.Link has it)."""

    topics: Topics

    def publish(self, topic: str, payload: Payload, *, qos: int = ..., retain: bool = ...) -> bool: ...

    def respond(self, response_topic: str, correlation_data: bytes | None, payload: Payload) -> bool: ...

    def subscribe(self, topic: str, handler: Handler, *, qos: int = ...,
                  max_payload: int | None = ...) -> str: ...

    def add_connect_hook(self, hook: Callable[[], None]) -> None: ...

    def update_state(self, **fields: Any) -> None: ...
