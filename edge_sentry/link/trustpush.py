"""Trust push: a signed trust list from the fleet replaces the sentry's own, or is refused and reported.

The `trust` topic carries a COSE_Sign1 (signed by the fleet's trust-root key, `trust.root_key`)
around the CBOR form of a trust list (docs/protocol.md section 3). A list is accepted only when the signature
holds under that key, its protected header names the trust list's content type (the root key also
signs venue posters), its `audience` names this sentry (its site, or its site and device) and its
version is higher than the one in use; anything else (no root key configured, bad or missing
signature, no or another content type, malformed envelope or list, no audience or one for other
sentries, a lower version, an equal version with other content) is refused: the list in use stays,
and a `trust-rejected` event says why. The
retained list comes again at every reconnect: the same version with the same content is simply
"unchanged" and reported by nobody.

Accepted lists are kept in the device's state store (state.py, JSON form) rather than over
`trust.file`: the provisioned file may be read-only and stays as the installer left it. At start,
`load_initial` takes whichever of the two has the higher version (the store belongs to one site and
device, so a kept list was checked against this sentry's audience when it came). The local file is
trusted as installed: whoever can write it can write anything, so its `audience` is not checked and
may be absent. Then listeners get the new list
(the daemon swaps it into the verifier and updates the `state` topic's trust version).

Never logs or reports a list's keys; reasons are short tokens an operator's tool can count.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..codes import cose
from ..codes.trust import TrustList
from ..errors import CodeError, TrustListError, TrustRefused, UnsupportedAlgorithmError
from ..state import StateStore
from ..vocabulary import ContentType, Event, TrustRejection
from . import topics

if TYPE_CHECKING:
    from .messages import LinkPort, MessageProperties

log = logging.getLogger(__name__)

#: A DCC list with every EU signer certificate is a few hundred KB: more than mqtt.max_payload's
#: default, so the trust topic's subscription asks the link for this cap instead.
MAX_TRUST_BYTES = 8 << 20

Listener = Callable[[TrustList], None]
Record = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class Outcome:
    """What became of one pushed list: "accepted", "rejected" or "unchanged"."""

    status: str
    reason: str | None = None
    detail: str | None = None
    version: int | None = None
    event: dict[str, Any] | None = None


def load_initial(
    trust_file: str | os.PathLike[str] | None, store: StateStore
) -> tuple[TrustList | None, str | None]:
    """The newest usable list of `trust.file` and the pushed one kept in `store`, and the problem
    when neither is usable (None, reason). A broken one is skipped with a warning when the other
    one loads."""
    found: list[TrustList] = []
    problems: list[str] = []
    if trust_file is not None:
        try:
            found.append(TrustList.load(trust_file))
        except TrustListError as exc:
            log.warning("trust list unusable: %s", exc)
            problems.append(str(exc))
    pushed = store.pushed_trust()
    if pushed is not None:
        try:
            found.append(TrustList.from_json(pushed))
        except TrustListError as exc:
            log.warning("trust list unusable: the pushed list kept in %s: %s", store.path, exc)
            problems.append(f"{store.path}: {exc}")
    if found:
        return max(found, key=lambda t: t.version), None
    return None, "; ".join(problems) or "no trust.file configured, and no list pushed yet"


class TrustPush:
    """Decides on pushed trust lists; `trust` is the list in use.

    `root_key` is the loaded trust-root public key (None: every push is refused as `no-root-key`).
    `site` and `device` name this sentry, which a pushed list's `audience` must name.
    `store` keeps accepted lists. `record` receives the `trust-updated` / `trust-rejected` events
    (the outbox's `put`, so they reach the `event` topic with an id and a seq). Listeners run after
    the swap on the caller's thread; their errors are logged.
    """

    def __init__(
        self,
        trust: TrustList,
        root_key: Ed25519PublicKey | None,
        store: StateStore,
        *,
        site: str,
        device: str,
        record: Record | None = None,
        max_bytes: int = MAX_TRUST_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.trust = trust
        self.root_key = root_key
        self.store = store
        self.site = site
        self.device = device
        self.max_bytes = max_bytes
        self._record = record
        self._clock = clock
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def handle(self, payload: bytes) -> Outcome:
        """Check one pushed list; swap it in and keep it when accepted, report a refusal."""
        if not bytes(payload):
            return Outcome("unchanged", detail="empty message (a cleared retained list)")
        with self._lock:
            current = self.trust
            try:
                pushed = self._verify(bytes(payload))
            except TrustRefused as exc:
                return self._refuse(exc.reason, exc.detail, None, current)
            if pushed.version < current.version:
                detail = f"version {pushed.version} is lower than {current.version} in use"
                return self._refuse(TrustRejection.OLD_VERSION, detail, pushed.version, current)
            if pushed.version == current.version:
                if pushed.to_mapping() == current.to_mapping():
                    return Outcome("unchanged", version=pushed.version)
                detail = f"version {pushed.version} is in use with other content"
                return self._refuse(TrustRejection.OLD_VERSION, detail, pushed.version, current)
            kept = True
            try:
                self.store.keep_pushed_trust(pushed.to_json())
            except OSError as exc:
                # Still swapped in: a newer list may carry revocations that must hold now.
                kept = False
                log.error("trust list %d not kept on disk: %s", pushed.version, exc.strerror)
            self.trust = pushed  # the swap: one reference assignment
        log.info("trust list %d accepted (was %d)", pushed.version, current.version)
        for listener in list(self._listeners):
            try:
                listener(pushed)
            except Exception:
                log.exception("trust listener %r failed", listener)
        event = self._event(
            Event.TRUST_UPDATED, version=pushed.version, previous=current.version, persisted=kept
        )
        return Outcome("accepted", version=pushed.version, event=event)

    def attach(self, link: LinkPort) -> None:
        """Take pushed lists from the `trust` topic of `link` and keep the `state` topic's trust
        version current. Without a `record`, the trust events go straight to the `event` topic."""
        if self._record is None:
            self._record = lambda event: link.publish(topics.EVENT, event)
        link.update_state(trust_version=self.trust.version)
        self.add_listener(lambda trust: link.update_state(trust_version=trust.version))

        def on_trust(_topic: str, payload: bytes, _props: MessageProperties) -> None:
            self.handle(payload)

        link.subscribe(topics.TRUST, on_trust, max_payload=self.max_bytes)

    # -- internals --------------------------------------------------------------------------

    def _verify(self, payload: bytes) -> TrustList:
        if self.root_key is None:
            raise TrustRefused(
                TrustRejection.NO_ROOT_KEY, "trust.root_key is not configured or cannot be read"
            )
        if len(payload) > self.max_bytes:
            raise TrustRefused(TrustRejection.TOO_LARGE, f"{len(payload)} bytes, more than {self.max_bytes}")
        try:
            message = cose.decode_sign1(payload)
        except CodeError as exc:
            raise TrustRefused(TrustRejection.MALFORMED, str(exc)) from None
        try:
            genuine = cose.verify(message, self.root_key)
        except UnsupportedAlgorithmError as exc:
            raise TrustRefused(TrustRejection.UNSUPPORTED_ALGORITHM, str(exc)) from None
        if not genuine:
            raise TrustRefused(TrustRejection.BAD_SIGNATURE, "not signed by the trust-root key")
        try:
            # After the signature: a genuine poster or control message pushed here is named as such.
            message.require_content_type(ContentType.TRUST)
        except CodeError as exc:
            raise TrustRefused(TrustRejection.CONTENT_TYPE, str(exc)) from None
        try:
            pushed = TrustList.from_cbor(message.payload)
        except TrustListError as exc:
            raise TrustRefused(TrustRejection.INVALID, str(exc)) from None
        if pushed.audience is None:
            raise TrustRefused(TrustRejection.AUDIENCE, "a pushed list must name its audience")
        if not pushed.audience.names(self.site, self.device):
            raise TrustRefused(
                TrustRejection.AUDIENCE, f"the list is not for {self.site}/{self.device}"
            )
        return pushed

    def _refuse(self, reason: str, detail: str, version: int | None, current: TrustList) -> Outcome:
        log.warning("trust list refused (%s): %s; keeping version %d", reason, detail, current.version)
        event = self._event(
            Event.TRUST_REJECTED, reason=reason, detail=detail, version=version, current=current.version
        )
        return Outcome("rejected", reason, detail, version, event)

    def _event(self, name: str, **details: Any) -> dict[str, Any]:
        event = {"event": name, "t": int(self._clock() * 1000), **details}
        if self._record is not None:
            try:
                self._record(event)
            except Exception:
                log.exception("could not record %s", name)
        return event

