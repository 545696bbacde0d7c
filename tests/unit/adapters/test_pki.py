"""Certificates for the local control plane: chains, names, usages."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from keepfix.adapters import pki

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


@pytest.fixture(scope="module")
def ca() -> pki.KeyPair:
    return pki.new_ca("test-ca", now=NOW)


def test_ca_is_a_self_signed_authority(ca: pki.KeyPair) -> None:
    """The CA signs itself and may sign certificates but not sub-authorities."""
    cert = ca.cert
    cert.verify_directly_issued_by(cert)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (constraints.ca, constraints.path_length) == (True, 0)


def test_serving_cert_names_every_address_of_the_api_server(ca: pki.KeyPair) -> None:
    """SANs cover loopback, localhost and the in-cluster service names and IP."""
    cert = pki.new_serving_cert(ca, now=NOW).cert
    cert.verify_directly_issued_by(ca.cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) >= {
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc.cluster.local",
    }
    assert set(sans.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.0.0.1"),
    }
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]


# cryptography warns when it parses a CN longer than RFC 5280's 64 characters back.
@pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")
@pytest.mark.parametrize(
    ("user", "groups"),
    [
        ("admin", ["system:masters"]),
        ("jane", []),
        (
            "system:serviceaccount:a-namespace-whose-name-is-rather-long-for-a-cn:robot",
            ["system:serviceaccounts", "system:serviceaccounts:a-namespace"],
        ),
    ],
)
def test_client_cert_carries_user_as_cn_and_groups_as_o(
    ca: pki.KeyPair, user: str, groups: list[str]
) -> None:
    """Kubernetes reads the user from CN and the groups from O, even past 64 characters."""
    cert = pki.new_client_cert(ca, user, groups, now=NOW).cert
    cert.verify_directly_issued_by(ca.cert)
    subject = cert.subject
    cn = [a.value for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert (cn, orgs, list(usage)) == ([user], groups, [ExtendedKeyUsageOID.CLIENT_AUTH])


def test_cert_from_another_ca_does_not_chain(ca: pki.KeyPair) -> None:
    """A certificate only verifies against the CA that issued it."""
    other = pki.new_ca("other-ca", now=NOW)
    cert = pki.new_client_cert(other, "mallory", now=NOW).cert
    with pytest.raises((ValueError, TypeError)):
        cert.verify_directly_issued_by(ca.cert)


def test_validity_is_backdated_and_lasts_a_year(ca: pki.KeyPair) -> None:
    """A clock a little behind still accepts the certificate; it outlives any test or demo."""
    cert = pki.new_serving_cert(ca, now=NOW).cert
    assert cert.not_valid_before_utc < NOW < cert.not_valid_after_utc
    assert cert.not_valid_after_utc - NOW == datetime.timedelta(days=365)


def test_key_pair_round_trips_through_files(ca: pki.KeyPair, tmp_path: Path) -> None:
    """What write() stores, read() loads; the key file is private to its owner."""
    folder = tmp_path
    ca.write(folder / "ca.crt", folder / "ca.key")
    assert pki.KeyPair.read(folder / "ca.crt", folder / "ca.key") == ca
    assert (folder / "ca.key").stat().st_mode & 0o077 == 0
