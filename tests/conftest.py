"""Markers by path: tests/integration is `integration`, tests/e2e is `e2e`.

The e2e tests need kind and Docker; they run only when asked for, by naming
tests/e2e on the command line (`make test-e2e`), with `-m e2e` or `--e2e`, so
a plain `pytest` never starts creating kind clusters.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
_BY_FOLDER = {"integration": pytest.mark.integration, "e2e": pytest.mark.e2e}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--e2e", action="store_true", help="run the kind end-to-end tests")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_e2e = _e2e_requested(config)
    skip_e2e = pytest.mark.skip(
        reason="e2e tests run only when asked: name tests/e2e or pass --e2e"
    )
    for item in items:
        folder = _top_folder(item.path)
        if folder in _BY_FOLDER:
            item.add_marker(_BY_FOLDER[folder])
        if folder == "e2e" and not run_e2e:
            item.add_marker(skip_e2e)


def _top_folder(path: Path) -> str | None:
    try:
        return path.resolve().relative_to(TESTS).parts[0]
    except (ValueError, IndexError):
        return None


def _e2e_requested(config: pytest.Config) -> bool:
    if config.getoption("--e2e") or "e2e" in (config.getoption("-m") or ""):
        return True
    e2e = TESTS / "e2e"
    for arg in config.args:
        target = Path(arg.split("::")[0]).resolve()
        if target == e2e or e2e in target.parents:
            return True
    return False
