"""Whole-file writes: an atomic replace leaves the old or the new file, never a mix or a leftover;
a new file is never written over an existing one; both set the mode from the first byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_sentry import files
from edge_sentry.errors import ExposedSecretError


def mode_of(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_write_atomic_replaces_whole_files(tmp_path: Path):
    target = tmp_path / "sub" / "f.json"
    files.write_atomic(target, b"one")
    files.write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]
    assert mode_of(target) == 0o600  # state by default: owner only


def test_write_atomic_takes_the_mode_it_is_given(tmp_path: Path):
    old = os.umask(0o022)
    try:
        files.write_atomic(tmp_path / "poster.png", b"png", files.PUBLIC)
    finally:
        os.umask(old)
    assert mode_of(tmp_path / "poster.png") == 0o644


def test_a_failed_replace_keeps_the_old_file_and_leaves_nothing_behind(tmp_path: Path, monkeypatch):
    target = tmp_path / "f.json"
    files.write_atomic(target, b"old")

    def no_rename(_src: object, _dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", no_rename)
    with pytest.raises(OSError):
        files.write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_the_temporary_name_is_the_one_wipe_knows():
    from edge_sentry.cli import wipe

    tmp = files.temp_name(Path("/state/config.json"))
    found = wipe._ATOMIC_LEFTOVER.match(tmp.name)
    assert found is not None and found["name"] == "config.json"


def test_write_new_never_overwrites(tmp_path: Path):
    target = tmp_path / "key.pem"
    files.write_new(target, b"first", 0o600)
    with pytest.raises(FileExistsError):
        files.write_new(target, b"second", 0o600)
    assert target.read_bytes() == b"first"
    assert mode_of(target) == 0o600


def test_write_new_removes_a_file_it_could_not_finish(tmp_path: Path, monkeypatch):
    def failing_fsync(_fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files.os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        files.write_new(tmp_path / "key.pem", b"secret", 0o600)
    assert not (tmp_path / "key.pem").exists()  # so a retry is not refused by its own leftover


def test_an_output_in_a_missing_folder_fails_when_asked_not_to_create_it(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        files.write_atomic(tmp_path / "typo" / "c.png", b"png", files.PUBLIC, create_folder=False)
    assert not (tmp_path / "typo").exists()


def test_read_private_takes_owner_only_files_and_refuses_shared_ones(tmp_path: Path):
    secret = tmp_path / "secret"
    files.write_new(secret, b"key material", files.PRIVATE)
    assert files.read_private(secret) == b"key material"
    secret.chmod(0o400)
    assert files.read_private(secret) == b"key material"
    for mode in (0o644, 0o640, 0o604, 0o610, 0o602):
        secret.chmod(mode)
        with pytest.raises(ExposedSecretError, match=f"{mode:04o}"):
            files.read_private(secret)
    with pytest.raises(FileNotFoundError):
        files.read_private(tmp_path / "absent")


def test_read_private_refuses_what_is_not_a_regular_file_without_hanging(tmp_path: Path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(OSError, match="not a regular file"):
        files.read_private(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        files.read_private(tmp_path)
