"""The broker credentials and TLS settings of an `[mqtt]` section, for the device link and the
operator's fleet client alike.

Never logs or puts a secret in an error message: errors name the file and what is wrong with it.
"""

from __future__ import annotations

import os
import ssl

from ..config import MqttConfig
from ..errors import LinkError


def expand(path: str) -> str:
    """`path` with `~` and environment variables expanded (`$CREDENTIALS_DIRECTORY/...`)."""
    return os.path.expanduser(os.path.expandvars(path))


def read_password(mqtt: MqttConfig) -> str | None:
    """The broker password: `mqtt.password`, or the content of `mqtt.password_file` (environment
    variables expanded, so `$CREDENTIALS_DIRECTORY/mqtt-password` reads a systemd credential).
    Read at every connect so that a rotated credential is picked up."""
    if mqtt.password_file is None:
        return mqtt.password
    path = expand(mqtt.password_file)
    try:
        with open(path, encoding="utf-8") as fh:
            secret = fh.read().rstrip("\r\n")
    except OSError as exc:
        hint = " (an environment variable in it is not set)" if "$" in path else ""
        raise LinkError(f"mqtt.password_file {path!r}: {exc.strerror or exc}{hint}") from None
    if not secret:
        raise LinkError(f"mqtt.password_file {path!r} is empty")
    return secret


def tls_context(mqtt: MqttConfig) -> ssl.SSLContext | None:
    """TLS when `mqtt.ca` is set: the broker must present a certificate from that CA for its host
    name; `mqtt.cert` and `mqtt.key` are this device's client certificate (optional)."""
    if not mqtt.ca:
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=expand(mqtt.ca))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if mqtt.cert:
            context.load_cert_chain(expand(mqtt.cert), expand(mqtt.key) if mqtt.key else None)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise LinkError(f"mqtt TLS files unusable: {exc}") from None
    return context
