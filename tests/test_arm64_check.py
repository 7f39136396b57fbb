"""provisioning/arm64-check deletes and rebuilds its arm64 root, so it refuses any place where that would
harm something else (/, the checkout, a folder holding it or inside it) before it does anything at all:
before asking for root, installing a package or mounting. The run itself (root, emulation, the whole
suite) is on demand and far too slow for a test; README.md ("Architectures") says how it is run."""

from __future__ import annotations

import fcntl
import os
import re
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


def _setup_packages() -> set[str]:
    """Every Debian package scripts/setup --dev may install (its `need+=(...)` lines)."""
    text = (ROOT / "scripts" / "setup").read_text()
    return {name for group in re.findall(r"need\+=\(([^)]*)\)", text) for name in group.split()}


def test_the_root_gets_every_package_the_tests_need_but_the_browser_and_the_pis_own():
    """What scripts/setup --dev installs for the tests is installed in the arm64 root too, less the
    browser (its tests skip under emulation) and the Raspberry Pi OS archive's own packages."""
    listed = re.search(r"^packages=\(([^)]*)\)", SCRIPT.read_text(), re.MULTILINE)
    assert listed is not None
    not_in_root = {"chromium", "chromium-driver", "fonts-wqy-microhei", "python3-picamera2", "python3-lgpio"}
    assert _setup_packages() - not_in_root <= set(listed.group(1).split())
    assert {"espeak-ng", "alsa-utils"} <= _setup_packages()


def test_the_browser_tests_skip_under_emulation_and_say_so(monkeypatch):
    """No browser is installed in the arm64 root: its tests skip there with that reason, never silently."""
    import chromium

    monkeypatch.setenv("EDGE_SENTRY_EMULATED", "1")
    why = chromium.missing()
    assert why is not None and why.startswith("EDGE_SENTRY_EMULATED=1: a browser under emulation")
