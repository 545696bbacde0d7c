"""keepfix.core.values: semantic equality, ordering and the canonical form."""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keepfix.core import values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512Mi", Fraction(512 * 2**20)),
        ("0.5Gi", Fraction(2**29)),
        ("1Ki", Fraction(1024)),
        ("1Ti", Fraction(2**40)),
        ("1Pi", Fraction(2**50)),
        ("1Ei", Fraction(2**60)),
        ("100m", Fraction(1, 10)),
        ("1", Fraction(1)),
        ("1k", Fraction(1000)),
        ("1M", Fraction(10**6)),
        ("1G", Fraction(10**9)),
        ("1T", Fraction(10**12)),
        ("1P", Fraction(10**15)),
        ("1E", Fraction(10**18)),
        ("5n", Fraction(5, 10**9)),
        ("5u", Fraction(5, 10**6)),
        ("1e3", Fraction(1000)),
        ("1E3", Fraction(1000)),
        ("12e-1", Fraction(6, 5)),
        (".5", Fraction(1, 2)),
        ("1.", Fraction(1)),
        ("-2", Fraction(-2)),
        ("+2m", Fraction(1, 500)),
        (" 3 ", Fraction(3)),
    ],
)
def test_parse_quantity(text: str, expected: Fraction) -> None:
    """Every Kubernetes quantity suffix and exponent parses exactly."""
    assert values.parse_quantity(text) == expected


@pytest.mark.parametrize("text", ["", "Mi", "1MB", "1.2.3", "abc", "1 Gi", "1e", "0x10", "1Gi2"])
def test_parse_quantity_rejects(text: str) -> None:
    """What is not a quantity raises QuantityError naming the text."""
    with pytest.raises(values.QuantityError, match="is not a Kubernetes quantity"):
        values.parse_quantity(text)


def test_parse_quantity_huge_exponent() -> None:
    """An absurd exponent is refused instead of building a giant number."""
    with pytest.raises(values.QuantityError, match="exponent beyond"):
        values.parse_quantity("1e100000")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, Fraction(3)),
        (0.1, Fraction(1, 10)),
        ("250m", Fraction(1, 4)),
        (True, None),
        (None, None),
        ("web", None),
        (float("inf"), None),
        ([1], None),
    ],
)
def test_as_number(value: Any, expected: Fraction | None) -> None:
    """Numbers and quantity strings have a value; everything else has none."""
    assert values.as_number(value) == expected


@pytest.mark.parametrize(
    ("declared", "live"),
    [
        ("512Mi", "0.5Gi"),
        ("512Mi", "524288Ki"),
        (1, "1000m"),
        ("1", "1000m"),
        ("1e3", "1k"),
        ("1e3", "1000"),
        (3, 3.0),
        (0.1, "100m"),
        (1, "1"),
        ("1.10", 1.1),
        ("web", "web"),
        (True, True),
        (None, None),
        (float("nan"), float("nan")),
        ("", ""),
    ],
)
def test_equal_scalars(declared: Any, live: Any) -> None:
    """Quantity and number spellings of the same value are equal, both ways."""
    assert values.equal(declared, live)
    assert values.equal(live, declared)


@pytest.mark.parametrize(
    ("declared", "live"),
    [
        (True, 1),
        (False, 0),
        (True, "true"),
        ("512Mi", "512M"),
        ("web", "Web"),
        (None, 0),
        (None, ""),
        (3, 4),
        ("3", "3x"),
        ("a", 1),
        ("1Gi", "2Gi"),
        (float("nan"), 1.0),
        (float("inf"), "inf"),
    ],
)
def test_not_equal_scalars(declared: Any, live: Any) -> None:
    """Booleans are not numbers, plain decimal strings compare as text."""
    assert not values.equal(declared, live)
    assert not values.equal(live, declared)


@pytest.mark.parametrize(
    ("field", "parent"),
    [
        ("version", None),
        ("value", "env"),
        ("cpu", "data"),  # a ConfigMap key named cpu is a free string
        ("memory", "labels"),
        ("args", None),
        ("9000", "data"),
    ],
)
@pytest.mark.parametrize(("a", "b"), [("1.10", "1.1"), ("01", "1"), ("1", "1.0"), ("0.5", "0.50")])
def test_plain_decimal_strings_under_a_free_field_compare_as_text(
    field: str, parent: str | None, a: str, b: str
) -> None:
    """Versions, labels, env values, ConfigMap data: `"1.10" != "1.1"`."""
    assert not values.equal(a, b, field=field, parent=parent)
    assert not values.equal(b, a, field=field, parent=parent)
    assert values.equal(a, a, field=field, parent=parent)


