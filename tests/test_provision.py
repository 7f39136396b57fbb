"""`edge-sentry fleet provision`: the inventory's rules, the certificates it issues, re-runs that never
re-issue a key, and folders it refuses to touch. What the broker then allows is in test_broker_acl.py."""

from __future__ import annotations

import datetime as dt
import stat
import tomllib
from pathlib import Path

import pytest
from broker import Pki
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge_sentry.cli import main
from edge_sentry.errors import InventoryError, ProvisionError
from edge_sentry.fleet import acl, inventory, pki, provision

INVENTORY = """
[broker]
hosts = ["mqtt.example.net", "10.0.0.5"]

[sites]
arena = ["gate-1", "gate-2"]

[operators]
alice = ["arena"]

[ingesters]
backend-1 = ["arena"]
"""
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _inventory(text: str = INVENTORY) -> inventory.Inventory:
    return inventory.parse(tomllib.loads(text))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(tmp_path: Path, text: str = INVENTORY, *extra: str) -> int:
    (tmp_path / "inventory.toml").write_text(text)
    return main(["fleet", "provision", str(tmp_path / "inventory.toml"), "--out", str(tmp_path / "out"),
                 *extra])


# -- the inventory -------------------------------------------------------------------------------


def test_an_inventory_lists_devices_by_site_and_logins_with_their_sites() -> None:
    fleet = _inventory()
    assert fleet.hosts == ("mqtt.example.net", "10.0.0.5")
    assert fleet.port == inventory.DEFAULT_PORT and fleet.bind is None and fleet.dir is None
    assert fleet.operator_port == inventory.DEFAULT_OPERATOR_PORT
    assert [(d.site, d.id) for d in fleet.devices] == [("arena", "gate-1"), ("arena", "gate-2")]
    assert [(o.name, o.sites) for o in fleet.operators] == [("alice", ("arena",))]
    assert [(i.name, i.sites) for i in fleet.ingesters] == [("backend-1", ("arena",))]


def test_every_inventory_problem_is_reported_by_key_path() -> None:
    bad = """
    extra = 1
    [broker]
    hosts = ["ok.example", "bad host"]
    port = 70000
    bind = "everywhere"
    dir = "relative/path"
    colour = "blue"
    [sites]
    arena = ["gate-1", "all", "gate 2", "gate-1"]
    "x+y" = ["lobby\\nuser admin"]
    stadium = "north-1"
    [operators]
    alice = ["arena", "moon"]
    gate-1 = ["arena"]
    [ingesters]
    backend-1 = []
    """
    with pytest.raises(InventoryError) as caught:
        _inventory(bad)
    paths = [path for path, _ in caught.value.problems]
    for expected in ("extra", "broker.hosts", "broker.port", "broker.bind", "broker.dir", "broker.colour",
                     "sites.arena", "sites.x+y", "sites.stadium", "operators.alice", "operators.gate-1",
                     "ingesters.backend-1"):
        assert expected in paths, expected
    text = str(caught.value)
    assert "'all' names the whole site" in text
    assert "'gate-1' is already a login" in text
    assert "unknown site(s) 'moon'" in text


@pytest.mark.parametrize("missing", ["broker", "sites"])
def test_an_inventory_needs_a_broker_and_sites(missing: str) -> None:
    text = INVENTORY.replace(f"[{missing}]", "[unused]")
    with pytest.raises(InventoryError, match=f"{missing}: missing section"):
        _inventory(text)


