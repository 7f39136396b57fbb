"""Remote commands: a request runs at most once, only before its deadline, and is answered with the
contract's statuses; the pulse-gate tests drive a real gate on mock pins and read the relay's pin."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cbor2
import pytest
from conftest import TEST_IDENTITY
from control_helpers import guard, signed_command
from gate_helpers import Rig, gate_rig

from edge_sentry import selftest
from edge_sentry.config import Config
from edge_sentry.errors import CommandError, CommandRejected
from edge_sentry.link.remote_commands import (
    Command,
    RemoteCommands,
    builtin_commands,
)
from edge_sentry.link.topics import Topics
from edge_sentry.state import STORE_FILE, StateStore

NOW = 1_795_000_000.0
NOW_MS = int(NOW * 1000)
JPEG = b"\xff\xd8\xff\xe0 a still \xff\xd9"


TOPICS = Topics(TEST_IDENTITY.site, TEST_IDENTITY.device)


def request(name: str, deadline: Any = NOW_MS + 30_000, **extra: Any) -> bytes:
    """A request for `cmd/{name}` of the test device, signed by the test operator now."""
    body = {} if deadline is None else {"deadline": deadline}
    body.update(extra)
    return signed_command(TOPICS.cmd(name), None, iat_ms=NOW_MS, body=body)


def remote(store: StateStore, commands: dict[str, Command], **kwargs: Any) -> RemoteCommands:
    """Commands on `store`, their guard trusting the test operator, the clock at NOW."""
    checks = guard(TOPICS, store, clock=lambda: NOW)
    return RemoteCommands(store, commands, guard=checks, clock=lambda: NOW, **kwargs)


class Calls:
    """Counts calls of the callbacks the built-in commands are given."""

    def __init__(self) -> None:
        self.restarts = 0
        self.selftests: list[Sequence[str] | None] = []
        self.snapshots = 0
        self.allow = False
        self.synced: bool | None = True

    def restart(self) -> None:
        self.restarts += 1

    def snapshot(self) -> bytes:
        self.snapshots += 1
        return JPEG

    def selftest(self, parts: Sequence[str] | None) -> list[dict[str, Any]]:
        self.selftests.append(parts)
        return [{"part": "clock", "status": "pass", "detail": "synchronised"}]


@pytest.fixture
def rig() -> Iterator[Rig]:
    with gate_rig() as r:
        yield r


@pytest.fixture
def calls() -> Calls:
    return Calls()


def make(state: StateStore, rig: Rig, calls: Calls, **kwargs: Any) -> RemoteCommands:
    commands = builtin_commands(
        grant=rig.gate.grant,
        request_restart=calls.restart,
        allow_snapshot=lambda: calls.allow,
        snapshot=calls.snapshot,
        selftest=calls.selftest,
        selftest_parts=("clock", "relay", "camera"),
    )
    return remote(state, commands, clock_synced=lambda: calls.synced, **kwargs)


@pytest.fixture
def commands(tmp_path: Path, open_store, rig: Rig, calls: Calls) -> RemoteCommands:
    return make(open_store(tmp_path), rig, calls)


def remote_grants(rig: Rig) -> list[dict[str, Any]]:
    return [d for d in rig.events.of("grant") if d["mode"] == "remote"]


# -- pulse-gate ---------------------------------------------------------------------------------


def test_pulse_gate_grants_once_with_mode_remote(commands: RemoteCommands, rig: Rig):
    reply = commands.handle("pulse-gate", request("pulse-gate"), b"id-1")
    assert reply is not None
    assert reply.response == {"status": "ok", "result": {"granted": True}, "t": NOW_MS}
    assert len(remote_grants(rig)) == 1
    assert rig.intervals("relay"), "the relay never switched on"


@pytest.mark.parametrize("late_ms", [0, 1, 3_600_000])
def test_a_pulse_gate_after_its_deadline_is_expired_and_never_moves_the_relay(
    commands: RemoteCommands, rig: Rig, late_ms: int
):
    reply = commands.handle("pulse-gate", request("pulse-gate", NOW_MS - late_ms), b"id-late")
    assert reply is not None and reply.response["status"] == "expired"
    assert "error" in reply.response and "result" not in reply.response
    assert rig.events.of("grant") == []
    assert rig.intervals("relay") == []
    assert not rig.relay_on()


def test_a_redelivered_request_is_neither_run_nor_answered_again(commands: RemoteCommands, rig: Rig):
    first = commands.handle("pulse-gate", request("pulse-gate"), b"same")
    assert first is not None and first.response["status"] == "ok"
    assert commands.handle("pulse-gate", request("pulse-gate"), b"same") is None
    assert commands.handle("pulse-gate", request("pulse-gate", NOW_MS - 1), b"same") is None
    assert len(remote_grants(rig)) == 1


def test_a_redelivery_after_a_restart_is_answered_once_more_and_not_run(
    tmp_path: Path, open_store, rig: Rig, calls: Calls
):
    first = make(open_store(tmp_path), rig, calls).handle(
        "pulse-gate", request("pulse-gate"), b"before-restart"
    )
    assert first is not None
    again = make(open_store(tmp_path), rig, calls)
    reply = again.handle("pulse-gate", request("pulse-gate"), b"before-restart")
    assert reply is not None and reply.response == first.response
    assert again.handle("pulse-gate", request("pulse-gate"), b"before-restart") is None
    assert len(remote_grants(rig)) == 1


def test_a_request_interrupted_by_a_crash_is_not_run_after_the_restart(
    tmp_path: Path, open_store, calls: Calls
):
    """The id is written down before the command runs: the second process (started while the
    first is still inside the command, as after a crash) finds it and does not run it."""
    runs: list[str] = []
    seen_by_restarted: list[Any] = []

    def pulse(_args: Any) -> Any:
        runs.append("first")
        with StateStore(tmp_path, TEST_IDENTITY) as second:  # the first process still holds its own
            restarted = remote(second, {"pulse-gate": Command(lambda a: runs.append("again"))})
            seen_by_restarted.append(restarted.handle("pulse-gate", request("pulse-gate"), b"crash"))
        return {"granted": True}

    remote(open_store(tmp_path), {"pulse-gate": Command(pulse)}).handle(
        "pulse-gate", request("pulse-gate"), b"crash"
    )
    assert runs == ["first"]
    (reply,) = seen_by_restarted
    assert reply is not None and reply.response["status"] == "error"
    assert "not run again" in reply.response["error"]


def test_a_refused_grant_is_an_error(commands: RemoteCommands, rig: Rig):
    rig.gate.set_fault("camera")  # secure fail mode: no automatic or remote grant
    reply = commands.handle("pulse-gate", request("pulse-gate"), b"fault")
    assert reply is not None and reply.response["status"] == "error"
    assert rig.intervals("relay") == []


def test_pulse_gate_is_refused_while_the_clock_is_unsynchronised(commands: RemoteCommands, rig: Rig, calls):
    calls.synced = False
    reply = commands.handle("pulse-gate", request("pulse-gate"), b"unsynced")
    assert reply is not None and reply.response["status"] == "rejected"
    assert rig.events.of("grant") == []
    # a self-test is still worth running on such a clock
    reply = commands.handle("selftest", request("selftest"), b"unsynced-selftest")
    assert reply is not None and reply.response["status"] == "ok"


def test_pulse_gate_takes_no_args(commands: RemoteCommands, rig: Rig):
    reply = commands.handle("pulse-gate", request("pulse-gate", args={"hold_s": 60}), b"args")
    assert reply is not None and reply.response["status"] == "rejected"
    assert rig.events.of("grant") == []


# -- bad requests -------------------------------------------------------------------------------

BAD_REQUESTS = {
    "no deadline": request("pulse-gate", None),
    "deadline a text": request("pulse-gate", "tomorrow"),
    "deadline a boolean": request("pulse-gate", True),
    "deadline NaN": request("pulse-gate", float("nan")),
    "deadline an integer past 1e308": request("pulse-gate", 10**400),
    "deadline an integer below -1e308": request("pulse-gate", -(10**400)),
    "unknown key an integer past 4300 digits": signed_command(
        TOPICS.cmd("pulse-gate"), None, iat_ms=NOW_MS, body={"deadline": NOW_MS + 1000, 10**5000: 1}
    ),
    "deadline too far ahead": request("pulse-gate", NOW_MS + 2 * 3600 * 1000),
    "unknown key": request("pulse-gate", when="now"),
    "args not a map": request("pulse-gate", args=[1, 2]),
    "args with non-text keys": request("pulse-gate", args={1: 2}),
    "not a map": signed_command(TOPICS.cmd("pulse-gate"), None, iat_ms=NOW_MS, body=[NOW_MS + 1000]),
    "unsigned CBOR": cbor2.dumps({"deadline": NOW_MS + 1000}),
    "malformed CBOR": b"\xa1\x68deadline",
    "malformed JSON": b'{"deadline": ',
    "a JSON number": b"  [1]",
    "empty": b"",
}


@pytest.mark.parametrize("payload", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_bad_request_is_rejected_and_not_run(commands: RemoteCommands, rig: Rig, payload: bytes):
    reply = commands.handle("pulse-gate", payload, b"bad")
    assert reply is not None and reply.response["status"] == "rejected"
    assert isinstance(reply.response["error"], str) and reply.response["t"] == NOW_MS
    assert rig.events.of("grant") == []


def test_an_oversized_request_is_rejected(tmp_path: Path, open_store, rig: Rig, calls: Calls):
    commands = make(open_store(tmp_path), rig, calls, max_bytes=100)
    reply = commands.handle("pulse-gate", request("pulse-gate", args={"pad": "x" * 200}), b"big")
    assert reply is not None and reply.response["status"] == "rejected"


@pytest.mark.parametrize("correlation", [None, b""])
def test_a_request_without_correlation_data_is_rejected(commands: RemoteCommands, rig: Rig, correlation):
    reply = commands.handle("pulse-gate", request("pulse-gate"), correlation)
    assert reply is not None and reply.response["status"] == "rejected"
    assert rig.events.of("grant") == []


def test_an_unknown_command_is_answered_as_such_only_to_an_operator(commands: RemoteCommands):
    reply = commands.handle("open-sesame", request("open-sesame"), b"x")
    assert reply is not None and reply.response["status"] == "unknown-command"
    # the signature comes first: a stranger does not even learn which commands exist
    reply = commands.handle("open-sesame", b"garbage", b"y")
    assert reply is not None and reply.response["status"] == "rejected"
    assert reply.response["reason"] == "unsigned"


def test_json_typed_by_hand_is_refused_as_unsigned(commands: RemoteCommands, rig: Rig):
    payload = json.dumps({"deadline": NOW_MS + 5000, "args": {}}).encode()
    reply = commands.handle("pulse-gate", payload, b"json")
    assert reply is not None and reply.response["status"] == "rejected"
    assert reply.response["reason"] == "unsigned"
    assert rig.events.of("grant") == [] and rig.intervals("relay") == []


def test_a_command_that_crashes_is_an_error(tmp_path: Path, open_store):
    def broken(_args: Any) -> Any:
        raise KeyError("secret detail")

    commands = remote(open_store(tmp_path), {"x": Command(broken)})
    reply = commands.handle("x", request("x"), b"1")
    assert reply is not None and reply.response == {
        "status": "error",
        "error": "failed (KeyError)",
        "t": NOW_MS,
    }


def test_command_errors_and_refusals_carry_their_message(tmp_path: Path, open_store):
    def fails(_args: Any) -> Any:
        raise CommandError("relay driver absent")

    def refuses(_args: Any) -> Any:
        raise CommandRejected("not now")

    handlers = {"f": Command(fails), "r": Command(refuses)}
    commands = remote(open_store(tmp_path), handlers)
    assert commands.handle("f", request("f"), b"1").response["error"] == "relay driver absent"
    assert commands.handle("r", request("r"), b"2").response == {"status": "rejected", "error": "not now",
                                                              "t": NOW_MS}  # fmt: skip


# -- restart, snapshot, selftest ----------------------------------------------------------------


def test_restart_answers_first_and_stops_after(commands: RemoteCommands, calls: Calls):
    reply = commands.handle("restart", request("restart"), b"r1")
    assert reply is not None and reply.response["status"] == "ok"
    assert calls.restarts == 0, "restart must wait until the answer is sent"
    assert reply.after is not None
    reply.after()
    assert calls.restarts == 1


def test_a_restart_request_redelivered_after_the_restart_does_not_restart_again(
    tmp_path: Path, open_store, rig: Rig, calls: Calls
):
    reply = make(open_store(tmp_path), rig, calls).handle("restart", request("restart"), b"loop?")
    assert reply is not None and reply.after is not None
    reply.after()
    again = make(open_store(tmp_path), rig, calls).handle("restart", request("restart"), b"loop?")
    assert again is not None and again.after is None
    assert calls.restarts == 1


def test_snapshot_needs_the_opt_in(commands: RemoteCommands, calls: Calls):
    reply = commands.handle("snapshot", request("snapshot"), b"s1")
    assert reply is not None and reply.response["status"] == "rejected"
    assert calls.snapshots == 0
    calls.allow = True
    reply = commands.handle("snapshot", request("snapshot"), b"s2")
    assert reply is not None and reply.response["status"] == "ok"
    assert reply.response["result"] == {"content_type": "image/jpeg", "image": JPEG}


def test_a_snapshot_is_never_written_to_disk(tmp_path: Path, open_store, rig: Rig, calls: Calls):
    calls.allow = True
    make(open_store(tmp_path), rig, calls).handle("snapshot", request("snapshot"), b"s")
    assert JPEG not in (tmp_path / STORE_FILE).read_bytes()
    again = make(open_store(tmp_path), rig, calls).handle("snapshot", request("snapshot"), b"s")
    assert again is not None and again.response["status"] == "error"
    assert calls.snapshots == 1


def test_snapshot_without_a_camera_is_an_error(tmp_path: Path, open_store, rig: Rig):
    commands = remote(
        open_store(tmp_path),
        builtin_commands(grant=rig.gate.grant, request_restart=lambda: None, allow_snapshot=lambda: True,
                         snapshot=None, selftest=lambda parts: []),
    )  # fmt: skip
    reply = commands.handle("snapshot", request("snapshot"), b"s")
    assert reply is not None and reply.response["status"] == "error"


def test_selftest_runs_the_asked_parts_and_reports_each(commands: RemoteCommands, calls: Calls):
    reply = commands.handle("selftest", request("selftest", args={"parts": ["clock"]}), b"t1")
    assert reply is not None and reply.response["status"] == "ok"
    assert reply.response["result"]["passed"] is True
    assert reply.response["result"]["parts"][0]["part"] == "clock"
    assert calls.selftests == [["clock"]]
    commands.handle("selftest", request("selftest"), b"t2")
    assert calls.selftests[-1] is None


@pytest.mark.parametrize("args", [{"parts": ["warp-drive"]}, {"parts": "clock"}, {"verbose": True}])
def test_selftest_refuses_unknown_parts_and_args(commands: RemoteCommands, calls: Calls, args):
    reply = commands.handle("selftest", request("selftest", args=args), b"bad-args")
    assert reply is not None and reply.response["status"] == "rejected"
    assert calls.selftests == []


def test_a_failed_part_is_an_ok_response_that_did_not_pass(tmp_path: Path, open_store, rig: Rig):
    commands = remote(
        open_store(tmp_path),
        builtin_commands(grant=rig.gate.grant, request_restart=lambda: None, allow_snapshot=lambda: False,
                         snapshot=None,
                         selftest=lambda parts: [{"part": "camera", "status": "fail", "detail": "dark"}]),
    )  # fmt: skip
    reply = commands.handle("selftest", request("selftest"), b"t")
    assert reply is not None and reply.response["result"]["passed"] is False



def test_a_selftest_of_the_relay_moves_the_strike_so_an_unsynchronised_clock_refuses_it(
    tmp_path: Path, open_store, rig: Rig, calls: Calls
):
    """The relay part pulses the strike through the running gate, exactly as pulse-gate does: a
    replayed request must not open the gate on a clock where every deadline looks fresh."""
    parts = selftest.Rig(Config(), gate=rig.gate, clock_synced=lambda: calls.synced)
    commands = remote(
        open_store(tmp_path),
        builtin_commands(grant=rig.gate.grant, request_restart=lambda: None, allow_snapshot=lambda: False,
                         snapshot=None, selftest=selftest.remote_runner(parts),
                         selftest_parts=tuple(selftest.PARTS)),
        clock_synced=lambda: calls.synced,
    )  # fmt: skip
    calls.synced = False
    relay_and_clock = request("selftest", args={"parts": ["relay", "clock"]})
    reply = commands.handle("selftest", relay_and_clock, b"relay-unsynced")
    assert reply is not None and reply.response["status"] == "rejected"
    assert rig.events.of("grant") == [] and rig.intervals("relay") == []
    reply = commands.handle("selftest", request("selftest", args={"parts": ["clock"]}), b"clock-unsynced")
    assert reply is not None and reply.response["status"] == "ok"
    calls.synced = True
    reply = commands.handle("selftest", request("selftest", args={"parts": ["relay"]}), b"relay-synced")
    assert reply is not None and reply.response["result"]["passed"] is True
    assert rig.intervals("relay")


# -- the remembered ids -------------------------------------------------------------------------


def test_responses_are_cbor_encodable(commands: RemoteCommands, calls: Calls):
    calls.allow = True
    for i, name in enumerate(("pulse-gate", "restart", "snapshot", "selftest", "nope")):
        reply = commands.handle(name, request(name), f"c{i}".encode())
        assert reply is not None
        assert cbor2.loads(cbor2.dumps(reply.response)) == reply.response


def test_the_remembered_ids_are_bounded(tmp_path: Path, open_store, rig: Rig, calls: Calls):
    commands = make(open_store(tmp_path), rig, calls, max_ids=3)
    for i in range(5):
        commands.handle("selftest", request("selftest"), f"id-{i}".encode())
    kept = open_store(tmp_path).answered_commands()  # as the next start finds them
    assert len(kept) == 3
    assert commands.handle("selftest", request("selftest"), b"id-4") is None  # recent: remembered


@pytest.mark.parametrize("where", ["file of an older sentry", "store"])
def test_unreadable_ids_are_ignored_with_a_warning(
    tmp_path: Path, open_store, rig: Rig, calls: Calls, caplog, where: str
):
    if where == "store":
        open_store(tmp_path).keep_answered_commands([{"key": "pulse-gate\x00aa", "response": "not a map"}])
        named = STORE_FILE
    else:
        (tmp_path / "commands.json").write_text("{not json")
        named = "commands.json"
    with caplog.at_level(logging.WARNING):
        commands = make(open_store(tmp_path), rig, calls)
    assert any(named in r.getMessage() for r in caplog.records)
    reply = commands.handle("pulse-gate", request("pulse-gate"), b"fresh")
    assert reply is not None and reply.response["status"] == "ok"


def test_a_result_that_json_cannot_hold_is_remembered_without_it(tmp_path: Path, open_store):
    runs: list[int] = []

    def raw(_args: Any) -> Any:
        runs.append(1)
        return {"blob": b"\x00\x01"}

    commands = remote(open_store(tmp_path), {"raw": Command(raw)})
    reply = commands.handle("raw", request("raw"), b"r")
    assert reply is not None and reply.response["result"] == {"blob": b"\x00\x01"}
    kept = open_store(tmp_path).answered_commands()
    assert kept[0]["response"]["status"] == "error"
    again = remote(open_store(tmp_path), {"raw": Command(raw)}).handle("raw", request("raw"), b"r"
    )
    assert again is not None and again.response["status"] == "error"
    assert runs == [1]
