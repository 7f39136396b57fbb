"""Remote commands on `cmd/{name}`: signed, checked, run at most once, answered on the MQTT 5 response topic.

A request is a signed control message (codes/control.py) whose `body` is `{"deadline": ms, "args":
{...}}`; `link/control.ControlGuard` checks the signature, the operator's `command` role and site
scope, `aud` (the exact `cmd/{name}` topic), that it was not retained, its `iat` freshness, a deadline
no more than `control.max_deadline_s` after `iat`, and its jti. A refusal is answered `rejected` with
the refusal's `reason` (and a `control-rejected` event); nothing typed by hand runs a command.
- `deadline` is required, in milliseconds since 1970 like every `t` on the wire. A request that
  arrives at or after it is answered `expired` and not run: a `pulse-gate` stuck in a queue while
  the sentry was offline must never open the gate later. A request that moves the strike
  (`pulse-gate`, or a `selftest` naming the `relay` part) is `rejected` while the clock is known
  to be unsynchronised (a Pi without RTC boots with a clock in the past, where every deadline
  looks fresh).
- `args` (optional) are the command's own; unknown keys are `rejected`.

The response is `{"status": "ok" | "error" | "expired" | "rejected" | "unknown-command", "result" |
"error", "t"}`, with `reason` too when the control plane refused it. The correlation data is the
request's identity: each id of a *verified* request is decided once (an unverified one is answered
and forgotten, so a stranger can neither fill the memory nor claim a real request's id). A
redelivery (QoS 1 after a lost PUBACK) is not run again and not answered again. The ids of recent
requests, with their responses, are kept in the device's state store (state.py; bounded) and
written before the command runs, so a request redelivered after a restart or a crash is not run
twice either; its stored response is sent once more, since the first may have died with the
process (a snapshot's image is never written to disk: that answer becomes an error). A request
without correlation data cannot be told from its redelivery and is `rejected`.

Built-in commands (see `builtin_commands`): `pulse-gate` (one grant, mode "remote"; refused like
any automatic grant in a secure fault), `restart` (answered first, then a clean stop that the
service manager restarts), `snapshot` (only with `privacy.allow_snapshot`: a JPEG still),
`selftest` (the hardware self-tests, per part). Never logs arguments or results.
"""

from __future__ import annotations

import binascii
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..codes.control import Control
from ..codes.cose import shown
from ..errors import CommandError, CommandRejected, ControlRefused
from ..state import StateStore
from ..vocabulary import CommandStatus
from . import topics
from .control import ControlGuard

if TYPE_CHECKING:
    from .messages import LinkPort, MessageProperties

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 16 * 1024
MAX_CORRELATION_BYTES = 256



@dataclass(frozen=True)
class Command:
    """One command: `run(args)` returns the result (CBOR-encodable) or raises CommandError or
    CommandRejected. `moves_gate`: refused while the clock is unsynchronised; a callable decides
    from the request's args (a self-test moves the strike only when it tests the relay).
    `keep_result`: the result may be kept in the state store (False for images). `after`: called
    once the response has been sent (restart)."""

    run: Callable[[Mapping[str, Any]], Any]
    moves_gate: bool | Callable[[Mapping[str, Any]], bool] = False
    keep_result: bool = True
    after: Callable[[], None] | None = None


@dataclass(frozen=True)
class Reply:
    """A response to publish on the request's response topic, then `after` to call (if any)."""

    response: dict[str, Any]
    after: Callable[[], None] | None = None


