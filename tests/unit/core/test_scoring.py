"""Severity per DESIGN.md and the regression signature."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keepfix.core import diff, scoring
from keepfix.core.scoring import Severity

MEMORY = "spec.template.spec.containers[name=web].resources.limits.memory"


@dataclasses.dataclass(frozen=True)
class D:
    """Stands in for core.diff.Drift (same attributes)."""

    path: str
    actual: Any
    known_bad: bool = False
    present: bool = True
    expected: Any = None
    pointer: str = ""


BAD = D(MEMORY, "128Mi", known_bad=True)
BAD2 = D("spec.replicas", 1, known_bad=True)
OTHER = D("spec.replicas", 2)


@pytest.mark.parametrize(
    ("drifts", "in_window", "expected"),
    [
        ([BAD], True, Severity.CRITICAL),
        ([BAD, BAD2], True, Severity.CRITICAL),
        ([BAD, OTHER], True, Severity.HIGH),
        ([OTHER], True, Severity.MEDIUM),
        ([BAD], False, Severity.LOW),
        ([OTHER], False, Severity.LOW),
        ([BAD, OTHER], False, Severity.LOW),
    ],
)
def test_severity(drifts: list[D], in_window: bool, expected: Severity) -> None:
    """Critical/High/Medium by knownBad overlap inside the window, Low after it."""
    assert scoring.severity(drifts, in_window=in_window, repeat=False) == expected


@pytest.mark.parametrize(
    ("drifts", "in_window", "expected"),
    [
        ([BAD], True, Severity.CRITICAL),
        ([BAD, OTHER], True, Severity.CRITICAL),
        ([OTHER], True, Severity.HIGH),
        ([BAD], False, Severity.MEDIUM),
    ],
)
def test_repeat_offender_bumps_one_level_capped(
    drifts: list[D], in_window: bool, expected: Severity
) -> None:
    """A mitigation that regressed before raises the next one by one level, never past Critical."""
    assert scoring.severity(drifts, in_window=in_window, repeat=True) == expected


def test_severity_without_drift_is_an_error() -> None:
    """Scoring nothing is a caller bug; the message says so."""
    with pytest.raises(ValueError, match="at least one drifted field"):
        scoring.severity([], in_window=True, repeat=False)


def test_severity_order_and_names() -> None:
    """Ordered Low < Medium < High < Critical; names as the API spells them."""
    assert Severity.LOW < Severity.MEDIUM < Severity.HIGH < Severity.CRITICAL
    assert [s.label for s in Severity] == ["Low", "Medium", "High", "Critical"]
    assert max(Severity.MEDIUM, Severity.HIGH) is Severity.HIGH


@pytest.mark.parametrize("name", ["Critical", "critical", " CRITICAL "])
def test_severity_from_name(name: str) -> None:
    """Names parse case-insensitively."""
    assert Severity.from_name(name) is Severity.CRITICAL


def test_severity_from_unknown_name() -> None:
    """An unknown name lists the accepted ones."""
    with pytest.raises(ValueError, match="Low, Medium, High, Critical"):
        Severity.from_name("Severe")


@pytest.mark.parametrize(
    ("api_version", "kind", "expected"),
    [
        ("apps/v1", "Deployment", "apps/Deployment"),
        ("v1", "Pod", "Pod"),
        ("keepfix.dev/v1alpha1", "Mitigation", "keepfix.dev/Mitigation"),
    ],
)
def test_kind_key(api_version: str, kind: str, expected: str) -> None:
    """Group-qualified, version dropped, core group bare."""
    assert scoring.kind_key(api_version, kind) == expected


def sig(*drifts: D, kind: str = "apps/Deployment") -> str:
    return scoring.signature(kind, drifts)


def test_signature_shape_and_determinism() -> None:
    """sha256:<64 hex>, the same for the same drift."""
    s = sig(BAD, OTHER)
    assert s.startswith("sha256:")
    assert len(s) == len("sha256:") + 64
    assert s == sig(BAD, OTHER)


def test_signature_ignores_drift_order() -> None:
    """The drifts are sorted before hashing."""
    assert sig(BAD, OTHER) == sig(OTHER, BAD)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("512Mi", "0.5Gi"),
        ("1", "1000m"),
        ("1k", "1e3"),
        (3, 3.0),
        (3, "3"),
        ({"a": 1, "b": [1, {"c": "1Gi"}]}, {"b": [1, {"c": "1024Mi"}], "a": 1}),
    ],
)
def test_signature_invariant_under_spelling(a: Any, b: Any) -> None:
    """Quantity spelling, int/float spelling and key order do not change the signature."""
    assert sig(D(MEMORY, a)) == sig(D(MEMORY, b))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("512Mi", "513Mi"),
        ("512Mi", "512M"),
        (True, 1),
        ("web", "Web"),
        ([1, 2], [2, 1]),
    ],
)
def test_signature_tells_different_values_apart(a: Any, b: Any) -> None:
    """Different actual values give different signatures."""
    assert sig(D(MEMORY, a)) != sig(D(MEMORY, b))


def test_signature_tells_absent_from_null() -> None:
    """A removed field and an explicit null are different recurrences."""
    assert sig(D(MEMORY, None, present=False)) != sig(D(MEMORY, None, present=True))


def test_signature_depends_on_kind_and_path() -> None:
    """The same value on another kind or path is another signature."""
    assert sig(BAD) != sig(BAD, kind="apps/StatefulSet")
    assert sig(BAD) != sig(dataclasses.replace(BAD, path="spec.template.spec.containers[0]"))


def test_signature_ignores_expected_and_known_bad() -> None:
    """Only what the object now holds names the recurrence."""
    assert sig(BAD) == sig(dataclasses.replace(BAD, expected="512Mi", known_bad=False))


_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
_DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9}

json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=12,
)


def reorder(value: Any) -> Any:
    """The same value with every mapping's keys reversed."""
    if isinstance(value, dict):
        return {k: reorder(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reorder(v) for v in value]
    return value


@given(json_values)
def test_signature_invariant_under_key_order(value: Any) -> None:
    """Property: reordering mapping keys never changes the signature."""
    assert sig(D(MEMORY, value)) == sig(D(MEMORY, reorder(value)))


@given(
    st.integers(min_value=0, max_value=2**20),
    st.sampled_from(sorted(_BINARY)),
    st.sampled_from(sorted(_BINARY)),
)
def test_signature_invariant_under_binary_quantity_spelling(n: int, unit: str, other: str) -> None:
    """Property: n<unit> written in another binary unit (when exact) hashes the same."""
    total = n * _BINARY[unit]
    if total % _BINARY[other]:
        return
    assert sig(D(MEMORY, f"{n}{unit}")) == sig(D(MEMORY, f"{total // _BINARY[other]}{other}"))


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(sorted(_DECIMAL)))
def test_signature_invariant_under_decimal_quantity_spelling(n: int, unit: str) -> None:
    """Property: n<unit> equals the plain number, the milli form and the exponent form."""
    total = n * _DECIMAL[unit]
    expected = sig(D(MEMORY, f"{n}{unit}"))
    assert sig(D(MEMORY, total)) == expected
    assert sig(D(MEMORY, f"{total * 1000}m")) == expected
    assert sig(D(MEMORY, f"{n}e{len(str(_DECIMAL[unit])) - 1}")) == expected


