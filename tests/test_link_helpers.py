"""The link's pure helpers: reconnect backoff, the persisted boot count, credentials from a file
(systemd credentials included) and TLS files; no broker needed."""

from __future__ import annotations

import random
import statistics

import pytest

from edge_sentry.config import from_mapping
from edge_sentry.errors import LinkError
from edge_sentry.link.connection import backoff_delay
from edge_sentry.link.credentials import read_password, tls_context


def mqtt_config(**mqtt):
    return from_mapping({"mqtt": {"host": "127.0.0.1", **mqtt}}).mqtt


def test_backoff_stays_between_min_and_max_and_grows_with_attempts():
    rng = random.Random(7)
    for attempt in range(40):
        for _ in range(50):
            assert 0.5 <= backoff_delay(attempt, 0.5, 30.0, rng) <= 30.0
    early = statistics.mean(backoff_delay(0, 0.5, 30.0, rng) for _ in range(500))
    late = statistics.mean(backoff_delay(10, 0.5, 30.0, rng) for _ in range(500))
    assert early < 1.0 < 10.0 < late


def test_backoff_is_jittered_so_a_fleet_does_not_reconnect_in_lockstep():
    rng = random.Random(1)
    delays = {round(backoff_delay(3, 1.0, 60.0, rng), 3) for _ in range(100)}
    assert len(delays) > 90


def test_password_comes_from_the_config_or_a_credentials_file(tmp_path, monkeypatch):
    assert read_password(mqtt_config(password="inline")) == "inline"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert read_password(mqtt_config(password_file="$CREDENTIALS_DIRECTORY/mqtt-password")) == "s3cret"


def test_an_unusable_password_file_says_why(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(LinkError, match="environment variable"):
        read_password(mqtt_config(password_file="$CREDENTIALS_DIRECTORY/mqtt-password"))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(LinkError, match="empty"):
        read_password(mqtt_config(password_file=str(empty)))


def test_tls_is_on_only_with_a_ca_and_bad_files_are_a_link_error(tmp_path):
    assert tls_context(mqtt_config()) is None
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(LinkError, match="TLS"):
        tls_context(mqtt_config(ca=str(bogus)))
    with pytest.raises(LinkError, match="TLS"):
        tls_context(mqtt_config(ca=str(tmp_path / "missing.pem")))
