"""Which `Host` a request to the pages may name: the defence against DNS rebinding.

A web page on another site, opened by a browser on the sentry's network (or on the sentry's own
screen), can have its own name answer with the sentry's address; the browser then sends that page's
requests to the sentry and lets the page read the answers, as the name is the page's own. The
request still says the name it was made for in its `Host` header, so the pages answer only a
request addressed to the sentry itself: the IP address the connection came in on, a loopback name
on a loopback connection, or a name the technician listed in `display.hosts`. An address cannot be
made to point anywhere else, so a page that can read the answers to it is the sentry's own.

Pure: decided from the texts alone, never by a DNS lookup, which someone on the network could answer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from ..config import loopback_host


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone is not part of it
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # an IPv4 client of a dual-stack socket
    return address


def host_allowed(host: str, local: str | None, names: Iterable[str]) -> bool:
    """Whether a request whose `Host` header is `host`, that came in on the local address `local`
    (None when unknown), is addressed to the sentry. `names`: `display.hosts`."""
    try:
        parts = urlsplit("//" + host)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number in range
        name = (parts.hostname or "").rstrip(".")
    except ValueError:
        return False  # not a host[:port] at all
    if not name:
        return False
    if name in {n.lower().rstrip(".") for n in names}:
        return True
    came_in = _address(local) if local is not None else None
    if came_in is None:
        return False
    if came_in.is_loopback and loopback_host(name):
        return True
    return _address(name) == came_in
