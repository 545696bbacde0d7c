"""keepfix.core.rollback: the guarded JSON patch and the server-side-apply body."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keepfix.core import diff, paths, rollback, values


def _live() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"},
        "spec": {
            "replicas": 1,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "side", "image": "envoy:1.30"},
                        {
                            "name": "web",
                            "image": "nginx:1.25.3",
                            "resources": {"limits": {"memory": "128Mi", "cpu": "1"}},
                        },
                    ]
                }
            },
        },
    }


def _plan(fields: list[diff.ProtectedField], live: dict[str, Any]) -> rollback.RollbackPlan:
    return rollback.plan(diff.diff(fields, live), live)


def test_no_drift_no_patch() -> None:
    """Nothing drifted: an empty patch and a body with only the object's identity."""
    planned = rollback.plan((), _live())
    assert planned.patch == ()
    assert planned.apply_body == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
    }


def test_reordered_list_fails_the_patch() -> None:
    """A patch planned against one order is rejected once the containers are reordered."""
    live = _live()
    field = diff.ProtectedField("podSpec.containers[name=web].resources.limits.memory", "512Mi")
    planned = _plan([field], live)
    reordered = copy.deepcopy(live)
    reordered["spec"]["template"]["spec"]["containers"].reverse()
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(reordered, list(planned.patch))


def test_newer_write_fails_the_patch() -> None:
    """A patch whose test value changed in the meantime is rejected, not applied."""
    live = _live()
    planned = _plan([diff.ProtectedField("spec.replicas", 3)], live)
    assert planned.patch == (
        {"op": "test", "path": "/spec/replicas", "value": 1},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
    )
    newer = copy.deepcopy(live)
    newer["spec"]["replicas"] = 2
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(newer, list(planned.patch))


def test_mapping_drift_writes_only_the_differing_keys() -> None:
    """A declared mapping is put back key by key; live keys it does not mention stay."""
    live = _live()
    field = diff.ProtectedField(
        "podSpec.containers[name=web].resources",
        {"limits": {"memory": "512Mi", "cpu": 1, "hugepages-2Mi": None}, "requests": {"cpu": 1}},
    )
    planned = _plan([field], live)
    base = "/spec/template/spec/containers/1/resources"
    assert planned.patch == (
        {"op": "test", "path": "/spec/template/spec/containers/1/name", "value": "web"},
        {"op": "test", "path": f"{base}/limits/memory", "value": "128Mi"},
        {"op": "replace", "path": f"{base}/limits/memory", "value": "512Mi"},
        {"op": "add", "path": f"{base}/requests", "value": {"cpu": 1}},
    )


def test_empty_declared_values_are_not_written() -> None:
    """An empty list in a declared mapping is not added; empty live extras are not removed."""
    live = {"spec": {"c": {"image": "y", "extra": []}}}
    planned = _plan([diff.ProtectedField("spec.c", {"image": "x", "args": []}, whole=True)], live)
    assert planned.patch == (
        {"op": "test", "path": "/spec/c/image", "value": "y"},
        {"op": "replace", "path": "/spec/c/image", "value": "x"},
    )


def test_mapping_drift_removes_a_key_declared_null() -> None:
    """A null inside a declared mapping removes that key behind a test."""
    live = {"spec": {"sc": {"privileged": True, "runAsUser": 0}}}
    planned = _plan([diff.ProtectedField("spec.sc", {"privileged": None})], live)
    assert planned.patch == (
        {"op": "test", "path": "/spec/sc/privileged", "value": True},
        {"op": "remove", "path": "/spec/sc/privileged"},
    )


def test_null_on_the_way_is_replaced_behind_a_test() -> None:
    """A null parent is tested as null and replaced with the smallest structure."""
    live = {"spec": {"resources": None}}
    planned = _plan([diff.ProtectedField("spec.resources.limits.cpu", "1")], live)
    assert planned.patch == (
        {"op": "test", "path": "/spec/resources", "value": None},
        {"op": "replace", "path": "/spec/resources", "value": {"limits": {"cpu": "1"}}},
    )


