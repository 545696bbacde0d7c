"""Who changed a drifted field: attribution from `metadata.managedFields`.

Each managedFields entry names a field manager (`kubectl-edit`,
`kubectl-client-side-apply`, `argocd-controller`, `keepfix`, ...), the
operation (`Update` or `Apply`), the time of its latest write and the set of
fields it owns, as a FieldsV1 trie:

- `f:<name>` a key of a mapping;
- `k:{"name":"web"}` the item of an associative list whose key fields hold
  those values (JSON of the key fields; `containerPort` and `protocol` for
  ports);
- `v:<json>` the item of a set-like list with that value;
- `i:<n>` the item at index n of an atomic-per-item list;
- `.` the node itself (owned even when it has no owned children).

A drifted field is named by a JSON pointer into the live object
(`/spec/template/spec/containers/0/resources/limits/memory`). List steps of the
pointer are indices, so the live object is needed to turn index 0 into the
item's `k:` / `v:` key.

An entry owns a pointer EXACTLY when its trie reaches it (a pointer that stops
at a node with owned children counts: the manager wrote part of that value),
and ATOMICALLY when the trie stops early at an empty node (`{}`), which is how
an atomic value such as `args` is owned whole. An empty node is also how the
API server records a granular map owned only as a node (`f:annotations: {}`
of `kubectl-client-side-apply`), so atomic claims count only for a pointer
that no entry owns exactly.

`attribute` returns one `ChangedBy` per entry that owns at least one drifted
pointer, newest first ("newest wins": the API server moves a field to whoever
wrote it last, so the newest owner is the likeliest cause); equal times are
ordered by manager name, and an entry without a time (the API server leaves it
out on `scale` subresource writes) sorts as the oldest. Entries of the
`status` subresource are skipped for pointers under `/spec` (they can own
metadata, e.g. the Deployment revision annotation). A pointer nobody owns
yields nothing: a field someone removed has no owner any more.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

_OLDEST = datetime.datetime.min.replace(tzinfo=datetime.UTC)


@dataclasses.dataclass(frozen=True)
class ChangedBy:
    """A field manager that owns some drifted fields (`paths` are the JSON pointers)."""

    manager: str
    operation: str
    time: str | None
    subresource: str | None
    paths: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The `changedBy` item of a Regression (paths left out: the drift lists them)."""
        item: dict[str, Any] = {"manager": self.manager, "operation": self.operation}
        if self.time is not None:
            item["time"] = self.time
        if self.subresource is not None:
            item["subresource"] = self.subresource
        return item


def attribute(
    managed_fields: Iterable[Mapping[str, Any]] | None,
    pointers: Iterable[str],
    *,
    live: Mapping[str, Any],
    exclude: Collection[str] = (),
) -> tuple[ChangedBy, ...]:
    """The managers owning each drifted pointer, newest first; `exclude` drops managers by name."""
    wanted = {p: split_pointer(p) for p in pointers}
    entries = [
        e
        for e in managed_fields or ()
        if isinstance(e, Mapping)
        and str(e.get("manager") or "") not in exclude
        and e.get("fieldsType", "FieldsV1") == "FieldsV1"
        and isinstance(e.get("fieldsV1"), Mapping)
        and e["fieldsV1"]
    ]
    owned: list[list[str]] = [[] for _ in entries]
    for pointer, tokens in wanted.items():
        levels = [_entry_ownership(e, pointer, tokens, live) for e in entries]
        best = max(levels, default=Ownership.NONE)
        for index, level in enumerate(levels):
            if best and level == best:
                owned[index].append(pointer)
    found = [_changed_by(e, tuple(o)) for e, o in zip(entries, owned, strict=True) if o]
    found.sort(key=lambda c: (c.manager, c.operation, c.subresource or ""))
    found.sort(key=lambda c: parse_time(c.time), reverse=True)
    return tuple(found)


def attribute_object(
    obj: Mapping[str, Any], pointers: Iterable[str], *, exclude: Collection[str] = ()
) -> tuple[ChangedBy, ...]:
    """`attribute` with the managedFields taken from the object itself."""
    metadata = obj.get("metadata") or {}
    return attribute(metadata.get("managedFields"), pointers, live=obj, exclude=exclude)


