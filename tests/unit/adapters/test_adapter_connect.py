"""keepfix.adapters.kube.connect: which configuration is used (no API server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from keepfix.adapters import kube


def write_kubeconfig(path: Path, server: str, context: str = "main") -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
        "current-context": context,
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(autouse=True)
def outside_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


async def test_explicit_kubeconfig_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit kubeconfig is used even when $KUBECONFIG names another."""
    other = write_kubeconfig(tmp_path / "other", "https://other.invalid:6443")
    monkeypatch.setenv("KUBECONFIG", str(other))
    chosen = write_kubeconfig(tmp_path / "chosen", "https://chosen.invalid:6443")
    async with await kube.connect(kubeconfig=str(chosen)) as api:
        assert api.host == "https://chosen.invalid:6443"


async def test_first_file_of_kubeconfig_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an argument, the first file of $KUBECONFIG is used."""
    first = write_kubeconfig(tmp_path / "first", "https://first.invalid:6443")
    second = write_kubeconfig(tmp_path / "second", "https://second.invalid:6443")
    monkeypatch.setenv("KUBECONFIG", f"{first}:{second}")
    async with await kube.connect() as api:
        assert api.host == "https://first.invalid:6443"


async def test_missing_kubeconfig_raises_config_error(tmp_path: Path) -> None:
    """A kubeconfig that does not exist raises ConfigError, not a client library error."""
    with pytest.raises(kube.ConfigError, match="No usable Kubernetes configuration"):
        await kube.connect(kubeconfig=str(tmp_path / "absent"))


async def test_unknown_context_raises_config_error(tmp_path: Path) -> None:
    """A context the kubeconfig does not define raises ConfigError."""
    path = write_kubeconfig(tmp_path / "config", "https://x.invalid:6443")
    with pytest.raises(kube.ConfigError):
        await kube.connect(kubeconfig=str(path), context="nope")
