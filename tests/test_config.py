"""The config schema: defaults run, files override, every problem is named by its key path."""

from __future__ import annotations

import pytest

from edge_sentry import config as cfg
from edge_sentry.errors import ConfigError


def write(tmp_path, text: str):
    path = tmp_path / "sentry.toml"
    path.write_text(text)
    return path


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return dict(exc.value.problems)


def test_no_file_gives_the_runnable_demo_defaults():
    config = cfg.load(None)
    assert config.camera.source == "synthetic"
    assert config.gpio.pin_factory == "auto"
    assert config.mqtt is None
    assert config.es1.max_age_s == 60 and config.es1.skew_s == 30
    assert config.gate.passback_s == 30


def test_file_overrides_only_the_keys_it_names(tmp_path):
    config = cfg.load(write(tmp_path, '[gate]\npulse_ms = 250\n[device]\nsite = "arena"\n'))
    assert config.gate.pulse_ms == 250
    assert config.gate.passback_s == 30
    assert config.device.site == "arena"
    assert config.device.entrance == "main"


def test_mqtt_section_present_means_a_broker(tmp_path):
    config = cfg.load(write(tmp_path, '[mqtt]\nhost = "broker.local"\n'))
    assert config.mqtt is not None
    assert config.mqtt.host == "broker.local" and config.mqtt.port == 1883


def test_integer_accepted_where_a_number_is_asked(tmp_path):
    config = cfg.load(write(tmp_path, "[gate]\nmax_open_s = 5\n"))
    assert config.gate.max_open_s == 5.0 and isinstance(config.gate.max_open_s, float)


def test_every_problem_is_reported_by_key_path(tmp_path):
    text = (
        '[gate]\npulse_ms = "long"\nfail_mode = "open"\nfoo = 1\n'
        "[es1]\nmax_age_s = -5\n"
        "[nonsense]\nx = 1\n"
    )
    with pytest.raises(ConfigError) as exc:
        cfg.load(write(tmp_path, text))
    found = problems(exc)
    assert found["gate.pulse_ms"] == "must be an integer, not str"
    assert "must be one of" in found["gate.fail_mode"]
    assert found["gate.foo"] == "unknown key"
    assert "between" in found["es1.max_age_s"]
    assert found["nonsense"] == "unknown section"


def test_bool_is_not_an_integer(tmp_path):
    with pytest.raises(ConfigError) as exc:
        cfg.load(write(tmp_path, "[gate]\npulse_ms = true\n"))
    assert "gate.pulse_ms" in problems(exc)


def test_list_items_are_checked(tmp_path):
    with pytest.raises(ConfigError) as exc:
        cfg.load(write(tmp_path, "[es1]\naccept_status = [0, 7]\n"))
    assert "es1.accept_status" in problems(exc)


def test_rules_across_keys(tmp_path):
    text = '[gate]\npulse_ms = 5000\nmax_open_s = 2\n[gpio]\nred = 17\n[camera]\nsource = "replay"\n'
    with pytest.raises(ConfigError) as exc:
        cfg.load(write(tmp_path, text))
    found = problems(exc)
    assert found["gate.pulse_ms"] == "must not exceed gate.max_open_s"
    assert found["gpio.red"] == "pin 17 is already used by gpio.relay"
    assert "camera.path" in found


def test_broken_toml_and_missing_file_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        cfg.load(write(tmp_path, "[gate\n"))
    # what tomllib itself does not turn into its own error: recursion, and int()'s digit limit
    with pytest.raises(ConfigError, match="nested too deeply"):
        cfg.load(write(tmp_path, "[gate]\npulse_ms = " + "[" * 5000 + "]" * 5000 + "\n"))
    with pytest.raises(ConfigError, match="number too long"):
        cfg.load(write(tmp_path, "[gate]\npulse_ms = " + "1" * 5000 + "\n"))
    with pytest.raises(ConfigError, match="not found"):
        cfg.load(tmp_path / "absent.toml")


