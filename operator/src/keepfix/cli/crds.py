"""`keepfix crds`: print the CRD YAML generated from keepfix.api.models."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("crds", help="print the CustomResourceDefinitions as YAML")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from keepfix.api import crdgen

    sys.stdout.write(crdgen.render_all())
    return 0