@pytest.mark.parametrize(
    ("field", "parent"),
    [
        (None, None),  # a bare value
        ("cpu", None),
        ("memory", "resources"),
        ("storage", None),
        ("ephemeral-storage", None),
        ("hugepages-2Mi", None),
        ("sizeLimit", "emptyDir"),
        ("nvidia.com/gpu", "limits"),
        ("pods", "hard"),
        ("cpu", "requests"),
        ("storage", "capacity"),
        ("cpu", "allocatable"),
    ],
)
@pytest.mark.parametrize(("a", "b"), [("1.10", "1.1"), ("01", "1"), ("1", "1.0"), ("0.5", "0.50")])
def test_plain_decimal_strings_under_a_quantity_field_compare_by_value(
    field: str | None, parent: str | None, a: str, b: str
) -> None:
    """resources.limits.cpu "1" is "1.0": charts quote cpu both ways."""
    assert values.equal(a, b, field=field, parent=parent)
    assert values.equal(b, a, field=field, parent=parent)
    assert not values.equal("1", "2", field=field, parent=parent)


def test_the_parent_key_reaches_nested_values_and_list_items() -> None:
    """Mappings pass their key down; list items sit under the list's key."""
    live = {"limits": {"nvidia.com/gpu": "1.0"}, "data": {"cpu": "1.0"}, "args": ["1.0"]}
    assert values.equal({"limits": {"nvidia.com/gpu": "1"}}, live)
    assert not values.equal({"data": {"cpu": "1"}}, live)
    assert not values.equal({"args": ["1"]}, live)
    assert values.equal({"limits": {"cpu": ["0.5"]}}, {"limits": {"cpu": ["0.50"]}})


def test_mapping_is_a_subset() -> None:
    """A declared mapping matches when every declared key matches; extra live keys are fine."""
    live = {"limits": {"memory": "0.5Gi", "cpu": "1"}, "requests": {"cpu": "100m"}}
    assert values.equal({"limits": {"memory": "512Mi"}}, live)
    assert values.equal({}, live)
    assert not values.equal({"limits": {"memory": "1Gi"}}, live)
    assert not values.equal({"limits": {"ephemeral-storage": "1Gi"}}, live)
    assert not values.equal({"limits": {}}, "text")


def test_declared_null_means_absent() -> None:
    """A declared null matches an absent or null live key and nothing else."""
    assert values.equal({"hostNetwork": None}, {})
    assert values.equal({"hostNetwork": None}, {"hostNetwork": None})
    assert not values.equal({"hostNetwork": None}, {"hostNetwork": False})


def test_empty_equals_absent() -> None:
    """An empty list or mapping matches an absent or null one; zero scalars do not."""
    assert values.equal({"args": [], "resources": {}}, {})
    assert values.equal({"args": []}, {"args": None})
    assert values.equal([], None)
    assert values.equal({}, None)
    assert not values.equal({"privileged": False}, {})
    assert not values.equal({"value": ""}, {})
    assert not values.equal({"replicas": 0}, {})
    assert values.equal({"a": 1}, {"a": 1, "b": [], "c": {}}, whole=True)
    assert values.canonical({"a": {"b": []}, "c": None}) == values.canonical({})


def test_whole_mapping_refuses_extra_keys() -> None:
    """whole=True (captured values) compares key for key; null live keys do not count."""
    assert values.equal({"a": 1}, {"a": 1.0, "b": None}, whole=True)
    assert not values.equal({"a": 1}, {"a": 1, "b": 2}, whole=True)
    assert not values.equal({"x": {"a": 1}}, {"x": {"a": 1, "b": 2}}, whole=True)


_CONTAINERS = [
    {"name": "side", "image": "envoy"},
    {"name": "web", "image": "nginx", "resources": {"limits": {"memory": "0.5Gi"}}},
]


@pytest.mark.parametrize(
    ("declared", "matches"),
    [
        ([{"name": "web", "resources": {"limits": {"memory": "512Mi"}}}], True),
        ([{"name": "web"}, {"name": "side", "image": "envoy"}], True),
        ([{"name": "web", "image": "httpd"}], False),
        ([{"name": "gone"}], False),
        ([{"image": "nginx"}], False),
    ],
)
def test_merge_keyed_lists_match_item_by_key(declared: list[Any], matches: bool) -> None:
    """containers match by name, in any order, ignoring items not declared."""
    assert values.equal(declared, _CONTAINERS, field="containers") is matches


