"""The fleet's X.509 certificates: a CA, client certificates (CN = login), the broker's server certificate.

Every key is EC P-256 (small, fast on a Pi, and what OpenSSL 1.1 and 3 both take). Certificates are
built with `cryptography` alone, so provisioning needs no `openssl` command. A client certificate
is for client authentication only and a server certificate for server authentication only, and the
CA may sign leaves but no further CA (path length 0): a stolen device key cannot act as the broker
or mint logins.

Pure apart from `load_key()` and `load_cert()` reading a file: writing them, and never overwriting a
key, is the provisioning's job (`fleet.provision`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import ProvisionError

CA_DAYS = 3650
CERT_DAYS = 825
# Backdated by a day: a sentry without a real-time clock may boot a little in the past
# (fake-hwclock restores the last shutdown time), and a certificate not yet valid locks it out.
BACKDATE = dt.timedelta(days=1)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def common_name(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def san_names(cert: x509.Certificate) -> list[str]:
    """The certificate's DNS names and IP addresses, as text (empty without the extension)."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*sans.get_values_for_type(x509.DNSName),
            *(str(ip) for ip in sans.get_values_for_type(x509.IPAddress))]


def make_ca(name: str, now: dt.datetime, days: int = CA_DAYS
            ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new self-signed fleet CA that may sign leaf certificates only."""
    key = new_key()
    subject = _name(name)
    cert = (
        _builder(subject, subject, key.public_key(), now, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, name: str,
          public_key: ec.EllipticCurvePublicKey, now: dt.datetime, *, days: int = CERT_DAYS,
          server_names: Iterable[str] = ()) -> x509.Certificate:
    """A leaf certificate for `name`: a client's (CN = login), or with `server_names` the broker's
    (those names and IP addresses as SANs, which is what TLS clients check)."""
    sans = [_general_name(n) for n in server_names]
    usage = ExtendedKeyUsageOID.SERVER_AUTH if sans else ExtendedKeyUsageOID.CLIENT_AUTH
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        _builder(_name(name), ca_cert.subject, public_key, now, days, until=ca_cert.not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def check_leaf(cert: x509.Certificate, ca_cert: x509.Certificate, name: str,
               key: ec.EllipticCurvePrivateKey, where: Path) -> None:
    """ProvisionError unless `cert` was issued by this CA, for `name`, and holds `key`'s public half."""
    if not issued_by(cert, ca_cert):
        raise ProvisionError(f"{where}: not issued by this fleet's CA")
    if common_name(cert) != name:
        raise ProvisionError(f"{where}: issued to {common_name(cert)!r}, not {name!r}")
    if cert.public_key() != key.public_key():
        raise ProvisionError(f"{where}: does not match the private key beside it")


def issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    """Whether `ca_cert`'s key signed `cert`."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """An EC P-256 private key from a PEM file (OSError if unreadable, ProvisionError if not a key)."""
    data = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ProvisionError(f"{path}: not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ProvisionError(f"{path}: not an EC P-256 private key")
    return key


def load_cert(path: Path) -> x509.Certificate:
    """A certificate from a PEM file (OSError if unreadable, ProvisionError if not a certificate)."""
    data = path.read_bytes()
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ProvisionError(f"{path}: not a PEM certificate") from None


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
             now: dt.datetime, days: int, until: dt.datetime | None = None) -> x509.CertificateBuilder:
    # A certificate that outlives its CA would look valid for days that no client will accept.
    end = min(now + dt.timedelta(days=days), until) if until else now + dt.timedelta(days=days)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _general_name(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
        encipher_only=False, decipher_only=False,
    )
