"""The config shadow: operators' desired config in, the applied (or rejected) outcome reported back.

Two retained topics carry a desired config, `{"version": int, "config": {section: {key: value}}}`,
as the `body` of a signed control message (codes/control.py): the site's `all/config/desired`
(defaults for every sentry at the site) and the device's own `config/desired`. `guard`
(link/control.py) lets a document in only when an operator key of the current trust list with the
`config` role and the sentry's site in its scope signed it for exactly that topic, with a version
below 2^53; otherwise the report is `rejected` with an error under the path `signature` (its message
starts with the refusal's reason) and nothing changes. Nothing typed by hand (JSON, bare CBOR)
changes a sentry. Each document is a whole *overlay* on the local config (the embedded defaults and
the TOML file): pushing a new one replaces the previous one from the same source, it does not add to
it. The effective config is `local <- site overlay <- device overlay`, merged key by key within each
section, so the device wins over the site.

Versions. Each source keeps its own counter, because the site's and the device's documents are
written by different hands at different times; the applied state is the pair (site version, device
version). A document whose version is at or below the applied one of its source is ignored without a
report: the broker redelivers the retained document on every reconnect. A new document is combined
with the *applied* overlay of the other source (never with one that was rejected), validated whole
and either applied or rejected; on rejection nothing changes. The report's `version` is the device
version and `site_version` the site version of the candidate that was decided on.

Which keys may change remotely, and how a document becomes the effective config, is `desired.py`'s
(pure). Keys outside `desired.LIVE` are applied to `current` at once but take effect only after a
restart; the report lists those still waiting for one in `restart`.

Persistence: the applied overlays and their versions go to the device's state store (state.py,
durable when the call returns) before they are swapped in, so a restart finds them; at start they
are validated again over the local config of that moment, and kept overlays that cannot be read or
no longer validate are ignored with a warning (the retained documents bring the device up to date
again once it connects).

Secrets (`mqtt.password`) are never echoed in a report's `effective`. Nothing here blocks the hot
path: callers read `shadow.current`, which is replaced by one reference assignment.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..codes.trust import TrustList
from ..config import Config, to_mapping
from ..errors import ConfigRejected, ControlRefused
from ..state import StateStore
from ..vocabulary import ControlRefusal
from . import topics
from .control import ControlGuard
from .desired import (
    LIVE,
    MAX_DESIRED_BYTES,
    MAX_VERSION_STEP,
    build,
    check_document,
    flatten,
    matches,
    redacted,
    strip_local,
)

if TYPE_CHECKING:
    from .messages import LinkPort, MessageProperties

log = logging.getLogger(__name__)

SITE = "site"
DEVICE = "device"
SOURCES = (SITE, DEVICE)
#: The `errors` path of a document the signed control plane refused.
SIGNATURE = "signature"

_FILE_FORMAT = 1

Listener = Callable[[Config], None]


@dataclass(frozen=True)
class Overlay:
    """One source's applied desired document (version 0 and empty: nothing applied yet)."""

    version: int = 0
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Applied:
    """Everything that changes together when a config is applied; swapped as one reference."""

    config: Config
    site: Overlay = field(default_factory=Overlay)
    device: Overlay = field(default_factory=Overlay)

    def overlay(self, source: str) -> Overlay:
        return self.site if source == SITE else self.device


