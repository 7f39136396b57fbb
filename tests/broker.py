"""A private Mosquitto for the tests and benchmarks, with the fleet's security model in its config.

Each `Broker` is one `mosquitto` process on free loopback ports (never the system broker on 1883),
with everything it reads generated in its own folder:

- a plain listener: username and password, from a password file in Mosquitto 2's PBKDF2-SHA512
  format (hashed here, so no helper tool is needed); `allow_anonymous false`;
- a TLS listener: a test CA made with `cryptography`, a server certificate for 127.0.0.1 and
  localhost, a client certificate per device (CN = device id); `require_certificate true` and
  `use_identity_as_username true`, so the certificate is the login;
- a broad ACL: each device reads and writes anything under `sentry/v1/{site}/{device}/#` and reads
  `sentry/v1/{site}/all/#`; the ingester reads every site's `scan`, `event`, `state` and `health`
  and writes nothing; the operator may do anything (the fleet's least-privilege ACL of
  docs/protocol.md section 6.2 is `ProvisionedBroker`'s);
- persistence in its folder, so `stop()` then `start()` on the same ports is a real broker restart:
  retained messages and persistent sessions survive, in-flight connections do not.

`ProvisionedBroker` runs instead on what `edge-sentry fleet provision` wrote (its TLS-only
mosquitto.conf, its ACL, its certificates), adding only process settings and a free port.

`Subscriber` is an operator-side client that records what arrives, for assertions (logged in with a
password, or with a certificate: `tls_files`), with the SUBACK and PUBACK reason codes. Nothing here
depends on the sentry's own code except `config()`, which builds a Config pointing at the broker.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

if TYPE_CHECKING:
    from edge_sentry.config import Config

SITE = "arena"
DEVICES = ("gate-1", "gate-2")
OPERATOR = "operator"
INGESTER = "ingester"
INGESTER_READS = ("scan", "event", "state", "health")
HOST = "127.0.0.1"
START_TIMEOUT_S = 15.0

# (CA certificate, client certificate, client key) of a TLS login; no certificate: (ca, None, None).
TlsFiles = tuple[Path, Path | None, Path | None]

_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


def find_mosquitto() -> str | None:
    """The broker executable: $EDGE_SENTRY_MOSQUITTO, then PATH, then the usual sbin folders."""
    explicit = os.environ.get("EDGE_SENTRY_MOSQUITTO")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((c for c in _CANDIDATES if os.access(c, os.X_OK)), None)


MISSING_MOSQUITTO = (
    "mosquitto is not installed: the MQTT tests run a real broker. Install it with "
    "`scripts/setup --dev` (or `apt-get install mosquitto`), or point EDGE_SENTRY_MOSQUITTO at it."
)


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the broker retries if it was taken since)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = 101) -> str:
    """A Mosquitto 2 password-file hash: `$7$iterations$base64(salt)$base64(PBKDF2-SHA512)`."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


# -- a test PKI ----------------------------------------------------------------------------------


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())  # fast to make, accepted by OpenSSL 1.1 and 3


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class Pki:
    """A CA and the certificates it issues, as PEM files in `folder` (valid for two days)."""

    def __init__(self, folder: Path, ca_name: str = "Edge Sentry test CA") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._key = _new_key()
        now = dt.datetime.now(dt.UTC)
        public = self._key.public_key()
        self._ski = x509.SubjectKeyIdentifier.from_public_key(public)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(ca_name))
            .issuer_name(_name(ca_name))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(self._ski, critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_path = folder / "ca.pem"
        _write_cert(self.ca_path, self.cert)

    def issue(
        self, common_name: str, *, server: bool = False, names: Iterable[str] = ()
    ) -> tuple[Path, Path]:
        """Issue a leaf certificate; return (cert path, key path). `names` become SANs (IPs or DNS)."""
        key = _new_key()
        now = dt.datetime.now(dt.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski), critical=False
            )
        )
        sans: list[x509.GeneralName] = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        stem = common_name.replace("/", "_")
        cert_path, key_path = self.folder / f"{stem}.crt", self.folder / f"{stem}.key"
        _write_cert(cert_path, cert)
        _write_key(key_path, key)
        return cert_path, key_path


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


