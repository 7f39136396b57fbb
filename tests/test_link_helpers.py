"""The link's pure helpers: reconnect backoff, the persisted boot count, credentials from a file
(systemd credentials included, owner-only) and TLS files; no broker connection needed (the broker
fixture only lends its test PKI)."""

from __future__ import annotations

import random
import statistics

import pytest

from edge_sentry.config import MqttConfig, from_mapping
from edge_sentry.errors import FleetError, LinkError
from edge_sentry.fleet.client import FleetClient
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
    (creds / "mqtt-password").chmod(0o400)  # as systemd hands a credential to its service
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert read_password(mqtt_config(password_file="$CREDENTIALS_DIRECTORY/mqtt-password")) == "s3cret"


def test_an_unusable_password_file_says_why(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(LinkError, match="environment variable"):
        read_password(mqtt_config(password_file="$CREDENTIALS_DIRECTORY/mqtt-password"))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
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


def test_credentials_built_in_code_follow_the_config_rules_too(tmp_path):
    # An MqttConfig made without from_mapping (a tool, a test) gets the same refusals from the link.
    plain = MqttConfig(host="broker.example", username="gate-1", password="hunter2-secret")
    with pytest.raises(LinkError, match=r"mqtt\.password: .*TLS") as exc:
        read_password(plain)
    assert "hunter2" not in str(exc.value)
    assert read_password(MqttConfig(host="::1", password="pw")) == "pw"
    with pytest.raises(LinkError, match=r"mqtt\.ca"):
        tls_context(MqttConfig(host="127.0.0.1", cert="c.pem", key="k.pem"))


def test_the_fleet_client_never_sends_a_password_in_plaintext_to_a_remote_host():
    client = FleetClient(MqttConfig(host="broker.example", username="op", password="hunter2-secret"))
    with pytest.raises(FleetError, match="TLS"):
        client.connect()  # refused before any socket is opened
    assert not client.connected


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_password_file_others_can_access_is_refused_naming_file_and_mode(tmp_path, mode):
    secret = tmp_path / "mqtt-password"
    secret.write_text("hunter2-secret\n")
    secret.chmod(mode)
    with pytest.raises(LinkError) as exc:
        read_password(mqtt_config(password_file=str(secret)))
    message = str(exc.value)
    assert "mqtt.password_file" in message and str(secret) in message and f"{mode:04o}" in message
    assert "chmod 600" in message and "hunter2" not in message
    secret.chmod(0o600)
    assert read_password(mqtt_config(password_file=str(secret))) == "hunter2-secret"


def test_a_client_key_others_can_read_is_refused_before_tls_is_tried(broker, tmp_path):
    cert, key = broker.client_certs[broker.devices[0]]
    exposed = tmp_path / "client.key"
    exposed.write_bytes(key.read_bytes())
    exposed.chmod(0o644)
    config = mqtt_config(ca=str(broker.ca), cert=str(cert), key=str(exposed))
    with pytest.raises(LinkError, match=r"mqtt.key .*client.key.*0644"):
        tls_context(config)
    exposed.chmod(0o600)
    assert tls_context(config) is not None