def test_merge_keyed_ports_by_container_port() -> None:
    """ports match by containerPort; two items with one port (TCP/UDP) both count."""
    live = [
        {"containerPort": 53, "protocol": "TCP"},
        {"containerPort": 53, "protocol": "UDP"},
        {"containerPort": 9153, "name": "metrics"},
    ]
    assert values.equal([{"containerPort": 53, "protocol": "UDP"}], live, field="ports")
    assert values.equal([{"containerPort": "9153"}], live, field="ports")
    assert not values.equal([{"containerPort": 53, "protocol": "SCTP"}], live, field="ports")


def test_merge_keyed_whole_needs_the_same_items() -> None:
    """A captured merge-keyed list must hold no other items."""
    declared = [_CONTAINERS[1], _CONTAINERS[0]]
    assert values.equal(declared, _CONTAINERS, field="containers", whole=True)
    assert not values.equal(declared[:1], _CONTAINERS, field="containers", whole=True)


@pytest.mark.parametrize(
    ("field", "declared", "live", "expected"),
    [
        ("args", ["a", "b"], ["a", "b"], True),
        ("args", ["a", "b"], ["b", "a"], False),
        ("args", ["a"], ["a", "b"], False),
        ("tolerations", [{"key": "k"}], [{"key": "k", "operator": "Exists"}], True),
        ("env", [{"name": "A"}, {"value": "x"}], [{"name": "A"}, {"value": "x"}], True),
        ("env", [{"name": "A"}, {"value": "x"}], [{"value": "x"}, {"name": "A"}], False),
        (None, [1, 2], [1.0, "2"], True),
        ("args", ["a"], "a", False),
    ],
)
def test_other_lists_match_whole_and_in_order(
    field: str | None, declared: Any, live: Any, expected: bool
) -> None:
    """Lists without a merge key (or with unkeyed items) compare item by item, in order."""
    assert values.equal(declared, live, field=field) is expected


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        (1, 2, -1),
        ("500m", 1, -1),
        ("1Gi", "1000Mi", 1),
        ("0.5Gi", "512Mi", 0),
        (3.0, 3, 0),
        ("nginx:1.24.0", "1.25.3", -1),
        ("nginx:1.26", "1.25.3", 1),
        ("nginx:1.25.3", "1.25.3", 0),
        ("nginx:1.25", "1.25.0", 0),
        ("nginx:1.25.3-alpine", "1.25.3", 0),
        ("host:5000/team/img:1.2", "1.10", -1),
        ("host:5000/img:v2.0.1", "2.0.0", 1),
        ("registry.example.com/a/b:10.0", "nginx:9.9.9", 1),
        ("1.2.3", "1.10.0", -1),
        ("v1.2.3", "1.2.3", 0),
        ("nginx:1.25@sha256:abcd", "1.25.3", -1),  # tag and digest: the tag counts
        ("host:5000/nginx:1.26@sha256:abcd", "1.25.3", 1),
    ],
)
def test_compare(left: Any, right: Any, expected: int) -> None:
    """Numbers and quantities by value; versions and image tags by numeric parts."""
    assert values.compare(left, right) == expected
    assert values.compare(right, left) == -expected


def test_compare_as_versions() -> None:
    """versions=True orders decimal-looking tags as versions, not numbers."""
    assert values.compare("1.10", "1.9") == -1
    assert values.compare("1.10", "1.9", versions=True) == 1
    assert values.compare(2, "1.9.9", versions=True) == 1


@pytest.mark.parametrize(
    ("left", "right", "reason"),
    [
        ("nginx@sha256:abcd", "1.25.3", "pinned by digest"),
        ("host:5000/nginx@sha256:abcd", "1.25.3", "pinned by digest only"),
        ("nginx:latest@sha256:abcd", "1.25.3", "uses the tag latest"),
        ("nginx:latest", "1.25.3", "uses the tag latest"),
        ("docker.io/nginx", "1.25.3", "has no tag"),
        ("host:5000/nginx", "1.25.3", "has no tag"),
        ("nginx:alpine", "1.25.3", "'alpine' is neither a number nor a version"),
        ("stable", "1.0", "'stable' is neither"),
        (True, 1, "not a number, quantity, version or image tag"),
        (None, 1, "not a number"),
        ({"a": 1}, 1, "not a number"),
    ],
)
def test_compare_refuses_what_has_no_order(left: Any, right: Any, reason: str) -> None:
    """Digests, latest, missing or non-version tags raise NotComparable, both ways."""
    with pytest.raises(values.NotComparable, match=reason):
        values.compare(left, right)
    with pytest.raises(values.NotComparable, match=reason):
        values.compare(right, left)


