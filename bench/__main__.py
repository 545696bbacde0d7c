"""Run benchmarks and write each one's section of docs/performance.md.

`python -m bench` runs every benchmark; `python -m bench gate` only the
named ones; `--quick` runs tenth-size inputs (a smoke test, still recorded
and labelled as such); `--no-write` prints instead of updating the doc.

A benchmark is any module `bench.NAME` with `SECTION` (its `##` heading in
docs/performance.md) and `run(*, quick: bool) -> str` returning the whole
Markdown section, heading included. Its section is replaced in place, or
appended when new; other sections are left as they are.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import pkgutil
import sys
from collections.abc import Sequence

#: Benchmark modules by name, in the order `python -m bench` runs them: every module of
#: this package (gate first: it is the cheapest); one without `SECTION` and `run` is skipped.
BENCHMARKS = tuple(
    sorted(
        (
            m.name
            for m in pkgutil.iter_modules([str(pathlib.Path(__file__).resolve().parent)])
            if not m.name.startswith("_")
        ),
        key=lambda name: (name != "gate", name),
    )
)
DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "performance.md"
PREAMBLE = (
    "# Performance\n\n"
    "Measured by `make bench` (`python -m bench`); each section is rewritten by its benchmark.\n"
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"one of {', '.join(BENCHMARKS)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="tenth-size inputs (smoke test)")
    parser.add_argument(
        "--no-write",
        action="store_true",
        help="print the sections, do not touch docs/performance.md",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(BENCHMARKS)}")
    for name in args.names or BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        if not (hasattr(module, "SECTION") and hasattr(module, "run")):
            continue
        text = module.run(quick=args.quick)
        if args.no_write:
            sys.stdout.write(text)
        else:
            DOC.write_text(
                replace_section(DOC.read_text() if DOC.exists() else PREAMBLE, module.SECTION, text)
            )
            print(f"bench: wrote section {module.SECTION!r} of {DOC}")
    return 0


def replace_section(doc: str, title: str, text: str) -> str:
    """`doc` with its `## title` section (to the next `## `) replaced by `text`, or appended."""
    lines = doc.splitlines(keepends=True)
    heading = f"## {title}"
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    block = text if text.endswith("\n") else text + "\n"
    if start is None:
        return doc.rstrip("\n") + "\n\n" + block
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    return "".join(lines[:start]) + block + ("\n" + tail if tail else "")


if __name__ == "__main__":
    sys.exit(main())
