"""Fixtures for tests on a real API server.

`cluster` (session): the control plane, chosen by KEEPFIX_TEST_CLUSTER:
  local     (default) etcd + kube-apiserver + kube-controller-manager started by
            keepfix.localcluster in a temporary folder (binaries: KEEPFIX_K8S_BIN,
            KUBEBUILDER_ASSETS, the `make k8s-bin` cache, PATH);
  kind      a kind cluster through pytest-kind-ng (skipped where Docker does not work);
  existing  whatever the current KUBECONFIG points at.
`namespace` (function): a fresh namespace named after the test, deleted after it.
`crds` (session): every file in crds/ server-side applied and Established.

KUBECONFIG is set for the whole session so subprocesses (kubectl, helm, the
operator) talk to the same cluster.

Settings: KEEPFIX_TEST_CLUSTER_TIMEOUT (seconds for the local control plane to
become ready, default 180), KEEPFIX_KEEP_CLUSTER=1 keeps a kind cluster.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import yaml

from keepfix import localcluster
from keepfix.localcluster import binaries

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"
BACKENDS = ("local", "kind", "existing")


class KubectlError(AssertionError):
    """kubectl exited non-zero; the message carries the command and its stderr."""


@dataclasses.dataclass
class Cluster:
    """A reachable API server and the client binaries that match it."""

    backend: str
    kubeconfig: Path
    bin_dir: Path
    local: localcluster.LocalCluster | None = None

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the bin_dir kubectl against this cluster; raise KubectlError if `check` fails."""
        cmd = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise KubectlError(
                f"kubectl {' '.join(args)} exited with {proc.returncode}:\n{proc.stderr.strip()}"
            )
        return proc

    def mint_kubeconfig(self, user: str, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig acting as `user` in `groups` (local backend only: it holds the CA key)."""
        if self.local is None:
            pytest.skip(f"minting client certificates needs the local backend, not {self.backend}")
        return self.local.mint_kubeconfig(user, groups)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The session's API server (see the module docstring for the backends)."""
    backend = os.environ.get("KEEPFIX_TEST_CLUSTER", "local")
    if backend not in BACKENDS:
        pytest.fail(f"KEEPFIX_TEST_CLUSTER={backend!r}: expected one of {', '.join(BACKENDS)}")
    with pytest.MonkeyPatch.context() as mp:
        if backend == "local":
            yield from _local(tmp_path_factory, mp)
        elif backend == "kind":
            yield from _kind(mp)
        else:
            yield _existing()


def _local(factory: pytest.TempPathFactory, mp: pytest.MonkeyPatch) -> Iterator[Cluster]:
    try:
        local = localcluster.LocalCluster(factory.mktemp("cluster"), stop_grace=5.0)
        bin_dir = local.bin_dir
    except localcluster.MissingBinariesError as e:
        pytest.fail(str(e), pytrace=False)
    timeout = float(os.environ.get("KEEPFIX_TEST_CLUSTER_TIMEOUT", "180"))
    local.start(timeout=timeout)
    try:
        mp.setenv("KUBECONFIG", str(local.kubeconfig))
        yield Cluster("local", local.kubeconfig, bin_dir, local)
    finally:
        local.stop()


def _kind(mp: pytest.MonkeyPatch) -> Iterator[Cluster]:
    problem = _docker_problem()
    if problem:
        pytest.skip(f"KEEPFIX_TEST_CLUSTER=kind needs Docker: {problem}")
    from pytest_kind import KindCluster  # type: ignore[import-untyped]

    kind = shutil.which("kind")
    kc = KindCluster("keepfix-test", kind_path=Path(kind) if kind else None)
    kc.create()
    kubeconfig = Path(kc.kubeconfig_path).absolute()
    mp.setenv("KUBECONFIG", str(kubeconfig))
    try:
        yield Cluster("kind", kubeconfig, _client_dir())
    finally:
        if not os.environ.get("KEEPFIX_KEEP_CLUSTER"):
            kc.delete()


def _existing() -> Cluster:
    configured = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    path = Path(configured) if configured else Path.home() / ".kube" / "config"
    if not path.is_file():
        pytest.skip(f"KEEPFIX_TEST_CLUSTER=existing but there is no kubeconfig at {path}")
    return Cluster("existing", path.absolute(), _client_dir())


def _client_dir() -> Path:
    try:
        dirs = binaries.discover(required=("kubectl",)).client_dirs()
    except binaries.MissingBinariesError as e:
        pytest.fail(str(e), pytrace=False)
    return dirs[0]


def _docker_problem() -> str | None:
    if shutil.which("docker") is None:
        return "docker is not installed"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        return (info.stderr.strip().splitlines() or ["`docker info` failed"])[-1]
    return None


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test; deleted (without waiting) afterwards."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    name = f"{stem[:50].rstrip('-')}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> list[str]:
    """Every CRD in crds/, server-side applied and Established; yields their names."""
    files = sorted(p for p in CRDS.glob("*.y*ml") if p.is_file())
    if not files:
        pytest.skip(f"{CRDS} holds no CRD files yet")
    names = [
        doc["metadata"]["name"]
        for f in files
        for doc in yaml.safe_load_all(f.read_text())
        if doc and doc.get("kind") == "CustomResourceDefinition"
    ]
    args = [a for f in files for a in ("-f", str(f))]
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=keepfix-tests", *args
    )
    timeout = os.environ.get("KEEPFIX_TEST_CRD_TIMEOUT", "120s")
    cluster.kubectl(
        "wait", "--for=condition=Established", f"--timeout={timeout}", *(f"crd/{n}" for n in names)
    )
    return names
