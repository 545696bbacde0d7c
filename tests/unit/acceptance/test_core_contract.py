"""Acceptance tests of the pure core against DESIGN.md, written black-box by QA.

Each test quotes the contract it checks. Tests marked ``xfail(strict=True)``
are confirmed bugs: they fail today and flip to XPASS (an error under
strict) once the bug is fixed, so whoever fixes it removes the marker.

Entry points are the ones docs/architecture.md lists as module seams:
``paths.parse/format/resolve``, ``values.equal/compare``, ``rules.Rule``,
``rules.evaluate``, ``rules.Match``, ``rules.matches``, ``diff.diff``,
``scoring.severity`` and ``scoring.signature``.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keepfix.core import attribution, diff, fights, paths, rollback, rules, scoring, values, windows

# --- helpers -----------------------------------------------------------------------

POD_SPEC: dict[str, Any] = {
    "containers": [
        {"name": "sidecar", "image": "envoy:1.30.1"},
        {"name": "web", "image": "nginx:1.25.3", "resources": {"limits": {"memory": "512Mi"}}},
    ]
}


def workload(kind: str, pod_spec: Mapping[str, Any] = POD_SPEC) -> dict[str, Any]:
    """An object of ``kind`` carrying ``pod_spec`` where Kubernetes puts it."""
    api_version = {
        "Pod": "v1",
        "Job": "batch/v1",
        "CronJob": "batch/v1",
    }.get(kind, "apps/v1")
    spec: dict[str, Any]
    if kind == "Pod":
        spec = copy.deepcopy(dict(pod_spec))
    elif kind == "CronJob":
        spec = {"jobTemplate": {"spec": {"template": {"spec": copy.deepcopy(dict(pod_spec))}}}}
    else:
        spec = {"template": {"spec": copy.deepcopy(dict(pod_spec))}}
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "x", "namespace": "shop"},
        "spec": spec,
    }


def deployment(**pod_spec: Any) -> dict[str, Any]:
    return workload("Deployment", pod_spec)


def violations(rule: Mapping[str, Any], obj: Mapping[str, Any]) -> list[str]:
    """The concrete paths at which ``obj`` breaks the one rule ``rule``."""
    parsed = rules.Rule.from_dict({"name": "r", **rule})
    return [v.path for v in rules.evaluate([parsed], obj)]


def field(path: str, value: Any, known_bad: tuple[Any, ...] = ()) -> diff.ProtectedField:
    return diff.ProtectedField(path, value, known_bad)


# --- paths: "dotted keys, [name=web], [0], [*], ["example.com/key"], leading / = JSON Pointer"


RESOLVE_CASES = [
    ("spec.replicas", {"spec": {"replicas": 3}}, [("/spec/replicas", 3)]),
    (
        "spec.containers[name=web].image",
        {"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "web", "image": "w:2"}]}},
        [("/spec/containers/1/image", "w:2")],
    ),
    (
        "spec.containers[0].image",
        {"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "web", "image": "w:2"}]}},
        [("/spec/containers/0/image", "a:1")],
    ),
    (
        "spec.containers[*].image",
        {"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "web", "image": "w:2"}]}},
        [("/spec/containers/0/image", "a:1"), ("/spec/containers/1/image", "w:2")],
    ),
    (
        'metadata.annotations["example.com/key"]',
        {"metadata": {"annotations": {"example.com/key": "v", "example": {"com/key": "no"}}}},
        [("/metadata/annotations/example.com~1key", "v")],
    ),
    (
        'data["checkout.newPricingEngine"]',
        {"data": {"checkout.newPricingEngine": "false"}},
        [("/data/checkout.newPricingEngine", "false")],
    ),
    (
        "/metadata/annotations/example.com~1key",
        {"metadata": {"annotations": {"example.com/key": "v"}}},
        [("/metadata/annotations/example.com~1key", "v")],
    ),
    ("/a~0b/c", {"a~b": {"c": 1}}, [("/a~0b/c", 1)]),
    (
        "/spec/containers/1/name",
        {"spec": {"containers": [{"name": "a"}, {"name": "web"}]}},
        [("/spec/containers/1/name", "web")],
    ),
    (
        "spec.ports[containerPort=8080].protocol",
        {"spec": {"ports": [{"containerPort": 80}, {"containerPort": 8080, "protocol": "UDP"}]}},
        [("/spec/ports/1/protocol", "UDP")],
    ),
]


@pytest.mark.parametrize(
    ("path", "obj", "expected"), RESOLVE_CASES, ids=[c[0] for c in RESOLVE_CASES]
)
def test_every_path_syntax_resolves_to_the_field_it_names(
    path: str, obj: dict[str, Any], expected: list[tuple[str, Any]]
) -> None:
    found = [(m.pointer, m.value) for m in paths.resolve(obj, path) if m.present]
    assert found == expected


@pytest.mark.parametrize(
    "text",
    [
        "spec.template.spec.containers[name=web].resources.limits.memory",
        'metadata.annotations["example.com/key"]',
        "spec.containers[0].ports[*].containerPort",
        "podSpec.containers[*].securityContext.privileged",
        "/metadata/annotations/example.com~1key",
        "/a~0b",
        "spec.ports[containerPort=80].protocol",
        'metadata.labels["app.kubernetes.io/name"]',
    ],
)
def test_a_canonical_path_formats_back_to_itself(text: str) -> None:
    assert paths.format(paths.parse(text)) == text


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("spec..replicas", 6),  # the empty key between the dots
        ("spec.containers[name=web", 16),  # the '[' that is never closed
        ("spec.containers[", 16),
        ("spec.containers]", 16),  # the stray ']'
        (".spec", 1),
        ("spec.", 6),
        ("spec[*x]", 7),
        ("spec.a b", 7),  # the space
        ("/a~2b", 3),  # '~' not followed by 0 or 1
        ("", 1),
    ],
)
def test_a_bad_path_raises_an_error_pointing_at_the_column(text: str, column: int) -> None:
    with pytest.raises(paths.PathError) as caught:
        paths.parse(text)
    assert caught.value.column == column
    assert f"column {column}" in str(caught.value)
    assert isinstance(caught.value, ValueError)


POD_SPEC_PREFIX = {
    "Pod": "/spec",
    "Deployment": "/spec/template/spec",
    "StatefulSet": "/spec/template/spec",
    "DaemonSet": "/spec/template/spec",
    "ReplicaSet": "/spec/template/spec",
    "Job": "/spec/template/spec",
    "CronJob": "/spec/jobTemplate/spec/template/spec",
}


@pytest.mark.parametrize("kind", sorted(POD_SPEC_PREFIX))
def test_podspec_means_the_pod_spec_of_every_workload_kind(kind: str) -> None:
    found = paths.resolve(workload(kind), "podSpec.containers[name=web].image")
    assert [(m.pointer, m.value) for m in found] == [
        (POD_SPEC_PREFIX[kind] + "/containers/1/image", "nginx:1.25.3")
    ]


@pytest.mark.parametrize("kind", sorted(POD_SPEC_PREFIX))
def test_one_podspec_guardrail_rule_covers_every_workload_kind(kind: str) -> None:
    rule = {"path": "podSpec.containers[*].image", "notMatches": "^nginx:"}
    prefix = POD_SPEC_PREFIX[kind].lstrip("/").replace("/", ".")
    assert violations(rule, workload(kind)) == [prefix + ".containers[name=web].image"]


def test_podspec_on_a_kind_without_a_pod_spec_checks_nothing() -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"spec": "x"}}
    assert paths.resolve(config_map, "podSpec.containers[*].image") == ()
    assert violations({"path": "podSpec.hostNetwork", "present": True}, config_map) == []


# --- values: "Equality is semantic" -----------------------------------------------

EQUAL = [
    ("512Mi", "0.5Gi"),
    ("1", "1000m"),
    (1, "1000m"),
    ("1e3", "1k"),
    ("1E3", "1k"),
    ("0.5", "500m"),
    (0.5, "500m"),
    ("100m", 0.1),
    ("1Gi", "1073741824"),
    ("1Gi", 1073741824),
    ("1G", "1000M"),
    ("1Ki", "1024"),
    (3, 3.0),  # "an integer and the same integer are equal whatever the YAML spelling"
    (3, "3"),
    (True, True),
    ("web", "web"),
    (None, None),
]
NOT_EQUAL = [
    ("1Mi", "1M"),
    ("512Mi", "512M"),
    ("129M", "123Mi"),
    (True, 1),  # a boolean is not a number
    (True, "true"),
    (False, 0),
    ("nginx:1.25", "nginx:1.25.0"),
    (None, 0),
    (None, ""),
]


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_semantically_equal_values_are_equal_both_ways(a: Any, b: Any) -> None:
    assert values.equal(a, b)
    assert values.equal(b, a)


@pytest.mark.parametrize(("a", "b"), NOT_EQUAL)
def test_different_values_are_not_equal(a: Any, b: Any) -> None:
    assert not values.equal(a, b)
    assert not values.equal(b, a)


@pytest.mark.parametrize(("a", "b"), [("1", "1.0"), ("0.5", "0.50"), ("2", "2.0")])
def test_plain_decimal_spellings_of_one_cpu_quantity_are_equal(a: str, b: str) -> None:
    # DESIGN.md: "Equality is semantic: `512Mi == 0.5Gi`, `1 == 1000m` for quantities".
    # resources.limits.cpu is a quantity wherever it appears; charts quote it ("1.0").
    live = deployment(containers=[{"name": "web", "resources": {"limits": {"cpu": b}}}])
    cpu = "spec.template.spec.containers[name=web].resources.limits.cpu"
    assert diff.diff([field(cpu, a)], live) == ()


SPELLINGS: list[Any] = [1, 1.0, "1", "1.0", "1000m", "1e0", "+1", 0.5, "0.5", "500m", "0.50"]


def test_scalar_equality_is_symmetric() -> None:
    for a in SPELLINGS:
        for b in SPELLINGS:
            assert values.equal(a, b) == values.equal(b, a), (a, b)


def test_scalar_equality_is_transitive() -> None:
    # Issue 3: "semantic equality is an equivalence relation".
    broken = [
        (a, b, c)
        for a in SPELLINGS
        for b in SPELLINGS
        for c in SPELLINGS
        if values.equal(a, b) and values.equal(b, c) and not values.equal(a, c)
    ]
    assert broken == []


def test_a_declared_mapping_is_a_subset_extra_live_keys_are_ignored() -> None:
    declared = {"limits": {"memory": "512Mi"}}
    live = {"limits": {"memory": "0.5Gi", "cpu": "1"}, "requests": {"cpu": "100m"}}
    assert values.equal(declared, live)
    assert not values.equal({"limits": {"memory": "512Mi", "cpu": "2"}}, live)


@pytest.mark.parametrize(
    ("key", "declared", "live"),
    [
        (
            "containers",
            [{"name": "web", "image": "w:1"}],
            [{"name": "sidecar", "image": "s:1"}, {"name": "web", "image": "w:1", "args": ["x"]}],
        ),
        ("initContainers", [{"name": "b"}, {"name": "a"}], [{"name": "a"}, {"name": "b"}]),
        (
            "env",
            [{"name": "A", "value": "1"}],
            [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}],
        ),
        ("volumes", [{"name": "data", "emptyDir": {}}], [{"name": "tmp"}, {"name": "data"}]),
        (
            "volumeMounts",
            [{"name": "data", "mountPath": "/d"}],
            [{"name": "tmp", "mountPath": "/t"}, {"name": "data", "mountPath": "/d"}],
        ),
        (
            "ports",
            [{"containerPort": 8080, "protocol": "TCP"}],
            [{"containerPort": 80}, {"containerPort": 8080, "protocol": "TCP", "name": "http"}],
        ),
    ],
)
def test_merge_keyed_lists_match_item_by_key_whatever_the_order(
    key: str, declared: list[Any], live: list[Any]
) -> None:
    assert values.equal(declared, live, field=key)


def test_a_merge_keyed_item_that_differs_does_not_match() -> None:
    declared = [{"name": "A", "value": "1"}]
    assert not values.equal(declared, [{"name": "A", "value": "2"}], field="env")
    assert not values.equal(declared, [{"name": "B", "value": "1"}], field="env")


@pytest.mark.parametrize("key", ["args", "command", "tolerations", "finalizers"])
def test_any_other_list_matches_whole_and_in_order(key: str) -> None:
    assert values.equal(["a", "b"], ["a", "b"], field=key)
    assert not values.equal(["a", "b"], ["b", "a"], field=key)
    assert not values.equal(["a"], ["a", "b"], field=key)


def test_a_captured_value_compares_whole_minus_server_managed_fields() -> None:
    captured = diff.ProtectedField(
        "metadata", {"name": "web", "labels": {"app": "web"}}, whole=True
    )
    served: dict[str, Any] = {
        "metadata": {
            "name": "web",
            "labels": {"app": "web"},
            "resourceVersion": "4711",
            "generation": 7,
            "managedFields": [{"manager": "kubectl", "operation": "Update"}],
        },
        "status": {"replicas": 3},
    }
    assert diff.diff([captured], served) == ()
    served["metadata"]["labels"]["extra"] = "x"  # whole: an extra key is a drift
    assert [d.path for d in diff.diff([captured], served)] == ["metadata"]


def test_no_phantom_drift_from_key_order_spelling_or_defaults() -> None:
    fields = [
        field("spec.replicas", 3),
        field("spec.template.spec.containers[name=web].resources.limits.memory", "512Mi"),
        field("spec.template.spec.containers[name=web].env", [{"name": "A", "value": "1"}]),
    ]
    live = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "sidecar"},
                        {
                            "resources": {"limits": {"cpu": "1", "memory": "0.5Gi"}},
                            "env": [{"name": "Z", "value": "9"}, {"value": "1", "name": "A"}],
                            "name": "web",
                            "terminationMessagePath": "/dev/termination-log",
                        },
                    ]
                }
            },
            "replicas": 3.0,
            "revisionHistoryLimit": 10,
        }
    }
    assert diff.diff(fields, live) == ()


# --- ordering: atLeast / atMost ------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right", "order"),
    [
        (3, 2, 1),
        ("512Mi", "0.5Gi", 0),
        ("256Mi", "0.5Gi", -1),
        ("1500m", 1, 1),
        ("nginx:1.24.0", "1.25.3", -1),
        ("nginx:1.26", "1.25.3", 1),
        ("nginx:1.25.3", "1.25.3", 0),
        ("registry.example.com:5000/team/nginx:1.26", "1.25.3", 1),
        ("nginx:1.25.3-alpine", "1.25.3", 0),
    ],
)
def test_compare_orders_numbers_quantities_and_image_tags(
    left: Any, right: Any, order: int
) -> None:
    assert values.compare(left, right) == order


@pytest.mark.parametrize(
    "image",
    ["nginx@sha256:" + "a" * 64, "nginx:latest", "nginx", "registry:5000/nginx", "nginx:stable"],
)
def test_digests_latest_and_untagged_images_have_no_order(image: str) -> None:
    # "digests and latest handled explicitly, not by accident"
    with pytest.raises(values.NotComparable):
        values.compare(image, "1.25.3")


# --- Guardrail rules ------------------------------------------------------------------

PRIV = "podSpec.containers[*].securityContext.privileged"


@pytest.mark.parametrize(
    ("rule", "pod_spec", "expected"),
    [
        # "A `[*]` path must hold for every element; over a missing or empty list it holds"
        ({"path": "podSpec.initContainers[*].image", "atLeast": "1.36.1"}, {}, []),
        ({"path": "podSpec.initContainers[*].image", "present": True}, {"initContainers": []}, []),
        ({"path": PRIV, "equals": False}, {"containers": []}, []),
        # "Inside an element that exists ... an absent field satisfies notIn, notMatches,
        #  present: false; it breaks the others unless the rule is optional"
        ({"path": PRIV, "notIn": [True]}, {"containers": [{"name": "a"}]}, []),
        (
            {"path": "podSpec.containers[*].image", "notMatches": ":latest$"},
            {"containers": [{"name": "a"}]},
            [],
        ),
        ({"path": PRIV, "present": False}, {"containers": [{"name": "a"}]}, []),
        ({"path": PRIV, "equals": False}, {"containers": [{"name": "a"}]}, ["a"]),
        (
            {"path": "podSpec.containers[*].image", "matches": "^ghcr"},
            {"containers": [{"name": "a"}]},
            ["a"],
        ),
        ({"path": PRIV, "present": True}, {"containers": [{"name": "a"}]}, ["a"]),
        (
            {"path": "podSpec.containers[*].resources.limits.memory", "atLeast": "256Mi"},
            {"containers": [{"name": "a"}]},
            ["a"],
        ),
        (
            {"path": "podSpec.containers[*].resources.limits.memory", "atMost": "1Gi"},
            {"containers": [{"name": "a"}]},
            ["a"],
        ),
        ({"path": PRIV, "equals": False, "optional": True}, {"containers": [{"name": "a"}]}, []),
        (
            {
                "path": "podSpec.containers[*].resources.limits.memory",
                "atLeast": "256Mi",
                "optional": True,
            },
            {
                "containers": [
                    {"name": "a"},
                    {"name": "b", "resources": {"limits": {"memory": "128Mi"}}},
                ]
            },
            ["b"],  # optional forgives absence, not a value below the floor
        ),
        # every element is checked; only the breaking one is reported
        (
            {"path": PRIV, "notIn": [True]},
            {"containers": [{"name": "a"}, {"name": "b", "securityContext": {"privileged": True}}]},
            ["b"],
        ),
        # "Regular expressions are searched, not fully matched"
        (
            {"path": "podSpec.containers[*].image", "notMatches": ":latest$"},
            {
                "containers": [
                    {"name": "a", "image": "nginx:latest"},
                    {"name": "b", "image": "nginx:latest-rc"},
                ]
            },
            ["a"],
        ),
        (
            {"path": "podSpec.containers[*].image", "matches": "example"},
            {"containers": [{"name": "a", "image": "ghcr.io/example/app:1"}]},
            [],
        ),
        (
            {"path": "podSpec.containers[*].image", "matches": "^example$"},
            {"containers": [{"name": "a", "image": "ghcr.io/example/app:1"}]},
            ["a"],
        ),
        # atLeast / atMost: numbers, quantities, versions on images
        (
            {"path": "podSpec.containers[*].resources.limits.memory", "atLeast": "256Mi"},
            {
                "containers": [
                    {"name": "a", "resources": {"limits": {"memory": "0.25Gi"}}},
                    {"name": "b", "resources": {"limits": {"memory": "255Mi"}}},
                    {"name": "c", "resources": {"limits": {"memory": "268435456"}}},
                ]
            },
            ["b"],
        ),
        (
            {"path": "podSpec.containers[*].resources.limits.cpu", "atMost": "1"},
            {
                "containers": [
                    {"name": "a", "resources": {"limits": {"cpu": "1000m"}}},
                    {"name": "b", "resources": {"limits": {"cpu": "1500m"}}},
                    {"name": "c", "resources": {"limits": {"cpu": 0.5}}},
                ]
            },
            ["b"],
        ),
        (
            {"path": "podSpec.containers[*].image", "atLeast": "1.25.3"},
            {
                "containers": [
                    {"name": "old", "image": "nginx:1.24.0"},
                    {"name": "new", "image": "nginx:1.26"},
                    {"name": "same", "image": "nginx:1.25.3"},
                    {"name": "ten", "image": "nginx:1.100.0"},
                    {"name": "digest", "image": "nginx@sha256:" + "a" * 64},
                    {"name": "latest", "image": "nginx:latest"},
                    {"name": "untagged", "image": "nginx"},
                ]
            },
            ["old", "digest", "latest", "untagged"],
        ),
        (
            {"path": "podSpec.containers[*].image", "atMost": "1.25.3"},
            {
                "containers": [
                    {"name": "old", "image": "nginx:1.24.0"},
                    {"name": "new", "image": "nginx:1.26"},
                ]
            },
            ["new"],
        ),
        # equals / notIn compare semantically
        (
            {"path": "podSpec.containers[*].resources.limits.memory", "notIn": ["128Mi"]},
            {"containers": [{"name": "a", "resources": {"limits": {"memory": "0.125Gi"}}}]},
            ["a"],
        ),
        (
            {"path": "podSpec.containers[*].resources", "equals": {"limits": {"memory": "512Mi"}}},
            {
                "containers": [
                    {"name": "a", "resources": {"limits": {"memory": "0.5Gi", "cpu": "1"}}}
                ]
            },
            [],
        ),
    ],
)
def test_guardrail_rule_semantics(
    rule: dict[str, Any], pod_spec: dict[str, Any], expected: list[str]
) -> None:
    found = violations(rule, deployment(**pod_spec))
    names = [p.split("containers[name=")[1].split("]")[0] for p in found]
    assert names == expected


@pytest.mark.parametrize(
    ("rule", "spec", "broken"),
    [
        ({"path": "spec.replicas", "atLeast": 2}, {"replicas": 1}, True),
        ({"path": "spec.replicas", "atLeast": 2}, {"replicas": 2}, False),
        ({"path": "spec.replicas", "atLeast": 2}, {}, True),  # plain path, absent: breaks
        ({"path": "spec.replicas", "atLeast": 2, "optional": True}, {}, False),
        ({"path": "spec.replicas", "atMost": "5"}, {"replicas": 6}, True),
        ({"path": "spec.paused", "notIn": [True]}, {}, False),
        ({"path": "spec.paused", "present": False}, {}, False),
        ({"path": "spec.paused", "present": False}, {"paused": False}, True),
        ({"path": "spec.paused", "equals": False}, {}, True),
        ({"path": "spec.strategy.type", "notMatches": "^Recreate$"}, {}, False),
        ({"path": "spec.strategy.type", "matches": "Rolling"}, {}, True),
    ],
)
def test_plain_path_absent_field_semantics(
    rule: dict[str, Any], spec: dict[str, Any], broken: bool
) -> None:
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": spec}
    assert bool(violations(rule, obj)) is broken


def test_a_selector_that_matches_no_container_counts_as_absent() -> None:
    obj = deployment(containers=[{"name": "other", "image": "x:1"}])
    assert violations({"path": "podSpec.containers[name=web].image", "notIn": ["x:1"]}, obj) == []
    assert violations({"path": "podSpec.containers[name=web].image", "present": True}, obj) == [
        "spec.template.spec.containers[name=web].image"
    ]


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "r", "path": "spec.replicas", "atLeast": 2, "atMost": 5},  # two constraints
        {"name": "r", "path": "spec.replicas"},  # none
        {"name": "r", "path": "spec..replicas", "atLeast": 2},  # bad path
        {"name": "r", "path": "spec.x", "matches": "(unclosed"},  # bad regex
        {"name": "r", "path": "spec.x", "atLeast": "nginx:latest"},  # a bound with no order
        {"name": "r", "path": "spec.x", "notIn": "true"},  # notIn needs a list
    ],
)
def test_a_rule_that_breaks_the_contract_is_refused(spec: dict[str, Any]) -> None:
    with pytest.raises(rules.RuleError, match=r"rule 'r'"):
        rules.Rule.from_dict(spec)


def test_atleast_compares_the_tag_of_an_image_pinned_by_tag_and_digest() -> None:
    # DESIGN.md: `atLeast: "1.25.3"` on a container image compares the image tag, so
    # `nginx:1.24.0` breaks it and `nginx:1.26` keeps it. `nginx:1.26@sha256:...` has the
    # tag 1.26 (the form Renovate and `crane digest` pin to); only a bare digest has none.
    obj = deployment(containers=[{"name": "a", "image": "nginx:1.26@sha256:" + "a" * 64}])
    assert violations({"path": "podSpec.containers[*].image", "atLeast": "1.25.3"}, obj) == []


# --- matching: apiGroups/kinds, namespaces, excludeNamespaces, selector -------------------

OBJ = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "shop", "labels": {"tier": "backend", "env": "prod"}},
}
DEPLOYMENTS = [{"apiGroups": ["apps"], "kinds": ["Deployment"]}]


@pytest.mark.parametrize(
    ("match", "selected"),
    [
        ({"resources": DEPLOYMENTS}, True),
        ({"resources": [{"apiGroups": [""], "kinds": ["Deployment"]}]}, False),  # core group
        ({"resources": [{"apiGroups": ["apps"], "kinds": ["StatefulSet"]}]}, False),
        ({"resources": [{"apiGroups": ["*"], "kinds": ["*"]}]}, True),
        ({"resources": DEPLOYMENTS, "namespaces": []}, True),  # empty = all
        ({"resources": DEPLOYMENTS, "namespaces": ["shop", "cart"]}, True),
        ({"resources": DEPLOYMENTS, "namespaces": ["cart"]}, False),
        ({"resources": DEPLOYMENTS, "excludeNamespaces": ["shop"]}, False),
        ({"resources": DEPLOYMENTS, "excludeNamespaces": ["kube-system"]}, True),
        ({"resources": DEPLOYMENTS, "selector": {}}, True),
        ({"resources": DEPLOYMENTS, "selector": {"matchLabels": {"tier": "backend"}}}, True),
        ({"resources": DEPLOYMENTS, "selector": {"matchLabels": {"tier": "frontend"}}}, False),
        (
            {
                "resources": DEPLOYMENTS,
                "selector": {"matchLabels": {"tier": "backend", "env": "dev"}},
            },
            False,
        ),
        (
            {
                "resources": DEPLOYMENTS,
                "selector": {
                    "matchExpressions": [
                        {"key": "env", "operator": "In", "values": ["prod", "stg"]}
                    ]
                },
            },
            True,
        ),
        (
            {
                "resources": DEPLOYMENTS,
                "selector": {
                    "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]
                },
            },
            False,
        ),
        (
            {
                "resources": DEPLOYMENTS,
                "selector": {
                    "matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["x"]}]
                },
            },
            True,  # NotIn holds when the label is absent (Kubernetes semantics)
        ),
        (
            {
                "resources": DEPLOYMENTS,
                "selector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]},
            },
            False,
        ),
        (
            {
                "resources": DEPLOYMENTS,
                "selector": {"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]},
            },
            True,
        ),
        (
            {
                "resources": DEPLOYMENTS,
                "selector": {
                    "matchLabels": {"tier": "backend"},
                    "matchExpressions": [{"key": "env", "operator": "In", "values": ["dev"]}],
                },
            },
            False,  # matchLabels and matchExpressions are ANDed
        ),
    ],
)
def test_guardrail_match(match: dict[str, Any], selected: bool) -> None:
    assert rules.matches(rules.Match.from_dict(match), OBJ) is selected


def test_excluded_namespace_excludes_a_pod_there() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "kube-system"}}
    match = rules.Match.from_dict(
        {"resources": [{"apiGroups": [""], "kinds": ["Pod"]}], "excludeNamespaces": ["kube-system"]}
    )
    assert not rules.matches(match, pod)


# --- severity ---------------------------------------------------------------------------

MEMORY = "spec.template.spec.containers[name=web].resources.limits.memory"


def drifts_of(live_replicas: int, live_memory: str) -> tuple[diff.Drift, ...]:
    fields = [field("spec.replicas", 3, (1,)), field(MEMORY, "512Mi", ("128Mi",))]
    live = deployment(
        containers=[{"name": "web", "resources": {"limits": {"memory": live_memory}}}]
    )
    live["spec"]["replicas"] = live_replicas
    return diff.diff(fields, live)


@pytest.mark.parametrize(
    ("replicas", "memory", "in_window", "repeat", "expected"),
    [
        # Critical: every drifted field back at a knownBad value
        (1, "128Mi", True, False, scoring.Severity.CRITICAL),
        (1, "0.125Gi", True, False, scoring.Severity.CRITICAL),  # knownBad is semantic
        (3, "128Mi", True, False, scoring.Severity.CRITICAL),  # only drifted fields count
        # High: some (not all) drifted fields at knownBad values
        (1, "256Mi", True, False, scoring.Severity.HIGH),
        # Medium: drifted, none known-bad
        (2, "256Mi", True, False, scoring.Severity.MEDIUM),
        # Low: after the window, whatever the values
        (1, "128Mi", False, False, scoring.Severity.LOW),
        (2, "256Mi", False, False, scoring.Severity.LOW),
        # repeat offender: one level up, never above Critical
        (2, "256Mi", False, True, scoring.Severity.MEDIUM),
        (2, "256Mi", True, True, scoring.Severity.HIGH),
        (1, "256Mi", True, True, scoring.Severity.CRITICAL),
        (1, "128Mi", True, True, scoring.Severity.CRITICAL),
    ],
)
def test_severity_as_design_defines_it(
    replicas: int, memory: str, in_window: bool, repeat: bool, expected: scoring.Severity
) -> None:
    found = drifts_of(replicas, memory)
    assert found, "the case must drift"
    assert scoring.severity(found, in_window=in_window, repeat=repeat) is expected


def test_severity_labels_are_the_api_names() -> None:
    assert [s.label for s in scoring.Severity] == ["Low", "Medium", "High", "Critical"]
    assert scoring.Severity.CRITICAL > scoring.Severity.HIGH > scoring.Severity.MEDIUM


# --- signature ---------------------------------------------------------------------------

MEMORY_SPELLINGS = ["128Mi", "0.125Gi", "134217728", "131072Ki"]
CPU_SPELLINGS: list[Any] = ["1", "1000m", 1, 1.0]


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), memory=st.sampled_from(MEMORY_SPELLINGS))
def test_signature_is_invariant_under_key_order_and_quantity_spelling(
    seed: int, memory: str
) -> None:
    fields = [
        field("spec.replicas", 3),
        field(MEMORY, "512Mi", ("128Mi",)),
        field(
            "spec.template.spec.containers[name=web].resources",
            {"limits": {"memory": "512Mi", "cpu": "2"}},
        ),
    ]

    def live(mem: str, cpu: Any) -> dict[str, Any]:
        obj = deployment(
            containers=[
                {"name": "side", "image": "s:1"},
                {"name": "web", "resources": {"limits": {"memory": mem, "cpu": cpu}}},
            ]
        )
        obj["spec"]["replicas"] = 1
        return obj

    rng = random.Random(seed)
    base = scoring.signature("apps/Deployment", diff.diff(fields, live("128Mi", "1")))
    variant = _shuffled(live(memory, rng.choice(CPU_SPELLINGS)), rng)
    if rng.random() < 0.5:  # container order does not matter either
        containers = variant["spec"]["template"]["spec"]["containers"]
        containers.reverse()
    assert scoring.signature("apps/Deployment", diff.diff(fields, variant)) == base
    assert base.startswith("sha256:")
    assert len(base) == len("sha256:") + 64


def test_signature_changes_when_the_drifted_value_changes() -> None:
    one = scoring.signature("apps/Deployment", drifts_of(1, "128Mi"))
    two = scoring.signature("apps/Deployment", drifts_of(1, "256Mi"))
    other_kind = scoring.signature("apps/StatefulSet", drifts_of(1, "128Mi"))
    assert len({one, two, other_kind}) == 3


# --- rollback: "only the drifted fields are put back ... a JSON patch with `test` ops" ----


def _rollback_live() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "annotations": {"example.com/key": "bad", "other": "keep"},
        },
        "spec": {
            "replicas": 1,
            "paused": True,
            "template": {
                "spec": {
                    "hostNetwork": True,
                    "containers": [
                        {"name": "side", "image": "s:1"},
                        {
                            "name": "web",
                            "image": "w:1",
                            "args": ["--b", "--a"],
                            "env": [{"name": "Z", "value": "9"}, {"name": "A", "value": "2"}],
                            "resources": {"limits": {"memory": "128Mi", "cpu": "1"}},
                        },
                    ],
                }
            },
        },
    }


ROLLBACK_FIELDS = [
    field("spec.replicas", 3),
    field(MEMORY, "512Mi"),
    field("spec.template.spec.hostNetwork", None),  # the fix needs it absent
    field("spec.template.spec.containers[name=web].env", [{"name": "A", "value": "1"}]),
    field("spec.template.spec.containers[name=web].args", ["--a", "--b"]),
    field('metadata.annotations["example.com/key"]', "good"),
    field("spec.template.spec.containers[name=new].image", "n:1"),  # a missing container
    field("spec.strategy.type", "Recreate"),  # a missing mapping
]


def test_the_rollback_patch_restores_the_drifted_fields_and_nothing_else() -> None:
    jsonpatch = pytest.importorskip("jsonpatch")
    live = _rollback_live()
    drifts = diff.diff(ROLLBACK_FIELDS, live)
    assert len(drifts) == len(ROLLBACK_FIELDS)
    planned = rollback.plan(drifts, live)
    restored = jsonpatch.apply_patch(live, list(planned.patch))
    assert diff.diff(ROLLBACK_FIELDS, restored) == ()
    assert restored["spec"]["paused"] is True  # not protected: untouched
    assert restored["metadata"]["annotations"]["other"] == "keep"
    containers = restored["spec"]["template"]["spec"]["containers"]
    assert containers[0] == {"name": "side", "image": "s:1"}
    assert containers[1]["image"] == "w:1"
    assert containers[1]["resources"]["limits"]["cpu"] == "1"
    assert {"name": "Z", "value": "9"} in containers[1]["env"]
    ops = {(op["op"], op["path"]) for op in planned.patch}
    assert ("remove", "/spec/template/spec/hostNetwork") in ops
    assert ("test", "/spec/replicas") in ops
    assert live == _rollback_live(), "planning never mutates the live object"


def test_the_rollback_patch_fails_instead_of_overwriting_a_newer_write() -> None:
    jsonpatch = pytest.importorskip("jsonpatch")
    live = _rollback_live()
    planned = rollback.plan(diff.diff([field(MEMORY, "512Mi")], live), live)
    newer = _rollback_live()
    newer["spec"]["template"]["spec"]["containers"][1]["resources"]["limits"]["memory"] = "1Gi"
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(newer, list(planned.patch))
    reordered = _rollback_live()
    reordered["spec"]["template"]["spec"]["containers"].reverse()
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(reordered, list(planned.patch))


def test_the_apply_body_holds_only_the_protected_fields() -> None:
    live = _rollback_live()
    planned = rollback.plan(
        diff.diff([field("spec.replicas", 3), field(MEMORY, "512Mi")], live), live
    )
    body = planned.apply_body
    assert body["apiVersion"] == "apps/v1"
    assert body["kind"] == "Deployment"
    assert body["metadata"] == {"name": "web", "namespace": "shop"}
    assert body["spec"] == {
        "replicas": 3,
        "template": {
            "spec": {"containers": [{"name": "web", "resources": {"limits": {"memory": "512Mi"}}}]}
        },
    }


# --- fights, windows, attribution ----------------------------------------------------------


def test_fights_are_five_drifts_of_one_object_within_a_minute() -> None:
    window = fights.FightWindow()
    for now in (0.0, 10.0, 20.0, 30.0):
        window = fights.record(window, now)
        assert not fights.is_fighting(window)
    assert fights.is_fighting(fights.record(window, 40.0))
    spread = fights.FightWindow()
    for now in (0.0, 15.0, 30.0, 45.0, 61.0):  # the first one has left the minute
        spread = fights.record(spread, now)
    assert not fights.is_fighting(spread)


def test_fight_backoff_is_2s_times_3_capped_at_300s() -> None:
    assert [fights.backoff(n) for n in range(8)] == [2, 6, 18, 54, 162, 300, 300, 300]


@pytest.mark.parametrize(
    ("text", "hours"), [("30d", 720), ("36h", 36), ("90m", 1.5), ("0d", 0), ("365d", 8760)]
)
def test_watch_window_durations(text: str, hours: float) -> None:
    assert windows.parse_duration(text) == timedelta(hours=hours)


@pytest.mark.parametrize("text", ["30s", "1w", "30", "d", "-1d", "1.5d", " 30d", "30D", ""])
def test_a_bad_watch_window_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="30d"):
        windows.parse_duration(text)


def test_inside_the_window_means_start_up_to_but_not_including_the_end() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert windows.within(start, "30d", start)
    assert windows.within(start, "30d", start + timedelta(days=30) - timedelta(seconds=1))
    assert not windows.within(start, "30d", start + timedelta(days=30))
    assert not windows.within(start, "30d", start - timedelta(seconds=1))
    with pytest.raises(ValueError, match="time zone"):
        windows.within(datetime(2026, 1, 1), "30d", start)  # naive: refused


def test_attribution_names_the_newest_manager_of_a_drifted_field() -> None:
    pointer = "/spec/template/spec/containers/0/resources/limits/memory"
    live = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "web", "resources": {"limits": {"memory": "1"}}}]}
            }
        }
    }
    memory: dict[str, Any] = {"f:resources": {"f:limits": {"f:memory": {}}}}
    container = {
        "f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"web"}': memory}}}}
    }
    managed = [
        {
            "manager": "helm",
            "operation": "Update",
            "time": "2026-01-01T00:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": container,
        },
        {
            "manager": "kubectl-edit",
            "operation": "Update",
            "time": "2026-03-01T00:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": container,
        },
        {
            "manager": "argocd",
            "operation": "Apply",
            "time": "2026-04-01T00:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:replicas": {}}},
        },
    ]
    found = attribution.attribute(managed, [pointer], live=live)
    assert [(c.manager, c.operation, c.time) for c in found] == [
        ("kubectl-edit", "Update", "2026-03-01T00:00:00Z"),
        ("helm", "Update", "2026-01-01T00:00:00Z"),
    ]
