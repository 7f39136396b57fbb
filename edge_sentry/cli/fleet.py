"""`edge-sentry fleet status|push-config|push-trust|command|tail`: the operator's side, against a broker.

The broker and the operator's credentials come from the config's `[mqtt]` section (host, port,
username, password or password_file, ca, cert, key), the site from `device.site` unless `--site`
is given. Each sub-command is one short conversation with the broker (see `edge_sentry.fleet`).
`push-config` and `command` sign what they send with the operator's key (`--operator-key PEM`, or
`[fleet] operator_key`): a sentry acts only on control messages signed by an operator key of its
trust list. Without a key they stop with a usage error before connecting.

Exit codes, the same for every sub-command:
  0  done: every targeted sentry applied or accepted the push, the command answered `ok`
  1  a sentry rejected the push, or the command answered anything but `ok`
  2  bad usage: an unreadable or malformed file or key, a bad `--arg`, no `[mqtt]` section
  3  no answer: a targeted sentry is offline or did not answer within `--timeout`
  4  the broker: unreachable, refused the connection, or refused a subscription or a message
Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..codes import control, keys
from ..codes.trust import Audience, TrustList
from ..config import Config
from ..errors import EdgeSentryError, FleetError, KeyFileError, PayloadError, TopicError, UsageError
from ..fleet import command_request as cmd
from ..fleet import push, status, tail
from ..fleet.client import (
    DEFAULT_TIMEOUT_S,
    FleetClient,
    check_device,
    check_site,
    device_topic,
    site_filter,
)
from ..link import payloads, topics
from ..link.desired import MAX_VERSION_STEP
from ..vocabulary import CommandStatus

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_ANSWER, EXIT_BROKER = 0, 1, 2, 3, 4

DEFAULT_WAIT_S = 1.0  # retained messages arrive right after the SUBACK; this bounds the wait for them
DEFAULT_PUSH_TIMEOUT_S = 20.0
DEFAULT_DEADLINE_S = 10.0


def register(sub: Any) -> Any:
    """Add `fleet` and its sub-commands to `sub`; return the sub-command set, so that other fleet
    commands (the back end's) can add theirs beside these."""
    parser = sub.add_parser(
        "fleet",
        help="operate the fleet through the broker: status, push-config, push-trust, command, tail",
        description="Talk to the fleet's sentries through the broker of the [mqtt] section. Exit "
        "codes: 0 done, 1 rejected or failed, 2 bad usage, 3 no answer (offline or timeout), "
        "4 broker unreachable or refusing.",
    )
    fleet = parser.add_subparsers(dest="fleet_command", metavar="SUBCOMMAND")
    fleet.required = True

    p = fleet.add_parser("status", help="a table of the site's sentries from their retained topics",
                         description="Collect the retained state, health and config/reported of every "
                         "sentry at the site and print one row per sentry.")
    _site(p)
    p.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    _wait(p)
    p.set_defaults(func=handle, run=run_status)

    p = fleet.add_parser("push-config", help="publish a desired config and wait for each sentry's report",
                         description="Publish FILE (TOML or JSON sections, partial allowed) as the "
                         "retained desired config of one sentry (--device) or of the whole site "
                         "(--site alone), then wait for each sentry's config/reported.")
    p.add_argument("file", metavar="FILE", help="TOML or JSON config sections")
    _target(p)
    p.add_argument("--version", type=int, metavar="N",
                   help="document version (default: one above every version known for that topic)")
    _operator_key(p)
    _timeout(p, DEFAULT_PUSH_TIMEOUT_S)
    _wait(p)
    p.set_defaults(func=handle, run=run_push_config)

    p = fleet.add_parser("push-trust", help="sign a trust list and push it to sentries",
                         description="Sign FILE (a trust list, JSON) with the fleet's trust-root "
                         "private key and publish it, retained, on the trust topic of one sentry "
                         "(--device) or of every sentry known at the site (--site alone); then wait "
                         "for each to take it or refuse it. The list's audience is set to that "
                         "sentry or site.")
    p.add_argument("file", metavar="FILE", help="trust-list file (JSON, or CBOR)")
    p.add_argument("--root-key", required=True, metavar="PEM", help="the fleet's trust-root private key")
    _target(p)
    _timeout(p, DEFAULT_PUSH_TIMEOUT_S)
    _wait(p)
    p.set_defaults(func=handle, run=run_push_trust)

    p = fleet.add_parser("command", help="send a command to one sentry and print its answer",
                         description="Send NAME (selftest, pulse-gate, restart, snapshot) to one "
                         "sentry as an MQTT 5 request and print the answer as JSON.")
    p.add_argument("name", metavar="NAME", help="selftest, pulse-gate, restart, snapshot")
    p.add_argument("--device", required=True, metavar="ID", help="the sentry")
    _site(p)
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a command argument; VALUE is read as JSON when it can be (repeatable)")
    p.add_argument("--deadline-s", type=float, default=DEFAULT_DEADLINE_S, metavar="S",
                   help=f"the sentry runs the command only if it gets it within S seconds "
                   f"(default {DEFAULT_DEADLINE_S:g})")
    _timeout(p, None, "how long to wait for the answer (default: the deadline + 5 s)")
    _operator_key(p)
    p.set_defaults(func=handle, run=run_command)

    p = fleet.add_parser("tail", help="print scans and events as they arrive",
                         description="Print every scan and event published at the site (or by one "
                         "sentry) until Ctrl-C. Sealed subjects are never printed.")
    _site(p)
    p.add_argument("--device", metavar="ID", help="only this sentry")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--count", type=int, metavar="N", help="stop after N events")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.set_defaults(func=handle, run=run_tail)
    return fleet


def _operator_key(p: argparse.ArgumentParser) -> None:
    p.add_argument("--operator-key", metavar="PEM",
                   help="the operator's private key that signs what is sent (default: [fleet] operator_key)")


def _signing_key(args: argparse.Namespace, config: Config) -> Ed25519PrivateKey:
    """The operator key, read before anything is sent: an unsigned push would only be refused."""
    path = args.operator_key or config.fleet.operator_key
    if not path:
        raise UsageError("no operator key: give --operator-key PEM or set [fleet] operator_key "
                         "(sentries act only on signed config and commands)")
    return keys.load_private_key(path)


def _site(p: argparse.ArgumentParser) -> None:
    p.add_argument("--site", metavar="S", help="the site (default: device.site of the config)")


def _target(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", metavar="ID", help="one sentry")
    p.add_argument("--site", metavar="S",
                   help="the site; alone, it targets the whole site (default site: device.site)")


def _timeout(p: argparse.ArgumentParser, default: float | None, text: str | None = None) -> None:
    p.add_argument("--timeout", type=float, default=default, metavar="S",
                   help=text or f"how long to wait for the sentries' answers (default {default:g})")


def _wait(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", type=float, default=DEFAULT_WAIT_S, metavar="S",
                   help=f"how long to collect the retained messages (default {DEFAULT_WAIT_S:g})")


# -- the handler ---------------------------------------------------------------------------------


def handle(args: argparse.Namespace, config: Config) -> int:
    """Run the chosen sub-command; every error becomes one line on stderr and an exit code."""
    name = f"edge-sentry fleet {args.fleet_command}"
    runner: Callable[[argparse.Namespace, Config], int] = args.run
    try:
        if config.mqtt is None:
            raise UsageError("no [mqtt] section in the config: it names the fleet's broker")
        return runner(args, config)
    except KeyboardInterrupt:
        return EXIT_OK if args.fleet_command == "tail" else 130
    except FleetError as exc:
        _error(name, exc)
        return EXIT_BROKER
    except (UsageError, TopicError, KeyFileError) as exc:
        _error(name, exc)
        return EXIT_USAGE
    except EdgeSentryError as exc:  # a trust list or key that cannot be read
        _error(name, exc)
        return EXIT_USAGE


def _error(name: str, exc: BaseException) -> None:
    print(f"{name}: {' '.join(str(exc).split()) or type(exc).__name__}", file=sys.stderr)


def _client(config: Config) -> FleetClient:
    assert config.mqtt is not None
    return FleetClient(config.mqtt, timeout_s=DEFAULT_TIMEOUT_S)


def _site_of(args: argparse.Namespace, config: Config) -> str:
    return check_site(args.site or config.device.site)


def _positive(value: float | None, option: str) -> None:
    if value is not None and value <= 0:
        raise UsageError(f"{option}: must be more than 0")


# -- status --------------------------------------------------------------------------------------


def run_status(args: argparse.Namespace, config: Config) -> int:
    site = _site_of(args, config)
    _positive(args.wait, "--wait")
    assert config.mqtt is not None
    with _client(config) as client:
        client.subscribe([site_filter(site, kind) for kind in status.KINDS])
        snapshot = status.Snapshot(site, config.mqtt.max_payload).feed_all(client.collect(args.wait))
    for problem in snapshot.problems:
        print(f"edge-sentry fleet status: {problem}", file=sys.stderr)
    rows = snapshot.rows()
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(status.table(rows))
    else:
        print(f"no sentry has reported at site {site!r}", file=sys.stderr)
    return EXIT_OK


# -- push-config and push-trust ------------------------------------------------------------------


def _targets(args: argparse.Namespace, config: Config) -> tuple[str, str | None]:
    """(site, device): --device alone or with --site is one sentry, --site alone the whole site."""
    if args.device is None and args.site is None:
        raise UsageError("give --device ID (one sentry) or --site S (every sentry of the site)")
    site = _site_of(args, config)
    return site, (check_device(args.device) if args.device is not None else None)


def _await(client: FleetClient, snapshot: status.Snapshot, watch: push.Watch, timeout_s: float,
           on_answer: Callable[[push.Outcome], None] | None = None) -> list[push.Outcome]:
    """Feed every message to the snapshot and the watch until each target answered, or only
    sentries known to be offline are left, or the timeout."""
    deadline = time.monotonic() + timeout_s

    def offline(name: str) -> bool:
        device = snapshot.devices.get(name)
        return device is not None and device.online is False

    while True:
        waiting = [d for d in watch.pending() if not offline(d)]
        left = deadline - time.monotonic()
        if not waiting or left <= 0:
            break
        message = client.receive(left)
        if message is None:
            continue
        fed = snapshot.feed(message)
        if fed is not None:
            before = set(watch.outcomes)
            watch.see(*fed)
            for name in set(watch.outcomes) - before:
                if on_answer is not None:
                    on_answer(watch.outcomes[name])
    return watch.finish([d for d in watch.pending() if offline(d)], timeout_s)


def _print_outcomes(outcomes: list[push.Outcome]) -> None:
    for outcome in outcomes:
        print("\n".join(push.describe(outcome)))


def run_push_config(args: argparse.Namespace, config: Config) -> int:
    site, device = _targets(args, config)
    _positive(args.timeout, "--timeout")
    _positive(args.wait, "--wait")
    if args.version is not None and not 0 <= args.version < control.MAX_CONFIG_VERSION:
        raise UsageError("--version: must be 0 or more and below 2^53")
    operator = _signing_key(args, config)
    sections, file_version = push.load_desired(args.file)
    source = push.DEVICE if device else push.SITE
    topic = device_topic(site, device or topics.SITE_WIDE, topics.CONFIG_DESIRED)
    assert config.mqtt is not None
    with _client(config) as client:
        client.subscribe([topic, site_filter(site, topics.STATE), site_filter(site, topics.CONFIG_REPORTED)])
        snapshot = status.Snapshot(site, config.mqtt.max_payload)
        retained: list[int] = []
        for message in client.collect(args.wait):
            if message.topic == topic:
                retained += _desired_version(message)
            else:
                snapshot.feed(message)
        targets = [device] if device else sorted(snapshot.devices)
        known = _plausible({name: snapshot.device(name).versions(source) for name in targets}, retained)
        version = args.version if args.version is not None else file_version
        if version is None:
            version = push.next_version(retained + [v for found in known.values() for v in found])
            if version >= control.MAX_CONFIG_VERSION:
                raise UsageError(f"the next version would be {version}, not below 2^53: give --version "
                                 "only after the sentries' versions are reset")
        else:
            for name, found in known.items():
                if found and max(found) >= version:
                    raise UsageError(f"version {version} is not above version {max(found)} that {name} has "
                                     "already decided on: it would ignore the document")
        body = control.sign(operator, topic, {"version": version, "config": sections},
                            iat_ms=int(time.time() * 1000))
        client.publish(topic, body, retain=True)
        print(f"published config version {version} to {topic}")
        if not targets:
            print(f"no sentry is known at site {site!r} yet: "
                  "each one applies the retained document when it connects")
            return EXIT_OK
        watch = push.ConfigWatch(targets, version, source)
        outcomes = _await(client, snapshot, watch, args.timeout)
    _print_outcomes(outcomes)
    return push.exit_status(outcomes, failed=EXIT_FAILED, unanswered=EXIT_NO_ANSWER)


def _plausible(known: dict[str, list[int]], retained: list[int]) -> dict[str, list[int]]:
    """The versions the sentries report, less any that leap further above the retained desired
    document than a sentry would ever accept (desired.MAX_VERSION_STEP): a sentry's `state` and
    `config/reported` are its own to write, so a taken device login could otherwise steer the
    next version to the top of the range. Each one left out is named on stderr."""
    ceiling = max(retained, default=0) + MAX_VERSION_STEP
    out: dict[str, list[int]] = {}
    for name, found in known.items():
        out[name] = [v for v in found if v <= ceiling]
        if len(out[name]) < len(found):
            print(f"edge-sentry fleet push-config: {name} reports version {max(found)}, beyond any a sentry "
                  "would take after the retained desired document: ignored (a report is not signed)",
                  file=sys.stderr)
    return out


def _desired_version(message: Any) -> list[int]:
    """The version of a retained desired document, if it has a readable one. Only to count on
    from: the signature is the sentries' to check. Under the broker's ACL only operators write this
    topic, and a sentry refuses a version that leaps too far, so a forged one cannot lock it."""
    if not message.payload:
        return []
    doc = push.signed_body(message.payload)
    if doc is None:
        try:
            doc = payloads.decode(message.payload, message.content_type)
        except PayloadError:
            return []
    version = doc.get("version") if isinstance(doc, dict) else None
    return [version] if isinstance(version, int) and not isinstance(version, bool) else []


def run_push_trust(args: argparse.Namespace, config: Config) -> int:
    site, device = _targets(args, config)
    _positive(args.timeout, "--timeout")
    _positive(args.wait, "--wait")
    # Addressed to exactly the sentries it is pushed to, whatever the file says: a copy of it
    # republished on another site's or device's topic is refused there.
    trust = TrustList.load(args.file).for_audience(Audience.of(site, device))
    root = keys.load_private_key(args.root_key)
    signed = trust.signed(root)
    assert config.mqtt is not None
    trust_filter = site_filter(site, topics.TRUST, device)
    with _client(config) as client:
        client.subscribe([site_filter(site, topics.STATE), site_filter(site, topics.EVENT), trust_filter])
        snapshot = status.Snapshot(site, config.mqtt.max_payload)
        previous: dict[str, bytes] = {}  # the retained list each sentry's trust topic held
        for message in client.collect(args.wait):
            fed = snapshot.feed(message)
            if fed is not None and fed[1] == topics.TRUST:
                previous[fed[0]] = message.payload
        targets = [device] if device else sorted(snapshot.devices)
        if not targets:
            raise UsageError(f"no sentry is known at site {site!r}: give --device ID to push to one")
        for name in targets:
            in_use = snapshot.device(name).trust_version
            if in_use is not None and in_use >= trust.version:
                raise UsageError(f"trust list version {trust.version} is not above version {in_use} "
                                 f"in use on {name}: it would be refused")
        for name in targets:
            client.publish(device_topic(site, name, topics.TRUST), signed, retain=True)
        print(f"published trust list version {trust.version} to {len(targets)} sentr"
              f"{'y' if len(targets) == 1 else 'ies'} at site {site}")

        def put_back(outcome: push.Outcome) -> None:
            # A refused list would be refused again at every reconnect of that sentry.
            if outcome.status == push.REJECTED:
                client.publish(device_topic(site, outcome.device, topics.TRUST),
                               previous.get(outcome.device, b""), retain=True)

        watch = push.TrustWatch(targets, trust.version)
        outcomes = _await(client, snapshot, watch, args.timeout, on_answer=put_back)
    _print_outcomes(outcomes)
    return push.exit_status(outcomes, failed=EXIT_FAILED, unanswered=EXIT_NO_ANSWER)


# -- command -------------------------------------------------------------------------------------


def run_command(args: argparse.Namespace, config: Config) -> int:
    site = _site_of(args, config)
    device = check_device(args.device)
    operator = _signing_key(args, config)
    request_topic = cmd.request_topic(site, device, args.name)
    arguments = cmd.parse_args(args.arg)
    if args.deadline_s < 0:
        raise UsageError("--deadline-s: must be 0 or more")
    timeout = args.timeout if args.timeout is not None else args.deadline_s + 5.0
    _positive(timeout, "--timeout")
    reply_topic = cmd.response_topic(site, device)
    correlation = cmd.new_correlation()
    state_topic = device_topic(site, device, topics.STATE)
    assert config.mqtt is not None
    with _client(config) as client:
        client.subscribe([reply_topic, state_topic])
        now = time.time()
        deadline_ms = int((now + args.deadline_s) * 1000)
        body = control.sign(operator, request_topic, cmd.request(deadline_ms, arguments),
                            iat_ms=int(now * 1000))
        client.publish(request_topic, body, response_topic=reply_topic, correlation_data=correlation)
        response = _await_response(client, reply_topic, state_topic, correlation, timeout, device)
    if response is None:
        return EXIT_NO_ANSWER
    print(json.dumps(cmd.printable(response)))
    return EXIT_OK if response.get("status") == CommandStatus.OK else EXIT_FAILED


def _await_response(client: FleetClient, reply_topic: str, state_topic: str, correlation: bytes,
                    timeout_s: float, device: str) -> dict[str, Any] | None:
    """The answer with our correlation data; None (said on stderr) when the sentry is offline
    (a clean-session sentry would never get the request) or at the timeout."""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        message = client.receive(left)
        if message is None:
            continue
        if message.topic == state_topic and message.payload:
            try:
                state = payloads.decode(message.payload, message.content_type)
            except PayloadError:
                continue
            if state.get("online") is False:
                print(f"edge-sentry fleet command: {device} is offline; the request is not delivered",
                      file=sys.stderr)
                return None
        elif message.topic == reply_topic and message.correlation_data == correlation:
            try:
                answer: dict[str, Any] = payloads.decode(message.payload, message.content_type)
                return answer
            except PayloadError as exc:
                print(f"edge-sentry fleet command: unreadable answer from {device}: {exc}", file=sys.stderr)
                return None
    print(f"edge-sentry fleet command: no answer from {device} within {timeout_s:g} s", file=sys.stderr)
    return None


# -- tail ----------------------------------------------------------------------------------------


def run_tail(args: argparse.Namespace, config: Config) -> int:
    site = _site_of(args, config)
    device = check_device(args.device) if args.device is not None else None
    if args.count is not None and args.count < 1:
        raise UsageError("--count: must be 1 or more")
    _positive(args.duration, "--duration")
    filters = [site_filter(site, kind, device) for kind in tail.KINDS]
    assert config.mqtt is not None
    max_payload = config.mqtt.max_payload
    shown = 0
    with _client(config) as client:
        client.subscribe(filters)
        print(f"listening on {', '.join(filters)} (Ctrl-C to stop)", file=sys.stderr, flush=True)
        end = time.monotonic() + args.duration if args.duration is not None else None
        while args.count is None or shown < args.count:
            left = 1.0 if end is None else end - time.monotonic()
            if left <= 0:
                break
            message = client.receive(min(left, 1.0))
            if message is None:
                continue
            events, problem = tail.events_of(message, site, max_payload)
            if problem:
                print(f"edge-sentry fleet tail: {problem}", file=sys.stderr)
            for event in events:
                print(tail.json_line(event) if args.json else tail.human_line(event), flush=True)
                shown += 1
                if args.count is not None and shown >= args.count:
                    break
    return EXIT_OK