# -- the broker ----------------------------------------------------------------------------------


class Broker:
    """One private Mosquitto. `start()` waits until both listeners accept; `stop()` ends it with
    SIGTERM (it saves its persistence file); `start()` again reuses the same ports and files.

    `acl` replaces the generated ACL text (for tests of what the broker refuses); `extra_config`
    is appended to the generated mosquitto.conf.
    """

    def __init__(
        self,
        folder: Path,
        *,
        site: str = SITE,
        devices: Iterable[str] = DEVICES,
        operator: str = OPERATOR,
        acl: str | None = None,
        extra_config: str = "",
        executable: str | None = None,
    ) -> None:
        exe = executable or find_mosquitto()
        if exe is None:
            raise RuntimeError(MISSING_MOSQUITTO)
        self.executable = exe
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = 0
        self.tls_port = 0
        self.site = site
        self.devices = tuple(devices)
        self.operator = operator
        self.ingester = INGESTER
        self.passwords = {user: secrets.token_urlsafe(12) for user in (*self.devices, operator, INGESTER)}
        self.pki = Pki(self.folder / "pki")
        self.ca = self.pki.ca_path
        self.server_cert, self.server_key = self.pki.issue("broker", server=True, names=(HOST, "localhost"))
        self.client_certs = {d: self.pki.issue(d) for d in (*self.devices, operator)}
        self._acl = acl if acl is not None else self.default_acl()
        self._extra_config = extra_config
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path = self.folder / "mosquitto.log"
        self._write_files()

    # -- files --------------------------------------------------------------------------------

    def default_acl(self) -> str:
        lines = []
        for device in self.devices:
            lines += [
                f"user {device}",
                f"topic readwrite sentry/v1/{self.site}/{device}/#",
                f"topic read sentry/v1/{self.site}/all/#",
                "",
            ]
        lines += [f"user {self.ingester}", *(f"topic read sentry/v1/+/+/{kind}" for kind in INGESTER_READS),
                  ""]
        lines += [f"user {self.operator}", "topic readwrite #", ""]
        return "\n".join(lines)

    def _write_files(self) -> None:
        passwd = self.folder / "passwd"
        passwd.write_text("".join(f"{u}:{hash_password(p)}\n" for u, p in self.passwords.items()))
        passwd.chmod(0o600)
        (self.folder / "acl").write_text(self._acl)
        (self.folder / "data").mkdir(exist_ok=True)

    def _harness_lines(self) -> list[str]:
        """Process settings of every test broker: persistence and the log in its folder, our uid."""
        user = pwd.getpwuid(os.geteuid()).pw_name  # as root, keep our uid so the files stay readable
        return [
            "persistence true",
            f"persistence_location {self.folder / 'data'}/",
            "autosave_interval 0",
            # No cap on queues: a test's subscriber may fall behind a burst, and a broker
            # that drops QoS 1 messages for it would fail tests for the wrong reason.
            "max_queued_messages 0",
            f"user {user}",
            f"log_dest file {self._log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %H:%M:%S",
        ]

    def _pick_ports(self) -> None:
        self.port, self.tls_port = free_port(), free_port()

    def _write_conf(self) -> Path:
        conf = self.folder / "mosquitto.conf"
        conf.write_text(
            "\n".join(
                [
                    "per_listener_settings false",
                    "allow_anonymous false",
                    f"password_file {self.folder / 'passwd'}",
                    f"acl_file {self.folder / 'acl'}",
                    *self._harness_lines(),
                    f"listener {self.port} {self.host}",
                    f"listener {self.tls_port} {self.host}",
                    f"cafile {self.ca}",
                    f"certfile {self.server_cert}",
                    f"keyfile {self.server_key}",
                    "require_certificate true",
                    "use_identity_as_username true",
                    self._extra_config,
                    "",
                ]
            )
        )
        return conf

    # -- process ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the broker (first time: on new free ports; later: on the same ports) and wait
        until both listeners accept connections."""
        if self.running:
            return
        first = self.port == 0
        for _ in range(3 if first else 1):
            if first:
                self._pick_ports()
            conf = self._write_conf()
            with open(self._log_path, "ab") as out:
                self._proc = subprocess.Popen(
                    [self.executable, "-c", str(conf)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # a Ctrl-C in the test run must not hit it first
                )
            if self._wait_ready(timeout):
                return
            self._terminate()
            if "Address already in use" not in self.log_text():
                break
        raise RuntimeError(f"mosquitto did not start on {self.host}:{self.port}; log:\n{self.log_tail()}")

    def _listening_ports(self) -> set[int]:
        return {self.port, self.tls_port}

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        waiting = self._listening_ports()
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                return False
            for port in list(waiting):
                with contextlib.suppress(OSError), socket.create_connection((self.host, port), timeout=0.5):
                    waiting.discard(port)
            if not waiting:
                return True
            time.sleep(0.02)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        """End the broker as an operator would (SIGTERM: it saves its persistence file first)."""
        self._terminate(timeout)

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open but nothing is answered, so a test
        can see what a client does while its PUBACKs are outstanding. Undo with resume()."""
        assert self._proc is not None and self.running
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """End the broker abruptly (SIGKILL: nothing is saved)."""
        if self.running:
            assert self._proc is not None
            self._proc.kill()
            self._proc.wait(10)

    def _terminate(self, timeout: float = 10.0) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)  # a paused broker cannot act on SIGTERM
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def close(self) -> None:
        """Stop for good (teardown): SIGTERM, then SIGKILL if it lingers."""
        self._terminate(5.0)

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_text(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- clients ------------------------------------------------------------------------------

    def config_mapping(
        self, state_dir: Path, *, device: str | None = None, tls: bool = False, **mqtt_options: Any
    ) -> dict[str, Any]:
        """A config mapping for a sentry that logs in as `device` (default: the first one), over the
        plain listener with its password or, with `tls`, over the TLS listener with its
        certificate. Backoff is short so reconnects are quick; `mqtt_options` override any key."""
        device = device or self.devices[0]
        state_dir = Path(state_dir)
        mqtt_section: dict[str, Any] = {
            "host": self.host,
            "keepalive_s": 10,
            "backoff_min_s": 0.05,
            "backoff_max_s": 0.5,
        }
        if tls:
            cert, key = self.client_certs[device]
            mqtt_section.update(port=self.tls_port, ca=str(self.ca), cert=str(cert), key=str(key))
        else:
            mqtt_section.update(port=self.port, username=device, password=self.passwords[device])
        mqtt_section.update(mqtt_options)
        mqtt_section = {k: v for k, v in mqtt_section.items() if v is not None}
        return {
            "device": {"id": device, "site": self.site, "state_dir": str(state_dir / "state")},
            "outbox": {"path": str(state_dir / "outbox")},
            "mqtt": mqtt_section,
        }

    def config(self, state_dir: Path, **options: Any) -> Config:
        """`config_mapping()` as an edge_sentry Config (imported here so the broker helper stays
        usable without the package)."""
        from edge_sentry.config import from_mapping

        return from_mapping(self.config_mapping(state_dir, **options))

    def subscriber(self, topics: str | Iterable[str] = "#", **options: Any) -> Subscriber:
        """A started operator `Subscriber` on the plain listener (see Subscriber for options)."""
        sub = Subscriber(self, topics, **options)
        sub.start()
        return sub


class ProvisionedBroker(Broker):
    """A Mosquitto run on what `edge-sentry fleet provision` wrote into `out`: its mosquitto.conf
    (the devices' and the operators' TLS listeners, client certificates required), its ACL and its
    certificates, as an operator installs them. The harness adds only process settings
    (persistence and log in `folder`, our uid) and moves the listeners to free loopback ports;
    every security setting is the generated one. There is no plain listener: `port` and
    `tls_port` are the devices' listener, `operator_port` the operators' and ingesters'.
    """

    def __init__(self, out: Path, folder: Path, *, executable: str | None = None) -> None:
        exe = executable or find_mosquitto()
        if exe is None:
            raise RuntimeError(MISSING_MOSQUITTO)
        self.executable = exe
        self.out = Path(out)
        self.folder = Path(folder)
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        self.host = HOST
        self.port = self.tls_port = self.operator_port = 0
        self.ca = self.out / "broker" / "ca.crt"
        self._proc = None
        self._log_path = self.folder / "mosquitto.log"

    def files(self, kind: str, name: str) -> tuple[Path, Path, Path]:
        """(mqtt.ca, mqtt.cert, mqtt.key) of a provisioned login; `kind` is devices, operators or
        ingesters."""
        folder = self.out / kind / name
        return folder / "mqtt.ca", folder / "mqtt.cert", folder / "mqtt.key"

    def port_for(self, kind: str) -> int:
        """The listener a login of `kind` (devices, operators or ingesters) connects to."""
        return self.tls_port if kind == "devices" else self.operator_port

    def _pick_ports(self) -> None:
        self.port = self.tls_port = free_port()
        self.operator_port = free_port()

    def _listening_ports(self) -> set[int]:
        return {self.tls_port, self.operator_port}

    def _write_conf(self) -> Path:
        generated = (self.out / "broker" / "mosquitto.conf").read_text().splitlines()
        listeners = [i for i, line in enumerate(generated) if line.startswith("listener ")]
        assert len(listeners) == 2, "the generated config has the devices' and the operators' listeners"
        for i, port in zip(listeners, (self.tls_port, self.operator_port), strict=True):
            generated[i] = f"listener {port} {self.host}"
        conf = self.folder / "mosquitto.conf"
        conf.write_text("\n".join([*self._harness_lines(), *generated, ""]))
        return conf

    def client(self, tls_files: TlsFiles, topics: str | Iterable[str] = (), **options: Any) -> Subscriber:
        """A Subscriber logged in with these (ca, cert, key) files, not yet started; on the devices'
        listener unless `port=` names another."""
        return Subscriber(self, topics, tls_files=tls_files, **options)


# -- an operator-side recorder -------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Mapping[str, Any] = field(default_factory=dict)


class Subscriber:
    """An MQTT 5 client (the operator by default) that subscribes at QoS 1 and records every
    message, with waits that poll the record under a deadline.

    `clean_start=False` with `session_expiry_s` makes a persistent session: the broker keeps what
    arrives for it while it is away (across a broker restart too, thanks to persistence). It
    reconnects by itself after a broker outage.
    """

    def __init__(
        self,
        broker: Broker,
        topics: str | Iterable[str] = "#",
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        clean_start: bool = True,
        session_expiry_s: int | None = None,
        qos: int = 1,
        tls_files: TlsFiles | None = None,
        port: int | None = None,
    ) -> None:
        self.broker = broker
        self.port = port
        self.topics = [topics] if isinstance(topics, str) else list(topics)
        self.tls_files = tls_files
        if tls_files is None:
            self.username: str | None = username or broker.operator
            self.password: str | None = password if password is not None else broker.passwords[self.username]
        else:  # the certificate is the login
            self.username, self.password = None, None
        self.client_id = client_id or f"sub-{uuid.uuid4().hex[:10]}"
        self.clean_start = clean_start
        self.session_expiry_s = session_expiry_s
        self.qos = qos
        self.messages: list[Received] = []
        self.connects = 0
        self.granted: list[int] = []  # SUBACK reason codes, in the order of the filters
        self.acks: dict[int, int] = {}  # PUBACK reason code by message id
        self._cond = threading.Condition()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
        )
        if tls_files is None:
            self._client.username_pw_set(self.username, self.password)
        else:
            ca, cert, key = tls_files
            # The default purpose checks the broker's certificate and its host name, as a sentry does.
            self._client.tls_set(ca_certs=str(ca), certfile=str(cert) if cert else None,
                                 keyfile=str(key) if key else None)
        self._client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)  # type: ignore[arg-type]
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._subscribed = 0
        self._connected = False

    def start(self, timeout: float = 10.0) -> Subscriber:
        props = Properties(PacketTypes.CONNECT)
        if self.session_expiry_s is not None:
            props.SessionExpiryInterval = self.session_expiry_s
        port = self.port or (self.broker.port if self.tls_files is None else self.broker.tls_port)
        self._client.connect(
            self.broker.host, port, keepalive=10, clean_start=self.clean_start, properties=props
        )
        self._client.loop_start()
        if not self.topics:
            if not self.wait(lambda: self._connected, timeout):
                raise TimeoutError("client was not let in (no CONNACK with success)")
        elif not self.wait(lambda: self._subscribed > 0, timeout):
            raise TimeoutError("subscriber did not get its SUBACK")
        return self

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            return
        with self._cond:
            self.connects += 1
            self._connected = True
            self._cond.notify_all()
        if self.topics:
            client.subscribe([(t, SubscribeOptions(qos=self.qos)) for t in self.topics])

    def _on_disconnect(self, *_args: Any) -> None:
        with self._cond:
            self._connected = False

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        with self._cond:
            self.granted = [r.value for r in reasons]
            self._subscribed += 1
            self._cond.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        with self._cond:
            self.acks[mid] = reason.value
            self._cond.notify_all()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        props = message.properties
        meta = {}
        for name in ("ContentType", "ResponseTopic", "CorrelationData"):
            value = getattr(props, name, None) if props is not None else None
            if value is not None:
                meta[name] = value
        got = Received(message.topic, bytes(message.payload), message.qos, bool(message.retain), meta)
        with self._cond:
            self.messages.append(got)
            self._cond.notify_all()

    def take(self) -> list[Received]:
        """What arrived since the last `take`, no longer kept here (a long run's record must not
        grow); `on` and the waits see only what came after."""
        with self._cond:
            taken, self.messages = self.messages, []
            return taken

    def on(self, topic: str) -> list[Received]:
        """What arrived on exactly `topic`, in order."""
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait until `predicate()` (called under the record's lock) is true; False at the deadline."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_for(self, topic: str, check: Callable[[Received], bool] = lambda m: True,
                 timeout: float = 10.0) -> Received | None:
        """The first message on `topic` that passes `check`, waiting up to `timeout`."""
        found: list[Received] = []

        def seen() -> bool:
            found[:] = [m for m in self.messages if m.topic == topic and check(m)][:1]
            return bool(found)

        self.wait(seen, timeout)
        return found[0] if found else None

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                properties: Properties | None = None, timeout: float = 10.0) -> None:
        """Publish as the operator (once connected: it may be reconnecting after a broker restart)
        and wait for the broker to take it."""
        if not self.wait(lambda: self._connected, timeout):
            raise TimeoutError("subscriber is not connected")
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(timeout)

    def publish_ack(self, topic: str, payload: bytes, *, retain: bool = False,
                    properties: Properties | None = None, timeout: float = 10.0) -> int:
        """Publish at QoS 1 and return the PUBACK's reason code (0 taken, 0x87 not authorised)."""
        if not self.wait(lambda: self._connected, timeout):
            raise TimeoutError("client is not connected")
        info = self._client.publish(topic, payload, qos=1, retain=retain, properties=properties)
        if not self.wait(lambda: info.mid in self.acks, timeout):
            raise TimeoutError(f"no PUBACK for {topic}")
        with self._cond:
            return self.acks[info.mid]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.disconnect()
        self._client.loop_stop()
