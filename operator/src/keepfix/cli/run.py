"""`keepfix run`: the operator, against the current kubeconfig.

The command line layer never imports kopf or the handlers (`handlers | cli`
are independent layers): it validates the flags into `OperatorSettings`,
writes them into the environment as `KEEPFIX_*` variables and replaces
itself with `python -m keepfix.handlers`, which reads them back. A bad flag
fails here, before anything connects to a cluster.
"""

from __future__ import annotations

import argparse
import os
import sys

import pydantic

from keepfix.api import settings as settings_mod

HANDLERS_MODULE = "keepfix.handlers"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="run the operator (drift rollback, regressions, guardrails, webhook)",
        description="Run the keepfix operator with the current kubeconfig. Every flag "
        "can also be set by the environment variable named in its help.",
    )
    settings_mod.add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = settings_mod.from_args(args)
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            flag = settings_mod.flag_name(field) if field in _fields() else field
            print(f"keepfix run: {flag}: {error['msg']}", file=sys.stderr)
        return 2
    env = {**os.environ, **settings.to_env()}
    argv = [sys.executable, "-m", HANDLERS_MODULE]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
    return 0  # pragma: no cover - execve does not return


def _fields() -> set[str]:
    return set(settings_mod.OperatorSettings.model_fields)
