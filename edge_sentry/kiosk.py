"""The visitor display's session files: Chromium in kiosk mode on the sentry's own page, started
when the kiosk user's desktop session starts, with the screen never blanking.

Raspberry Pi OS (bookworm) runs a Wayland compositor at login: labwc on current images, wayfire on
those from before late 2024. Both start programs listed in the user's own configuration
(`~/.config/labwc/autostart`, a shell script; the `[autostart]` section of `~/.config/wayfire.ini`).
The browser itself runs as a systemd user unit (`edge-sentry-kiosk.service`) that the autostart
starts, so a crashed or killed Chromium comes back by itself and its messages go to the journal.

- labwc runs the first `autostart` it finds, the user's before the system's, so the kiosk user's
  file also keeps out the desktop's panel, file manager and the idle daemon (swayidle) that blanks
  the screen;
- wayfire blanks through its `[idle]` section: both timeouts are set to -1 (never).

The page's address comes from the sentry's config, `display.listen` (`host:port`, default
"127.0.0.1:8080"): a wildcard address is reached on loopback; an empty `listen` means the sentry
serves no pages, and there is nothing to show. The config is read as plain TOML, not through the
schema, so this works whatever other sections the file holds.

`python -m edge_sentry.kiosk --config FILE --home DIR [--browser PATH]` writes the files under DIR
(provisioning/kiosk.sh calls it as root for the kiosk user, then hands the files to that user).
Pure text builders, and one function that writes; never starts or stops anything.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shlex
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import parse_listen
from .errors import UsageError

DEFAULT_LISTEN = "127.0.0.1:8080"
UNIT_NAME = "edge-sentry-kiosk.service"
#: How long the unit waits for the sentry's page to answer before it starts Chromium anyway.
WAIT_FOR_PAGE_S = 120

#: Chromium's switches for an unattended screen: full screen with no way out, no first-run or
#: crash-restore bubbles, no translation offer, no update nags, nothing kept between runs.
BROWSER_FLAGS = (
    "--kiosk",
    "--incognito",
    "--noerrdialogs",
    "--disable-infobars",
    "--no-first-run",
    "--disable-session-crashed-bubble",
    "--disable-features=Translate",
    "--check-for-update-interval=31536000",
    "--password-store=basic",
    "--disable-pinch",
    "--overscroll-history-navigation=0",
    "--ozone-platform=wayland",
)


def listen_address(config: Mapping[str, Any]) -> str:
    """`display.listen` of a parsed config (the default when absent)."""
    display = config.get("display", {})
    if not isinstance(display, Mapping):
        raise UsageError("display: must be a table of keys")
    listen = display.get("listen", DEFAULT_LISTEN)
    if not isinstance(listen, str):
        raise UsageError(f"display.listen: must be a string, not {type(listen).__name__}")
    return listen


def page_url(listen: str) -> str:
    """The URL the screen of the sentry's own Pi opens for a `display.listen` address: read by the
    sentry's own rule (`config.parse_listen`), so the screen never opens an address the sentry
    would refuse to serve."""
    if not listen.strip():
        raise UsageError('display.listen is "": the sentry serves no pages, the screen has nothing to show')
    parsed = parse_listen(listen)
    if parsed is None:
        raise UsageError(f"display.listen: {listen!r} is not HOST:PORT with an IP address or localhost")
    host, port = parsed
    if port == 0:
        raise UsageError(f"display.listen: {listen!r} takes any free port, which the screen cannot know")
    if host != "localhost":
        address = ipaddress.ip_address(host)
        if address.is_unspecified:
            # Listening on every address: the local screen takes the loopback one of the same family.
            host = "::1" if address.version == 6 else "127.0.0.1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def browser_command(browser: str, url: str) -> list[str]:
    return [browser, *BROWSER_FLAGS, url]


def user_unit(browser: str, url: str) -> str:
    """The systemd user unit that keeps Chromium showing `url`."""
    host_port = url.removeprefix("http://").rstrip("/")
    host, _, port = host_port.rpartition(":")
    host = host.strip("[]")
    # Until the sentry's page answers (the service may start after the desktop), so the first
    # thing on screen is the page, not a connection error; bash's /dev/tcp needs no other tool.
    # "$$": a literal "$" for bash, which systemd would otherwise take for its own variables.
    wait = (
        f"for i in $$(seq {WAIT_FOR_PAGE_S}); do "
        f"(exec 3<>/dev/tcp/{host}/{port}) 2>/dev/null && exit 0; sleep 1; done; exit 1"
    )
    command = " ".join(shlex.quote(part) for part in browser_command(browser, url))
    return f"""# The sentry's visitor display: Chromium in kiosk mode on {url}
