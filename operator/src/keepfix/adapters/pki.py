"""Certificate authorities and certificates, made with `cryptography`.

Used for the local control plane (`keepfix.localcluster`) and for the
webhook's serving certificate (`keepfix.adapters.webhook.certs`). A local
control plane has three trust roots, as a kubeadm cluster does: a serving CA
(the API server's certificate chains to it; it is also the `--root-ca-file`
that pods trust), a client CA (every client certificate, admin or minted,
chains to it) and the service-account signing key pair. ECDSA P-256
throughout: the API server accepts it everywhere and a key takes
microseconds, where RSA takes tens of milliseconds on a busy machine.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import warnings
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The names the API server answers to: loopback, and the in-cluster service
#: names and its first service IP (10.0.0.1 in --service-cluster-ip-range=10.0.0.0/24).
SERVING_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
SERVING_IPS = ("127.0.0.1", "10.0.0.1")

VALIDITY = datetime.timedelta(days=365)
#: Clock skew tolerated between the signer and whoever checks the certificate.
_BACKDATE = datetime.timedelta(hours=1)


@dataclasses.dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, PEM-encoded."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError("Expected an ECDSA private key")
        return key

    def write(self, cert_path: Path, key_path: Path) -> None:
        cert_path.write_bytes(self.cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(self.key_pem)

    @classmethod
    def read(cls, cert_path: Path, key_path: Path) -> KeyPair:
        return cls(cert_path.read_bytes(), key_path.read_bytes())


def new_ca(
    common_name: str, *, now: datetime.datetime, valid_for: datetime.timedelta = VALIDITY
) -> KeyPair:
    """A self-signed certificate authority."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        _base(name, key.public_key(), now, valid_for)
        .issuer_name(name)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return _pair(builder.sign(key, hashes.SHA256()), key)


def new_serving_cert(
    ca: KeyPair,
    *,
    now: datetime.datetime,
    dns_names: Sequence[str] = SERVING_DNS_NAMES,
    ips: Sequence[str] = SERVING_IPS,
    common_name: str = "kube-apiserver",
    valid_for: datetime.timedelta = VALIDITY,
) -> KeyPair:
    """A TLS server certificate signed by `ca`, valid for `dns_names` and `ips`."""
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    return _leaf(
        ca,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
        ExtendedKeyUsageOID.SERVER_AUTH,
        now=now,
        sans=sans,
        valid_for=valid_for,
    )


def new_client_cert(
    ca: KeyPair, user: str, groups: Sequence[str] = (), *, now: datetime.datetime
) -> KeyPair:
    """A client certificate the API server reads as `user` in `groups` (CN and O)."""
    # RFC 5280 caps CN at 64 characters; Kubernetes does not, and a ServiceAccount
    # in a long namespace needs more (system:serviceaccount:NS:NAME).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Attribute's length", UserWarning)
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g, _validate=False) for g in groups]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, user, _validate=False))
    return _leaf(ca, x509.Name(attrs), ExtendedKeyUsageOID.CLIENT_AUTH, now=now)


def new_signing_key() -> tuple[bytes, bytes]:
    """A service-account signing key pair: (private key PEM, public key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def _leaf(
    ca: KeyPair,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    *,
    now: datetime.datetime,
    sans: Sequence[x509.GeneralName] = (),
    valid_for: datetime.timedelta = VALIDITY,
) -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = ca.cert
    builder = (
        _base(subject, key.public_key(), now, valid_for)
        .issuer_name(ca_cert.subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key().public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return _pair(builder.sign(ca.private_key(), hashes.SHA256()), key)


def _base(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: datetime.datetime,
    valid_for: datetime.timedelta,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + valid_for)
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
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


def _pair(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> KeyPair:
    return KeyPair(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
