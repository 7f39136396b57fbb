"""provisioning/arm64-check deletes and rebuilds its arm64 root, so it refuses any place where that would
harm something else (/, the checkout, a folder holding it or inside it) before it does anything at all:
before asking for root, installing a package or mounting. The run itself (root, emulation, the whole
suite) is on demand and far too slow for a test; README.md ("Architectures") says how it is run."""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "provisioning" / "arm64-check"


def run(*args: str, root: Path | str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EDGE_SENTRY_ARM64_ROOT"}
    if root is not None:
        env["EDGE_SENTRY_ARM64_ROOT"] = str(root)
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    "root", ["/", str(ROOT.parent), str(ROOT), str(ROOT / "arm64-root"), str(ROOT / "sub" / ".." / "x")]
)
def test_a_root_that_is_or_holds_or_sits_in_the_checkout_is_refused_before_anything(root):
    before = sorted(p.name for p in ROOT.iterdir())
    result = run("--install-only", root=root)
    assert result.returncode == 2
    assert "outside the checkout" in result.stderr
    assert "building" not in result.stdout + result.stderr
    assert sorted(p.name for p in ROOT.iterdir()) == before


def test_help_says_it_needs_root_and_where_the_root_is_kept():
    result = run("--help")
    assert result.returncode == 0
    assert "Needs root" in result.stdout
    assert "EDGE_SENTRY_ARM64_ROOT" in result.stdout
    assert "~/.cache/edge-sentry/arm64-root" in result.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: as any other user the script asks sudo first")
def test_a_second_run_on_the_same_root_is_refused_and_touches_nothing(tmp_path):
    root = tmp_path / "arm64-root"
    with open(tmp_path / "arm64-root.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a run in progress holds it
        result = run("--install-only", root=root)
    assert result.returncode == 1
    assert "another run is using" in result.stderr
    assert not root.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arm64-root.lock"]
