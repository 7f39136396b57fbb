"""The `[display]` section: where the pages are served and how the visitor display speaks."""

from __future__ import annotations

import pytest

from edge_sentry import config as cfg
from edge_sentry.config import DISPLAY_LISTEN_ENV, ConfigError, from_mapping, parse_listen
from edge_sentry.link import desired


def test_the_embedded_default_serves_the_pages_on_loopback_port_8080(monkeypatch):
    monkeypatch.delenv(DISPLAY_LISTEN_ENV, raising=False)
    display = cfg.load(None).display
    assert display.listen == "127.0.0.1:8080"
    assert display.language == "en" and display.result_s == 4.0
    assert display.aim is False and display.aim_fps == 4.0  # no camera picture leaves unless asked


def test_the_environment_changes_the_default_but_never_a_value_the_file_sets(monkeypatch, tmp_path):
    monkeypatch.setenv(DISPLAY_LISTEN_ENV, "")
    assert cfg.load(None).display.listen == ""
    path = tmp_path / "sentry.toml"
    path.write_text('[display]\nlisten = "127.0.0.1:9000"\n')
    assert cfg.load(path).display.listen == "127.0.0.1:9000"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("localhost:80", ("localhost", 80)),
        ("[::1]:8080", ("::1", 8080)),
        ("0.0.0.0:8080", ("0.0.0.0", 8080)),
        ("192.168.1.20:0", ("192.168.1.20", 0)),
    ],
)
def test_listen_addresses_that_are_taken(text, parsed):
    assert parse_listen(text) == parsed
    assert from_mapping({"display": {"listen": text}}).display.listen == text


REFUSED = ["8080", "127.0.0.1", "127.0.0.1:65536", "127.0.0.1:-1", "::1:8080", "[127.0.0.1]:80",
           "display.example:8080", ":8080", "127.0.0.1:http"]  # fmt: skip


@pytest.mark.parametrize("text", REFUSED)
def test_listen_addresses_that_are_refused_by_key_path(text):
    with pytest.raises(ConfigError) as exc:
        from_mapping({"display": {"listen": text}})
    assert dict(exc.value.problems)["display.listen"].startswith("must be HOST:PORT")


def test_an_empty_listen_serves_no_pages():
    assert from_mapping({"display": {"listen": ""}}).display.listen == ""


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("language", "fr", "must be one of 'en', 'zh'"),
        ("result_s", 0.5, "must be between 1 and 60"),
        ("result_s", "4", "must be a number, not str"),
        ("colour", "green", "unknown key"),
        ("aim", "yes", "must be true or false, not str"),
        ("aim", 1, "must be true or false, not int"),
        ("aim_fps", 0, "must be between 0.5 and 10"),
        ("aim_fps", 30, "must be between 0.5 and 10"),
    ],
)
def test_display_keys_are_checked_by_key_path(key, value, message):
    with pytest.raises(ConfigError) as exc:
        from_mapping({"display": {key: value}})
    assert dict(exc.value.problems) == {f"display.{key}": message}


def test_a_pushed_config_cannot_move_the_pages_but_may_change_their_language():
    assert desired.matches("display.listen", desired.LOCAL_ONLY)
    assert not desired.matches("display.language", desired.LOCAL_ONLY)


def test_the_example_sentry_config_serves_the_pages_on_loopback():
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "provisioning" / "sentry.example.toml"
    display = cfg.load(example).display
    assert display.listen == "127.0.0.1:8080" and display.language in ("en", "zh")


def test_the_pages_answer_to_no_extra_name_by_default_and_a_push_cannot_add_one():
    assert from_mapping({}).display.hosts == []
    assert from_mapping({"display": {"hosts": ["sentry-north.local", "Gate-2"]}}).display.hosts == [
        "sentry-north.local", "Gate-2"]  # fmt: skip
    assert desired.matches("display.hosts", desired.LOCAL_ONLY)


@pytest.mark.parametrize("hosts", [["sentry.local:8080"], ["a b"], [""], ["x.local", "x.local"], ["-x"]])
def test_display_hosts_must_be_distinct_names_without_a_port(hosts):
    with pytest.raises(ConfigError) as exc:
        from_mapping({"display": {"hosts": hosts}})
    assert dict(exc.value.problems)["display.hosts"].startswith("must list distinct host names")


def test_the_aiming_page_needs_the_pages_to_be_served():
    with pytest.raises(ConfigError) as exc:
        from_mapping({"display": {"listen": "", "aim": True}})
    assert dict(exc.value.problems) == {
        "display.aim": "needs display.listen: the aiming page is served with the other pages"
    }
    assert from_mapping({"display": {"listen": "127.0.0.1:0", "aim": True}}).display.aim is True
