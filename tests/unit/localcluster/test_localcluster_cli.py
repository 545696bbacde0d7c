"""`keepfix cluster`: the shell lines it prints and where it keeps the cluster."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path

import pytest
import yaml

from keepfix.adapters import pki
from keepfix.cli import main
from keepfix.localcluster import kubeconfig


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main.main(list(argv))
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("kubectl", "helm"):
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
    monkeypatch.setenv("KEEPFIX_K8S_BIN", str(folder))
    monkeypatch.setenv("KEEPFIX_CACHE", str(tmp_path / "no-cache"))
    return folder


def test_env_prints_kubeconfig_and_path_for_the_chosen_dir(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bin_dir: Path
) -> None:
    """stdout holds only the two export lines; the warning about no cluster goes to stderr."""
    code, out, err = run(capsys, "cluster", "env", "--dir", str(tmp_path / "c"))
    assert (code, out) == (
        0,
        f"export KUBECONFIG={tmp_path / 'c' / 'kubeconfig'}\nexport PATH={bin_dir}:$PATH\n",
    )
    assert "No cluster is running" in err


def test_dir_defaults_to_env_then_dot_local(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    bin_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """$KEEPFIX_CLUSTER_DIR wins over the default .local/cluster under the working folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KEEPFIX_CLUSTER_DIR", raising=False)
    _, default, _ = run(capsys, "cluster", "env")
    monkeypatch.setenv("KEEPFIX_CLUSTER_DIR", str(tmp_path / "elsewhere"))
    _, chosen, _ = run(capsys, "cluster", "env")
    assert default.splitlines()[0] == f"export KUBECONFIG={tmp_path}/.local/cluster/kubeconfig"
    assert chosen.splitlines()[0] == f"export KUBECONFIG={tmp_path}/elsewhere/kubeconfig"


def test_paths_with_spaces_are_quoted_for_the_shell(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bin_dir: Path
) -> None:
    """`eval "$(keepfix cluster env)"` survives a space in the folder name."""
    _, out, _ = run(capsys, "cluster", "env", "--dir", str(tmp_path / "my cluster"))
    assert out.splitlines()[0] == f"export KUBECONFIG='{tmp_path}/my cluster/kubeconfig'"


def test_down_without_a_cluster_is_fine(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`down` on a folder with nothing running succeeds and says so."""
    code, out, err = run(capsys, "cluster", "down", "--dir", str(tmp_path))
    assert (code, out) == (0, "")
    assert "No cluster process was running" in err


def test_up_without_binaries_explains_how_to_get_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no binaries anywhere, `up` exits 1 pointing at `make k8s-bin`, printing no export."""
    for var in ("KEEPFIX_K8S_BIN", "KUBEBUILDER_ASSETS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KEEPFIX_CACHE", str(tmp_path / "no-cache"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-path"))
    code, out, err = run(capsys, "cluster", "up", "--dir", str(tmp_path / "c"))
    assert (code, out) == (1, "")
    assert "make k8s-bin" in err


def test_kubeconfig_embeds_server_ca_and_client_credentials() -> None:
    """A rendered kubeconfig is self-contained: no file paths, one current context."""
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    ca = pki.new_ca("ca", now=now)
    client = pki.new_client_cert(ca, "jane", now=now)
    config = yaml.safe_load(
        kubeconfig.render(server="https://127.0.0.1:6443", ca_pem=ca.cert_pem, client=client)
    )
    [cluster] = config["clusters"]
    [user] = config["users"]
    assert cluster["cluster"]["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]) == ca.cert_pem
    assert base64.b64decode(user["user"]["client-certificate-data"]) == client.cert_pem
    assert base64.b64decode(user["user"]["client-key-data"]) == client.key_pem
    assert config["current-context"] == config["contexts"][0]["name"]


def test_kubeconfig_file_is_private(tmp_path: Path) -> None:
    """It holds a private key, so only its owner may read it."""
    path = kubeconfig.write(tmp_path / "sub" / "kubeconfig", "apiVersion: v1\n")
    assert (path.read_text(), path.stat().st_mode & 0o777) == ("apiVersion: v1\n", 0o600)


def test_up_in_a_folder_it_cannot_write_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bin_dir: Path
) -> None:
    """A DIR that cannot be created is an error message, not a traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, out, err = run(capsys, "cluster", "up", "--dir", str(blocker / "c"))
    assert (code, out) == (1, "")
    assert "Error: " in err