class RemoteCommands:
    """Checks and runs requests; one instance per sentry, shared by all `cmd/{name}` topics.

    `store` keeps the answered ids. `guard` checks each request's signature and freshness.
    `clock_synced` says whether the wall clock can be trusted (None: unknown, treated as yes).
    `max_ids` bounds the remembered correlation ids (oldest forgotten first).
    """

    def __init__(
        self,
        store: StateStore,
        commands: Mapping[str, Command],
        *,
        guard: ControlGuard,
        clock: Callable[[], float] = time.time,
        clock_synced: Callable[[], bool | None] | None = None,
        max_ids: int = 256,
        max_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        self.store = store
        self.commands = dict(commands)
        self.guard = guard
        self.max_ids = max_ids
        self.max_bytes = max_bytes
        self._clock = clock
        self._clock_synced = clock_synced or (lambda: None)
        self._lock = threading.Lock()
        # key -> {"response": as answered, "stored": as written to disk, "resend": bool}, oldest
        # first; a None response: the command was started and never finished
        self._seen: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._load()

    def handle(
        self, name: str, payload: bytes, correlation: bytes | None, *, retained: bool = False
    ) -> Reply | None:
        """Decide on one signed request to `cmd/{name}` (`retained`: how it was delivered); None
        when nothing is to be sent (a redelivery)."""
        if not correlation:
            return self._reply(CommandStatus.REJECTED, error="correlation data is required")
        correlation = bytes(correlation)
        if len(correlation) > MAX_CORRELATION_BYTES:
            return self._reply(CommandStatus.REJECTED, error="correlation data too long")
        if len(payload) > self.max_bytes:
            return self._reply(CommandStatus.REJECTED, error=f"request: more than {self.max_bytes} bytes")
        topic = self.guard.topics.cmd(name)
        try:
            control = self.guard.command(topic, bytes(payload), retained=retained)
        except ControlRefused as exc:
            return self._refusal(exc)  # not remembered: nothing of an unverified request is kept
        key = f"{name}\x00{binascii.hexlify(correlation).decode()}"
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None:
                return self._redelivered(name, key, entry)
            command = self.commands.get(name)
            reply, args = self._check(name, command, control, topic)
            if reply is not None or command is None:
                self._remember(key, reply.response if reply else None, keep=True)
                return reply
            # Written down before running: a crash while running must not lead to a second run.
            self._remember(key, None, keep=True)
            try:
                result = command.run(args)
            except CommandRejected as exc:
                reply = self._reply(CommandStatus.REJECTED, error=str(exc))
            except CommandError as exc:
                reply = self._reply(CommandStatus.ERROR, error=str(exc))
            except Exception as exc:
                log.exception("command %s failed", name)
                reply = self._reply(CommandStatus.ERROR, error=f"failed ({type(exc).__name__})")
            else:
                reply = self._reply(CommandStatus.OK, result=result, after=command.after)
            log.info("command %s: %s", name, reply.response["status"])
            self._remember(key, reply.response, keep=command.keep_result)
            return reply

    def attach(self, link: LinkPort) -> None:
        """Answer requests on `cmd/+` of `link` on their response topic, then run what must follow
        the answer (a restart). A request without a response topic is not run: nobody would ever
        learn what it did."""

        def on_request(topic: str, payload: bytes, props: MessageProperties) -> None:
            name = topic.rsplit("/", 1)[-1]
            if not props.response_topic:
                log.warning("command %s without a response topic: not run", name)
                return
            reply = self.handle(name, payload, props.correlation_data, retained=props.retain)
            if reply is None:
                return
            link.respond(props.response_topic, props.correlation_data, reply.response)
            if reply.after is not None:
                reply.after()

        self.guard.attach(link)
        link.subscribe(f"{topics.CMD}/+", on_request)

    # -- internals --------------------------------------------------------------------------

    def _check(
        self, name: str, command: Command | None, control: Control, topic: str
    ) -> tuple[Reply | None, Mapping[str, Any]]:
        """The answer when the verified request must not run (with no args), else (None, args)."""
        if command is None:
            return self._reply(CommandStatus.UNKNOWN_COMMAND, error=f"no command {name!r}"), {}
        request = control.body
        if not isinstance(request, Mapping):
            return self._reply(
                CommandStatus.REJECTED, error="request: must be a map with deadline and args"
            ), {}
        unknown = sorted(
            k if isinstance(k, str) else shown(k) for k in request if k not in ("deadline", "args")
        )
        if unknown:
            return self._reply(
                CommandStatus.REJECTED, error="request: unknown keys " + ", ".join(unknown)
            ), {}
        deadline = request.get("deadline")
        if deadline is None:
            return self._reply(
                CommandStatus.REJECTED, error="deadline: required (milliseconds since 1970)"
            ), {}
        if not _is_time_ms(deadline):
            return self._reply(CommandStatus.REJECTED, error="deadline: must be milliseconds since 1970"), {}
        args = request.get("args", {})
        if not isinstance(args, Mapping) or not all(isinstance(k, str) for k in args):
            return self._reply(CommandStatus.REJECTED, error="args: must be a map with text keys"), {}
        now_ms = self._clock() * 1000
        if now_ms >= deadline:
            log.info("command %s expired %.0f ms ago: not run", name, now_ms - deadline)
            return self._reply(
                CommandStatus.EXPIRED, error="the deadline had passed when the request arrived"
            ), {}
        try:
            self.guard.admit(topic, control, deadline)
        except ControlRefused as exc:
            return self._refusal(exc), {}
        moves_gate = command.moves_gate(args) if callable(command.moves_gate) else command.moves_gate
        if moves_gate and self._clock_synced() is False:
            why = "the clock is not synchronised: deadlines cannot be trusted"
            return self._reply(CommandStatus.REJECTED, error=why), {}
        return None, args

    def _redelivered(self, name: str, key: str, entry: dict[str, Any]) -> Reply | None:
        self._seen.move_to_end(key)
        if not entry["resend"]:
            log.info("command %s redelivered: already answered, not run again", name)
            return None
        # Known from before a restart: the answer may never have left; send it once more.
        entry["resend"] = False
        response = entry["response"]
        if response is None:
            response = {"status": CommandStatus.ERROR, "error": "interrupted by a restart; not run again",
                        "t": int(self._clock() * 1000)}  # fmt: skip
        log.info("command %s redelivered after a restart: answered again, not run again", name)
        return Reply(response)

    def _refusal(self, exc: ControlRefused) -> Reply:
        reply = self._reply(CommandStatus.REJECTED, error=exc.detail)
        reply.response["reason"] = exc.reason
        return reply

    def _reply(
        self, status: str, *, result: Any = None, error: str | None = None,
        after: Callable[[], None] | None = None,
    ) -> Reply:  # fmt: skip
        response: dict[str, Any] = {"status": status}
        if status == CommandStatus.OK:
            response["result"] = result
        else:
            response["error"] = error
        response["t"] = int(self._clock() * 1000)
        return Reply(response, after)

    def _remember(self, key: str, response: dict[str, Any] | None, *, keep: bool) -> None:
        stored = response
        if response is not None and (not keep or not _is_json(response)):
            stored = {"status": CommandStatus.ERROR,
                      "error": "answered before a restart; the result is not kept",
                      "t": response["t"]}  # fmt: skip
        self._seen[key] = {"response": response, "stored": stored, "resend": False}
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_ids:
            self._seen.popitem(last=False)
        entries = [{"key": k, "response": e["stored"]} for k, e in self._seen.items()]
        try:
            self.store.keep_answered_commands(entries)
        except OSError as exc:
            log.error("command ids not kept on disk: %s", exc.strerror)

    def _load(self) -> None:
        try:
            entries = self.store.answered_commands()
            for item in entries[-self.max_ids :]:
                key, response = item["key"], item["response"]
                if not isinstance(key, str) or not (response is None or isinstance(response, dict)):
                    raise ValueError("bad entry")
                self._seen[key] = {"response": response, "stored": response, "resend": True}
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("command ids in %s unusable (%s): starting with none", self.store.path, exc)
            self._seen.clear()


def _is_time_ms(value: Any) -> bool:
    """Whether `value` can be a time in milliseconds: a finite number that float arithmetic holds (the
    deadline is compared with the clock and subtracted from it; an integer past 1e308 cannot be)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _is_json(value: Any) -> bool:
    """Whether `value` is kept as it is: plain JSON data (bytes, for one, are not: a snapshot's
    image never goes to disk)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


# -- the built-in commands ----------------------------------------------------------------------


def _tests_relay(args: Mapping[str, Any]) -> bool:
    """Whether a `selftest` request names the relay part, which pulses the strike."""
    parts = args.get("parts")
    return isinstance(parts, list) and "relay" in parts


def _no_args(args: Mapping[str, Any]) -> None:
    if args:
        raise CommandRejected("args: this command takes none (" + ", ".join(sorted(args)) + ")")


def builtin_commands(
    *,
    grant: Callable[[str], float | None],
    request_restart: Callable[[], None],
    allow_snapshot: Callable[[], bool],
    snapshot: Callable[[], bytes] | None,
    selftest: Callable[[Sequence[str] | None], list[dict[str, Any]]],
    selftest_parts: Sequence[str] = (),
) -> dict[str, Command]:
    """`pulse-gate`, `restart`, `snapshot` and `selftest` over the sentry's own parts.

    `grant(mode)` is `Gate.grant` (returns None when refused); `request_restart` asks for a clean
    stop with the restart exit status; `allow_snapshot` reads `privacy.allow_snapshot` from the
    current config at each request; `snapshot` returns a JPEG still (None: no camera for stills);
    `selftest(parts)` runs the named parts (None: the default set) and returns their results.
    """

    def pulse_gate(args: Mapping[str, Any]) -> Any:
        _no_args(args)
        if grant("remote") is None:
            raise CommandError("the gate refused the grant (a fault in secure mode, or closed)")
        return {"granted": True}

    def restart(args: Mapping[str, Any]) -> Any:
        _no_args(args)
        return {"restarting": True}

    def take_snapshot(args: Mapping[str, Any]) -> Any:
        _no_args(args)
        if not allow_snapshot():
            raise CommandRejected("snapshots are off (privacy.allow_snapshot)")
        if snapshot is None:
            raise CommandError("no camera still is available on this sentry")
        image = snapshot()
        return {"content_type": "image/jpeg", "image": bytes(image)}

    def run_selftest(args: Mapping[str, Any]) -> Any:
        unknown = sorted(k for k in args if k != "parts")
        if unknown:
            raise CommandRejected("args: unknown keys " + ", ".join(unknown))
        parts = args.get("parts")
        if parts is not None:
            if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
                raise CommandRejected("args.parts: must be a list of part names")
            bad = sorted(set(parts) - set(selftest_parts)) if selftest_parts else []
            if bad:
                raise CommandRejected("args.parts: unknown parts " + ", ".join(bad))
        results = selftest(parts)
        passed = all(r.get("status") != "fail" for r in results)
        return {"passed": passed, "parts": results}

    return {
        "pulse-gate": Command(pulse_gate, moves_gate=True),
        "restart": Command(restart, after=request_restart),
        "snapshot": Command(take_snapshot, keep_result=False),
        "selftest": Command(run_selftest, moves_gate=_tests_relay),
    }
