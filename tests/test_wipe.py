"""`edge-sentry wipe`: erases the sentry's files, only those, and never under a running sentry."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from tinydb import TinyDB

from edge_sentry.cli import wipe
from edge_sentry.config import Config, DeviceConfig, OutboxConfig
from edge_sentry.outbox import Outbox
from edge_sentry.state import LEGACY_FILES, STORE_FILE, Identity, StateStore
from edge_sentry.storage import MAGIC, LogStorage


def config_for(state_dir: Path, outbox: Path | None = None) -> Config:
    return Config(
        device=DeviceConfig(state_dir=str(state_dir)),
        outbox=OutboxConfig(path=str(outbox or state_dir / "outbox")),
    )


def run(config: Config, *flags: str) -> int:
    parser = argparse.ArgumentParser(prog="edge-sentry")
    wipe.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["wipe", *flags])
    return args.func(args, config)


def open_outbox(path: Path) -> Outbox:
    return Outbox(path, max_events=1000, queue_size=100, retention_days=14)


def fill_outbox(path: Path, n: int = 5) -> None:
    with open_outbox(path) as outbox:
        for i in range(n):
            outbox.put({"event": "scan", "t": 1_795_000_000_000 + i, "verdict": "accept"})
        assert outbox.flush(5)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A state directory as a sentry leaves it: outbox, the state store (and a compaction copy of it
    cut short), state logs, old state files not moved into the store yet, plus a stranger's."""
    state_dir = tmp_path / "edge-sentry"
    fill_outbox(state_dir / "outbox")
    with StateStore(state_dir, Identity("site", "gate-1")) as store:
        store.keep_applied_config({"format": 1})
        store.keep_answered_commands([{"key": "pulse-gate\x00ab", "response": None}])
        store.next_boot_count()
    (state_dir / f"{STORE_FILE}.tmp").write_bytes(MAGIC[:3])
    with TinyDB(state_dir / "boot.log", storage=LogStorage) as db:
        db.insert({"boots": 3})
    with TinyDB(state_dir / "commands" / "answered.log", storage=LogStorage, create_dirs=True) as db:
        db.insert({"correlation": "abc"})
    (state_dir / "config.json").write_text('{"version": 4}')
    (state_dir / "trust.json").write_text('{"version": 7}')
    (state_dir / "commands.json").write_text('[{"correlation": "abc"}]')
    (state_dir / "boot_count").write_text("3\n")
    (state_dir / ".config.json.1234.5678.tmp").write_text('{"version"')  # a crash mid-replace
    (state_dir / "notes.txt").write_text("the installer's notes")
    return state_dir


@pytest.fixture(autouse=True)
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))


def remaining(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def test_wipe_erases_outbox_and_state_and_a_fresh_outbox_finds_nothing(state, capsys):
    assert run(config_for(state), "--yes") == 0
    assert remaining(state) == {"notes.txt"}
    out = capsys.readouterr().out
    assert "left 1 entries the sentry did not create" in out and "notes.txt" in out
    assert "journal" in out
    with open_outbox(state / "outbox") as outbox:
        assert outbox.pending(100) == []
        assert outbox.stats()["depth"] == 0
        # seq numbers start again after a wipe: the outbox that remembered them is gone
        assert outbox.put({"event": "scan", "t": 1})["seq"] == 1


def test_wipe_of_a_clean_device_is_a_no_op(tmp_path, capsys):
    assert run(config_for(tmp_path / "edge-sentry"), "--yes") == 0
    assert "removed 0 outbox files from" in capsys.readouterr().out


def test_wipe_refuses_while_the_sentry_holds_the_outbox(state, capsys):
    before = remaining(state)
    with open_outbox(state / "outbox"):
        assert run(config_for(state), "--yes") == 1
    err = capsys.readouterr().err
    assert "in use" in err and "stop the sentry first" in err and "Traceback" not in err
    assert remaining(state) == before


def test_without_yes_and_no_terminal_it_refuses(state, capsys):
    before = remaining(state)
    assert run(config_for(state)) == 2
    assert "refusing without --yes" in capsys.readouterr().err
    assert remaining(state) == before


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "code"), [("wipe\n", 0), ("yes\n", 1), ("", 1)])
def test_on_a_terminal_it_asks_and_only_the_word_wipe_goes_on(state, monkeypatch, capsys, answer,
                                                               code):
    monkeypatch.setattr(sys, "stdin", Terminal(answer))
    assert run(config_for(state)) == code
    assert "Type 'wipe' to go on" in capsys.readouterr().err
    assert ("outbox" in remaining(state)) == (code == 1)


def test_an_outbox_outside_the_state_dir_is_wiped_too(tmp_path):
    state_dir, outbox = tmp_path / "edge-sentry", tmp_path / "spool" / "outbox"
    fill_outbox(outbox)
    assert run(config_for(state_dir, outbox), "--yes") == 0
    assert not outbox.exists()


