"""The broker credentials and TLS settings of an `[mqtt]` section, for the device link and the
operator's fleet client alike.

Never logs or puts a secret in an error message: errors name the file and what is wrong with it.
Never reads a password that would then cross the network in plaintext (no TLS, a host that is not
loopback), nor a password or client key file that group or others may read. The config's
validation refuses both at load; these checks hold for an `MqttConfig` built in code as well.
"""

from __future__ import annotations

import os
import ssl

from .. import files
from ..config import CLIENT_CERT_NEEDS_CA, MqttConfig, plaintext_password, plaintext_password_message
from ..errors import ExposedSecretError, LinkError


def expand(path: str) -> str:
    """`path` with `~` and environment variables expanded (`$CREDENTIALS_DIRECTORY/...`)."""
    return os.path.expanduser(os.path.expandvars(path))


def read_password(mqtt: MqttConfig) -> str | None:
    """The broker password: `mqtt.password`, or the content of `mqtt.password_file` (environment
    variables expanded, so `$CREDENTIALS_DIRECTORY/mqtt-password` reads a systemd credential), an
    owner-only file. Read at every connect so that a rotated credential is picked up. LinkError
    when the password would go out in plaintext to a host that is not loopback."""
    exposed = plaintext_password(mqtt)
    if exposed is not None:
        raise LinkError(f"{exposed}: {plaintext_password_message(mqtt.host)}")
    if mqtt.password_file is None:
        return mqtt.password
    path = expand(mqtt.password_file)
    try:
        secret = files.read_private(path).decode("utf-8").rstrip("\r\n")
    except ExposedSecretError as exc:
        raise LinkError(f"mqtt.password_file {exc}") from None
    except OSError as exc:
        hint = " (an environment variable in it is not set)" if "$" in path else ""
        raise LinkError(f"mqtt.password_file {path!r}: {exc.strerror or exc}{hint}") from None
    except UnicodeDecodeError:
        raise LinkError(f"mqtt.password_file {path!r}: not UTF-8 text") from None
    if not secret:
        raise LinkError(f"mqtt.password_file {path!r} is empty")
    return secret


def tls_context(mqtt: MqttConfig) -> ssl.SSLContext | None:
    """TLS when `mqtt.ca` is set: the broker must present a certificate from that CA for its host
    name; `mqtt.cert` and `mqtt.key` are this device's client certificate (optional; the key an
    owner-only file). A client certificate without `mqtt.ca` is a LinkError, not a plaintext
    connection that quietly leaves it unused."""
    if not mqtt.ca:
        if mqtt.cert or mqtt.key:
            raise LinkError(f"mqtt.ca: {CLIENT_CERT_NEEDS_CA}")
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=expand(mqtt.ca))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if mqtt.cert:
            key = expand(mqtt.key) if mqtt.key else None
            if key is not None:
                files.read_private(key)  # its mode only: OpenSSL reads it itself
            context.load_cert_chain(expand(mqtt.cert), key)
    except ExposedSecretError as exc:
        raise LinkError(f"mqtt.key {exc}") from None
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise LinkError(f"mqtt TLS files unusable: {exc}") from None
    return context