def test_signature_merge_keyed_list_order_does_not_matter() -> None:
    """A drifted containers list hashes the same whatever the container order."""
    web, side = {"name": "web", "image": "nginx:1.25"}, {"name": "side", "image": "envoy:1.30"}
    path = "spec.template.spec.containers"
    assert sig(D(path, [web, side])) == sig(D(path, [side, web]))
    assert sig(D("spec.args", ["a", "b"])) != sig(D("spec.args", ["b", "a"]))


@pytest.mark.parametrize("path", ["spec.containers[0]", "/spec/replicas", "bad[path", ""])
def test_signature_of_any_path_spelling(path: str) -> None:
    """Index, pointer and even unparsable paths hash without error."""
    assert sig(D(path, "1Gi")) == sig(D(path, "1024Mi"))


# --- with the drift core.diff reports -------------------------------------------------------


def web_deployment(memory: Any, replicas: int, *, sidecar_first: bool = False) -> dict[str, Any]:
    web = {"name": "web", "image": "nginx:1.25", "resources": {"limits": {"memory": memory}}}
    side = {"name": "envoy", "image": "envoy:1.30"}
    containers = [side, web] if sidecar_first else [web, side]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "spec": {"replicas": replicas, "template": {"spec": {"containers": containers}}},
    }


FIELDS = (
    diff.ProtectedField(MEMORY, "512Mi", known_bad=("128Mi",)),
    diff.ProtectedField("spec.replicas", 3, known_bad=(1,)),
)


@pytest.mark.parametrize(
    ("memory", "replicas", "expected"),
    [
        ("0.125Gi", 1, Severity.CRITICAL),
        ("128Mi", 2, Severity.HIGH),
        ("256Mi", 2, Severity.MEDIUM),
        ("134217728", 3, Severity.CRITICAL),
    ],
)
def test_severity_of_real_drift(memory: str, replicas: int, expected: Severity) -> None:
    """The incident's values, spelt any way, are recognised as the incident coming back."""
    drifts = diff.diff(FIELDS, web_deployment(memory, replicas))
    assert scoring.severity(drifts, in_window=True, repeat=False) is expected


def test_signature_of_real_drift_ignores_spelling_and_container_order() -> None:
    """The same recurrence respelt and reordered maps to the same Regression."""
    one = diff.diff(FIELDS, web_deployment("128Mi", 1))
    two = diff.diff(FIELDS, web_deployment("0.125Gi", 1, sidecar_first=True))
    assert [d.pointer for d in one] != [d.pointer for d in two]
    kind = scoring.kind_key("apps/v1", "Deployment")
    assert scoring.signature(kind, one) == scoring.signature(kind, two)
    other = diff.diff(FIELDS, web_deployment("256Mi", 1))
    assert scoring.signature(kind, one) != scoring.signature(kind, other)


def test_signature_of_a_removed_field() -> None:
    """A removed memory limit is its own recurrence, not the same as an explicit null."""
    removed = web_deployment("128Mi", 3)
    del removed["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
    (drift,) = diff.diff(FIELDS, removed)
    assert not drift.present
    kind = "apps/Deployment"
    assert scoring.signature(kind, [drift]) != scoring.signature(kind, [D(MEMORY, None)])


@given(st.lists(st.booleans(), min_size=1, max_size=6), st.booleans())
def test_severity_properties(known_bad: list[bool], in_window: bool) -> None:
    """Property: repeat adds at most one level, never lowers; Low only after the window."""
    drifts = [D(f"spec.f{i}", i, known_bad=bad) for i, bad in enumerate(known_bad)]
    first = scoring.severity(drifts, in_window=in_window, repeat=False)
    again = scoring.severity(drifts, in_window=in_window, repeat=True)
    assert first <= again <= min(first + 1, Severity.CRITICAL)
    assert (first is Severity.LOW) is (not in_window)
    if in_window:
        assert scoring.severity(list(reversed(drifts)), in_window=True, repeat=False) is first