class ConfigShadow:
    """The effective config and its versions; `handle` decides on each desired document.

    `local` is the config from the embedded defaults and the file. `store` keeps the applied
    overlays (the device's state store, open for `local`'s identity). `guard` checks signatures;
    without one, no operator is known and every document is refused (`attach` may bring one).
    Listeners added with `add_listener` are called with the new config after each swap, on the
    thread that called `handle`; their errors are logged, never raised into the link.
    """

    def __init__(
        self,
        local: Config,
        store: StateStore,
        *,
        guard: ControlGuard | None = None,
        max_bytes: int = MAX_DESIRED_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.local = local
        self.store = store
        self.guard = guard or ControlGuard(
            topics.Topics(local.device.site, local.device.id), TrustList.empty, store, clock=clock
        )
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._applied = self._load()
        #: what this process started with: keys outside LIVE keep these values until a restart
        self.started: Config = self._applied.config

    # -- reading ----------------------------------------------------------------------------

    @property
    def current(self) -> Config:
        """The effective config (one reference read; never a half-applied one)."""
        return self._applied.config

    @property
    def version(self) -> int:
        """The applied version of the device's own desired config (0: none)."""
        return self._applied.device.version

    @property
    def site_version(self) -> int:
        """The applied version of the site-wide desired config (0: none)."""
        return self._applied.site.version

    def pending_restart(self, config: Config | None = None) -> list[str]:
        """Keys whose applied value (of `config`, default the current one) differs from the one
        this process started with and is not picked up live."""
        before = flatten(to_mapping(self.started))
        after = flatten(to_mapping(config if config is not None else self.current))
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        return sorted(k for k in changed if not matches(k, LIVE))

    def report(self) -> dict[str, Any]:
        """The `config/reported` document for the applied state (published at each connect)."""
        applied = self._applied
        return self._report(applied, "applied", [], applied.site.version, applied.device.version)

    # -- changing ---------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def topic(self, source: str) -> str:
        """The topic that carries `source`'s desired documents (the `aud` they are signed for)."""
        own = self.guard.topics
        return own.site_config_desired if source == SITE else own.config_desired

    def handle(self, source: str, payload: bytes) -> dict[str, Any] | None:
        """Decide on one signed desired document from `source` ("site" or "device").

        Returns the `config/reported` document to publish (retained), or None when the document
        is ignored: an empty payload (a cleared retained message) or a version at or below the
        applied one of its source.
        """
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
        if not bytes(payload).strip():
            log.info("config: empty %s desired document ignored", source)
            return None
        with self._lock:
            applied = self._applied
            versions: dict[str, int | None] = {SITE: applied.site.version, DEVICE: applied.device.version}
            if len(payload) > self.max_bytes:
                versions[source] = None
                problem = ("", f"{len(payload)} bytes, over the {self.max_bytes}-byte limit")
                log.warning("config: %s desired document rejected: %s", source, problem[1])
                return self._report(applied, "rejected", [problem], versions[SITE], versions[DEVICE])
            try:
                signed = self.guard.config(self.topic(source), bytes(payload))
                doc = signed.body
                version = doc.get("version") if isinstance(doc, Mapping) else None
                current = applied.overlay(source).version
                if isinstance(version, int) and not isinstance(version, bool):
                    if 0 <= version <= current:
                        log.info("config: %s desired version %d ignored (applied: %d)",
                                 source, version, current)
                        return None
                    if version > current + MAX_VERSION_STEP:
                        raise self.guard.refused(self.topic(source), ControlRefused(
                            ControlRefusal.VERSION,
                            f"version {version} leaps more than 2^32 above the applied {current}",
                            signed.operator.kid,
                        ))
            except ControlRefused as exc:
                versions[source] = None
                log.warning("config: %s desired document refused: %s", source, exc)
                problems = [(SIGNATURE, str(exc))]
                return self._report(applied, "rejected", problems, versions[SITE], versions[DEVICE])
            versions[source] = version if isinstance(version, int) and not isinstance(version, bool) else None
            try:
                version, overlay = check_document(doc)
                others = applied.device if source == SITE else applied.site
                site = overlay if source == SITE else others.config
                device = overlay if source == DEVICE else others.config
                config = build(self.local, site, device)
            except ConfigRejected as exc:
                log.warning("config: %s desired version %s rejected: %s", source, version, exc)
                return self._report(applied, "rejected", exc.problems, versions[SITE], versions[DEVICE])
            new_overlay = Overlay(version, strip_local(self.local, overlay))
            candidate = dataclasses.replace(applied, config=config, **{source: new_overlay})
            warnings = self._persist(candidate)
            self._applied = candidate  # the swap: one reference assignment
            log.info("config: %s desired version %d applied", source, version)
            report = self._report(candidate, "applied", [], candidate.site.version, candidate.device.version)
        self._notify(candidate.config)
        if warnings:
            report["warnings"] = warnings
        return report

    def attach(self, link: LinkPort, guard: ControlGuard | None = None) -> None:
        """Take desired documents from `link` (checked by `guard`, when given) and publish each
        report, retained, on `config/reported`; publish the current report after every connect
        (before the retained desired documents come in again) and keep the `state` topic's
        versions up to date."""
        if guard is not None:
            self.guard = guard
        self.guard.attach(link)

        def publish(report: dict[str, Any]) -> None:
            link.publish(topics.CONFIG_REPORTED, report, retain=True)

        def handler(source: str) -> Callable[[str, bytes, MessageProperties], None]:
            def on_desired(_topic: str, payload: bytes, _props: MessageProperties) -> None:
                report = self.handle(source, payload)
                if report is not None:
                    publish(report)

            return on_desired

        def versions(_config: Config | None = None) -> None:
            link.update_state(config_version=self.version, site_config_version=self.site_version)

        versions()
        self.add_listener(versions)
        link.add_connect_hook(lambda: publish(self.report()))
        link.subscribe(topics.CONFIG_DESIRED, handler(DEVICE))
        link.subscribe(link.topics.site_config_desired, handler(SITE))

    # -- internals --------------------------------------------------------------------------

    def _report(
        self,
        applied: Applied,
        status: str,
        problems: list[tuple[str, str]],
        site_version: int | None,
        device_version: int | None,
    ) -> dict[str, Any]:
        return {
            "version": device_version,
            "site_version": site_version,
            "status": status,
            "errors": [{"path": p, "message": m} for p, m in problems],
            "effective": redacted(applied.config),
            "restart": self.pending_restart(applied.config) if status == "applied" else [],
            "t": int(self._clock() * 1000),
        }

    def _notify(self, config: Config) -> None:
        for listener in list(self._listeners):
            try:
                listener(config)
            except Exception:
                log.exception("config listener %r failed", listener)

    def _persist(self, applied: Applied) -> list[str]:
        doc = {
            "format": _FILE_FORMAT,
            SITE: {"version": applied.site.version, "config": applied.site.config},
            DEVICE: {"version": applied.device.version, "config": applied.device.config},
        }
        try:
            self.store.keep_applied_config(doc)
        except OSError as exc:
            # Applied anyway: the gate should run the operator's config now; the retained desired
            # documents bring it back after a restart.
            log.error("config: cannot keep the applied config in %s: %s", self.store.path, exc.strerror)
            return [f"not kept on disk: {exc.strerror}"]
        return []

    def _load(self) -> Applied:
        """The last applied state from the store, validated over today's local config."""
        fallback = Applied(self.local)
        doc = self.store.applied_config()
        if doc is None:
            return fallback
        try:
            if doc.get("format") != _FILE_FORMAT:
                raise ConfigRejected([("format", f"must be {_FILE_FORMAT}")])
            overlays = {}
            for source in SOURCES:
                version, overlay = check_document(doc.get(source))
                overlays[source] = Overlay(version, overlay)
            config = build(self.local, overlays[SITE].config, overlays[DEVICE].config)
        except (ValueError, ConfigRejected) as exc:
            log.warning("config: ignoring the kept config in %s, it cannot be used: %s", self.store.path, exc)
            return fallback
        log.info(
            "config: last applied config loaded (site version %d, device version %d)",
            overlays[SITE].version, overlays[DEVICE].version,
        )  # fmt: skip
        return Applied(config, overlays[SITE], overlays[DEVICE])
