"""Fixtures of the acceptance tests; the helpers live in acceptance_helpers (a unique module name,
so `from acceptance_helpers import ...` never picks up another folder's conftest)."""

from acceptance_helpers import kube, operator

__all__ = ["kube", "operator"]
