"""keepfix.core.diff: drift of protected fields, from golden triples and unit cases."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jsonpatch
import pytest
import yaml

from keepfix.core import diff, paths, rollback

DATA = pathlib.Path(__file__).parent.parent / "data" / "diff"
CASES = sorted(path.name.removesuffix("-stable.yaml") for path in DATA.glob("*-stable.yaml"))


def load_case(name: str) -> tuple[tuple[diff.ProtectedField, ...], dict[str, Any], dict[str, Any]]:
    """The protected fields, live object and expected result of one golden triple."""
    stable = yaml.safe_load((DATA / f"{name}-stable.yaml").read_text())
    live = yaml.safe_load((DATA / f"{name}-live.yaml").read_text())
    expected = yaml.safe_load((DATA / f"{name}-expected.yaml").read_text())
    fields = tuple(
        diff.ProtectedField(
            path=entry["path"],
            value=entry.get("value"),
            known_bad=tuple(entry.get("knownBad", ())),
            absent=entry.get("absent", False),
            whole=entry.get("whole", False),
        )
        for entry in stable
    )
    return fields, live, expected


def as_dict(drift: diff.Drift) -> dict[str, Any]:
    """A drift as the golden files spell it."""
    return {
        "path": drift.path,
        "pointer": drift.pointer,
        "expected": drift.expected,
        "actual": drift.actual,
        "present": drift.present,
        "knownBad": drift.known_bad,
    }


def test_there_are_enough_golden_cases() -> None:
    """The golden set covers at least a dozen situations."""
    assert len(CASES) >= 12


@pytest.mark.parametrize("name", CASES)
def test_golden_diff(name: str) -> None:
    """diff(stable, live) gives exactly the expected drift."""
    fields, live, expected = load_case(name)
    assert [as_dict(drift) for drift in diff.diff(fields, live)] == expected["drift"]


@pytest.mark.parametrize("name", CASES)
def test_golden_rollback(name: str) -> None:
    """The planned patch is the expected one, and applying it leaves no drift."""
    fields, live, expected = load_case(name)
    planned = rollback.plan(diff.diff(fields, live), live)
    assert list(planned.patch) == expected["patch"]
    if "applyBody" in expected:
        assert planned.apply_body == expected["applyBody"]
    restored = jsonpatch.apply_patch(live, list(planned.patch))
    assert diff.diff(fields, restored) == ()


def test_protected_field_requires_absent() -> None:
    """value None or absent=True both mean the field must be absent."""
    assert diff.ProtectedField("a", None).requires_absent
    assert diff.ProtectedField("a", 1, absent=True).requires_absent
    assert not diff.ProtectedField("a", 1).requires_absent


def test_absent_flag_wins_over_value() -> None:
    """absent=True with a value still means absent: expected is None."""
    (drift,) = diff.diff([diff.ProtectedField("spec.x", 5, absent=True)], {"spec": {"x": 5}})
    assert (drift.expected, drift.actual, drift.present) == (None, 5, True)


def test_null_live_value_satisfies_absent() -> None:
    """A key present with null counts as absent."""
    assert diff.diff([diff.ProtectedField("spec.x", None)], {"spec": {"x": None}}) == ()


def test_diff_is_sorted_and_deduplicated() -> None:
    """Drifts come sorted by path; a field listed twice drifts once."""
    live = {"spec": {"b": 1, "a": 1}}
    fields = [
        diff.ProtectedField("spec.b", 2),
        diff.ProtectedField("spec.a", 2),
        diff.ProtectedField("spec.b", 2),
    ]
    assert [drift.path for drift in diff.diff(fields, live)] == ["spec.a", "spec.b"]


def test_two_values_for_one_field_both_drift() -> None:
    """Two different stable values for one path are both reported (a policy conflict)."""
    fields = [diff.ProtectedField("spec.a", 2), diff.ProtectedField("spec.a", {"x": 1})]
    assert len(diff.diff(fields, {"spec": {"a": 1}})) == 2


def test_known_bad_matches_semantically() -> None:
    """knownBad values compare semantically like the stable value."""
    field = diff.ProtectedField("spec.m", "512Mi", known_bad=("128Mi",))
    (drift,) = diff.diff([field], {"spec": {"m": "0.125Gi"}})
    assert drift.known_bad
    (drift,) = diff.diff([field], {"spec": {"m": "256Mi"}})
    assert not drift.known_bad


def test_pod_spec_field_on_a_kind_without_pod_spec_never_drifts() -> None:
    """podSpec. fields do not apply to a ConfigMap."""
    field = diff.ProtectedField("podSpec.hostNetwork", None)
    assert diff.diff([field], {"kind": "ConfigMap", "data": {"hostNetwork": "true"}}) == ()


def test_whole_on_a_non_mapping_compares_the_value() -> None:
    """whole=True on a scalar is plain equality."""
    field = diff.ProtectedField("metadata", "x", whole=True)
    assert len(diff.diff([field], {"metadata": {"name": "a"}})) == 1


def test_drift_is_frozen() -> None:
    """Drift and ProtectedField are immutable values."""
    field = diff.ProtectedField("a", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        field.path = "b"  # type: ignore[misc]


def test_capture_fields_leaves() -> None:
    """capture_fields gives one field per leaf; merge-keyed items by key; other lists whole."""
    obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "labels": {"app.kubernetes.io/name": "p"},
            "resourceVersion": "1",
            "creationTimestamp": None,
        },
        "spec": {
            "containers": [
                {"name": "a", "args": ["x", "y"], "ports": [{"containerPort": 80}]},
                {"name": "b", "env": [{"name": "E", "value": "1"}, {"name": "E", "value": "2"}]},
            ],
            "volumes": [],
            "securityContext": {},
        },
        "status": {"phase": "Running"},
    }
    captured = {field.path: field.value for field in diff.capture_fields(obj)}
    assert captured == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata.name": "p",
        'metadata.labels["app.kubernetes.io/name"]': "p",
        "spec.containers[name=a].name": "a",
        "spec.containers[name=a].args": ["x", "y"],
        "spec.containers[name=a].ports[containerPort=80].containerPort": 80,
        "spec.containers[name=b].name": "b",
        "spec.containers[name=b].env[0].name": "E",
        "spec.containers[name=b].env[0].value": "1",
        "spec.containers[name=b].env[1].name": "E",
        "spec.containers[name=b].env[1].value": "2",
        "spec.volumes": [],
        "spec.securityContext": {},
    }
    assert diff.diff(diff.capture_fields(obj), obj) == ()


def test_capture_of_an_empty_object_is_empty() -> None:
    """Nothing to capture gives no fields (never a field with an empty path)."""
    assert diff.capture_fields({}) == ()


def test_capture_without_zero_values() -> None:
    """zero_values=False leaves out false, 0 and "" leaves (dropped by omitempty)."""
    obj = {"spec": {"a": False, "b": 0, "c": "", "d": 0.0, "e": True, "f": 1, "g": "x"}}
    paths_kept = [field.path for field in diff.capture_fields(obj, zero_values=False)]
    assert paths_kept == ["spec.e", "spec.f", "spec.g"]
    assert len(diff.capture_fields(obj)) == 7


def test_empty_declared_value_holds_when_absent() -> None:
    """A protected empty list or mapping is not drift when live lacks the field."""
    fields = [diff.ProtectedField("spec.volumes", []), diff.ProtectedField("spec.sc", {})]
    assert diff.diff(fields, {"spec": {}}) == ()


def test_captured_fields_see_a_changed_leaf() -> None:
    """A capture of an object reports the one leaf that later changed."""
    obj = {"kind": "Service", "spec": {"ports": [{"port": 80, "targetPort": 8080}]}}
    changed = {"kind": "Service", "spec": {"ports": [{"port": 80, "targetPort": 9090}]}}
    (drift,) = diff.diff(diff.capture_fields(obj), changed)
    assert drift.path == "spec.ports"
    assert drift.actual == [{"port": 80, "targetPort": 9090}]


# --- what the API server stores differently -------------------------------------


def _pod(container: dict[str, object]) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [container]}}


def test_a_zero_the_server_omits_is_not_drift() -> None:
    """readOnly: false, nodePort: 0 and serviceAccount: "" come back absent: not drift."""
    live = _pod({"name": "web", "volumeMounts": [{"name": "data", "mountPath": "/d"}]})
    fields = [
        diff.ProtectedField("spec.containers[name=web].volumeMounts[name=data].readOnly", False),
        diff.ProtectedField("spec.serviceAccount", ""),
        diff.ProtectedField(
            "spec.containers[name=web].volumeMounts", [{"name": "data", "readOnly": False}]
        ),
    ]
    assert diff.diff(fields, live) == ()


def test_a_pointer_field_declared_false_must_be_present() -> None:
    """allowPrivilegeEscalation absent means true: a declared false that is gone is drift."""
    live = _pod({"name": "web", "securityContext": {}})
    path = "spec.containers[name=web].securityContext.allowPrivilegeEscalation"
    (drift,) = diff.diff([diff.ProtectedField(path, False)], live)
    assert (drift.present, drift.expected) == (False, False)


def test_a_zero_the_server_omits_still_drifts_when_set_otherwise() -> None:
    """readOnly: true where the fix says false is drift."""
    live = _pod({"name": "web", "volumeMounts": [{"name": "data", "readOnly": True}]})
    path = "spec.containers[name=web].volumeMounts[name=data].readOnly"
    (drift,) = diff.diff([diff.ProtectedField(path, False)], live)
    assert drift.actual is True


SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "Opaque"}


def test_secret_string_data_is_checked_through_data() -> None:
    """The server folds stringData into data (base64): a declared stringData.KEY holds there."""
    live = {**SECRET, "data": {"token": "czNjcjN0"}}  # base64 of "s3cr3t"
    assert diff.diff([diff.ProtectedField("stringData.token", "s3cr3t")], live) == ()
    (drift,) = diff.diff([diff.ProtectedField("stringData.token", "other")], live)
    assert (drift.path, drift.pointer) == ("data.token", "/data/token")
    assert drift.actual == "czNjcjN0"


def test_secret_manifest_with_string_data_compares_as_written() -> None:
    """A manifest (as the gate reads it) still carries stringData: compared directly."""
    manifest = {**SECRET, "stringData": {"token": "s3cr3t"}}
    assert diff.diff([diff.ProtectedField("stringData.token", "s3cr3t")], manifest) == ()
    assert diff.diff([diff.ProtectedField("stringData.token", "x")], manifest)


def test_secret_known_bad_string_data_is_recognised_in_data() -> None:
    """A known-bad stringData value is recognised once stored as base64 data."""
    live = {**SECRET, "data": {"mode": "ZGVidWc="}}  # base64 of "debug"
    field = diff.ProtectedField("stringData.mode", "safe", known_bad=("debug",))
    (drift,) = diff.diff([field], live)
    assert drift.known_bad


@pytest.mark.parametrize(
    ("path", "pointer"),
    [
        ("stringData", "/stringData"),
        ("stringData.a.b", "/stringData/a/b"),
        ("/stringData/token", "/stringData/token"),
        ("type", "/type"),
    ],
)
def test_secret_paths_other_than_string_data_keys_are_left_alone(path: str, pointer: str) -> None:
    """Only `stringData.KEY` is translated to data; other Secret paths are checked as written."""
    live = {**SECRET, "data": {"token": "czNjcjN0"}}
    (drift,) = diff.diff([diff.ProtectedField(path, "x")], live)
    assert drift.pointer == pointer


@pytest.mark.parametrize(
    ("path", "declared", "live", "drifts"),
    [
        ('spec.containers[name=web].resources.limits["nvidia.com/gpu"]', "1", "1.0", False),
        ("spec.containers[name=web].resources.limits.cpu", "0.5", "0.50", False),
        ('spec.containers[name=web].resources.limits["nvidia.com/gpu"]', "1", "2", True),
        ("metadata.labels.version", "1.10", "1.1", True),
    ],
)
def test_plain_decimals_compare_as_amounts_only_under_quantity_fields(
    path: str, declared: str, live: str, drifts: bool
) -> None:
    """`"1"` and `"1.0"` under limits are one amount; a label `1.10` is not `1.1`."""
    obj = _pod({"name": "web", "resources": {"limits": {"nvidia.com/gpu": live, "cpu": live}}})
    obj["metadata"] = {"labels": {"version": live}}
    assert bool(diff.diff([diff.ProtectedField(path, declared)], obj)) is drifts


def test_parent_key_is_the_mapping_holding_the_last_key() -> None:
    """limits in limits.cpu; none after an index or for a one-key path."""
    assert diff.parent_key(paths.parse("spec.resources.limits.cpu")) == "limits"
    assert diff.parent_key(paths.parse("spec.containers[0]")) is None
    assert diff.parent_key(paths.parse("spec")) is None
    assert diff.parent_key(paths.parse("spec.containers[0].image")) is None
