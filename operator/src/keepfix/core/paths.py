"""The path syntax of DESIGN.md: parse, format, resolve, set and delete.

A path is a tuple of segments: ``Key`` (a mapping key, written ``a.b`` or
``["example.com/key"]``), ``Index`` (``[0]``), ``Select`` (``[name=web]``: the
list items whose ``name`` reads ``web``), ``Every`` (``[*]``) and ``PodSpec``
(a leading ``podSpec.``: the pod spec of whatever workload the object is).
A path that starts with ``/`` is an RFC 6901 JSON Pointer; its tokens are
``Key`` segments that read as list indices when they land on a list.

``resolve`` turns a path into concrete locations (``Match``): every ``[*]``
and selector expanded against the object, each with its JSON Pointer, its
value and whether it is present. A selector that matches nothing still gives
one absent location, so a protected field on a missing container is reported
missing rather than silently skipped; ``[*]`` over a missing or empty list
gives none (there is nothing to check). The human path of a location keeps
selectors, and renders items reached through ``[*]`` by their merge key
(``containers[name=web]``) when the list has one, so a reader and the
rollback planner can both tell which item was meant even if the list is
later reordered.

Everything here is pure: ``set_value`` and ``delete`` return new objects and
never mutate their input.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias


class PathError(ValueError):
    """A path that cannot be parsed or applied; ``column`` is 1-based, or None."""

    def __init__(self, message: str, *, text: str = "", column: int | None = None) -> None:
        self.text = text
        self.column = column
        self.reason = message
        if column is None:
            full = f"bad path {text!r}: {message}" if text else message
        else:
            caret = " " * (column - 1) + "^"
            full = f'bad path "{text}" at column {column}: {message}\n  {text}\n  {caret}'
        super().__init__(full)


class PathConflict(PathError):
    """A path that parses but cannot be written into an object (e.g. it crosses a string)."""


@dataclass(frozen=True)
class Key:
    """A mapping key (or, in a JSON Pointer path, a token that may index a list)."""

    name: str


@dataclass(frozen=True)
class Index:
    """A list position, ``[0]``."""

    index: int


@dataclass(frozen=True)
class Select:
    """The list items whose ``key`` field reads ``value``, ``[name=web]``."""

    key: str
    value: str


@dataclass(frozen=True)
class Every:
    """Every list item, ``[*]``."""


@dataclass(frozen=True)
class PodSpec:
    """The pod spec of the workload, a leading ``podSpec``."""


Segment: TypeAlias = Key | Index | Select | Every | PodSpec


@dataclass(frozen=True)
class Path:
    """A parsed path; ``pointer`` is True when it was written as a JSON Pointer."""

    segments: tuple[Segment, ...]
    pointer: bool = False

    def __str__(self) -> str:
        return format(self)


@dataclass(frozen=True)
class Match:
    """One concrete location of a path in an object.

    ``path`` is the human path (selectors kept, ``[*]`` expanded), ``concrete``
    its parsed form (only ``Key``, ``Index`` and ``Select``), ``pointer`` the
    RFC 6901 pointer (for an absent location, the pointer it would have; a
    selector that matched nothing reads ``-`` there), ``value`` the value
    (None when absent).
    """

    path: str
    concrete: Path
    pointer: str
    value: Any
    present: bool


#: Lists Kubernetes merges by a key field (strategic merge), by the field that holds them.
MERGE_KEYS: Final[Mapping[str, str]] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "name",
    "imagePullSecrets": "name",
    "ports": "containerPort",
}

#: Selector keys whose values are integers in Kubernetes objects.
INTEGER_KEYS: Final = frozenset({"containerPort", "hostPort", "port", "targetPort", "nodePort"})

#: Where the pod spec lives, by workload kind.
POD_SPEC_PATHS: Final[Mapping[str, tuple[str, ...]]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}

_POD_SPEC_WORD: Final = "podSpec"
_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_\-/:@$+~%]+")
_BARE_VALUE: Final = re.compile(r"[A-Za-z0-9_\-/:@$+~%.]+")
_STOP: Final = frozenset(".[]\"'=") | frozenset(" \t\r\n")
_POINTER_INDEX: Final = re.compile(r"0|[1-9][0-9]*")


# --- parsing -----------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def parse(text: str) -> Path:
    """Parse a path; raise PathError naming the column of the first mistake.

    Paths are few and read often (every object, every field), so parsed
    paths are cached; ``Path`` is immutable, so sharing is safe.
    """
    if text == "":
        raise PathError("empty path", text=text, column=1)
    if text.startswith("/"):
        return _parse_pointer(text)
    return _Parser(text).run()


def _parse_pointer(text: str) -> Path:
    tokens: list[Segment] = []
    column = 2
    for raw in text[1:].split("/"):
        for found in re.finditer("~", raw):
            if raw[found.start() + 1 : found.start() + 2] not in ("0", "1"):
                raise PathError(
                    "'~' must be followed by 0 or 1 in a JSON Pointer",
                    text=text,
                    column=column + found.start(),
                )
        tokens.append(Key(raw.replace("~1", "/").replace("~0", "~")))
        column += len(raw) + 1
    return Path(tuple(tokens), pointer=True)


class _Parser:
    """A small hand-written scanner: the grammar is tiny and the columns matter."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.segments: list[Segment] = []

    def fail(self, message: str, pos: int | None = None) -> PathError:
        return PathError(message, text=self.text, column=(self.pos if pos is None else pos) + 1)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def run(self) -> Path:
        self.first()
        while self.pos < len(self.text):
            char = self.peek()
            if char == ".":
                self.pos += 1
                self.segments.append(Key(self.bare_key()))
            elif char == "[":
                self.segments.append(self.bracket())
            else:
                raise self.fail(f"unexpected {char!r}; expected '.' or '['")
        return Path(tuple(self.segments))

    def first(self) -> None:
        if self.peek() == "[":
            self.segments.append(self.bracket())
            return
        key = self.bare_key()
        self.segments.append(PodSpec() if key == _POD_SPEC_WORD else Key(key))

    def bare_key(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _STOP:
            self.pos += 1
        if self.pos == start:
            char = self.peek()
            if char in ("", ".", "["):
                raise self.fail("empty key")
            raise self.fail(f'unexpected {char!r} in a key; quote the key as ["..."]')
        return self.text[start : self.pos]

    def bracket(self) -> Segment:
        opened = self.pos
        self.pos += 1
        char = self.peek()
        if char == "":
            raise self.fail("unclosed '['", opened)
        if char == "*":
            self.pos += 1
            self.close(opened)
            return Every()
        if char.isdigit():
            return self.index(opened)
        if char in "\"'":
            key = self.quoted()
            if self.peek() == "=":
                return self.selector_value(key, opened)
            self.close(opened)
            return Key(key)
        return self.selector_value(self.selector_key(), opened)

    def index(self, opened: int) -> Index:
        start = self.pos
        while self.peek().isdigit():
            self.pos += 1
        value = int(self.text[start : self.pos])
        self.close(opened)
        return Index(value)

    def selector_key(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _STOP | {"]"}:
            self.pos += 1
        if self.pos == start:
            raise self.fail("empty selector key; write [key=value], [0] or [*]")
        return self.text[start : self.pos]

    def selector_value(self, key: str, opened: int) -> Select:
        if self.peek() != "=":
            if self.peek() == "":
                raise self.fail("unclosed '['", opened)
            raise self.fail("expected '=' in a [key=value] selector")
        self.pos += 1
        if self.peek() in ('"', "'"):
            value = self.quoted()
        else:
            start = self.pos
            while self.pos < len(self.text) and self.text[self.pos] not in "[]":
                self.pos += 1
            value = self.text[start : self.pos]
            if not value:
                raise self.fail('empty selector value; quote it as "" to match an empty string')
        self.close(opened)
        return Select(key, value)

    def quoted(self) -> str:
        quote, opened = self.peek(), self.pos
        self.pos += 1
        out: list[str] = []
        while True:
            char = self.peek()
            if char == "":
                raise self.fail(f"unclosed {quote}", opened)
            self.pos += 1
            if char == quote:
                return "".join(out)
            if char == "\\":
                escaped = self.peek()
                if escaped == "":
                    raise self.fail(f"unclosed {quote}", opened)
                self.pos += 1
                out.append(escaped)
            else:
                out.append(char)

    def close(self, opened: int) -> None:
        if self.peek() == "":
            raise self.fail("unclosed '['", opened)
        if self.peek() != "]":
            raise self.fail(f"unexpected {self.peek()!r}; expected ']'")
        self.pos += 1


# --- formatting --------------------------------------------------------------


def format(path: Path) -> str:
    """The canonical text of a path; ``parse(format(p)) == p``."""
    if path.pointer:
        return to_pointer(path)
    parts: list[str] = []
    for position, segment in enumerate(path.segments):
        parts.append(_format_segment(segment, first=position == 0))
    return "".join(parts)


def _format_segment(segment: Segment, *, first: bool) -> str:
    if isinstance(segment, PodSpec):
        return _POD_SPEC_WORD
    if isinstance(segment, Index):
        return f"[{segment.index}]"
    if isinstance(segment, Every):
        return "[*]"
    if isinstance(segment, Select):
        bare = _BARE_KEY.fullmatch(segment.key) and not segment.key[0].isdigit()
        key = segment.key if bare else _quote(segment.key)
        value = segment.value if _BARE_VALUE.fullmatch(segment.value) else _quote(segment.value)
        return f"[{key}={value}]"
    # A key starting with a digit is quoted (`data["9000"]`): bare, it reads like an index.
    bare = _BARE_KEY.fullmatch(segment.name) and not segment.name[0].isdigit()
    if bare and not (first and segment.name == _POD_SPEC_WORD):
        return segment.name if first else f".{segment.name}"
    return f"[{_quote(segment.name)}]"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_pointer(path: Path | Sequence[Segment]) -> str:
    """RFC 6901 pointer of a concrete path (keys and indices only)."""
    segments = path.segments if isinstance(path, Path) else tuple(path)
    tokens: list[str] = []
    for segment in segments:
        if isinstance(segment, Key):
            tokens.append(segment.name.replace("~", "~0").replace("/", "~1"))
        elif isinstance(segment, Index):
            tokens.append(str(segment.index))
        else:
            raise PathError(f"{_format_segment(segment, first=False)} has no JSON Pointer form")
    return "".join("/" + token for token in tokens)


# --- podSpec ------------------------------------------------------------------


def expand_pod_spec(path: Path, kind: str) -> Path | None:
    """The path with a leading ``podSpec`` spelt out for ``kind``; None if ``kind`` has none."""
    if not path.segments or not isinstance(path.segments[0], PodSpec):
        return path
    prefix = POD_SPEC_PATHS.get(kind)
    if prefix is None:
        return None
    keys: tuple[Segment, ...] = tuple(Key(name) for name in prefix)
    return Path(keys + path.segments[1:])


# --- resolving -----------------------------------------------------------------


def resolve(obj: Any, path: Path | str) -> tuple[Match, ...]:
    """Every concrete location of ``path`` in ``obj``; () for podSpec on a non-workload."""
    parsed = parse(path) if isinstance(path, str) else path
    kind = obj.get("kind", "") if isinstance(obj, Mapping) else ""
    expanded = expand_pod_spec(parsed, str(kind))
    if expanded is None:
        return ()
    start = _At(obj, (), (), True, expanded.pointer)
    return tuple(_walk(start, expanded.segments))


@dataclass(frozen=True)
class _At:
    """Where a walk stands: the node, the human segments and pointer tokens so far."""

    node: Any
    human: tuple[Segment, ...]
    tokens: tuple[str, ...]
    present: bool
    pointer_mode: bool

    def down(self, node: Any, label: Segment, token: str, present: bool) -> _At:
        human, tokens = (*self.human, label), (*self.tokens, token)
        return _At(node, human, tokens, present, self.pointer_mode)

    def match(self) -> Match:
        concrete = Path(self.human, self.pointer_mode)
        return Match(
            path=format(concrete),
            concrete=concrete,
            pointer="".join("/" + token for token in self.tokens),
            value=self.node if self.present else None,
            present=self.present,
        )


def _walk(at: _At, rest: tuple[Segment, ...]) -> Iterator[Match]:
    if not rest:
        yield at.match()
        return
    segment, tail = rest[0], rest[1:]
    if isinstance(segment, Every):
        yield from _walk_every(at, tail)
    elif isinstance(segment, Select):
        yield from _walk_select(at, segment, tail)
    else:
        child, found, token = _step(at, segment)
        yield from _walk(at.down(child, segment, token, found), tail)


def _step(at: _At, segment: Segment) -> tuple[Any, bool, str]:
    node = at.node
    if isinstance(segment, Index):
        found = at.present and isinstance(node, list) and segment.index < len(node)
        return (node[segment.index] if found else None), found, str(segment.index)
    assert isinstance(segment, Key), "podSpec is expanded before walking"
    token = segment.name.replace("~", "~0").replace("/", "~1")
    if at.present and isinstance(node, Mapping):
        return node.get(segment.name), segment.name in node, token
    indexable = at.pointer_mode and isinstance(node, list)
    if at.present and indexable and _POINTER_INDEX.fullmatch(segment.name):
        index = int(segment.name)
        found = index < len(node)
        return (node[index] if found else None), found, token
    return None, False, token


def _walk_every(at: _At, tail: tuple[Segment, ...]) -> Iterator[Match]:
    if not (at.present and isinstance(at.node, list)):
        return
    merge_key = _merge_key_of(at.human)
    for index, item in enumerate(at.node):
        label = _item_label(at.node, index, merge_key)
        yield from _walk(at.down(item, label, str(index), True), tail)


def _walk_select(at: _At, segment: Select, tail: tuple[Segment, ...]) -> Iterator[Match]:
    hits = select_indices(at.node, segment) if at.present else ()
    if not hits:
        yield from _walk(at.down(None, segment, "-", False), tail)
        return
    for index in hits:
        label: Segment = segment if len(hits) == 1 else Index(index)
        yield from _walk(at.down(at.node[index], label, str(index), True), tail)


def _merge_key_of(human: tuple[Segment, ...]) -> str | None:
    last = human[-1] if human else None
    return MERGE_KEYS.get(last.name) if isinstance(last, Key) else None


def _item_label(items: list[Any], index: int, merge_key: str | None) -> Segment:
    item = items[index]
    if merge_key is None or not isinstance(item, Mapping) or merge_key not in item:
        return Index(index)
    selector = Select(merge_key, scalar_text(item[merge_key]))
    return selector if len(select_indices(items, selector)) == 1 else Index(index)


def select_indices(node: Any, selector: Select) -> tuple[int, ...]:
    """Indices of the list items whose ``selector.key`` field reads ``selector.value``."""
    if not isinstance(node, list):
        return ()
    return tuple(
        index
        for index, item in enumerate(node)
        if isinstance(item, Mapping)
        and selector.key in item
        and scalar_text(item[selector.key]) == selector.value
    )


def scalar_text(value: Any) -> str:
    """How a scalar reads in a selector: ``true``, ``8080``, ``web``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def selector_value(selector: Select) -> Any:
    """The value a new list item gets for a selector's key (an int for port-like keys)."""
    if selector.key in INTEGER_KEYS and selector.value.isdigit():
        return int(selector.value)
    return selector.value


def get(obj: Any, path: Path | str, default: Any = None) -> Any:
    """The value at the first present location of ``path``, else ``default``."""
    for match in resolve(obj, path):
        if match.present:
            return match.value
    return default


# --- writing ------------------------------------------------------------------


def set_value(obj: Any, path: Path | str, value: Any) -> Any:
    """A copy of ``obj`` with ``value`` at every location of ``path``.

    Missing mappings on the way are created; a selector that matches nothing
    appends a new item carrying the selector's key; ``[*]`` writes every item
    (none of an empty list). Raises PathConflict where the path crosses a
    scalar or a missing list under ``[*]``, or an index is out of range.
    """
    parsed, expanded = _expanded(obj, path)
    return _set(obj, expanded.segments, value, expanded.pointer, parsed)


def delete(obj: Any, path: Path | str) -> Any:
    """A copy of ``obj`` without the values at ``path`` (unchanged where absent)."""
    parsed, expanded = _expanded(obj, path)
    return _delete(obj, expanded.segments, expanded.pointer, parsed)


def _expanded(obj: Any, path: Path | str) -> tuple[Path, Path]:
    parsed = parse(path) if isinstance(path, str) else path
    kind = obj.get("kind", "") if isinstance(obj, Mapping) else ""
    expanded = expand_pod_spec(parsed, str(kind))
    if expanded is None:
        raise PathConflict(f"a {kind or 'kindless'} object has no pod spec", text=format(parsed))
    return parsed, expanded


def _set(node: Any, rest: tuple[Segment, ...], value: Any, pointer_mode: bool, whole: Path) -> Any:
    if not rest:
        return value
    segment, tail = rest[0], rest[1:]
    if isinstance(segment, Key) and not (pointer_mode and isinstance(node, list)):
        if node is not None and not isinstance(node, Mapping):
            raise _conflict(whole, f"cannot set key {segment.name!r} inside a {_type(node)}")
        out = dict(node or {})
        out[segment.name] = _set(out.get(segment.name), tail, value, pointer_mode, whole)
        return out
    if node is None and isinstance(segment, Select):
        node = []
    if not isinstance(node, list):
        raise _conflict(
            whole, f"cannot use {_format_segment(segment, first=False)} on a {_type(node)}"
        )
    out_list = list(node)
    for index in _list_targets(out_list, segment, whole):
        current = out_list[index] if index < len(out_list) else None
        updated = _set(current, tail, value, pointer_mode, whole)
        if isinstance(segment, Select) and not tail:
            updated = _with_identity(segment, updated, whole)
        if index < len(out_list):
            out_list[index] = updated
        else:
            out_list.append(updated)
    return out_list


def _with_identity(selector: Select, item: Any, whole: Path) -> dict[str, Any]:
    """An item written at ``[key=value]`` keeps that key, so the selector still finds it."""
    if not isinstance(item, Mapping):
        raise _conflict(
            whole, f"the item at {_format_segment(selector, first=False)} must be a mapping"
        )
    if selector.key in item and scalar_text(item[selector.key]) != selector.value:
        raise _conflict(
            whole,
            f"the item's {selector.key} {item[selector.key]!r} contradicts the selector",
        )
    return {selector.key: selector_value(selector), **item}


def _list_targets(items: list[Any], segment: Segment, whole: Path) -> tuple[int, ...]:
    if isinstance(segment, Every):
        return tuple(range(len(items)))
    if isinstance(segment, Select):
        hits = select_indices(items, segment)
        if hits:
            return hits
        items.append({segment.key: selector_value(segment)})
        return (len(items) - 1,)
    index = segment.index if isinstance(segment, Index) else _pointer_index(segment, items, whole)
    if index > len(items) or (index == len(items) and not isinstance(segment, Key)):
        raise _conflict(whole, f"index {index} is out of range for a list of {len(items)}")
    return (index,)


def _pointer_index(segment: Segment, items: list[Any], whole: Path) -> int:
    assert isinstance(segment, Key)
    if segment.name == "-":
        return len(items)
    if not _POINTER_INDEX.fullmatch(segment.name):
        raise _conflict(whole, f"{segment.name!r} is not a list index")
    return int(segment.name)


def _delete(node: Any, rest: tuple[Segment, ...], pointer_mode: bool, whole: Path) -> Any:
    segment, tail = rest[0], rest[1:]
    if isinstance(node, Mapping) and isinstance(segment, Key):
        if segment.name not in node:
            return node
        out = dict(node)
        if tail:
            out[segment.name] = _delete(node[segment.name], tail, pointer_mode, whole)
        else:
            del out[segment.name]
        return out
    if not isinstance(node, list):
        return node
    indices = _delete_targets(node, segment, pointer_mode)
    if not tail:
        return [item for index, item in enumerate(node) if index not in indices]
    return [
        _delete(item, tail, pointer_mode, whole) if index in indices else item
        for index, item in enumerate(node)
    ]


def _delete_targets(items: list[Any], segment: Segment, pointer_mode: bool) -> frozenset[int]:
    if isinstance(segment, Every):
        return frozenset(range(len(items)))
    if isinstance(segment, Select):
        return frozenset(select_indices(items, segment))
    if isinstance(segment, Index):
        return frozenset({segment.index})
    if pointer_mode and isinstance(segment, Key) and _POINTER_INDEX.fullmatch(segment.name):
        return frozenset({int(segment.name)})
    return frozenset()


def _conflict(path: Path, message: str) -> PathConflict:
    return PathConflict(message, text=format(path))


def _type(value: Any) -> str:
    return "missing value" if value is None else type(value).__name__
