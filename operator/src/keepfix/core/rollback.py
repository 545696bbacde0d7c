"""The smallest guarded write that puts drifted fields back.

``plan`` turns drifts into two equivalent forms; the caller picks one:

* ``patch``: an RFC 6902 JSON patch. Every write is preceded by a ``test``
  on the exact live value it replaces, and every step into a merge-keyed
  list (``containers[name=web]``) by a ``test`` on that item's key at the
  index found in live, so a concurrent write or a reordered list makes the
  API server reject the patch instead of keepfix overwriting the wrong
  thing. Only what differs is written: inside a declared mapping, only the
  keys that differ (live keys the fix does not mention stay); a missing
  field is added with the smallest enclosing structure (a missing container
  is appended with just its name and the protected fields); a field the fix
  requires absent is removed. An ``add`` has no guard: RFC 6902 cannot test
  that a key is absent.
* ``apply_body``: a server-side-apply body holding only the protected
  fields (apiVersion, kind, metadata name/namespace and the nested
  structure, list items identified by their merge key). A field that must be
  absent appears as ``null``; prefer the patch for removals.

The planner applies each drift's operations to a working copy before
planning the next, so several drifts under one missing container produce
one ``add`` and a sequence that is valid as a whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from keepfix.core import diff, paths, values


class RollbackError(ValueError):
    """A drift that no patch can put back (the path crosses a scalar or a missing index)."""


@dataclass(frozen=True)
class RollbackPlan:
    """A guarded JSON patch and the equivalent server-side-apply body."""

    patch: tuple[dict[str, Any], ...]
    apply_body: dict[str, Any] = field(default_factory=dict)


def plan(drifts: Iterable[diff.Drift], live: Mapping[str, Any]) -> RollbackPlan:
    """The patch and apply body that restore every drifted field of ``live``."""
    working: Any = live
    patch: list[dict[str, Any]] = []
    drift_list = tuple(drifts)
    for drift in drift_list:
        ops = _drift_ops(drift, working)
        for op in ops:
            working = _apply(working, op)
        patch.extend(op for op in ops if op["op"] != "test" or op not in patch)
    return RollbackPlan(patch=tuple(patch), apply_body=_apply_body(drift_list, live, working))


# --- the JSON patch ------------------------------------------------------------

_Op = dict[str, Any]
_Guard = tuple[str, Any] | None


def _drift_ops(drift: diff.Drift, live: Any) -> list[_Op]:
    segments = paths.parse(drift.path).segments
    ops: list[_Op] = []
    node, tokens = live, list[str]()
    for position, segment in enumerate(segments):
        step = _step(node, segment, drift)
        if step is None:
            return ops + _create(tokens, node, segments[position:], drift)
        node, token, guard = step
        tokens.append(token)
        if guard is not None:
            ops.append(_test([*tokens, _escape(guard[0])], guard[1]))
    return ops + _restore(tokens, drift, node, _last_key(segments))


def _step(node: Any, segment: paths.Segment, drift: diff.Drift) -> tuple[Any, str, _Guard] | None:
    """One step down ``live``; None where the rest of the path must be created."""
    if node is None:
        return None
    if isinstance(node, list):
        return _list_step(node, segment, drift)
    if isinstance(node, Mapping) and isinstance(segment, paths.Key):
        if segment.name not in node:
            return None
        return node[segment.name], _escape(segment.name), None
    raise RollbackError(
        f"cannot put back {drift.path}: it goes through a {type(node).__name__}, "
        "where the fix expects a mapping or a list; fix the object by hand"
    )


def _list_step(
    node: list[Any], segment: paths.Segment, drift: diff.Drift
) -> tuple[Any, str, _Guard] | None:
    if isinstance(segment, paths.Select):
        hits = paths.select_indices(node, segment)
        if not hits:
            return None
        return node[hits[0]], str(hits[0]), (segment.key, node[hits[0]][segment.key])
    index = _list_index(segment)
    if index is None or index >= len(node):
        raise RollbackError(
            f"cannot put back {drift.path}: the list has {len(node)} items and no "
            f"item {paths.format(paths.Path((segment,)))}; fix the object by hand"
        )
    return node[index], str(index), None


def _list_index(segment: paths.Segment) -> int | None:
    if isinstance(segment, paths.Index):
        return segment.index
    if isinstance(segment, paths.Key) and segment.name.isdigit():
        return int(segment.name)
    return None


def _create(
    tokens: list[str], node: Any, rest: tuple[paths.Segment, ...], drift: diff.Drift
) -> list[_Op]:
    if drift.expected is None:
        return []
    leaf = _pruned(drift.expected)
    if node is None:
        return [_test(tokens, None), _op("replace", tokens, _build(rest, leaf, drift))]
    head = rest[0]
    if isinstance(head, paths.Select):
        item = _build(rest, leaf, drift)[0]
        return [_op("add", [*tokens, "-"], item)]
    assert isinstance(head, paths.Key), "a missing list index raises in _step"
    return [_op("add", [*tokens, _escape(head.name)], _build(rest[1:], leaf, drift))]


def _build(rest: tuple[paths.Segment, ...], leaf: Any, drift: diff.Drift) -> Any:
    """The smallest structure that holds ``leaf`` at ``rest``."""
    if not rest:
        return leaf
    head, tail = rest[0], rest[1:]
    inner = _build(tail, leaf, drift)
    if isinstance(head, paths.Key):
        return {head.name: inner}
    if isinstance(head, paths.Select) and (isinstance(inner, Mapping) or not tail):
        identity = {head.key: paths.selector_value(head)}
        return [{**identity, **inner} if isinstance(inner, Mapping) else identity]
    raise RollbackError(
        f"cannot put back {drift.path}: a missing list item can only be created by a "
        "[key=value] selector that leads to a mapping"
    )


def _restore(tokens: list[str], drift: diff.Drift, node: Any, key: str | None) -> list[_Op]:
    if drift.expected is None:
        return [] if node is None else [_test(tokens, node), _op("remove", tokens)]
    ignore = values.SERVER_METADATA if tokens == ["metadata"] else frozenset()
    return _leaf_ops(tokens, drift.expected, node, key, _Mode(drift.whole, ignore))


@dataclass(frozen=True)
class _Mode:
    whole: bool
    ignore: frozenset[str]


def _leaf_ops(
    tokens: list[str], expected: Any, actual: Any, key: str | None, mode: _Mode
) -> list[_Op]:
    if _equal(expected, actual, key, mode):
        return []
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        return _mapping_ops(tokens, expected, actual, mode)
    merge_key = values.merge_key(key, expected) if isinstance(expected, list) else None
    if merge_key is not None and isinstance(actual, list) and not mode.whole:
        return _keyed_list_ops(tokens, expected, actual, merge_key, mode)
    return [_test(tokens, actual), _op("replace", tokens, _pruned(expected))]


def _equal(expected: Any, actual: Any, key: str | None, mode: _Mode) -> bool:
    if mode.ignore and isinstance(actual, Mapping):
        actual = {name: value for name, value in actual.items() if name not in mode.ignore}
    return values.equal(expected, actual, field=key, whole=mode.whole)


def _mapping_ops(
    tokens: list[str], expected: Mapping[str, Any], actual: Mapping[str, Any], mode: _Mode
) -> list[_Op]:
    ops: list[_Op] = []
    for name, want in expected.items():
        child = [*tokens, _escape(name)]
        got = actual.get(name)
        if want is None:
            ops.extend([] if got is None else [_test(child, got), _op("remove", child)])
        elif name not in actual:
            ops.extend([] if values.is_empty(want) else [_op("add", child, _pruned(want))])
        else:
            ops.extend(_leaf_ops(child, want, got, name, _Mode(mode.whole, frozenset())))
    if mode.whole:
        extra = [
            name
            for name, got in actual.items()
            if name not in expected
            and name not in mode.ignore
            and got is not None
            and not values.is_empty(got)
        ]
        for name in extra:
            child = [*tokens, _escape(name)]
            ops.extend([_test(child, actual[name]), _op("remove", child)])
    return ops


def _keyed_list_ops(
    tokens: list[str], expected: list[Any], actual: list[Any], key: str, mode: _Mode
) -> list[_Op]:
    """Put back declared items by key; each live item answers for one declared item.

    Where several live items share a key (port 53 over TCP and UDP), an equal
    one is taken first, else the most alike, so one item is never rewritten
    into another's twin.
    """
    ops: list[_Op] = []
    claimed: set[int] = set()
    for want in expected:
        candidates = [
            index
            for index, item in enumerate(actual)
            if index not in claimed
            and isinstance(item, Mapping)
            and key in item
            and values.scalar_equal(want[key], item[key])
        ]
        if not candidates:
            ops.append(_op("add", [*tokens, "-"], _pruned(want)))
            continue
        index = max(candidates, key=lambda i: _likeness(want, actual[i]))
        claimed.add(index)
        item_tokens = [*tokens, str(index)]
        item_ops = _leaf_ops(item_tokens, want, actual[index], None, mode)
        if item_ops:
            ops.append(_test([*item_tokens, _escape(key)], actual[index][key]))
            ops.extend(item_ops)
    return ops


def _likeness(want: Mapping[str, Any], item: Mapping[str, Any]) -> tuple[bool, int]:
    same = sum(1 for name, value in want.items() if values.equal(value, item.get(name)))
    return values.equal(want, item), same


def _test(tokens: list[str], value: Any) -> _Op:
    return {"op": "test", "path": _pointer(tokens), "value": value}


def _op(kind: str, tokens: list[str], value: Any = None) -> _Op:
    op: _Op = {"op": kind, "path": _pointer(tokens)}
    if kind != "remove":
        op["value"] = value
    return op


def _pointer(tokens: list[str]) -> str:
    return "".join("/" + token for token in tokens)


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _last_key(segments: tuple[paths.Segment, ...]) -> str | None:
    return diff.last_key(paths.Path(segments))


def _pruned(value: Any) -> Any:
    """A value without null mapping entries (null means "absent" in a fix)."""
    if isinstance(value, Mapping):
        return {key: _pruned(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_pruned(item) for item in value]
    return value


def _apply(working: Any, op: _Op) -> Any:
    if op["op"] == "test":
        return working
    target = paths.parse(op["path"])
    if op["op"] == "remove":
        return paths.delete(working, target)
    return paths.set_value(working, target, op["value"])


# --- the server-side-apply body --------------------------------------------------


def _apply_body(
    drifts: tuple[diff.Drift, ...], live: Mapping[str, Any], restored: Any
) -> dict[str, Any]:
    metadata = live.get("metadata") or {}
    identity = {key: metadata[key] for key in ("name", "namespace") if key in metadata}
    body: dict[str, Any] = {
        "apiVersion": live.get("apiVersion"),
        "kind": live.get("kind"),
        "metadata": identity,
    }
    for drift in drifts:
        leaf = None if drift.expected is None else _pruned(drift.expected)
        entry = _body_entry(restored, paths.parse(drift.path).segments, leaf, None)
        body = _merge(body, entry, None)
    return body


def _body_entry(node: Any, rest: tuple[paths.Segment, ...], leaf: Any, key: str | None) -> Any:
    if not rest:
        return leaf
    head, tail = rest[0], rest[1:]
    if isinstance(node, list) or not isinstance(head, paths.Key):
        return _body_item(node if isinstance(node, list) else [], head, tail, leaf, key)
    child = node.get(head.name) if isinstance(node, Mapping) else None
    return {head.name: _body_entry(child, tail, leaf, head.name)}


def _body_item(
    items: list[Any],
    head: paths.Segment,
    tail: tuple[paths.Segment, ...],
    leaf: Any,
    key: str | None,
) -> Any:
    item, merge_key = _identified_item(items, head, key)
    inner = None if item is None else _body_entry(item, tail, leaf, None)
    if item is None or not isinstance(inner, Mapping):
        return list(items)
    return [{merge_key: item[merge_key], **inner}]


def _identified_item(
    items: list[Any], head: paths.Segment, key: str | None
) -> tuple[Mapping[str, Any] | None, str]:
    """The item a segment names and the key that identifies it in an SSA body, if unique."""
    if isinstance(head, paths.Select):
        hits = paths.select_indices(items, head)
        return (items[hits[0]] if hits else {head.key: paths.selector_value(head)}), head.key
    index = _list_index(head)
    merge_key = paths.MERGE_KEYS.get(key or "")
    if index is None or index >= len(items) or merge_key is None:
        return None, ""
    item = items[index]
    if not isinstance(item, Mapping) or merge_key not in item:
        return None, ""
    twins = paths.select_indices(items, paths.Select(merge_key, paths.scalar_text(item[merge_key])))
    return (item if len(twins) == 1 else None), merge_key


def _merge(left: Any, right: Any, key: str | None) -> Any:
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        out = dict(left)
        for name, value in right.items():
            out[name] = _merge(out[name], value, name) if name in out else value
        return out
    merge_key = values.merge_key(key, right) if isinstance(right, list) else None
    if merge_key is None or not isinstance(left, list) or values.merge_key(key, left) is None:
        return right
    out_list = list(left)
    for item in right:
        hits = [i for i, old in enumerate(out_list) if old[merge_key] == item[merge_key]]
        if hits:
            out_list[hits[0]] = _merge(out_list[hits[0]], item, None)
        else:
            out_list.append(item)
    return out_list
