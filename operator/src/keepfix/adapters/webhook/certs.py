"""TLS material for the admission webhook, made with `cryptography`.

The API server calls the webhook over HTTPS and checks the serving
certificate against the `caBundle` of the ValidatingWebhookConfiguration, so
the operator needs a CA and a serving certificate whose subject alternative
names cover how the API server reaches it: `127.0.0.1`/`localhost` in dev
mode, the Service DNS names in service mode. Kopf's own self-signed path
goes through oscrypto, which breaks on OpenSSL 3; this module uses
`keepfix.adapters.pki`, as the local control plane does.

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
from cryptography.hazmat.primitives import serialization

from keepfix.adapters import pki

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
CA_FILE = "ca.crt"

DEFAULT_VALIDITY = pki.VALIDITY
#: A certificate that expires sooner than this is replaced at start-up.
RENEW_BEFORE = datetime.timedelta(days=30)


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
    ca = pki.new_ca("keepfix-webhook-ca", now=now, valid_for=valid_for)
    ips = [h for h in hosts if _is_ip(h)]
    serving = pki.new_serving_cert(
        ca,
        now=now,
        dns_names=[h for h in hosts if not _is_ip(h)],
        ips=ips,
        common_name=hosts[0],
        valid_for=valid_for,
    )
    return Bundle(ca_pem=ca.cert_pem, cert_pem=serving.cert_pem, key_pem=serving.key_pem)


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
    return [
        x509.IPAddress(ipaddress.ip_address(h)) if _is_ip(h) else x509.DNSName(h) for h in hosts
    ]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _write_atomic(path: pathlib.Path, data: bytes, *, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
