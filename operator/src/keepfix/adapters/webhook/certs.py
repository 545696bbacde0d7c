"""TLS material for the admission webhook, made with `cryptography`.

The API server calls the webhook over HTTPS and checks the serving
certificate against the `caBundle` of the ValidatingWebhookConfiguration, so
the operator needs a CA and a serving certificate whose subject alternative
names cover how the API server reaches it: `127.0.0.1`/`localhost` in dev
mode, the Service DNS names in service mode. Kopf's own self-signed path
goes through oscrypto, which breaks on OpenSSL 3; this module does not.

Files follow the kubernetes.io/tls Secret layout (`tls.crt`, `tls.key`,
`ca.crt`), so a cert-manager Certificate mounted into the same folder
replaces them without any change here: `ensure` keeps files that already
cover the names and are not about to expire, and generates new ones
otherwise. Time is a parameter; nothing here reads a clock.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import pathlib
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
CA_FILE = "ca.crt"

DEFAULT_VALIDITY = datetime.timedelta(days=365)
#: A certificate that expires sooner than this is replaced at start-up.
RENEW_BEFORE = datetime.timedelta(days=30)
#: Clock skew tolerated between this process and the API server.
BACKDATE = datetime.timedelta(minutes=5)


@dataclasses.dataclass(frozen=True)
class Bundle:
    """PEM-encoded CA certificate, serving certificate and serving key."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


@dataclasses.dataclass(frozen=True)
class Paths:
    """Where the three PEM files live."""

    cert: pathlib.Path
    key: pathlib.Path
    ca: pathlib.Path

    @classmethod
    def in_dir(cls, directory: pathlib.Path) -> Paths:
        return cls(cert=directory / CERT_FILE, key=directory / KEY_FILE, ca=directory / CA_FILE)


def service_names(*, name: str, namespace: str) -> tuple[str, ...]:
    """The DNS names a Service is reached by from the API server."""
    return (
        name,
        f"{name}.{namespace}",
        f"{name}.{namespace}.svc",
        f"{name}.{namespace}.svc.cluster.local",
    )


def generate(
    *,
    hosts: Sequence[str],
    now: datetime.datetime,
    valid_for: datetime.timedelta = DEFAULT_VALIDITY,
) -> Bundle:
    """A fresh CA and a serving certificate for `hosts` (DNS names or IP addresses)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keepfix-webhook-ca")])
    not_before, not_after = now - BACKDATE, now + valid_for
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(_sans(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return Bundle(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def write(bundle: Bundle, *, directory: pathlib.Path) -> Paths:
    """Write the bundle atomically (each file replaced by rename); the key is 0600."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = Paths.in_dir(directory)
    # The key goes first and the certificate last: a reloader that sees the new
    # certificate's mtime then also finds the matching key.
    _write_atomic(paths.key, bundle.key_pem, mode=0o600)
    _write_atomic(paths.ca, bundle.ca_pem, mode=0o644)
    _write_atomic(paths.cert, bundle.cert_pem, mode=0o644)
    return paths


def ensure(
    *,
    directory: pathlib.Path,
    hosts: Sequence[str],
    now: datetime.datetime,
    valid_for: datetime.timedelta = DEFAULT_VALIDITY,
) -> Paths:
    """Files in `directory` that serve `hosts`: kept when usable, generated otherwise."""
    paths = Paths.in_dir(directory)
    if usable(paths, hosts=hosts, now=now):
        return paths
    return write(generate(hosts=hosts, now=now, valid_for=valid_for), directory=directory)


def usable(paths: Paths, *, hosts: Sequence[str], now: datetime.datetime) -> bool:
    """True when the files exist, parse, cover `hosts` and outlive RENEW_BEFORE."""
    try:
        cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
        x509.load_pem_x509_certificate(paths.ca.read_bytes())
        serialization.load_pem_private_key(paths.key.read_bytes(), password=None)
    except (OSError, ValueError):
        return False
    if cert.not_valid_after_utc - RENEW_BEFORE < now:
        return False
    return set(_sans(hosts)) <= set(covered_names(cert))


def covered_names(cert: x509.Certificate) -> tuple[x509.GeneralName, ...]:
    """The subject alternative names of a certificate (empty when it has none)."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(ext.value)


def _sans(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _write_atomic(path: pathlib.Path, data: bytes, *, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
