"""The visitor display's session files (edge_sentry/kiosk.py, provisioning/kiosk.sh): the page's
address from `display.listen`, a user unit that systemd itself finds nothing to say about, its
wait for the page working against a real socket, labwc's autostart as valid shell, and wayfire's
ini with blanking off.

`systemd-analyze` comes with Debian's `systemd` package (scripts/setup --dev installs it).
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from edge_sentry import kiosk
from edge_sentry.errors import UsageError

PROVISIONING = Path(__file__).resolve().parent.parent / "provisioning"


def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is missing: install the Debian package `systemd` "
                    "(scripts/setup --dev does)", pytrace=False)  # fmt: skip
    return found


@pytest.mark.parametrize(
    "listen, url",
    [
        ("127.0.0.1:8080", "http://127.0.0.1:8080/"),
        ("0.0.0.0:9000", "http://127.0.0.1:9000/"),  # every address: the screen takes loopback
        ("[::1]:8080", "http://[::1]:8080/"),
        ("[::]:8080", "http://[::1]:8080/"),
        ("192.168.10.5:8080", "http://192.168.10.5:8080/"),
        ("localhost:8080", "http://localhost:8080/"),
    ],
)
def test_the_page_address_comes_from_display_listen(listen, url):
    assert kiosk.page_url(listen) == url


def test_without_a_display_section_the_default_page_is_shown():
    assert kiosk.page_url(kiosk.listen_address({})) == "http://127.0.0.1:8080/"
    assert kiosk.listen_address({"display": {"listen": "0.0.0.0:80"}}) == "0.0.0.0:80"


@pytest.mark.parametrize(
    "listen",
    ["", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:0", "127.0.0.1:70000",
     # what the sentry itself refuses to serve (config.parse_listen): no page to open either
     ":8081", "display.example:8080", "::1:8080", "[127.0.0.1]:80", "[::1]:0"],
)  # fmt: skip
def test_a_listen_that_gives_no_page_is_refused(listen):
    with pytest.raises(UsageError, match=r"display\.listen"):
        kiosk.page_url(listen)


def test_a_listen_of_the_wrong_type_is_named():
    with pytest.raises(UsageError, match=r"display\.listen: must be a string"):
        kiosk.listen_address({"display": {"listen": 8080}})


def written(tmp_path: Path, config_text: str | None = None) -> dict[str, Path]:
    argv = ["--home", str(tmp_path / "home"), "--browser", "/bin/true"]
    if config_text is not None:
        config = tmp_path / "sentry.toml"
        config.write_text(config_text)
        argv += ["--config", str(config)]
    assert kiosk.main(argv) == 0
    config_dir = tmp_path / "home" / ".config"
    return {
        "unit": config_dir / "systemd" / "user" / kiosk.UNIT_NAME,
        "labwc": config_dir / "labwc" / "autostart",
        "wayfire": config_dir / "wayfire.ini",
    }


def test_systemd_finds_nothing_to_say_about_the_user_unit(tmp_path):
    files = written(tmp_path, '[display]\nlisten = "0.0.0.0:8090"\nlanguage = "zh"\n')
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    done = subprocess.run(
        [analyze(), "--user", "verify", str(files["unit"])], capture_output=True, text=True, timeout=60,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)}, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    text = files["unit"].read_text()
    (start,) = re.findall(r"^ExecStart=(.*)$", text, re.MULTILINE)
    assert shlex.split(start) == ["/bin/true", *kiosk.BROWSER_FLAGS, "http://127.0.0.1:8090/"]
    assert "--kiosk" in kiosk.BROWSER_FLAGS
    assert re.search(r"^Restart=always$", text, re.MULTILINE)


def test_systemd_would_report_a_broken_user_unit(tmp_path):
    """What the silence above is worth."""
    unit = tmp_path / kiosk.UNIT_NAME
    unit.write_text(kiosk.user_unit("/bin/true", "http://127.0.0.1:8080/").replace("Restart=", "Restrat="))
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    done = subprocess.run(
        [analyze(), "--user", "verify", str(unit)], capture_output=True, text=True, timeout=60,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)}, check=False,
    )  # fmt: skip
    assert "Restrat" in done.stdout + done.stderr


def test_the_unit_waits_for_the_page_and_goes_on_once_it_answers(tmp_path):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        files = written(tmp_path, f'[display]\nlisten = "127.0.0.1:{port}"\n')
        (pre,) = re.findall(r"^ExecStartPre=-(.*)$", files["unit"].read_text(), re.MULTILINE)
        argv = shlex.split(pre.replace("$$", "$"))  # as systemd passes it: "$$" is a literal "$"
        assert argv[:2] == ["/bin/bash", "-c"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    finally:
        server.close()
    assert done.returncode == 0, done.stderr


def test_labwc_starts_only_the_display_and_is_valid_shell(tmp_path):
    files = written(tmp_path)
    text = files["labwc"].read_text()
    subprocess.run(["sh", "-n", str(files["labwc"])], check=True, timeout=10)
    commands = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert commands == [
        "systemctl --user import-environment WAYLAND_DISPLAY XDG_RUNTIME_DIR XDG_SESSION_TYPE",
        f"systemctl --user restart {kiosk.UNIT_NAME} &",
    ]  # no panel, no desktop, no swayidle: nothing that blanks the screen


def test_wayfire_never_blanks_and_starts_the_display(tmp_path):
    files = written(tmp_path)
    ini = configparser.ConfigParser()
    ini.read(files["wayfire"])
    assert ini["idle"]["dpms_timeout"] == "-1" and ini["idle"]["screensaver_timeout"] == "-1"
    assert ini["autostart"]["edge_sentry_kiosk"].endswith(f"systemctl --user restart {kiosk.UNIT_NAME}")
    assert ini["autostart"]["autostart_wf_shell"] == "false"


def test_a_config_without_pages_writes_nothing(tmp_path, capsys):
    config = tmp_path / "sentry.toml"
    config.write_text('[display]\nlisten = ""\n')
    assert kiosk.main(["--config", str(config), "--home", str(tmp_path / "home")]) == 2
    assert "serves no pages" in capsys.readouterr().err
    assert not (tmp_path / "home").exists()


def test_the_provisioning_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(PROVISIONING / "kiosk.sh")], check=True, timeout=10)
    assert os.access(PROVISIONING / "kiosk.sh", os.X_OK)