def test_missing_port_item_is_created_with_an_integer_key() -> None:
    """A port created by a [containerPort=N] selector carries N as an integer."""
    live = {"kind": "Pod", "spec": {"containers": [{"name": "c", "ports": []}]}}
    field = diff.ProtectedField("podSpec.containers[name=c].ports[containerPort=8080].name", "h")
    planned = _plan([field], live)
    assert planned.patch[-1] == {
        "op": "add",
        "path": "/spec/containers/0/ports/-",
        "value": {"containerPort": 8080, "name": "h"},
    }
    assert planned.apply_body["spec"]["containers"] == [
        {"name": "c", "ports": [{"containerPort": 8080, "name": "h"}]}
    ]


def test_items_sharing_a_key_are_matched_one_to_one() -> None:
    """Port 53 over TCP and UDP: the most alike live item is fixed, its twin is left alone."""
    live = {
        "kind": "Pod",
        "spec": {
            "containers": [
                {
                    "name": "dns",
                    "ports": [
                        {"containerPort": 53, "protocol": "TCP", "name": "dns-tcp"},
                        {"containerPort": 53, "protocol": "UDP", "name": "other"},
                    ],
                }
            ]
        },
    }
    stable = [
        {"containerPort": 53, "protocol": "UDP", "name": "dns"},
        {"containerPort": 53, "protocol": "TCP", "name": "dns-tcp"},
    ]
    field = diff.ProtectedField("podSpec.containers[name=dns].ports", stable)
    planned = _plan([field], live)
    ports = "/spec/containers/0/ports"
    assert planned.patch[1:] == (
        {"op": "test", "path": f"{ports}/1/containerPort", "value": 53},
        {"op": "test", "path": f"{ports}/1/name", "value": "other"},
        {"op": "replace", "path": f"{ports}/1/name", "value": "dns"},
    )
    restored = jsonpatch.apply_patch(live, list(planned.patch))
    assert diff.diff([field], restored) == ()
    assert len(restored["spec"]["containers"][0]["ports"]) == 2


def test_whole_merge_keyed_list_is_replaced_whole() -> None:
    """A captured (whole) container list with an extra live item is replaced whole."""
    live = _live()
    stable = live["spec"]["template"]["spec"]["containers"][1:]
    field = diff.ProtectedField("podSpec.containers", stable, whole=True)
    planned = _plan([field], live)
    assert [op["op"] for op in planned.patch] == ["test", "replace"]
    assert diff.diff([field], jsonpatch.apply_patch(live, list(planned.patch))) == ()


def test_whole_metadata_keeps_server_fields() -> None:
    """A captured metadata drift never removes uid, resourceVersion and the like."""
    live = _live()
    live["metadata"]["labels"] = {"extra": "x"}
    field = diff.ProtectedField("metadata", {"name": "web", "namespace": "shop"}, whole=True)
    planned = _plan([field], live)
    assert planned.patch == (
        {"op": "test", "path": "/metadata/labels", "value": {"extra": "x"}},
        {"op": "remove", "path": "/metadata/labels"},
    )


def test_absent_drift_already_gone_needs_nothing() -> None:
    """A removal planned twice (two drifts, one field) removes once."""
    live = {"spec": {"x": 1}}
    drift = diff.diff([diff.ProtectedField("spec.x", None)], live)[0]
    planned = rollback.plan([drift, drift], live)
    assert planned.patch == (
        {"op": "test", "path": "/spec/x", "value": 1},
        {"op": "remove", "path": "/spec/x"},
    )
    assert planned.apply_body["spec"] == {"x": None}


def test_absent_drift_under_missing_parent_needs_nothing() -> None:
    """A removal whose parent is already gone plans no operation."""
    drift = diff.Drift("spec.a.b", "/spec/a/b", None, 1, True, False)
    assert rollback.plan([drift], {"spec": {}}).patch == ()
    selector = diff.Drift("spec.c[name=x].b", "/spec/c/-/b", None, 1, True, False)
    planned = rollback.plan([selector], {"spec": {"c": []}})
    assert planned.patch == ()
    assert planned.apply_body["spec"] == {"c": [{"name": "x", "b": None}]}


