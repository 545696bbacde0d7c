"""Semantic equality and ordering of Kubernetes values.

Equality (``equal``) is what a person means by "the same setting":

* Numbers compare by value: ``3 == 3.0``. Booleans are not numbers
  (``True != 1``) and ``None`` equals only ``None``.
* Kubernetes quantities compare by value, exactly (``fractions.Fraction``,
  never floats): ``512Mi == 0.5Gi``, ``1 == 1000m``, ``1e3 == 1k``. A number
  equals a string that reads as the same quantity (``1 == "1"``), since YAML
  spells the same field either way.
* Two *strings* compare exactly, except that two different strings are equal
  when both parse as quantities and at least one of them carries a unit
  suffix or an exponent (``"512Mi" == "0.5Gi"``, ``"1" == "1000m"``). Two
  plain decimal strings compare by value only under a quantity field
  (``quantity_field``: ``cpu``, ``memory``, ``storage``, ``ephemeral-storage``,
  ``hugepages-*``, ``sizeLimit``, every key under ``limits``, ``requests``,
  ``capacity``, ``allocatable`` or ``hard``) and for a bare value with no
  field: there ``"1" == "1.0"`` and ``"0.5" == "0.50"``, as charts quote
  them. Elsewhere (ConfigMap ``data``, labels, env values, versions) they
  compare as text: ``"1.10" != "1.1"``.
* A declared mapping is a subset: every key it declares must match, extra
  live keys (server defaults, other writers' fields) are ignored; a declared
  ``None`` requires the key to be absent (or null). With ``whole=True``
  (captured values) the live mapping may hold no other keys.
* An empty mapping or list equals an absent (or null) one: the API server
  drops empty ``omitempty`` fields, and an empty declared value constrains
  nothing. Zero scalars (``false``, ``0``, ``""``) are *not* treated so,
  because for pointer fields absence means a different default
  (``allowPrivilegeEscalation`` absent is true).
* A list that Kubernetes merges by key (``paths.MERGE_KEYS``: containers,
  env, volumes... by ``name``; ports by ``containerPort``) matches item by
  key, whatever the order and whatever other items live holds (``whole``:
  no other items); any other list matches whole and in order.

Because equality on mappings is a subset test it is not symmetric. On
scalars it is an equivalence relation under a quantity field and with no
field; under other fields the plain-string rule breaks transitivity on
purpose (``"1.1" == "1100m" == "1.10"`` but ``"1.1" != "1.10"``).

Ordering (``compare``) serves ``atLeast``/``atMost``: numbers and quantities
by value; otherwise versions, including the tag of an image reference
(``nginx:1.24.0 < 1.25.3``, ``host:5000/img:1.2``). What has no order raises
``NotComparable`` instead of guessing: a bare digest (``img@sha256:...``; with
a tag too, ``img:1.26@sha256:...``, the tag counts), ``latest``, a missing
tag, or a tag that is not a version.

``canonical`` gives a JSON-able form for hashing in which equal values look
the same (quantity spellings, int/float, key order, merge-keyed list order).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any, Final

from keepfix.core import paths


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


class NotComparable(ValueError):
    """Two values that have no order (a digest, ``latest``, a word, a mapping)."""


#: Metadata the API server writes; a captured object is compared without them.
SERVER_METADATA: Final = frozenset(
    {"managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink"}
)

_BINARY: Final = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL: Final = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_QUANTITY: Final = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:[eE](?P<exponent>[+-]?[0-9]+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?"
)
#: Fields that hold a Kubernetes quantity wherever they appear, and mappings whose
#: every value is one (resources limits/requests, PV capacity, node allocatable,
#: ResourceQuota hard).
QUANTITY_FIELDS: Final = frozenset({"cpu", "memory", "storage", "ephemeral-storage", "sizeLimit"})
QUANTITY_PARENTS: Final = frozenset({"limits", "requests", "capacity", "allocatable", "hard"})
#: Mappings of free strings: a key named `cpu` in a ConfigMap's data is no quantity.
FREE_PARENTS: Final = frozenset({"data", "stringData", "binaryData", "labels", "annotations"})
_PLAIN: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_MAX_EXPONENT: Final = 1000
_VERSION: Final = re.compile(r"[vV]?(?P<numbers>[0-9]+(?:\.[0-9]+)*)(?:[-+_].*)?")


# --- quantities and numbers ----------------------------------------------------


def parse_quantity(text: str) -> Fraction:
    """The exact value of a Kubernetes quantity (``"512Mi"``, ``"100m"``, ``"1e3"``)."""
    found = _QUANTITY.fullmatch(text.strip())
    if found is None:
        raise QuantityError(
            f"{text!r} is not a Kubernetes quantity (a number with an optional suffix "
            "such as 500m, 512Mi, 1G or 1e3)"
        )
    number = Fraction(found["number"])
    exponent = found["exponent"]
    if exponent is not None:
        if abs(int(exponent)) > _MAX_EXPONENT:
            raise QuantityError(f"{text!r} has an exponent beyond ±{_MAX_EXPONENT}")
        return number * Fraction(10) ** int(exponent)
    suffix = found["suffix"] or ""
    return number * (_BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix])


def as_number(value: Any) -> Fraction | None:
    """The exact value of a number or quantity string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(repr(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            return parse_quantity(value)
        except QuantityError:
            return None
    return None


def _is_plain(text: str) -> bool:
    return _PLAIN.fullmatch(text.strip()) is not None


def quantity_field(field: str | None, parent: str | None = None) -> bool:
    """Whether strings under ``field`` (in the mapping under ``parent``) are amounts.

    A bare value (no field) is read as a quantity where it parses as one.
    """
    if field is None or parent in QUANTITY_PARENTS:
        return True
    if parent in FREE_PARENTS:
        return False
    return field in QUANTITY_FIELDS or field.startswith("hugepages-")


# --- equality ------------------------------------------------------------------


def equal(
    declared: Any,
    live: Any,
    *,
    field: str | None = None,
    whole: bool = False,
    parent: str | None = None,
) -> bool:
    """Whether ``live`` holds what ``declared`` asks for (see the module docstring).

    ``field`` is the key the values sit under, which decides whether a list
    merges by key and (with ``parent``, the key of the mapping holding it)
    whether strings are quantities; ``whole`` compares mappings and
    merge-keyed lists exactly.
    """
    if live is None and (is_empty(declared) or omitted_zero(field, declared)):
        return True
    if isinstance(declared, Mapping):
        return isinstance(live, Mapping) and _mapping_equal(declared, live, whole, field)
    if isinstance(declared, list):
        return isinstance(live, list) and _list_equal(declared, live, field, whole, parent)
    return scalar_equal(declared, live, field=field, parent=parent)


def scalar_equal(
    declared: Any, live: Any, *, field: str | None = None, parent: str | None = None
) -> bool:
    """Equality of two scalars: numbers and quantities by value, strings exactly.

    Two plain decimal strings compare by value only under a quantity field.
    """
    if isinstance(declared, bool) or isinstance(live, bool):
        return isinstance(declared, bool) and isinstance(live, bool) and declared == live
    if isinstance(declared, str) and isinstance(live, str):
        if declared == live:
            return True
        if _is_plain(declared) and _is_plain(live) and not quantity_field(field, parent):
            return False
    left, right = as_number(declared), as_number(live)
    if left is not None and right is not None:
        return left == right
    if _is_nan(declared) and _is_nan(live):
        return True
    return bool(type(declared) is type(live) and declared == live)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _mapping_equal(
    declared: Mapping[str, Any], live: Mapping[str, Any], whole: bool, field: str | None
) -> bool:
    for key, want in declared.items():
        if want is None:
            if live.get(key) is not None:
                return False
        elif not equal(want, live.get(key), field=key, whole=whole, parent=field):
            return False
    if whole:
        extra = {key for key, got in live.items() if not _absent(got)} - set(declared)
        return not extra
    return True


def is_empty(value: Any) -> bool:
    """An empty mapping or list, which Kubernetes treats like an absent field."""
    return isinstance(value, (Mapping, list)) and not value


#: Fields the API server types as plain (not pointer) values with `omitempty`:
#: it drops them when they hold their zero value (false, 0, ""), so an absent
#: one *is* that zero. Pointer fields such as allowPrivilegeEscalation,
#: runAsNonRoot or replicas are not here: for them absent means "the default",
#: which may not be the zero, and a declared false must be present to hold.
OMITTED_ZEROS: Final = frozenset(
    {
        "readOnly",
        "serviceAccount",
        "nodePort",
        "hostPort",
        "hostNetwork",
        "hostPID",
        "hostIPC",
        "stdin",
        "stdinOnce",
        "tty",
        "subPath",
        "subPathExpr",
    }
)


def omitted_zero(field: str | None, declared: Any) -> bool:
    """Whether an absent ``field`` holds ``declared``: a zero the server omits (OMITTED_ZEROS)."""
    if field not in OMITTED_ZEROS:
        return False
    if isinstance(declared, bool):
        return declared is False
    return (isinstance(declared, int | float) and declared == 0) or declared == ""


def _absent(value: Any) -> bool:
    return value is None or is_empty(value)


def _list_equal(
    declared: list[Any], live: list[Any], field: str | None, whole: bool, parent: str | None
) -> bool:
    # Items sit under the list's own field: `args` items are free strings, `limits` ones not.
    key = merge_key(field, declared)
    if key is None:
        return len(declared) == len(live) and all(
            equal(want, got, field=field, whole=whole, parent=parent)
            for want, got in zip(declared, live, strict=True)
        )
    if whole and len(declared) != len(live):
        return False
    return all(
        any(
            equal(want, got, field=field, whole=whole, parent=parent)
            for got in keyed_items(live, key, want[key])
        )
        for want in declared
    )


def merge_key(field: str | None, declared: list[Any]) -> str | None:
    """The key a declared list merges by, or None when it matches whole and in order."""
    key = paths.MERGE_KEYS.get(field or "")
    if key is None:
        return None
    if all(isinstance(item, Mapping) and item.get(key) is not None for item in declared):
        return key
    return None


def keyed_items(live: list[Any], key: str, value: Any) -> list[Any]:
    """The live list items whose ``key`` field equals ``value``."""
    return [
        item
        for item in live
        if isinstance(item, Mapping) and key in item and scalar_equal(value, item[key])
    ]


# --- ordering ------------------------------------------------------------------


def compare(left: Any, right: Any, *, versions: bool = False) -> int:
    """-1, 0 or 1 as ``left`` is below, equal to or above ``right``.

    Numbers and quantities compare by value; otherwise both sides are read
    as versions (an image reference gives its tag). ``versions=True`` reads
    both as versions even when they look like decimals (an image tag ``1.10``
    is above ``1.9``). Raises NotComparable when either side has no order.
    """
    left_number, right_number = as_number(left), as_number(right)
    if not versions and left_number is not None and right_number is not None:
        return _sign(left_number - right_number)
    left_version, right_version = version(left), version(right)
    width = max(len(left_version), len(right_version))
    padded_left = left_version + (0,) * (width - len(left_version))
    padded_right = right_version + (0,) * (width - len(right_version))
    return (padded_left > padded_right) - (padded_left < padded_right)


def _sign(value: Fraction) -> int:
    return (value > 0) - (value < 0)


def version(value: Any) -> tuple[int, ...]:
    """The numeric parts of a version or of an image tag; NotComparable if it has none.

    A suffix after ``-``, ``+`` or ``_`` (``1.25.3-alpine``) is ignored.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise NotComparable(f"{value!r} is not a number, quantity, version or image tag")
    text = str(value)
    tag = image_tag(text) if _looks_like_image(text) else text
    found = _VERSION.fullmatch(tag)
    if found is None:
        raise NotComparable(
            f"{text!r} has no order: {tag!r} is neither a number nor a version like 1.25.3"
        )
    return tuple(int(part) for part in found["numbers"].split("."))


def _looks_like_image(text: str) -> bool:
    return ":" in text or "@" in text or "/" in text


def image_tag(reference: str) -> str:
    """The tag of an image reference; NotComparable for digest only, no tag or ``latest``.

    ``nginx:1.26@sha256:...`` (pinned by tag and digest, as Renovate writes it) has
    the tag ``1.26``; the digest is ignored.
    """
    named, at, _digest = reference.partition("@")
    name = named.rsplit("/", 1)[-1]
    if ":" not in name:
        if at:
            raise NotComparable(
                f"image {reference!r} is pinned by digest only, which has no version order; "
                "compare it with equals or notIn instead"
            )
        raise NotComparable(
            f"image {reference!r} has no tag (it means latest), which has no version order"
        )
    tag = name.rsplit(":", 1)[1]
    if tag == "latest":
        raise NotComparable(f"image {reference!r} uses the tag latest, which has no version order")
    return tag


# --- canonical form and server fields -------------------------------------------


def canonical(value: Any, *, field: str | None = None) -> Any:
    """A JSON-able form in which equal values are identical (for hashing).

    Numbers and quantity strings become an int, or an exact decimal string
    when not whole (under any field: ``"1.1"`` and ``"1.10"`` share a form even
    where they are not equal, which only merges two hashes); mappings drop
    null and empty values (dump them with sorted keys); merge-keyed lists are
    sorted by their key.
    """
    if isinstance(value, Mapping):
        members = {str(key): canonical(item, field=str(key)) for key, item in value.items()}
        return {key: item for key, item in members.items() if not _absent(item)}
    if isinstance(value, list):
        items = [canonical(item) for item in value]
        key = merge_key(field, value)
        if key is not None:
            items.sort(key=lambda item: repr(item[key]))
        return items
    number = as_number(value)
    if number is None:
        return value
    return _decimal_text(number)


def _decimal_text(number: Fraction) -> int | str:
    if number.denominator == 1:
        return number.numerator
    twos = fives = 0
    rest = number.denominator
    while rest % 2 == 0:
        rest, twos = rest // 2, twos + 1
    while rest % 5 == 0:
        rest, fives = rest // 5, fives + 1
    assert rest == 1, "quantities and float reprs are terminating decimals"
    places = max(twos, fives)
    scaled = abs(number.numerator) * (10**places // number.denominator)
    digits = str(scaled).rjust(places + 1, "0")
    sign = "-" if number < 0 else ""
    return f"{sign}{digits[:-places]}.{digits[-places:]}".rstrip("0")


def strip_server_fields(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of an object without ``status`` and the metadata the API server writes."""
    out = {key: value for key, value in obj.items() if key != "status"}
    metadata = obj.get("metadata")
    if isinstance(metadata, Mapping):
        out["metadata"] = {
            key: value for key, value in metadata.items() if key not in SERVER_METADATA
        }
    return out
