"""Reading YAML inputs for the CLI gates: files, folders and stdin, document by document.

A PATH is a file, a folder (every `*.yaml` / `*.yml` below it, in sorted
order) or `-` for standard input. Each document keeps where it came from: the
file as the user named it, its 1-based number in the file and the line its
content starts on (from the loader's own marks, so it costs nothing extra).

Errors never stop the reading early: `read` returns every document it could
load and every problem it met, so a gate can report all bad input at once and
print nothing as if the run had passed.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import yaml

#: The fastest loader PyYAML has here: libyaml's when it is compiled in.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
STDIN = "-"
SUFFIXES = (".yaml", ".yml")
_STR_TAG = "tag:yaml.org,2002:str"


class Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """The fast safe loader, reading every mapping key as the string kubectl sends.

    kubectl (sigs.k8s.io/yaml) turns YAML into JSON, whose keys are strings: a
    ConfigMap key written `9000:` reaches the API server as "9000", so paths
    such as `data["9000"]` must find it here too.
    """

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        super().flatten_mapping(node)
        # One tag comparison per key; only the rare non-string key costs more.
        for key_node, _value in node.value:
            if key_node.tag != _STR_TAG and isinstance(key_node, yaml.ScalarNode):
                construct = self.yaml_constructors.get(key_node.tag)
                if construct is not None:  # an unknown tag fails as it did before
                    key_node.value = json_key(construct(self, key_node))
                    key_node.tag = _STR_TAG


def json_key(key: Any) -> str:
    """A scalar mapping key as JSON (and so the API server) spells it: 9000 -> "9000"."""
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    return str(key)


@dataclass(frozen=True)
class Document:
    """One YAML document: `source` as named by the user, `index` 1-based, `line` 1-based."""

    source: str
    index: int
    line: int
    body: Any


@dataclass(frozen=True)
class Problem:
    """Bad input: `document` is None when the whole file is at fault."""

    source: str
    document: int | None
    message: str

    def __str__(self) -> str:
        doc = f" (document {self.document})" if self.document is not None else ""
        return f"{self.source}{doc}: {self.message}"


@dataclass(frozen=True)
class Loaded:
    documents: tuple[Document, ...]
    problems: tuple[Problem, ...]


def read(paths: Sequence[str], *, stdin: TextIO) -> Loaded:
    """Every non-empty document under `paths`, and every problem met on the way."""
    documents: list[Document] = []
    problems: list[Problem] = []
    for source, text in _texts(paths, stdin=stdin, problems=problems):
        for item in _documents(source, text):
            if isinstance(item, Problem):
                problems.append(item)
            else:
                documents.append(item)
    return Loaded(tuple(documents), tuple(problems))


def _texts(
    paths: Sequence[str], *, stdin: TextIO, problems: list[Problem]
) -> Iterator[tuple[str, str]]:
    seen: set[pathlib.Path] = set()
    for raw in paths:
        if raw == STDIN:
            yield STDIN, stdin.read()
            continue
        path = pathlib.Path(raw)
        try:
            files = _files(path)
        except OSError as exc:
            problems.append(Problem(raw, None, exc.strerror or str(exc)))
            continue
        for file in files:
            # A file named twice (itself and through its folder) is read once.
            if file.resolve() in seen:
                continue
            seen.add(file.resolve())
            try:
                yield str(file), file.read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(Problem(str(file), None, _os_message(exc)))


def _files(path: pathlib.Path) -> list[pathlib.Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    if not path.exists():
        raise FileNotFoundError(2, "no such file or directory", str(path))
    return [path]


def _os_message(exc: OSError | UnicodeDecodeError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    return exc.strerror or str(exc)


def _documents(source: str, text: str) -> Iterator[Document | Problem]:
    # load_all() is check_data/get_data; doing its two steps by hand keeps the
    # root node's start mark (the document's line) at no extra cost.
    loader = Loader(text)
    index = 0
    try:
        while True:
            index += 1
            if not loader.check_node():
                return
            node = loader.get_node()
            body = loader.construct_document(node)
            if node is not None and body is not None:
                yield Document(source, index, node.start_mark.line + 1, body)
    except yaml.YAMLError as exc:
        yield Problem(source, index, _yaml_message(exc))
    finally:
        loader.dispose()


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"invalid YAML: {where}{problem}"