def newest_owner(changed_by: Iterable[ChangedBy], pointer: str) -> ChangedBy | None:
    """The newest manager owning `pointer` in an `attribute` result, if any."""
    return next((c for c in changed_by if pointer in c.paths), None)


def parse_time(text: str | None) -> datetime.datetime:
    """RFC 3339 time of a managedFields entry; a missing or malformed one sorts oldest."""
    if not text:
        return _OLDEST
    try:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return _OLDEST
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def split_pointer(pointer: str) -> tuple[str, ...]:
    """RFC 6901 tokens of a JSON pointer; raise ValueError when it does not start with `/`."""
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise ValueError(f"JSON pointer {pointer!r} must start with '/' (e.g. /spec/replicas)")
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/"))


class Ownership(enum.IntEnum):
    """How a FieldsV1 trie owns a pointer; a higher value is a stronger claim."""

    #: Not at all.
    NONE = 0
    #: Through an ancestor owned as a whole (`f:args: {}`, an atomic value).
    ATOMIC = 1
    #: The trie reaches the pointer itself.
    EXACT = 2


def ownership(fields: Mapping[str, Any], pointer: str | Sequence[str], live: Any) -> Ownership:
    """How the FieldsV1 trie `fields` owns the value at `pointer` of `live`."""
    tokens = split_pointer(pointer) if isinstance(pointer, str) else pointer
    node: Mapping[str, Any] = fields
    value = live
    for token in tokens:
        if not node:
            return Ownership.ATOMIC
        key, value = _step(node, token, value)
        child = node.get(key) if key is not None else None
        if not isinstance(child, Mapping):
            return Ownership.NONE
        node = child
    return Ownership.EXACT


def owns(fields: Mapping[str, Any], pointer: str, live: Any) -> bool:
    """True when the FieldsV1 trie `fields` owns the value at `pointer` of `live` in any way."""
    return ownership(fields, pointer, live) is not Ownership.NONE


def _entry_ownership(
    entry: Mapping[str, Any], pointer: str, tokens: Sequence[str], live: Any
) -> Ownership:
    if entry.get("subresource") == "status" and _under(pointer, "/spec"):
        return Ownership.NONE
    return ownership(entry["fieldsV1"], tokens, live)


def _under(pointer: str, prefix: str) -> bool:
    return pointer == prefix or pointer.startswith(prefix + "/")


def _changed_by(entry: Mapping[str, Any], paths: tuple[str, ...]) -> ChangedBy:
    time, subresource = entry.get("time"), entry.get("subresource")
    return ChangedBy(
        manager=str(entry.get("manager") or ""),
        operation=str(entry.get("operation") or ""),
        time=str(time) if time else None,
        subresource=str(subresource) if subresource else None,
        paths=paths,
    )


def _step(node: Mapping[str, Any], token: str, value: Any) -> tuple[str | None, Any]:
    """The trie key for one pointer token and the live value under it."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        index = int(token) if token.isdigit() else -1
        item = value[index] if 0 <= index < len(value) else None
        return _list_key(node, index, item), item
    child = value.get(token) if isinstance(value, Mapping) else None
    return f"f:{token}", child


def _list_key(node: Mapping[str, Any], index: int, item: Any) -> str | None:
    for key in node:
        if key.startswith("k:") and isinstance(item, Mapping) and _key_matches(key[2:], item):
            return key
        if key.startswith("v:") and _json(key[2:], default=_NOTHING) == item:
            return key
        if key == f"i:{index}":
            return key
    return None


def _key_matches(text: str, item: Mapping[str, Any]) -> bool:
    fields = _json(text, default=None)
    if not isinstance(fields, dict) or not fields:
        return False
    return all(k in item and _same(item[k], v) for k, v in fields.items())


def _same(a: Any, b: Any) -> bool:
    return (type(a) is type(b) or (_number(a) and _number(b))) and bool(a == b)


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


_NOTHING = object()


def _json(text: str, *, default: Any) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return default
