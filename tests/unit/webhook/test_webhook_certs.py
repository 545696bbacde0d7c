"""Certificate generation, reuse and renewal for the webhook."""

from __future__ import annotations

import datetime
import ipaddress
import pathlib
import stat

import pytest
from cryptography import x509

from keepfix.adapters.webhook import certs

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.UTC)
DEV_HOSTS = ("127.0.0.1", "localhost")


def _cert(paths: certs.Paths) -> x509.Certificate:
    return x509.load_pem_x509_certificate(paths.cert.read_bytes())


def test_serving_cert_has_ip_and_dns_sans(tmp_path: pathlib.Path) -> None:
    """The serving certificate covers the IP address and the DNS names asked for."""
    hosts = (*DEV_HOSTS, *certs.service_names(name="keepfix-webhook", namespace="keepfix"))
    paths = certs.ensure(directory=tmp_path, hosts=hosts, now=NOW)
    san = _cert(paths).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == [
        "localhost",
        "keepfix-webhook",
        "keepfix-webhook.keepfix",
        "keepfix-webhook.keepfix.svc",
        "keepfix-webhook.keepfix.svc.cluster.local",
    ]


def test_serving_cert_is_signed_by_the_ca(tmp_path: pathlib.Path) -> None:
    """The CA in ca.crt verifies the serving certificate (what caBundle relies on)."""
    paths = certs.ensure(directory=tmp_path, hosts=DEV_HOSTS, now=NOW)
    ca = x509.load_pem_x509_certificate(paths.ca.read_bytes())
    _cert(paths).verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


def test_key_file_is_private(tmp_path: pathlib.Path) -> None:
    """The private key is readable by its owner only."""
    paths = certs.ensure(directory=tmp_path, hosts=DEV_HOSTS, now=NOW)
    assert stat.S_IMODE(paths.key.stat().st_mode) == 0o600


def test_usable_files_are_kept(tmp_path: pathlib.Path) -> None:
    """Files that cover the hosts and are far from expiry are reused (cert-manager's stay)."""
    first = certs.ensure(directory=tmp_path, hosts=DEV_HOSTS, now=NOW)
    before = first.cert.read_bytes()
    certs.ensure(directory=tmp_path, hosts=("127.0.0.1",), now=NOW + datetime.timedelta(days=1))
    assert first.cert.read_bytes() == before


@pytest.mark.parametrize(
    ("hosts", "later"),
    [
        (("127.0.0.1", "localhost", "keepfix.keepfix.svc"), datetime.timedelta(days=1)),
        (DEV_HOSTS, certs.DEFAULT_VALIDITY - certs.RENEW_BEFORE + datetime.timedelta(days=1)),
    ],
    ids=["new-name", "near-expiry"],
)
def test_files_are_replaced_when_not_usable(
    tmp_path: pathlib.Path, hosts: tuple[str, ...], later: datetime.timedelta
) -> None:
    """A missing SAN or an expiry inside the renewal margin makes new files."""
    first = certs.ensure(directory=tmp_path, hosts=DEV_HOSTS, now=NOW)
    before = first.cert.read_bytes()
    certs.ensure(directory=tmp_path, hosts=hosts, now=NOW + later)
    assert first.cert.read_bytes() != before


def test_garbage_files_are_replaced(tmp_path: pathlib.Path) -> None:
    """Unparseable files are not usable and get regenerated."""
    for name in (certs.CERT_FILE, certs.KEY_FILE, certs.CA_FILE):
        (tmp_path / name).write_text("not a pem")
    paths = certs.ensure(directory=tmp_path, hosts=DEV_HOSTS, now=NOW)
    assert certs.usable(paths, hosts=DEV_HOSTS, now=NOW)