def test_a_bad_inventory_exits_2_and_writes_nothing(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, INVENTORY.replace('"gate-2"', '"gate 2"')) == 2
    assert "sites.arena" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_unreadable_inventory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fleet", "provision", str(tmp_path / "none.toml"), "--out", str(tmp_path / "out")]) == 2
    assert "cannot read" in capsys.readouterr().err
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('[sites]\narena = ["gate-\xe9"]\n'.encode("latin-1"))
    assert main(["fleet", "provision", str(latin1), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "not UTF-8 text (byte 0xe9" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# -- what a run makes ----------------------------------------------------------------------------


def test_a_run_makes_the_cas_the_broker_and_one_login_per_identity(tmp_path: Path) -> None:
    assert _run(tmp_path) == 0
    out = tmp_path / "out"
    ca = pki.load_cert(out / "ca" / "ca.crt")
    people = pki.load_cert(out / "ca" / "people.crt")
    assert (out / "broker" / acl.PEOPLE_CA_FILE).read_bytes() == (out / "ca" / "people.crt").read_bytes()
    for cert in (ca, people):
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert constraints.ca and constraints.path_length == 0
    for kind, name, issuer in (("devices", "gate-1", ca), ("devices", "gate-2", ca),
                               ("operators", "alice", people), ("ingesters", "backend-1", people)):
        folder = out / kind / name
        cert = pki.load_cert(folder / provision.MQTT_CERT)
        assert pki.common_name(cert) == name
        cert.verify_directly_issued_by(issuer)
        assert not pki.issued_by(cert, people if issuer is ca else ca)
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        assert cert.public_key() == pki.load_key(folder / provision.MQTT_KEY).public_key()
        assert (folder / provision.MQTT_CA).read_bytes() == (out / "ca" / "ca.crt").read_bytes()
    server = pki.load_cert(out / "broker" / acl.SERVER_CERT)
    assert sorted(pki.san_names(server)) == ["10.0.0.5", "mqtt.example.net"]
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_private_keys_are_owner_only_and_certificates_public(tmp_path: Path) -> None:
    assert _run(tmp_path) == 0
    out = tmp_path / "out"
    keys = sorted(out.rglob("*.key"))
    assert {p.name for p in keys} == {"ca.key", "people.key", "server.key", "mqtt.key"}
    for path in keys:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for path in (out / "ca" / "ca.crt", out / "devices" / "gate-1" / "mqtt.cert"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0o044


def test_certificates_are_valid_for_the_days_asked_and_backdated_a_day(tmp_path: Path) -> None:
    assert _run(tmp_path, INVENTORY, "--days", "30") == 0
    cert = pki.load_cert(tmp_path / "out" / "devices" / "gate-1" / provision.MQTT_CERT)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime == dt.timedelta(days=30) + pki.BACKDATE
    assert _run(tmp_path, INVENTORY, "--days", "0") == 2


def test_the_broker_config_names_the_installed_folder_and_listens_only_with_tls(tmp_path: Path) -> None:
    text = INVENTORY.replace('hosts = ["mqtt.example.net", "10.0.0.5"]',
                             'hosts = ["mqtt.example.net"]\nport = 8884\noperator_port = 8885\n'
                             'bind = "10.0.0.5"\ndir = "/etc/mosquitto/edge-sentry"')
    assert _run(tmp_path, text) == 0
    conf = (tmp_path / "out" / "broker" / acl.CONF_FILE).read_text()
    assert conf.startswith("#") and "per_listener_settings true" in conf
    devices, people = conf.split("\nlistener ")[1:]
    assert devices.startswith("8884 10.0.0.5\n") and people.startswith("8885 10.0.0.5\n")
    for listener in (devices, people):
        for line in ("require_certificate true", "use_identity_as_username true", "allow_anonymous false",
                     "acl_file /etc/mosquitto/edge-sentry/acl",
                     "keyfile /etc/mosquitto/edge-sentry/server.key",
                     "certfile /etc/mosquitto/edge-sentry/server.crt"):
            assert line in listener.splitlines()
    # Devices' certificates only where the login is the client id; people's where it is not.
    assert "cafile /etc/mosquitto/edge-sentry/ca.crt" in devices.splitlines()
    assert "use_username_as_clientid true" in devices.splitlines()
    assert "cafile /etc/mosquitto/edge-sentry/people-ca.crt" in people.splitlines()
    assert "use_username_as_clientid" not in people
    assert not any(line.startswith(("password_file", "psk")) for line in conf.splitlines())


def test_the_two_listeners_need_two_ports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = INVENTORY.replace('"10.0.0.5"]', '"10.0.0.5"]\noperator_port = 8883')
    assert _run(tmp_path, text) == 2
    assert "broker.operator_port" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_acl_has_explicit_lines_per_login_and_no_patterns() -> None:
    text = acl.acl_text(_inventory())
    assert "pattern" not in text
    blocks = {block.splitlines()[1]: block.splitlines()[2:] for block in text.split("\n\n")[1:] if block}
    assert blocks["user gate-1"] == [
        "topic write sentry/v1/arena/gate-1/state",
        "topic write sentry/v1/arena/gate-1/scan",
        "topic write sentry/v1/arena/gate-1/event",
        "topic write sentry/v1/arena/gate-1/health",
        "topic write sentry/v1/arena/gate-1/config/reported",
        "topic write sentry/v1/arena/gate-1/reply/+",
        "topic read sentry/v1/arena/gate-1/config/desired",
        "topic read sentry/v1/arena/gate-1/trust",
        "topic read sentry/v1/arena/gate-1/cmd/+",
        "topic read sentry/v1/arena/all/config/desired",
    ]
    assert not [line for line in blocks["user backend-1"] if "write" in line]
    assert blocks["user alice"][0] == "topic read sentry/v1/arena/#"


# -- re-runs -------------------------------------------------------------------------------------


def test_a_rerun_adds_new_devices_and_never_reissues_existing_keys(tmp_path: Path) -> None:
    assert _run(tmp_path) == 0
    out = tmp_path / "out"
    before = _snapshot(out)
    grown = INVENTORY.replace('arena = ["gate-1", "gate-2"]', 'arena = ["gate-1", "gate-2", "gate-3"]')
    assert _run(tmp_path, grown) == 0
    after = _snapshot(out)
    derived = {"broker/acl", "broker/mosquitto.conf"}
    assert {k: v for k, v in after.items() if k in before and k not in derived} == {
        k: v for k, v in before.items() if k not in derived}
    assert {k for k in after if k not in before} == {
        "devices/gate-3/mqtt.ca", "devices/gate-3/mqtt.cert", "devices/gate-3/mqtt.key"}
    assert "user gate-3" in after["broker/acl"].decode()


def test_a_key_left_without_its_certificate_gets_one_for_that_key(tmp_path: Path) -> None:
    assert _run(tmp_path) == 0
    folder = tmp_path / "out" / "devices" / "gate-2"
    key = (folder / provision.MQTT_KEY).read_bytes()
    (folder / provision.MQTT_CERT).unlink()
    outcomes = provision.provision(_inventory(), tmp_path / "out", now=NOW)
    assert {o.name: o.action for o in outcomes}["gate-2"] == provision.CERT_FOR_KEY
    assert (folder / provision.MQTT_KEY).read_bytes() == key
    cert = pki.load_cert(folder / provision.MQTT_CERT)
    assert cert.public_key() == pki.load_key(folder / provision.MQTT_KEY).public_key()


def test_new_broker_host_names_renew_the_server_certificate_for_the_same_key(tmp_path: Path) -> None:
    assert _run(tmp_path) == 0
    broker = tmp_path / "out" / "broker"
    key = (broker / acl.SERVER_KEY).read_bytes()
    moved = INVENTORY.replace('"10.0.0.5"', '"mqtt2.example.net"')
    outcomes = provision.provision(_inventory(moved), tmp_path / "out", now=NOW)
    assert {o.kind: o.action for o in outcomes}["broker"] == provision.RENEWED
    assert (broker / acl.SERVER_KEY).read_bytes() == key
    assert sorted(pki.san_names(pki.load_cert(broker / acl.SERVER_CERT))) == [
        "mqtt.example.net", "mqtt2.example.net"]


def test_a_folder_from_before_the_people_ca_moves_operators_and_ingesters_to_it(tmp_path: Path) -> None:
    # Such a folder has one CA, and operators' and ingesters' certificates issued by it.
    assert _run(tmp_path) == 0
    out = tmp_path / "out"
    ca_key, ca = pki.load_key(out / "ca" / "ca.key"), pki.load_cert(out / "ca" / "ca.crt")
    for name in ("people.key", "people.crt"):
        (out / "ca" / name).unlink()
    (out / "broker" / acl.PEOPLE_CA_FILE).unlink()
    for folder in (out / "operators" / "alice", out / "ingesters" / "backend-1"):
        key = pki.load_key(folder / provision.MQTT_KEY)
        old = pki.issue(ca_key, ca, folder.name, key.public_key(), NOW)
        (folder / provision.MQTT_CERT).write_bytes(pki.cert_pem(old))
    before = _snapshot(out)
    outcomes = {o.name: o.action for o in provision.provision(_inventory(), out, now=NOW)}
    assert outcomes["alice"] == outcomes["backend-1"] == provision.MOVED
    assert outcomes["gate-1"] == outcomes["edge-sentry-broker"] == provision.KEPT
    assert outcomes[provision.PEOPLE_CA_NAME] == provision.NEW
    people = pki.load_cert(out / "ca" / "people.crt")
    after = _snapshot(out)
    for login in ("operators/alice", "ingesters/backend-1"):
        cert = pki.load_cert(out / login / provision.MQTT_CERT)
        assert pki.issued_by(cert, people) and pki.common_name(cert) == login.split("/")[1]
        for name in (provision.MQTT_KEY, provision.MQTT_CA):  # same key; the broker checked as before
            assert after[f"{login}/{name}"] == before[f"{login}/{name}"]
    for path in ("ca/ca.key", "ca/ca.crt", "devices/gate-1/mqtt.cert", "broker/server.crt"):
        assert after[path] == before[path]
    # The next run finds everything in place.
    outcomes = {o.name: o.action for o in provision.provision(_inventory(), out, now=NOW)}
    assert set(outcomes.values()) == {provision.KEPT}


def test_a_people_ca_without_the_fleet_ca_is_refused(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path) == 0
    for name in ("ca.key", "ca.crt"):
        (tmp_path / "out" / "ca" / name).unlink()
    _refused(tmp_path, capsys, "there is no fleet CA beside it")


# -- folders it refuses --------------------------------------------------------------------------


def _refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], match: str) -> None:
    before = _snapshot(tmp_path / "out")
    grown = INVENTORY.replace('arena = ["gate-1", "gate-2"]', 'arena = ["gate-1", "gate-2", "gate-3"]')
    assert _run(tmp_path, grown) == 1
    assert match in capsys.readouterr().err
    assert _snapshot(tmp_path / "out") == before  # not even the new device


def test_a_certificate_without_its_key_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path) == 0
    (tmp_path / "out" / "devices" / "gate-1" / provision.MQTT_KEY).unlink()
    _refused(tmp_path, capsys, "there is no mqtt.key beside it")


