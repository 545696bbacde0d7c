"""`keepfix demo`: the narrated story, then Ctrl-C stops everything it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from operator_helpers import eventually

from keepfix import localcluster

pytestmark = pytest.mark.integration


def test_demo_tells_the_story_and_cleans_up_on_ctrl_c(cluster: Any, tmp_path: Path) -> None:
    """The story names the Critical Regression, INC-1234 and kubectl-edit; SIGINT stops all."""
    if cluster.local is None:
        pytest.skip("the demo starts its own local control plane")
    out = tmp_path / "demo.out"
    env = {**os.environ, "KEEPFIX_K8S_BIN": str(cluster.local.binaries["kube-apiserver"].parent)}
    with out.open("w") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "keepfix", "demo", "--dir", str(tmp_path / "demo")],
            stdout=handle, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        eventually(
            lambda: "Press Ctrl-C" in out.read_text() or proc.poll() is not None,
            "the story to finish",
            patience=300,
        )
        text = out.read_text()
        assert proc.poll() is None, text
        assert "export KUBECONFIG=" in text
        assert "Event DriftDetected on deployment/web" in text
        assert "it is 512Mi again" in text
        assert "severity Critical" in text
        assert "incident INC-1234" in text
        assert "owner shop-sre" in text
        assert "changed by kubectl-edit" in text
        assert "kubectl get regressions -n shop" in text
        if "keepfix run --webhook=dev" in text:
            assert 'admission webhook "guardrails.keepfix.dev" denied the request' in text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not localcluster.LocalCluster(tmp_path / "demo").is_running()
    assert "Stopped the operator" in out.read_text()
