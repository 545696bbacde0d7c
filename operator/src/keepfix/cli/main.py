"""The `keepfix` command: one sub-command per module under keepfix.cli."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import keepfix

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keepfix",
        description="Keep fixes fixed: drift rollback, regression records, guardrails, CI gates.",
    )
    parser.add_argument("--version", action="version", version=f"keepfix {keepfix.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in _registrars():
        register(sub)
    return parser


def _registrars() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    # Each sub-command module exposes register(subparsers) and sets `func` on its parser.
    # One line per sub-command module; each engineer adds their own.
    from keepfix.cli import cluster, crds, demo, gate, run

    return [
        cluster.register,
        crds.register,
        demo.register,
        gate.register,
        run.register,
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = args.func
    sys.exit(func(args))