def test_index_paths_put_the_whole_list_in_the_apply_body() -> None:
    """A list without merge identity appears whole in the SSA body."""
    live = {
        "kind": "X",
        "spec": {
            "args": ["a", "b"],
            "env": [{"name": "E"}, {"name": "E"}],
            "volumes": [{"emptyDir": {}}],
        },
    }
    fields = [
        diff.ProtectedField("spec.args[1]", "c"),
        diff.ProtectedField("spec.env[1].value", "v"),
        diff.ProtectedField("/spec/volumes/0/emptyDir", {"medium": "Memory"}),
    ]
    planned = _plan(fields, live)
    assert planned.apply_body["spec"] == {
        "args": ["a", "c"],
        "env": [{"name": "E"}, {"name": "E", "value": "v"}],
        "volumes": [{"emptyDir": {"medium": "Memory"}}],
    }


def test_pointer_paths_into_merge_keyed_lists_use_the_key_in_the_body() -> None:
    """A JSON Pointer into containers identifies the item by name in the SSA body."""
    live = _live()
    planned = _plan([diff.ProtectedField("/spec/template/spec/containers/1/image", "x:1")], live)
    assert planned.apply_body["spec"] == {
        "template": {"spec": {"containers": [{"name": "web", "image": "x:1"}]}}
    }


def test_body_merges_drifts_in_one_item() -> None:
    """Two drifts in one container give one container item in the SSA body."""
    live = _live()
    fields = [
        diff.ProtectedField("podSpec.containers[name=web].image", "nginx:1.26.0"),
        diff.ProtectedField("podSpec.containers[name=web].resources.limits.memory", "512Mi"),
        diff.ProtectedField("podSpec.containers[name=side].image", "envoy:1.31"),
        diff.ProtectedField("metadata.labels.app", "web"),
    ]
    body = _plan(fields, live).apply_body
    assert body["metadata"] == {"name": "web", "namespace": "shop", "labels": {"app": "web"}}
    assert body["spec"] == {
        "template": {
            "spec": {
                "containers": [
                    {"name": "side", "image": "envoy:1.31"},
                    {
                        "name": "web",
                        "image": "nginx:1.26.0",
                        "resources": {"limits": {"memory": "512Mi"}},
                    },
                ]
            }
        }
    }


@pytest.mark.parametrize(
    ("drift", "live", "reason"),
    [
        (
            diff.Drift("spec.a.b", "/spec/a/b", 1, None, False, False),
            {"spec": {"a": "text"}},
            "goes through a str",
        ),
        (
            diff.Drift("spec.l[3]", "/spec/l/3", 1, None, False, False),
            {"spec": {"l": [0]}},
            "the list has 1 items and no item",
        ),
        (
            diff.Drift("spec.l.x", "/spec/l/x", 1, None, False, False),
            {"spec": {"l": [0]}},
            "no item",
        ),
        (
            diff.Drift("spec.l[0].x", "/spec/l/0/x", 1, None, False, False),
            {"spec": {}},
            "can only be created by a",
        ),
        (
            diff.Drift("spec.l[name=a][0]", "/spec/l/-/0", 1, None, False, False),
            {"spec": {}},
            "can only be created by a",
        ),
    ],
)
def test_impossible_rollbacks_raise(drift: diff.Drift, live: dict[str, Any], reason: str) -> None:
    """A drift no patch can put back raises RollbackError saying why."""
    with pytest.raises(rollback.RollbackError, match=reason):
        rollback.plan([drift], live)


def test_selector_leaf_scalar_is_created_as_identity() -> None:
    """A missing selector item as the leaf is appended with its key."""
    drift = diff.Drift("spec.l[name=a]", "/spec/l/-", "ignored", None, False, False)
    planned = rollback.plan([drift], {"spec": {"l": []}})
    assert planned.patch == ({"op": "add", "path": "/spec/l/-", "value": {"name": "a"}},)


# --- the property: the patch restores every protected field and nothing else -------