def test_a_certificate_from_another_ca_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path) == 0
    folder = tmp_path / "out" / "devices" / "gate-1"
    cert, key = Pki(tmp_path / "stranger").issue("gate-1")
    (folder / provision.MQTT_CERT).write_bytes(cert.read_bytes())
    (folder / provision.MQTT_KEY).write_bytes(key.read_bytes())
    _refused(tmp_path, capsys, "not issued by this fleet's CA")


def test_a_certificate_for_another_name_is_refused(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path) == 0
    devices = tmp_path / "out" / "devices"
    for name in (provision.MQTT_CERT, provision.MQTT_KEY):
        (devices / "gate-1" / name).write_bytes((devices / "gate-2" / name).read_bytes())
    _refused(tmp_path, capsys, "issued to 'gate-2', not 'gate-1'")


def test_a_key_that_does_not_match_its_certificate_is_refused(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path) == 0
    folder = tmp_path / "out" / "devices" / "gate-1"
    (folder / provision.MQTT_KEY).write_bytes(pki.key_pem(pki.new_key()))
    _refused(tmp_path, capsys, "does not match the private key beside it")


def test_a_login_folder_with_another_ca_certificate_is_refused(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path) == 0
    (tmp_path / "out" / "devices" / "gate-2" / provision.MQTT_CA).write_bytes(
        Pki(tmp_path / "stranger").ca_path.read_bytes())
    _refused(tmp_path, capsys, "is not this fleet's CA certificate")


