"""What a handler module is given when it is mounted: the config, the hub, where it is served.

Kept apart from server.py so that a handler module imports this small type, never the server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import Config
from .hub import PageHub

#: Tornado URL rules: (path pattern, handler class, the handler's `initialize` arguments).
Routes = list[tuple[str, type, dict[str, Any]]]


@dataclass(frozen=True)
class PageContext:
    config: Config
    hub: PageHub
    loopback: bool  # served on a loopback address only (the Host check itself is pages/hosts.py)


#: A handler module's mount point: its routes for a context (`views.routes`, say).
RouteSource = Callable[[PageContext], Routes]
