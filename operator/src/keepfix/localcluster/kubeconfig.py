"""Self-contained kubeconfig files (certificates embedded, no paths to go stale)."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from keepfix.adapters import pki


def render(*, server: str, ca_pem: bytes, client: pki.KeyPair, name: str = "keepfix-local") -> str:
    """A kubeconfig with one cluster, one user and one current context, all called `name`."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": name,
                "user": {
                    "client-certificate-data": _b64(client.cert_pem),
                    "client-key-data": _b64(client.key_pem),
                },
            }
        ],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)


def write(path: Path, text: str) -> Path:
    """Write a kubeconfig readable only by its owner (it holds a private key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.touch(mode=0o600)
    tmp.chmod(0o600)
    tmp.write_text(text)
    tmp.replace(path)
    return path


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