def test_half_a_ca_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path) == 0
    (tmp_path / "out" / "ca" / "ca.key").unlink()
    _refused(tmp_path, capsys, "missing, while the other half of the fleet CA is there")


def test_a_login_folder_without_the_ca_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "out" / "devices" / "gate-1"
    folder.mkdir(parents=True)
    cert, key = Pki(tmp_path / "stranger").issue("gate-1")
    (folder / provision.MQTT_CERT).write_bytes(cert.read_bytes())
    (folder / provision.MQTT_KEY).write_bytes(key.read_bytes())
    with pytest.raises(ProvisionError, match="issued by a fleet CA that is not in this folder"):
        provision.provision(_inventory(), tmp_path / "out", now=NOW)
    assert not (tmp_path / "out" / "ca").exists()


def test_the_example_inventory_is_a_valid_inventory() -> None:
    example = Path(__file__).parent.parent / "provisioning" / "fleet.example.toml"
    fleet = inventory.load(example)
    assert {d.id for d in fleet.devices} >= {"gate-1", "gate-2"}
    assert fleet.operators and fleet.ingesters


def test_an_output_folder_that_mosquitto_conf_cannot_name_needs_broker_dir(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "my fleet"
    (tmp_path / "inventory.toml").write_text(INVENTORY)
    assert main(["fleet", "provision", str(tmp_path / "inventory.toml"), "--out", str(out)]) == 2
    assert "set [broker] dir" in capsys.readouterr().err
    assert not out.exists()
    text = INVENTORY.replace('"10.0.0.5"]', '"10.0.0.5"]\ndir = "/etc/mosquitto/edge-sentry"')
    (tmp_path / "inventory.toml").write_text(text)
    assert main(["fleet", "provision", str(tmp_path / "inventory.toml"), "--out", str(out)]) == 0


def test_a_certificate_never_outlives_its_ca(tmp_path: Path) -> None:
    ca_key, ca_cert = pki.make_ca("CA", NOW, days=10)
    cert = pki.issue(ca_key, ca_cert, "gate-1", pki.new_key().public_key(), NOW, days=400)
    assert cert.not_valid_after_utc == ca_cert.not_valid_after_utc
