"""Finding the control-plane binaries, and saying what to do when they are missing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from keepfix.localcluster import binaries

REPO = Path(__file__).resolve().parents[3]
VERSIONS = {"KUBERNETES_VERSION": "v1.2.3", "ETCD_VERSION": "v3.4.5", "HELM_VERSION": "v3.6.7"}


def folder_with(root: Path, name: str, *tools: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for tool in tools:
        path = folder / tool
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return folder


def test_search_order_is_explicit_env_envtest_cache_then_path(tmp_path: Path) -> None:
    """Each binary comes from the first folder that has it; PATH only fills the gaps."""
    explicit = folder_with(tmp_path, "explicit", "etcd")
    ours = folder_with(tmp_path, "ours", "etcd", "kube-apiserver")
    envtest = folder_with(tmp_path, "envtest", "etcd", "kube-apiserver", "kubectl")
    cache = binaries.cache_dir({"KEEPFIX_CACHE": str(tmp_path / "c")}, VERSIONS)
    assert cache is not None
    folder_with(cache.parent, cache.name, *binaries.ALL)
    path = folder_with(tmp_path, "path", *binaries.ALL)
    env = {
        "KEEPFIX_K8S_BIN": str(ours),
        "KUBEBUILDER_ASSETS": str(envtest),
        "KEEPFIX_CACHE": str(tmp_path / "c"),
        "PATH": str(path),
    }
    found = binaries.discover(explicit, env=env, versions=VERSIONS)
    assert {name: p.parent for name, p in found.paths.items()} == {
        "etcd": explicit,
        "kube-apiserver": ours,
        "kubectl": envtest,
        "kube-controller-manager": cache,
        "helm": cache,
    }


def test_path_is_the_last_resort(tmp_path: Path) -> None:
    """With nothing configured, binaries on PATH are used."""
    path = folder_with(tmp_path, "path", *binaries.ALL)
    env = {"PATH": str(path), "KEEPFIX_CACHE": str(tmp_path / "empty")}
    found = binaries.discover(env=env, versions=VERSIONS)
    assert found.client_dirs() == (path,)


def test_missing_binaries_name_themselves_and_the_fix(tmp_path: Path) -> None:
    """The error lists what is missing, where it looked, and `make k8s-bin` / KEEPFIX_K8S_BIN."""
    envtest = folder_with(tmp_path, "envtest", "etcd", "kube-apiserver")
    env = {"KUBEBUILDER_ASSETS": str(envtest), "KEEPFIX_CACHE": str(tmp_path), "PATH": ""}
    with pytest.raises(binaries.MissingBinariesError) as caught:
        binaries.discover(env=env, versions=VERSIONS)
    message = str(caught.value)
    assert caught.value.missing == ("kube-controller-manager",)
    assert "kube-controller-manager" in message
    assert "make k8s-bin" in message
    assert "KEEPFIX_K8S_BIN" in message
    assert f"KUBEBUILDER_ASSETS: {envtest}" in message


def test_clients_are_optional_unless_required(tmp_path: Path) -> None:
    """A control plane without helm is fine for `up`; asking for helm names it."""
    folder = folder_with(tmp_path, "bin", *binaries.CONTROL_PLANE, "kubectl")
    env = {"KEEPFIX_K8S_BIN": str(folder), "KEEPFIX_CACHE": str(tmp_path), "PATH": ""}
    assert "helm" not in binaries.discover(env=env, versions=VERSIONS).paths
    with pytest.raises(binaries.MissingBinariesError, match="helm"):
        binaries.discover(required=("helm",), env=env, versions=VERSIONS)


def test_non_executable_files_do_not_count(tmp_path: Path) -> None:
    """A file without the execute bit is skipped."""
    folder = folder_with(tmp_path, "bin", *binaries.CONTROL_PLANE)
    (folder / "etcd").chmod(0o644)
    env = {"KEEPFIX_K8S_BIN": str(folder), "KEEPFIX_CACHE": str(tmp_path), "PATH": ""}
    with pytest.raises(binaries.MissingBinariesError, match="etcd"):
        binaries.discover(env=env, versions=VERSIONS)


def test_versions_file_pins_every_component() -> None:
    """versions.env in the checkout pins Kubernetes, etcd and Helm."""
    assert binaries.versions_file() == REPO / "tools" / "k8s" / "versions.env"
    pins = binaries.read_versions()
    assert {k: v.startswith("v") for k, v in pins.items()} == dict.fromkeys(VERSIONS, True)


def test_read_versions_ignores_comments_and_quotes(tmp_path: Path) -> None:
    """Shell syntax that `.` accepts parses the same way here."""
    path = tmp_path / "versions.env"
    path.write_text('# pins\nKUBERNETES_VERSION="v1.2.3"\n\nETCD_VERSION=v3.4.5\n')
    assert binaries.read_versions(path) == {
        "KUBERNETES_VERSION": "v1.2.3",
        "ETCD_VERSION": "v3.4.5",
    }


def test_cache_dir_is_the_one_build_sh_fills(tmp_path: Path) -> None:
    """keepfix looks where `tools/k8s/build.sh --print-dir` says the binaries go."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "KEEPFIX_CACHE": str(tmp_path)}
    printed = subprocess.run(
        [str(REPO / "tools" / "k8s" / "build.sh"), "--print-dir"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
    assert binaries.cache_dir(env, binaries.read_versions()) == Path(printed)