def test_a_config_file_that_is_not_utf8_is_a_config_error_with_exit_2(tmp_path, capsys):
    from edge_sentry.cli import main

    path = tmp_path / "sentry.toml"
    path.write_bytes(b'[gate]\nmode = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="not UTF-8") as exc:
        cfg.load(path)
    assert problems(exc) == {"": f"{str(path)!r} is not UTF-8 text (byte 0xff at offset 15)"}
    assert main(["--config", str(path), "selftest"]) == 2
    err = capsys.readouterr().err
    assert "config error" in err and "Traceback" not in err


def test_section_that_is_not_a_table(tmp_path):
    with pytest.raises(ConfigError) as exc:
        cfg.load(write(tmp_path, "gate = 3\n"))
    assert problems(exc) == {"gate": "must be a table of keys"}


def test_partial_mapping_applies_over_a_base():
    base = cfg.from_mapping({"gate": {"pulse_ms": 300}})
    merged = cfg.from_mapping({"es1": {"max_age_s": 90}}, base=base)
    assert merged.gate.pulse_ms == 300 and merged.es1.max_age_s == 90


@pytest.mark.parametrize(
    "data, path",
    [
        ({10**5000: {}}, "<an integer of 16610 bits>"),
        ({"gate": {10**5000: 1}}, "gate.<an integer of 16610 bits>"),
        ({(1, 2): {}}, "<a tuple>"),
        ({"gate": {7: 1}}, "gate.7"),
    ],
)
def test_a_key_that_is_not_text_is_named_in_its_path(data, path: str):
    with pytest.raises(ConfigError) as caught:
        cfg.from_mapping(data)
    assert path in problems(caught)


def test_failed_mapping_leaves_base_untouched():
    base = cfg.from_mapping({"gate": {"pulse_ms": 300}})
    with pytest.raises(ConfigError):
        cfg.from_mapping({"gate": {"pulse_ms": 1}}, base=base)
    assert base.gate.pulse_ms == 300


def test_round_trip_through_mapping():
    config = cfg.from_mapping({"mqtt": {"host": "h"}, "gate": {"pulse_ms": 400}})
    assert cfg.from_mapping(cfg.to_mapping(config)) == config


def test_mqtt_rules(tmp_path):
    text = (
        '[mqtt]\nbackoff_min_s = 10\nbackoff_max_s = 1\npassword = "a"\npassword_file = "/p"\n'
        'cert = "c.pem"\n'
    )
    with pytest.raises(ConfigError) as exc:
        cfg.load(write(tmp_path, text))
    found = problems(exc)
    assert found["mqtt.backoff_min_s"] == "must not exceed mqtt.backoff_max_s"
    assert "not both" in found["mqtt.password_file"]
    assert found["mqtt.key"] == "cert and key go together"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("id", "gate/1"), ("id", "sentry+"), ("id", "#"), ("id", "a\0b"), ("id", "all"),
        ("site", "arena/north"), ("site", "+"), ("site", "arena#2"),
    ],
)  # fmt: skip
def test_site_and_device_id_must_be_one_mqtt_topic_level(tmp_path, key, value):
    # Both are levels of sentry/v1/{site}/{device}: a '/', '+' or '#' would widen a subscription or
    # an ACL grant, and device id 'all' is the site-wide slot. The link refuses them at connect time;
    # the config must refuse them first, by key path, like any other unusable value.
    with pytest.raises(ConfigError) as exc:
        cfg.from_mapping({"device": {key: value}})
    assert "topic level" in problems(exc)[f"device.{key}"]


def test_ordinary_ids_and_an_all_site_are_fine():
    config = cfg.from_mapping({"device": {"id": "sentry-0001.north_gate", "site": "all"}})
    assert config.device.id == "sentry-0001.north_gate"


def test_an_integer_too_large_for_a_number_key_is_a_config_error(tmp_path):
    # TOML integers have no size limit in tomllib; float() of one past 1e308 raises OverflowError,
    # which must come out as a problem by key path, not a traceback.
    path = write(tmp_path, "[gate]\nmax_open_s = 1" + "0" * 400 + "\n")
    with pytest.raises(ConfigError) as exc:
        cfg.load(path)
    assert "gate.max_open_s" in problems(exc)


