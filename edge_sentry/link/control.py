"""The sentry's side of the signed control plane: every config and command is checked here first.

A broker login is not an operator (docs/protocol.md, "Signed control plane"). `ControlGuard` lets a
message on `config/desired`, the site's `all/config/desired` or `cmd/*` through only when it is a
control message signed by an operator key of the sentry's *current* trust list (looked up at each
message, so a pushed list that adds or drops an operator counts at once), with the role the topic
needs, a scope that covers the sentry's site, and `aud` equal to the topic it came on. Commands must
also be fresh (`control.skew_s`), short-lived (`control.max_deadline_s`), not retained and not seen
before: their jti are kept in the state store until their deadline (and at least while their iat
is fresh), so a replay after a restart is still a replay. Configs rely on their version instead
(the shadow orders them), never on the clock.

Every refusal becomes a `control-rejected` event `{"topic", "reason", "operator"}` (operator: the
base64 kid once the signature verified, else None) through `record`, the path the trust push's events
take, and ControlRefused for the caller to answer. What must never happen here: acting on anything
of a message before its signature holds, or logging a message's body.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..codes import control as signed
from ..codes.trust import TrustList
from ..config import ControlConfig
from ..errors import ControlRefused
from ..state import StateStore
from ..vocabulary import ControlRefusal, Event, Role
from . import topics
from .topics import Topics

if TYPE_CHECKING:
    from .messages import LinkPort

log = logging.getLogger(__name__)

Record = Callable[[dict[str, Any]], Any]

#: Refusals that anyone with a broker login can cause at will, since no operator key is needed.
#: Each is recorded at most once per reason every QUIET_S seconds (the next event counts what was
#: held back; keyed by reason alone, since `cmd/+` lets a sender pick any number of topics): a flood
#: of junk must not fill the outbox, wear the SD card or crowd out scans.
UNAUTHENTICATED = frozenset({ControlRefusal.UNSIGNED, ControlRefusal.BAD_SIGNATURE,
                             ControlRefusal.UNKNOWN_OPERATOR})
QUIET_S = 60.0


class ControlGuard:
    """Checks control messages for one sentry (`topics` names it).

    `trust` returns the trust list in use; `settings` the `[control]` section in force; `store`
    keeps the jti of accepted commands; `record` receives `control-rejected` events (the outbox's
    `put`; without one, `attach` sends them straight to the `event` topic).
    """

    def __init__(
        self,
        own: Topics,
        trust: Callable[[], TrustList],
        store: StateStore,
        *,
        settings: Callable[[], ControlConfig] = ControlConfig,
        record: Record | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.topics = own
        self.store = store
        self._trust = trust
        self._settings = settings
        self._record = record
        self._clock = clock
        self._lock = threading.Lock()
        self._seen = store.control_ids()
        self._quiet: dict[str, tuple[float, int]] = {}  # reason -> (quiet until, held back since)

    def attach(self, link: LinkPort) -> None:
        """Without a `record`, refusals go to `link`'s `event` topic."""
        if self._record is None:
            self._record = lambda event: link.publish(topics.EVENT, event)

    def config(self, topic: str, payload: bytes) -> signed.Control:
        """A verified desired config that arrived on `topic`; ControlRefused (recorded) otherwise."""
        try:
            control = self._verify(topic, payload, Role.CONFIG)
            signed.check_config_version(control)
        except ControlRefused as exc:
            raise self.refused(topic, exc) from None
        return control

    def command(self, topic: str, payload: bytes, *, retained: bool) -> signed.Control:
        """A command whose signature, role, scope and audience hold and that was not retained (a
        retained command would run again at every subscription); ControlRefused (recorded)."""
        try:
            control = self._verify(topic, payload, Role.COMMAND)
            if retained:
                raise ControlRefused(
                    ControlRefusal.RETAINED, "a command is never retained", control.operator.kid
                )
        except ControlRefused as exc:
            raise self.refused(topic, exc) from None
        return control

    def admit(self, topic: str, control: signed.Control, deadline_ms: float) -> None:
        """Take a verified command: fresh iat, deadline close enough to it, jti never seen; the jti
        is kept (on disk) until the deadline. ControlRefused (recorded) otherwise."""
        settings = self._settings()
        now_ms = self._clock() * 1000
        try:
            signed.check_fresh(control, now_ms=now_ms, skew_s=settings.skew_s)
            signed.check_deadline(control, deadline_ms, max_deadline_s=settings.max_deadline_s)
            # Kept while the command could still pass: until its deadline, and at least as long as
            # its iat is fresh (a clock stepped back inside that window must not make it new again).
            keep_until = max(deadline_ms, control.iat + settings.skew_s * 1000)
            self._take_jti(control, keep_until, now_ms)
        except ControlRefused as exc:
            raise self.refused(topic, exc) from None

    def refused(self, topic: str, exc: ControlRefused) -> ControlRefused:
        """Log and record one refusal; returns `exc` for the caller to raise."""
        kid = base64.b64encode(exc.operator).decode("ascii") if exc.operator is not None else None
        now = self._clock()
        held_back = 0
        if exc.reason in UNAUTHENTICATED:
            with self._lock:
                until, held_back = self._quiet.get(exc.reason, (0.0, 0))
                if now < until:
                    self._quiet[exc.reason] = (until, held_back + 1)
                    log.debug("control message on %s refused (%s), not recorded", topic, exc.reason)
                    return exc
                self._quiet[exc.reason] = (now + QUIET_S, 0)
        log.warning("control message on %s refused (%s): %s", topic, exc.reason, exc.detail)
        event: dict[str, Any] = {
            "event": Event.CONTROL_REJECTED,
            "t": int(now * 1000),
            "topic": topic,
            "reason": exc.reason,
            "operator": kid,
        }
        if held_back:
            event["held_back"] = held_back  # refusals of this reason since the last event, unrecorded
        if self._record is not None:
            try:
                self._record(event)
            except Exception:
                log.exception("could not record %s", Event.CONTROL_REJECTED)
        return exc

    # -- internals --------------------------------------------------------------------------

    def _verify(self, topic: str, payload: bytes, role: Role) -> signed.Control:
        return signed.verify(payload, self._trust().operator, topic=topic, site=self.topics.site, role=role)

    def _take_jti(self, control: signed.Control, keep_until_ms: float, now_ms: float) -> None:
        key = control.jti.hex()
        with self._lock:
            # Past that time the command is refused as expired or stale anyway: its jti need not be kept.
            live = {k: d for k, d in self._seen.items() if d > now_ms}
            if key in live:
                raise ControlRefused(ControlRefusal.REPLAY, "this jti was seen before", control.operator.kid)
            live[key] = int(keep_until_ms)
            self._seen = live
            try:
                self.store.keep_control_ids(live)
            except OSError as exc:
                # Still taken: refusing every command on a failing disk would lock the operators
                # out; a replay now needs a restart within the command's few minutes of life.
                log.error("command jti not kept on disk: %s", exc.strerror)
