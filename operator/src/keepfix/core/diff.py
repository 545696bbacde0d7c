"""Which protected fields of a live object drifted from their stable values.

A Mitigation protects fields (``ProtectedField``): a path, the stable value,
the values the incident had (``known_bad``) and whether the fix needs the
field absent. ``diff`` resolves each path in the live object (``[*]`` and
selectors expanded by ``keepfix.core.paths``) and compares with
``keepfix.core.values.equal``, so key order, quantity spelling, int/float
spelling, server defaults and fields the declared value does not mention
never show up as drift. A field that should hold a value but is missing is
drift (``present=False``); a field that must be absent drifts by being
there. A captured value (``whole=True``) is compared key for key, minus the
metadata the API server writes.

``capture_fields`` turns an object into protected fields, one per leaf (a
merge-keyed list item addressed by its key, any other list whole), which is
what ``capture: true`` and the zero-phantom-drift tests need.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from keepfix.core import paths, values


@dataclass(frozen=True)
class ProtectedField:
    """A field a fix depends on; ``value=None`` or ``absent=True`` means it must be absent."""

    path: str
    value: Any
    known_bad: tuple[Any, ...] = ()
    absent: bool = False
    whole: bool = False

    @property
    def requires_absent(self) -> bool:
        """Whether the fix needs this field absent (``value: null`` in a Mitigation)."""
        return self.absent or self.value is None


@dataclass(frozen=True)
class Drift:
    """A protected field whose live value is not the stable one.

    ``path`` is the concrete human path (selectors kept, ``[*]`` expanded),
    ``pointer`` its RFC 6901 pointer, ``present`` whether live holds the field,
    ``known_bad`` whether the live value is one the incident had, ``whole``
    whether the expected value is a captured value compared key for key.
    """

    path: str
    pointer: str
    expected: Any
    actual: Any
    present: bool
    known_bad: bool
    whole: bool = False


def diff(fields: Iterable[ProtectedField], live: Mapping[str, Any]) -> tuple[Drift, ...]:
    """The drifted fields, sorted by path (then pointer), without duplicates."""
    found: dict[tuple[str, str, str], Drift] = {}
    if _stored_secret(live):
        fields = [_secret_field(field) for field in fields]
    for field in fields:
        for drift in _field_drifts(field, live):
            expected = json.dumps(values.canonical(drift.expected), sort_keys=True, default=str)
            found.setdefault((drift.path, drift.pointer, expected), drift)
    return tuple(found[key] for key in sorted(found))


def _stored_secret(live: Mapping[str, Any]) -> bool:
    """A core Secret as the API server returns it (a manifest may still carry stringData)."""
    core = "/" not in str(live.get("apiVersion", "v1"))
    return live.get("kind") == "Secret" and core and "stringData" not in live


def _secret_field(field: ProtectedField) -> ProtectedField:
    """A Secret's `stringData.KEY` as the API server stores it: `data.KEY`, base64.

    `stringData` is write-only: the server folds it into `data` and never
    returns it, so a fix declared (or captured from a manifest) as stringData
    is checked, and rolled back, through data.
    """
    parsed = paths.parse(field.path)
    head = parsed.segments[0] if parsed.segments else None
    if not (isinstance(head, paths.Key) and head.name == "stringData") or parsed.pointer:
        return field
    rest = parsed.segments[1:]
    if len(rest) != 1 or not isinstance(rest[0], paths.Key):
        return field
    encode = _base64_text
    data_path = paths.format(paths.Path((paths.Key("data"), rest[0])))
    return ProtectedField(
        path=data_path,
        value=None if field.value is None else encode(field.value),
        known_bad=tuple(encode(bad) for bad in field.known_bad if bad is not None),
        absent=field.absent,
        whole=field.whole,
    )


def _base64_text(value: Any) -> str:
    return base64.b64encode(str(value).encode()).decode()


def _field_drifts(field: ProtectedField, live: Mapping[str, Any]) -> Iterator[Drift]:
    for match in paths.resolve(live, field.path):
        if _holds(field, match):
            continue
        yield Drift(
            path=match.path,
            pointer=match.pointer,
            expected=None if field.requires_absent else field.value,
            actual=match.value,
            present=match.present,
            known_bad=_is_known_bad(field, match),
            whole=field.whole,
        )


def _holds(field: ProtectedField, match: paths.Match) -> bool:
    if field.requires_absent:
        return not match.present or match.value is None
    if not match.present:
        return values.is_empty(field.value) or values.omitted_zero(
            last_key(match.concrete), field.value
        )
    expected, actual = field.value, match.value
    if field.whole and match.pointer == "/metadata":
        expected, actual = _without_server_metadata(expected), _without_server_metadata(actual)
    return values.equal(
        expected,
        actual,
        field=last_key(match.concrete),
        whole=field.whole,
        parent=parent_key(match.concrete),
    )


def _without_server_metadata(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return value
    return {key: item for key, item in value.items() if key not in values.SERVER_METADATA}


def _is_known_bad(field: ProtectedField, match: paths.Match) -> bool:
    actual = match.value if match.present else None
    key, parent = last_key(match.concrete), parent_key(match.concrete)
    return any(values.equal(bad, actual, field=key, parent=parent) for bad in field.known_bad)


def parent_key(path: paths.Path) -> str | None:
    """The mapping key of the mapping holding the path's last key (`limits` in limits.cpu)."""
    keys = [s for s in path.segments[:-1] if isinstance(s, paths.Key)]
    ends_in_key = bool(path.segments) and isinstance(path.segments[-1], paths.Key)
    return (
        keys[-1].name if keys and ends_in_key and isinstance(path.segments[-2], paths.Key) else None
    )


def last_key(path: paths.Path) -> str | None:
    """The mapping key a path ends in (which decides list merge semantics), if any."""
    last = path.segments[-1] if path.segments else None
    return last.name if isinstance(last, paths.Key) else None


# --- capture ------------------------------------------------------------------


def capture_fields(
    obj: Mapping[str, Any], *, zero_values: bool = True
) -> tuple[ProtectedField, ...]:
    """One protected field per leaf of ``obj`` (minus ``status`` and server metadata).

    Leaves are scalars, empty mappings and lists that do not merge by key
    (taken whole); items of merge-keyed lists are addressed by their key when
    it is unique, by index otherwise. Null values become "must be absent".
    ``zero_values=False`` leaves out ``false``, ``0`` and ``""`` leaves, which
    the API server drops from ``omitempty`` fields (compare a manifest with
    what the server returns that way).
    """
    stripped = values.strip_server_fields(obj)
    return tuple(
        ProtectedField(paths.format(paths.Path(segments)), value)
        for segments, value in _leaves(stripped, (), None)
        if zero_values or not _is_zero(value)
    )


def _is_zero(value: Any) -> bool:
    return value is False or value == "" or (type(value) in (int, float) and value == 0)


def _leaves(
    value: Any, at: tuple[paths.Segment, ...], field: str | None
) -> Iterator[tuple[tuple[paths.Segment, ...], Any]]:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            yield from _leaves(item, (*at, paths.Key(str(key))), str(key))
        return
    key = values.merge_key(field, value) if isinstance(value, list) and value else None
    if key is None:
        if at:
            yield at, value
        return
    for index, item in enumerate(value):
        selector = paths.Select(key, paths.scalar_text(item[key]))
        unique = len(paths.select_indices(value, selector)) == 1
        yield from _leaves(item, (*at, selector if unique else paths.Index(index)), None)