def test_a_client_certificate_without_a_ca_is_a_config_error_naming_mqtt_ca(tmp_path):
    # Without mqtt.ca there is no TLS at all: the certificate would go unused, the link plaintext.
    text = '[mqtt]\nhost = "127.0.0.1"\ncert = "/etc/edge-sentry/c.pem"\nkey = "/etc/edge-sentry/k.pem"\n'
    with pytest.raises(ConfigError) as exc:
        cfg.load(write(tmp_path, text))
    assert "mqtt.ca" in problems(exc)
    with_ca = cfg.load(write(tmp_path, text + 'ca = "/etc/edge-sentry/ca.pem"\n'))
    assert with_ca.mqtt is not None and with_ca.mqtt.cert == "/etc/edge-sentry/c.pem"


@pytest.mark.parametrize("secret", ['password = "hunter2-secret"', 'password_file = "/run/pw"'])
@pytest.mark.parametrize(
    "host", ["broker.example", "10.0.0.5", "fd00::1", "localhost.example", "127.0.0.1.nip.io"]
)
def test_a_password_never_goes_in_plaintext_to_a_host_that_is_not_loopback(tmp_path, secret, host):
    text = f'[mqtt]\nhost = "{host}"\nusername = "gate-1"\n{secret}\n'
    with pytest.raises(ConfigError) as exc:
        cfg.load(write(tmp_path, text))
    key = "mqtt." + secret.split(" ")[0]
    assert "TLS" in problems(exc)[key] and "mqtt.ca" in problems(exc)[key]
    assert "hunter2" not in str(exc.value)  # the secret is never echoed
    over_tls = cfg.load(write(tmp_path, text + 'ca = "/etc/edge-sentry/ca.pem"\n'))
    assert over_tls.mqtt is not None and over_tls.mqtt.host == host


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST", "localhost.", "127.0.0.1", "127.3.2.1", "::1", "[::1]"]
)
def test_a_password_in_plaintext_to_the_loopback_host_is_allowed(tmp_path, host):
    config = cfg.load(write(tmp_path, f'[mqtt]\nhost = "{host}"\nusername = "u"\npassword = "pw"\n'))
    assert config.mqtt is not None and config.mqtt.password == "pw"


def test_a_username_alone_sends_no_secret_and_is_allowed_anywhere(tmp_path):
    config = cfg.load(write(tmp_path, '[mqtt]\nhost = "broker.example"\nusername = "u"\n'))
    assert config.mqtt is not None and config.mqtt.username == "u"


def test_the_ingest_section_has_working_defaults_and_takes_a_database_url(tmp_path):
    assert cfg.load(None).ingest.max_future_s == 300 and cfg.load(None).ingest.db is None
    config = cfg.load(write(tmp_path, '[ingest]\ndb = "postgresql://ingest@db/fleet"\nmax_future_s = 60\n'))
    assert config.ingest.db == "postgresql://ingest@db/fleet" and config.ingest.max_future_s == 60.0


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("max_future_s = 0", "ingest.max_future_s"),
        ("max_future_s = -300", "ingest.max_future_s"),
        ('max_future_s = "5m"', "ingest.max_future_s"),
        ('group = "a/b"', "ingest.group"),
        ('group = "+"', "ingest.group"),
        ("batch_messages = 0", "ingest.batch_messages"),
        ("session_expiry_s = 10", "ingest.session_expiry_s"),
        ("partitions_ahead_days = -1", "ingest.partitions_ahead_days"),
        ("retention = 3", "ingest.retention"),
    ],
)
def test_ingest_values_out_of_bounds_are_named_by_key_path(tmp_path, text: str, path: str):
    with pytest.raises(ConfigError) as exc:
        cfg.load(write(tmp_path, f"[ingest]\n{text}\n"))
    assert path in problems(exc)


def test_the_ingest_section_is_never_changed_by_a_pushed_config():
    from edge_sentry.link import desired

    assert desired.matches("ingest.max_future_s", desired.LOCAL_ONLY)


def test_the_ingest_example_config_is_valid():
    from pathlib import Path

    config = cfg.load(Path(__file__).parent.parent / "provisioning" / "ingest.example.toml")
    assert config.ingest.db is not None and config.ingest.db.startswith("postgresql://")
    assert config.mqtt is not None and config.mqtt.port == 8884