def test_not_comparable_is_a_value_error() -> None:
    """Callers may catch NotComparable as a ValueError."""
    assert issubclass(values.NotComparable, ValueError)
    assert issubclass(values.QuantityError, ValueError)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("512Mi", "0.5Gi"),
        (1, "1000m"),
        (3, 3.0),
        (0.1, "100m"),
        ("1.5Ki", 1536),
        ("-100m", -0.1),
        ("1n", "0.001u"),
        ({"b": 1, "a": "2"}, {"a": 2.0, "b": "1000m"}),
        ({"a": 1, "b": None}, {"a": 1}),
        (
            {"containers": [{"name": "b"}, {"name": "a", "cpu": "1"}]},
            {"containers": [{"name": "a", "cpu": 1}, {"name": "b"}]},
        ),
    ],
)
def test_canonical_is_the_same_for_equal_values(left: Any, right: Any) -> None:
    """Equal values have one canonical form (for hashing), and it is JSON-able."""
    assert values.canonical(left) == values.canonical(right)
    json.dumps(values.canonical(left), sort_keys=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("512Mi", 536870912),
        ("100m", "0.1"),
        ("-1.5", "-1.5"),
        ("1n", "0.000000001"),
        (True, True),
        ("web", "web"),
        (["b", "a"], ["b", "a"]),
    ],
)
def test_canonical_forms(value: Any, expected: Any) -> None:
    """Whole numbers become ints, fractions exact decimal strings; order of plain lists stays."""
    assert values.canonical(value) == expected


def test_strip_server_fields() -> None:
    """Server-written metadata and status are dropped; the input is not changed."""
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "c",
            "labels": {"a": "b"},
            "managedFields": [{}],
            "resourceVersion": "1",
            "generation": 2,
            "uid": "u",
            "creationTimestamp": "t",
        },
        "data": {"k": "v"},
        "status": {"x": 1},
    }
    assert values.strip_server_fields(obj) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "labels": {"a": "b"}},
        "data": {"k": "v"},
    }
    assert "status" in obj
    assert values.strip_server_fields({"kind": "X"}) == {"kind": "X"}


_SUFFIXES = ["", "m", "k", "M", "G", "Ki", "Mi", "Gi", "e3", "e-2", "n", "u"]


@st.composite
def _quantity_spellings(draw: st.DrawFn) -> Any:
    """A quantity in one of its spellings: int, float, or string with any suffix."""
    number = draw(st.integers(min_value=-(10**6), max_value=10**6))
    form = draw(st.sampled_from(["int", "float", "str", "suffix"]))
    if form == "int":
        return number
    if form == "float":
        return float(number)
    if form == "str":
        return str(number)
    suffix = draw(st.sampled_from(_SUFFIXES))
    return f"{number}{suffix}"


@given(_quantity_spellings(), _quantity_spellings(), _quantity_spellings())
def test_equality_is_an_equivalence_on_quantities(a: Any, b: Any, c: Any) -> None:
    """Reflexive, symmetric and transitive on quantities, and agrees with canonical."""
    assert values.equal(a, a)
    assert values.equal(a, b) == values.equal(b, a)
    if values.equal(a, b) and values.equal(b, c):
        assert values.equal(a, c)
    assert values.equal(a, b) == (values.canonical(a) == values.canonical(b))
    assert (values.compare(a, b) == 0) == values.equal(a, b)


_FIELDS = [(None, None), ("cpu", "limits"), ("memory", None), ("version", None), ("k", "data")]


@st.composite
def _plain_spellings(draw: st.DrawFn) -> Any:
    """A quantity spelling, or a plain decimal with trailing zeros ("1.0", "0.50")."""
    if draw(st.booleans()):
        return draw(_quantity_spellings())
    number = draw(st.integers(min_value=-1000, max_value=1000))
    return f"{number / 4}" + "0" * draw(st.integers(min_value=0, max_value=2))


@given(_plain_spellings(), _plain_spellings(), _plain_spellings(), st.sampled_from(_FIELDS))
def test_equal_values_share_a_canonical_form_under_every_field(
    a: Any, b: Any, c: Any, where: tuple[str | None, str | None]
) -> None:
    """Symmetric everywhere; equal values hash alike; transitive under quantity fields."""
    field, parent = where
    ab = values.equal(a, b, field=field, parent=parent)
    assert ab == values.equal(b, a, field=field, parent=parent)
    if ab:
        assert values.canonical(a, field=field) == values.canonical(b, field=field)
    if (
        values.quantity_field(field, parent)
        and ab
        and values.equal(b, c, field=field, parent=parent)
    ):
        assert values.equal(a, c, field=field, parent=parent)
