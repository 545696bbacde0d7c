"""A real local control plane (etcd, kube-apiserver, kube-controller-manager) on loopback.

Used by the integration tests and by `keepfix cluster up|down|env`. It imports
neither kopf nor a Kubernetes client: readiness is plain HTTPS, certificates
come from `cryptography`.

The names below are re-exported for callers outside the package; inside it,
modules import modules.
"""

from keepfix.localcluster.binaries import MissingBinariesError
from keepfix.localcluster.cluster import LocalCluster, LocalClusterError, ProcessFailedError

__all__ = ["LocalCluster", "LocalClusterError", "MissingBinariesError", "ProcessFailedError"]
