"""The device's state store: each concern survives a restart, state of one identity is never applied
to another, old state files move in once and nothing is lost on the way, and it is thread-safe."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest

from edge_sentry import state as state_mod
from edge_sentry.state import STORE_FILE, Identity, StateStore
from edge_sentry.storage import MAGIC, iter_log

GATE = Identity("site", "gate-1")
DEMO = Identity("site", "demo")
CONFIG_DOC = {"format": 1, "site": {"version": 2, "config": {}},
              "device": {"version": 5, "config": {"gate": {"pulse_ms": 700}}}}  # fmt: skip


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "state"


def test_a_fresh_store_is_empty_and_counts_its_first_start_as_one(folder: Path):
    with StateStore(folder, GATE) as store:
        assert store.applied_config() is None
        assert store.pushed_trust() is None
        assert store.answered_commands() == []
        assert [store.next_boot_count() for _ in range(3)] == [1, 2, 3]
    assert (folder / STORE_FILE).read_bytes().startswith(MAGIC)


def test_every_concern_survives_a_restart(folder: Path):
    entries = [{"key": "a", "response": None}, {"key": "b", "response": {"status": "ok", "t": 1}}]
    with StateStore(folder, GATE) as store:
        store.keep_applied_config(CONFIG_DOC)
        store.keep_pushed_trust('{"version": 3}')
        store.keep_answered_commands(entries)
        store.next_boot_count()
    with StateStore(folder, GATE) as again:
        assert again.applied_config() == CONFIG_DOC
        assert again.pushed_trust() == '{"version": 3}'
        assert again.answered_commands() == entries
        assert again.next_boot_count() == 2
    assert sorted(p.name for p in folder.iterdir()) == [STORE_FILE]  # one file for all of it


def test_a_config_kept_for_one_identity_is_not_applied_to_another(folder: Path, caplog):
    with StateStore(folder, GATE) as gate:
        gate.keep_applied_config(CONFIG_DOC)
        gate.next_boot_count()
    with caplog.at_level(logging.WARNING, logger="edge_sentry.state"):
        demo = StateStore(folder, DEMO)
    with demo:
        assert demo.applied_config() is None
        assert demo.next_boot_count() == 1
    assert any("site/gate-1" in r.getMessage() and "site/demo" in r.getMessage() for r in caplog.records)
    with StateStore(folder, GATE) as back:
        assert back.applied_config() == CONFIG_DOC  # and it is back for its own identity
        assert back.next_boot_count() == 2


def test_the_command_order_is_kept_and_an_entry_moved_to_the_end_stays_there(folder: Path):
    def entry(key: str) -> dict[str, object]:
        return {"key": key, "response": {"status": "ok", "t": 0}}

    with StateStore(folder, GATE) as store:
        store.keep_answered_commands([entry("a"), entry("b"), entry("c")])
        store.keep_answered_commands([entry("a"), entry("c"), entry("b")])
        store.keep_answered_commands([entry("c"), entry("b"), entry("d")])  # "a" forgotten
    with StateStore(folder, GATE) as again:
        assert [e["key"] for e in again.answered_commands()] == ["c", "b", "d"]


def test_a_large_trust_list_is_kept_in_parts_and_read_back_whole(folder: Path):
    big = json.dumps({"version": 9, "keys": ["k" * 1000] * 1500})  # ~1.5 MB: more than one record
    with StateStore(folder, GATE) as store:
        store.keep_pushed_trust(big)
        store.keep_pushed_trust(big)  # the same again writes nothing new
    with StateStore(folder, GATE) as again:
        assert again.pushed_trust() == big


def test_a_trust_list_cut_off_mid_write_leaves_the_previous_one(folder: Path):
    with StateStore(folder, GATE) as store:
        store.keep_pushed_trust("old list")
    # As if the power failed after the first part of a newer list's generation reached the disk.
    records = list(iter_log(folder / STORE_FILE))
    table = next(op[1] for op in records if op[1].startswith("trust@"))
    with StateStore(folder, GATE) as store:
        store._db.table(table).insert({"gen": 99, "part": 0, "parts": 2, "text": "new, half"})
    with StateStore(folder, GATE) as again:
        assert again.pushed_trust() == "old list"


def test_writers_on_several_threads_all_land(folder: Path):
    with StateStore(folder, GATE) as store:
        errors: list[BaseException] = []

        def count() -> None:
            try:
                for _ in range(20):
                    store.next_boot_count()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=count) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
    with StateStore(folder, GATE) as again:
        assert again.next_boot_count() == 81


def test_a_read_only_store_reads_but_never_writes(folder: Path):
    with StateStore(folder, GATE) as store:
        store.keep_applied_config(CONFIG_DOC)
    size = (folder / STORE_FILE).stat().st_size
    with StateStore(folder, GATE, read_only=True) as reader:
        assert reader.applied_config() == CONFIG_DOC
        with pytest.raises(OSError):
            reader.keep_applied_config({"format": 1})
    assert (folder / STORE_FILE).stat().st_size == size


def test_a_store_file_that_is_not_ours_is_left_alone_and_nothing_is_kept(folder: Path):
    folder.mkdir()
    (folder / STORE_FILE).write_bytes(b"somebody else's file")
    with StateStore(folder, GATE) as store:
        assert store.applied_config() is None
        with pytest.raises(OSError):
            store.keep_applied_config(CONFIG_DOC)
    assert (folder / STORE_FILE).read_bytes() == b"somebody else's file"


# -- moving the old state files in --------------------------------------------------------------


def write_legacy(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(CONFIG_DOC))
    (folder / "trust.json").write_text('{"version": 4}\n')
    (folder / "commands.json").write_text(json.dumps([{"key": "pulse-gate\x00ab", "response": None}]))
    (folder / "boot_count").write_text("41\n")


def assert_legacy_content(store: StateStore) -> None:
    assert store.applied_config() == CONFIG_DOC
    assert store.pushed_trust() == '{"version": 4}\n'
    assert store.answered_commands() == [{"key": "pulse-gate\x00ab", "response": None}]


def test_old_state_files_move_into_the_store_once_and_lose_nothing(folder: Path):
    write_legacy(folder)
    with StateStore(folder, GATE) as store:
        assert_legacy_content(store)
        assert store.next_boot_count() == 42
    assert sorted(p.name for p in folder.iterdir()) == [STORE_FILE]
    with StateStore(folder, GATE) as again:
        assert_legacy_content(again)
        assert again.next_boot_count() == 43


def test_a_crash_before_the_old_files_are_removed_moves_them_again_to_the_same_result(
    folder: Path, monkeypatch
):
    write_legacy(folder)

    def crash(_self: StateStore, _concern: str) -> None:
        raise KeyboardInterrupt  # the process dies once the store has everything

    monkeypatch.setattr(StateStore, "_legacy_done", crash)
    with pytest.raises(KeyboardInterrupt):
        StateStore(folder, GATE)
    assert {"config.json", "trust.json", "commands.json", "boot_count"} <= {p.name for p in folder.iterdir()}
    monkeypatch.undo()
    with StateStore(folder, GATE) as store:
        assert_legacy_content(store)
        assert store.next_boot_count() == 42  # not counted twice
    assert sorted(p.name for p in folder.iterdir()) == [STORE_FILE]


def test_a_crash_while_writing_the_store_keeps_the_old_files(folder: Path, monkeypatch):
    write_legacy(folder)
    real = state_mod.LogStorage.write
    calls = [0]

    def dies_on_the_third_write(self: object, data: dict) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        real(self, data)  # type: ignore[arg-type]

    monkeypatch.setattr(state_mod.LogStorage, "write", dies_on_the_third_write)
    with pytest.raises(KeyboardInterrupt):
        StateStore(folder, GATE)
    monkeypatch.undo()
    assert len(list(folder.iterdir())) == 5  # every old file still there, beside a partial store
    with StateStore(folder, GATE) as store:
        assert_legacy_content(store)
        assert store.next_boot_count() == 42


def test_old_files_are_used_in_place_while_the_store_cannot_take_them(folder: Path, monkeypatch):
    write_legacy(folder)

    def disk_full(_self: object, _data: dict) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state_mod.LogStorage, "write", disk_full)
    with StateStore(folder, GATE) as store:
        assert_legacy_content(store)
    assert (folder / "config.json").exists()
    monkeypatch.undo()
    with StateStore(folder, GATE) as store:  # the next open moves them
        assert_legacy_content(store)
    assert not (folder / "config.json").exists()


def test_an_unreadable_old_file_is_ignored_with_a_warning_naming_it(folder: Path, caplog):
    folder.mkdir()
    (folder / "config.json").write_bytes(b"{not json")
    (folder / "boot_count").write_text("garbage")
    with caplog.at_level(logging.WARNING, logger="edge_sentry.state"):
        store = StateStore(folder, GATE)
    with store:
        assert store.applied_config() is None
        assert store.next_boot_count() == 1  # counted again from zero, not a crash
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "config.json" in messages and "boot_count" in messages


def test_a_read_only_store_serves_old_files_without_moving_them(folder: Path):
    write_legacy(folder)
    with StateStore(folder, GATE, read_only=True) as reader:
        assert_legacy_content(reader)
    assert not (folder / STORE_FILE).exists() and (folder / "config.json").exists()


def test_open_takes_the_folder_and_identity_from_the_config(folder: Path):
    from edge_sentry.config import from_mapping

    config = from_mapping({"device": {"id": "gate-1", "site": "site", "state_dir": str(folder)}})
    with StateStore.open(config) as store:
        assert store.identity == GATE and store.path == folder / STORE_FILE
