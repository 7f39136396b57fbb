"""A second, tolerant reading of a DCC signer certificate, for the ones a strict DER parser refuses.

Some member states' document signer certificates encode a DER default explicitly (`BasicConstraints`
with `cA FALSE`, for one); `cryptography` rightly calls that invalid DER and refuses the certificate,
where the EU's own verifiers read it. This module reads only what a signature check needs from such a
certificate: the public key, the validity window and the extended key usage OIDs, through `asn1crypto`
(a small, pure-Python, well-kept ASN.1 library that decodes BER leniently and needs no C toolchain on a
Pi). The key it finds is handed to `cryptography`, which alone checks every signature.

It must never be the first reading (`dcc.load_signer` tries `cryptography` first), never decide that a
certificate is trusted (the trust list does that), and never read anything else from the certificate.
Pure functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asn1crypto import x509 as asn1_x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_der_public_key


@dataclass(frozen=True)
class SignerFields:
    """What a signature check needs from a signer certificate: the key and its validity in seconds
    since 1970, and the extended key usage OIDs (None when the extension is absent)."""

    public_key: Any
    not_before: float
    not_after: float
    key_usages: frozenset[str] | None


def read(der: bytes) -> SignerFields | None:
    """The fields of a DER (or BER-tolerant) X.509 certificate; None when even this cannot read it.

    `strict=True` still refuses bytes after the certificate: the trust list's kid is a hash of the
    whole DER, and trailing bytes would let two byte strings stand for one certificate.
    """
    try:
        cert = asn1_x509.Certificate.load(der, strict=True)
        tbs = cert["tbs_certificate"]
        # The key goes back through cryptography, so an unusable key is refused as it would be there.
        public_key = load_der_public_key(tbs["subject_public_key_info"].dump())
        validity = tbs["validity"]
        not_before = validity["not_before"].native.timestamp()
        not_after = validity["not_after"].native.timestamp()
        usage = cert.extended_key_usage_value
        key_usages = None if usage is None else frozenset(oid.dotted for oid in usage)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError, UnsupportedAlgorithm):
        return None
    return SignerFields(public_key, not_before, not_after, key_usages)