def test_foreign_files_in_the_outbox_folder_stay(state):
    (state / "outbox" / "README").write_text("keep")
    assert run(config_for(state), "--yes") == 0
    assert remaining(state) == {"notes.txt", "outbox", "outbox/README"}


def test_symlinks_are_never_followed(state, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    fill_outbox(elsewhere)  # files in the sentry's format, but not under the state dir
    (state / "link").symlink_to(elsewhere)
    (state / "events.log").symlink_to(elsewhere / "events.log")
    assert run(config_for(state), "--yes") == 0
    assert {"events.log", "state.log", "lock"} <= set(remaining(elsewhere))
    assert {"link", "events.log"} <= remaining(state)


# -- where it will not go ------------------------------------------------------------------------


def test_a_folder_with_nothing_of_the_sentrys_is_refused(tmp_path, capsys):
    stranger = tmp_path / "photos"
    stranger.mkdir()
    (stranger / "config.json.bak").write_text("x")
    (stranger / "holiday.jpg").write_bytes(b"\xff\xd8")
    assert run(config_for(stranger, tmp_path / "no-outbox"), "--yes") == 1
    assert "does not look like the sentry's" in capsys.readouterr().err
    assert remaining(stranger) == {"config.json.bak", "holiday.jpg"}


def test_the_root_is_refused(tmp_path, capsys):
    assert run(config_for(Path("/"), tmp_path / "outbox"), "--yes") == 1
    assert "filesystem root" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["home", "parent"])
def test_home_and_above_are_refused(tmp_path, monkeypatch, capsys, where):
    home = tmp_path / "users" / "ana"
    home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    target = home if where == "home" else home.parent
    fill_outbox(home / "outbox")
    assert run(config_for(target), "--yes") == 1
    assert "your home or above it" in capsys.readouterr().err
    assert (home / "outbox" / "events.log").exists()


def test_the_service_accounts_home_is_its_state_dir_and_may_be_wiped(tmp_path, monkeypatch):
    home = tmp_path / "var" / "lib" / "edge-sentry"  # install.sh: useradd --home-dir /var/lib/edge-sentry
    fill_outbox(home / "outbox")
    monkeypatch.setenv("HOME", str(home))
    assert run(config_for(home), "--yes") == 0
    assert not (home / "outbox").exists() and home.is_dir()


def test_recognition_rules():
    state_dir = Path("/s")
    assert wipe._ATOMIC_LEFTOVER.match(".trust.json.77.140230.tmp")["name"] == "trust.json"
    assert wipe._ATOMIC_LEFTOVER.match("trust.json.tmp") is None
    assert not wipe.is_state_file(state_dir, state_dir / "absent" / "config.json")
    # every old state file the store may not have taken in yet is the sentry's
    assert set(LEGACY_FILES.values()) <= wipe.STATE_FILES


def test_a_log_cut_short_before_its_magic_is_the_sentrys_but_an_empty_stranger_is_not(tmp_path):
    (tmp_path / "events.log").write_bytes(b"ESL")
    (tmp_path / "empty.txt").write_bytes(b"")
    assert wipe.is_sentry_log(tmp_path / "events.log")
    assert not wipe.is_sentry_log(tmp_path / "empty.txt")


def test_a_configured_log_file_is_removed(state, tmp_path, capsys):
    log_file = tmp_path / "sentry.log"
    log_file.write_text("lines")
    config = config_for(state)
    config = Config(device=config.device, outbox=config.outbox, log=SimpleNamespace(file=str(log_file)))
    assert run(config, "--yes") == 0
    assert not log_file.exists()
    assert "removed 1 log file" in capsys.readouterr().out


def test_a_stranger_state_dir_is_refused_even_when_the_outbox_elsewhere_is_real(tmp_path, capsys):
    stranger, outbox = tmp_path / "documents", tmp_path / "spool" / "outbox"
    stranger.mkdir()
    (stranger / "letter.txt").write_text("x")
    fill_outbox(outbox)
    assert run(config_for(stranger, outbox), "--yes") == 1
    assert "does not look like the sentry's" in capsys.readouterr().err
    assert (outbox / "events.log").exists() and (stranger / "letter.txt").exists()


def test_no_outbox_can_start_at_any_point_of_the_wipe(state, monkeypatch):
    # The wipe holds the outbox's flock until it is done, but a flock lives on the lock file: once
    # that file is unlinked, a daemon starting creates a new one, locks it, and runs on the state log
    # the wipe is about to remove (its seq reservation then vanishes under it). So before every
    # unlink, a sentry starting right then must still find the outbox in use.
    from edge_sentry.errors import StorageError

    outbox_dir = state / "outbox"
    real_unlink = Path.unlink
    started_before: list[str] = []

    def unlink(self: Path, missing_ok: bool = False) -> None:
        intruder = open_outbox(outbox_dir)
        try:
            intruder.start()
        except StorageError:
            pass
        else:
            started_before.append(self.name)
            intruder.stop()
        real_unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    assert run(config_for(state), "--yes") == 0
    assert started_before == []
