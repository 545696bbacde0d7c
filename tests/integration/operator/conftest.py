"""Fixtures of the operator tests: one operator subprocess per module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from operator_helpers import Operator, start_operator


@pytest.fixture(scope="module")
def operator(
    cluster: Any, crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    """One operator for the module, watching every namespace."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    op = start_operator(cluster.kubeconfig, log)
    yield op
    op.stop()
