"""keepfix keeps fixes fixed: a Kubernetes operator, admission webhook and CI gate."""

__version__ = "0.1.0"