# Written by provisioning/kiosk.sh (edge_sentry/kiosk.py); started by the desktop session's autostart.
[Unit]
Description=Edge Sentry visitor display (Chromium kiosk)
Documentation=file:///opt/edge-sentry/README.md
# A display that keeps failing is retried every RestartSec= forever, never given up on.
StartLimitIntervalSec=0

[Service]
Type=simple
# "-": a page still down after the wait is not a reason to show nothing at all.
ExecStartPre=-/bin/bash -c {shlex.quote(wait)}
ExecStart={command}
# A crashed or killed browser comes back.
Restart=always
RestartSec=5
"""


def labwc_autostart() -> str:
    """`~/.config/labwc/autostart`: hand the session's display to the user manager, start the unit."""
    return f"""# The kiosk user's labwc session (Raspberry Pi OS bookworm): only the visitor display.
# Written by provisioning/kiosk.sh. Being the user's own autostart, it replaces the system's, so no
# panel, no desktop and no idle daemon (swayidle) blanking the screen are started.
systemctl --user import-environment WAYLAND_DISPLAY XDG_RUNTIME_DIR XDG_SESSION_TYPE
systemctl --user restart {UNIT_NAME} &
"""


def wayfire_ini() -> str:
    """`~/.config/wayfire.ini` for a wayfire session: never blank, start the unit."""
    start = "systemctl --user import-environment WAYLAND_DISPLAY XDG_RUNTIME_DIR && " \
        f"systemctl --user restart {UNIT_NAME}"
    return f"""# The kiosk user's wayfire session (Raspberry Pi OS bookworm before labwc). Written by
# provisioning/kiosk.sh.
[idle]
# Never blank the screen, never start a screensaver.
dpms_timeout = -1
screensaver_timeout = -1

[autostart]
autostart_wf_shell = false
edge_sentry_kiosk = {start}
"""


def session_files(home: Path, browser: str, url: str) -> dict[Path, str]:
    """Every file the kiosk user's session needs, by path under `home`."""
    return {
        home / ".config" / "systemd" / "user" / UNIT_NAME: user_unit(browser, url),
        home / ".config" / "labwc" / "autostart": labwc_autostart(),
        home / ".config" / "wayfire.ini": wayfire_ini(),
    }


def write_session(home: Path, browser: str, url: str) -> list[Path]:
    """Write the session files (replacing earlier ones); the paths written."""
    written = []
    for path, text in session_files(home, browser, url).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".tmp")
        partial.write_text(text)
        os.replace(partial, path)
        written.append(path)
    return written


def read_config(path: str) -> Mapping[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge_sentry.kiosk", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="the sentry's config (default: the embedded defaults)")
    parser.add_argument("--home", required=True, type=Path, help="the kiosk user's home folder")
    parser.add_argument("--browser", default="/usr/bin/chromium", help="the Chromium program")
    args = parser.parse_args(argv)
    try:
        config = read_config(args.config) if args.config else {}
        url = page_url(listen_address(config))
    except UsageError as exc:
        print(f"kiosk: {exc}", file=sys.stderr)
        return 2
    for path in write_session(args.home, args.browser, url):
        print(path)
    print(f"kiosk: the screen shows {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