_QUANTITIES = {
    "cpu": st.sampled_from(["100m", "1", 1, "0.5", 2.0, "1000m"]),
    "memory": st.sampled_from(["128Mi", "512Mi", "0.5Gi", "1Gi", 536870912]),
}
_quantity_map = st.fixed_dictionaries({}, optional=_QUANTITIES)
_resources = st.fixed_dictionaries(
    {}, optional={"limits": _quantity_map, "requests": _quantity_map}
)
_env = st.lists(st.sampled_from(["A", "B", "C"]), unique=True, max_size=3).flatmap(
    lambda names: st.permutations(
        [{"name": name, "value": value} for name, value in zip(names, "123", strict=False)]
    )
)
_container_body = st.fixed_dictionaries(
    {"image": st.sampled_from(["nginx:1.24.0", "nginx:1.25.3", "envoy:1.30"])},
    optional={
        "resources": _resources,
        "env": _env,
        "args": st.lists(st.sampled_from(["-a", "-b", "-c"]), max_size=3),
        "securityContext": st.fixed_dictionaries(
            {}, optional={"privileged": st.booleans(), "runAsUser": st.integers(0, 3)}
        ),
        "ports": st.lists(st.sampled_from([80, 443, 8080]), unique=True, max_size=2).map(
            lambda ports: [{"containerPort": port} for port in ports]
        ),
    },
)
_containers = st.lists(
    st.sampled_from(["web", "side", "log"]), unique=True, min_size=1, max_size=3
).flatmap(
    lambda names: st.tuples(*[_container_body for _ in names]).map(
        lambda bodies: [{"name": name, **body} for name, body in zip(names, bodies, strict=True)]
    )
)
_deployments = st.builds(
    lambda labels, replicas, containers, host_network: {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": labels},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": containers, **host_network}},
        },
    },
    st.dictionaries(st.sampled_from(["app", "tier", "example.com/team"]), st.sampled_from("ab")),
    st.integers(0, 4),
    _containers,
    st.sampled_from([{}, {"hostNetwork": True}, {"hostNetwork": False}]),
)
_ABSENT_CANDIDATES = [
    "spec.template.spec.hostNetwork",
    "metadata.labels.tier",
    "spec.template.spec.containers[name=web].securityContext.privileged",
    "spec.template.spec.containers[name=side].resources.limits",
    "podSpec.containers[name=log]",
    "spec.template.spec.containers[*].env",
]


@st.composite
def _scenarios(draw: st.DrawFn) -> tuple[list[diff.ProtectedField], dict[str, Any]]:
    """Protected fields a stable object satisfies, and an unrelated live object."""
    stable: dict[str, Any] = draw(_deployments)
    live: dict[str, Any] = draw(_deployments)
    leaves = list(diff.capture_fields(stable))
    chosen = draw(st.lists(st.sampled_from(leaves), max_size=8)) if leaves else []
    for container in stable["spec"]["template"]["spec"]["containers"]:
        for key in ("resources", "env", "securityContext", "ports"):
            if key in container and draw(st.booleans()):
                path = f"spec.template.spec.containers[name={container['name']}].{key}"
                chosen.append(diff.ProtectedField(path, container[key]))
    for path in _ABSENT_CANDIDATES:
        absent_in_stable = all(not match.present for match in paths.resolve(stable, path))
        if absent_in_stable and draw(st.booleans()):
            chosen.append(diff.ProtectedField(path, None))
    return chosen, live


def _protected_prefixes(fields: list[diff.ProtectedField], *objs: Any) -> set[str]:
    return {
        match.path for field in fields for obj in objs for match in paths.resolve(obj, field.path)
    }


def _under(path: str, prefixes: set[str]) -> bool:
    return any(path == p or path.startswith((f"{p}.", f"{p}[")) for p in prefixes)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(_scenarios())
def test_patch_restores_protected_fields_and_nothing_else(
    scenario: tuple[list[diff.ProtectedField], dict[str, Any]],
) -> None:
    """Applying the plan's patch to live leaves no drift and no other field changed."""
    fields, live = scenario
    before = copy.deepcopy(live)
    drifts = diff.diff(fields, live)
    planned = rollback.plan(drifts, live)
    assert live == before
    restored = jsonpatch.apply_patch(live, list(planned.patch))
    assert diff.diff(fields, restored) == ()
    prefixes = _protected_prefixes(fields, live, restored)
    for leaf in diff.capture_fields(live):
        if not _under(leaf.path, prefixes):
            assert diff.diff([leaf], restored) == (), leaf.path
    if not drifts:
        assert planned.patch == ()
    for drift in drifts:
        if drift.expected is not None:
            in_body = paths.get(planned.apply_body, drift.path)
            assert values.equal(
                drift.expected, in_body, field=diff.last_key(paths.parse(drift.path))
            )
