"""Debian's headless Chromium driven by Selenium through Debian's chromedriver, as the pages' tests
and benchmarks/bench_display.py use it.

Nothing is downloaded: the driver is named explicitly (so Selenium Manager never looks for one) and
`SE_OFFLINE` keeps it from trying. `missing()` says which package to install when either is absent,
or that the run is under emulation (provisioning/arm64-check, `EDGE_SENTRY_EMULATED=1`), where no
browser is installed; the callers skip with that reason, never silently.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("EDGE_SENTRY_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("EDGE_SENTRY_CHROMEDRIVER", "/usr/bin/chromedriver")
#: The folder screenshots of the pages are saved in; a temporary folder when unset.
SCREENS_ENV = "EDGE_SENTRY_SCREENS"

#: The Raspberry Pi touch display's size: the visitor display's usual screen.
DISPLAY_SIZE = (800, 480)


def missing() -> str | None:
    """Why the browser tests cannot run here (naming the Debian package, or emulation), or None."""
    if os.environ.get("EDGE_SENTRY_EMULATED") == "1":
        return ("EDGE_SENTRY_EMULATED=1: a browser under emulation is too slow for the pages' waits "
                "and is not installed in the emulated root; the pages are checked in a browser "
                "natively")  # fmt: skip
    if not os.access(CHROMIUM, os.X_OK):
        return (f"headless Chromium not found at {CHROMIUM}: install Debian's `chromium` package "
                "(scripts/setup --dev)")  # fmt: skip
    if not os.access(CHROMEDRIVER, os.X_OK):
        return (f"chromedriver not found at {CHROMEDRIVER}: install Debian's `chromium-driver` package "
                "(scripts/setup --dev)")  # fmt: skip
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: `scripts/setup --dev` installs the dev extra"
    return None


class Browser:
    """One headless Chromium with its own throw-away profile; `quit()` ends it and removes the profile."""

    def __init__(self, size: tuple[int, int] = DISPLAY_SIZE) -> None:
        os.environ.setdefault("SE_OFFLINE", "true")
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="edge-sentry-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions", "--force-device-scale-factor=1",
                    "--hide-scrollbars", f"--user-data-dir={self.profile}",
                    f"--window-size={size[0]},{size[1]}"):  # fmt: skip
            options.add_argument(arg)
        self.driver: Any = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        # --window-size sets the outer window; the page's own area is what the screen would show.
        inner = self.driver.execute_script("return [window.innerWidth, window.innerHeight]")
        self.driver.set_window_size(size[0] * 2 - inner[0], size[1] * 2 - inner[1])

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait(self, condition: Any, timeout: float = 20.0, message: str = "") -> Any:
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.02).until(condition, message)

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


def screens_folder(fallback: Path) -> Path:
    folder = Path(os.environ.get(SCREENS_ENV) or fallback)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
