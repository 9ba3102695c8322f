"""A throwaway self-signed certificate, made when a benchmark needs TLS.

The certificate names ``localhost`` and ``127.0.0.1`` and lasts a month; its
key is an EC P-256 key (what a modern deployment would serve, and cheap to
make). The load generator trusts it by loading the certificate itself as its
only CA, so nothing is verified less than on a real deployment.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True, slots=True)
class CertFiles:
    """The PEM files of a certificate: ``cert`` (also the CA a client trusts) and ``key``."""

    cert: Path
    key: Path


def files_in(directory: Path, name: str = "localhost") -> CertFiles:
    """Where :func:`self_signed` writes: ``NAME.crt`` and ``NAME.key`` in ``directory``."""
    return CertFiles(directory / f"{name}.crt", directory / f"{name}.key")


def self_signed(directory: Path, name: str = "localhost") -> CertFiles:
    """Write a self-signed certificate for ``localhost`` and 127.0.0.1, and its
    key, into ``directory`` (made when missing): :func:`files_in`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    files = files_in(directory, name)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return files
