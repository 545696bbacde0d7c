"""Guardrail rules: constraints, [*] and absent-field semantics, and Guardrail matching."""

from __future__ import annotations

import copy
import os
import pathlib
import types
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from keepfix.core import rules
from keepfix.core.rules import Match, Rule

DATA = pathlib.Path(__file__).parent.parent / "data" / "rules"
CORPUS = pathlib.Path(os.environ.get("KEEPFIX_CORPUS", "/work/shared/corpus/manifests"))
MISSING = object()

# constraint, a value that holds, a value that breaks (MISSING: none), absent holds?
CASES: list[tuple[dict[str, Any], Any, Any, bool]] = [
    ({"equals": "512Mi"}, "0.5Gi", "256Mi", False),
    ({"notIn": [True]}, False, True, True),
    ({"matches": "^registry.example.com/"}, "registry.example.com/web:1", "docker.io/web:1", False),
    ({"notMatches": ":latest$"}, "web:1.2", "web:latest", True),
    ({"atLeast": "256Mi"}, "0.5Gi", "128Mi", False),
    ({"atMost": 4}, "2", "5000m", False),
    ({"present": True}, "anything", MISSING, False),
    ({"present": False}, MISSING, "anything", True),
]
IDS = [next(iter(c)) + "=" + str(next(iter(c.values()))) for c, *_ in CASES]
GOOD = [
    pytest.param(c, g, id=i) for (c, g, _, _), i in zip(CASES, IDS, strict=True) if g is not MISSING
]
BAD = [
    pytest.param(c, b, id=i) for (c, _, b, _), i in zip(CASES, IDS, strict=True) if b is not MISSING
]


def rule(constraint: dict[str, Any], path: str = "spec.field", **extra: Any) -> Rule:
    return Rule.from_dict({"name": "r", "path": path, **constraint, **extra})


def thing(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Thing",
        "metadata": {"name": "t"},
        "spec": spec,
    }


def paths_of(violations: tuple[rules.Violation, ...]) -> list[str]:
    return [v.path for v in violations]


# --- the constraint x situation matrix --------------------------------------------


@pytest.mark.parametrize(("constraint", "good"), GOOD)
def test_present_value_that_holds(constraint: dict[str, Any], good: Any) -> None:
    """A present value that meets the constraint gives no violation."""
    assert rules.evaluate([rule(constraint)], thing({"field": good})) == ()


@pytest.mark.parametrize(("constraint", "bad"), BAD)
def test_present_value_that_breaks(constraint: dict[str, Any], bad: Any) -> None:
    """A present value that breaks the constraint is one violation carrying the value."""
    (v,) = rules.evaluate([rule(constraint)], thing({"field": bad}))
    assert (v.rule, v.path, v.pointer, v.actual, v.present) == (
        "r",
        "spec.field",
        "/spec/field",
        bad,
        True,
    )
    assert v.expected == constraint
    assert v.message.startswith("spec.field is ")


@pytest.mark.parametrize(("constraint", "good", "bad", "absent_ok"), CASES, ids=IDS)
@pytest.mark.parametrize("spec", [{}, {"field": None}], ids=["absent", "null"])
def test_absent_field_on_a_plain_path(
    constraint: dict[str, Any], good: Any, bad: Any, absent_ok: bool, spec: dict[str, Any]
) -> None:
    """An absent (or null) field satisfies notIn, notMatches and present:false, breaks the rest."""
    found = rules.evaluate([rule(constraint)], thing(spec))
    assert paths_of(found) == ([] if absent_ok else ["spec.field"])
    for v in found:
        assert (v.actual, v.present) == (None, False)
        assert v.message.startswith("spec.field is absent, ")


@pytest.mark.parametrize(("constraint", "good", "bad", "absent_ok"), CASES, ids=IDS)
def test_absent_field_with_optional_rule(
    constraint: dict[str, Any], good: Any, bad: Any, absent_ok: bool
) -> None:
    """An optional rule holds on an absent field, whatever the constraint."""
    assert rules.evaluate([rule(constraint, optional=True)], thing({})) == ()


@pytest.mark.parametrize(("constraint", "bad"), BAD)
def test_optional_does_not_excuse_a_present_bad_value(constraint: dict[str, Any], bad: Any) -> None:
    """optional only concerns absence."""
    assert len(rules.evaluate([rule(constraint, optional=True)], thing({"field": bad}))) == 1


@pytest.mark.parametrize(("constraint", "good", "bad", "absent_ok"), CASES, ids=IDS)
@pytest.mark.parametrize(
    "spec", [{}, {"items": []}, {"items": None}], ids=["missing", "empty", "null"]
)
def test_every_item_over_no_list_holds(
    constraint: dict[str, Any], good: Any, bad: Any, absent_ok: bool, spec: dict[str, Any]
) -> None:
    """[*] over a missing or empty list holds: there is nothing to break it."""
    assert rules.evaluate([rule(constraint, path="spec.items[*].field")], thing(spec)) == ()


@pytest.mark.parametrize(("constraint", "good", "bad", "absent_ok"), CASES, ids=IDS)
def test_every_item_over_a_mixed_list(
    constraint: dict[str, Any], good: Any, bad: Any, absent_ok: bool
) -> None:
    """[*] must hold for each item: a bad item breaks, an item without the field as a plain path."""
    items: list[dict[str, Any]] = [{} if good is MISSING else {"field": good}]
    items += [{} if bad is MISSING else {"field": bad}, {"other": 1}]
    found = rules.evaluate([rule(constraint, path="spec.items[*].field")], thing({"items": items}))
    expected = [] if bad is MISSING else ["spec.items[1].field"]
    if not absent_ok:
        expected += [
            f"spec.items[{i}].field" for i, item in enumerate(items) if "field" not in item
        ]
    assert sorted(paths_of(found)) == sorted(expected)


# --- constraints in detail ---------------------------------------------------------


@pytest.mark.parametrize(
    ("constraint", "value", "broken"),
    [
        ({"equals": 3}, 3.0, False),
        ({"equals": 3}, "3", False),
        ({"equals": "1"}, "1000m", False),
        ({"equals": True}, 1, True),
        ({"equals": {"runAsNonRoot": True}}, {"runAsNonRoot": True, "runAsUser": 1000}, False),
        ({"equals": {"runAsNonRoot": True}}, {"runAsUser": 1000}, True),
        ({"equals": ["a", "b"]}, ["b", "a"], True),
        ({"notIn": ["128Mi", "64Mi"]}, "0.125Gi", True),
        ({"notIn": ["128Mi", "64Mi"]}, "129Mi", False),
        ({"notIn": [{"privileged": True}]}, {"privileged": True, "runAsUser": 0}, True),
        ({"notIn": []}, "anything", False),
        ({"matches": "latest"}, "nginx:latest-rc", False),
        ({"matches": "^latest$"}, "nginx:latest", True),
        ({"matches": "^80$"}, 8080, True),
        ({"matches": "^80$"}, 80, False),
        ({"matches": "^true$"}, True, False),
        ({"matches": "."}, {"a": 1}, True),
        ({"notMatches": "."}, ["a"], False),
        ({"notMatches": "(?i)LATEST"}, "nginx:latest", True),
        ({"atLeast": 2}, 2, False),
        ({"atLeast": 2}, "1500m", True),
        ({"atMost": "1Gi"}, "1024Mi", False),
        ({"atMost": "1Gi"}, "1025Mi", True),
        ({"atLeast": "1.25.3"}, "1.25.10", False),
        ({"atLeast": "1.25.3"}, "v1.25.2", True),
    ],
)
def test_constraint_semantics(constraint: dict[str, Any], value: Any, broken: bool) -> None:
    """Semantic equality, searched regexes, ordered numbers, quantities and versions."""
    found = rules.evaluate([rule(constraint)], thing({"field": value}))
    assert bool(found) is broken


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        ("nginx:1.24.0", "is nginx:1.24.0, below the minimum 1.25.3"),
        ("registry.example.com:5000/team/nginx:1.24.0-alpine", "below the minimum 1.25.3"),
        ("nginx:1.26", None),
        ("nginx:1.9", "is nginx:1.9, below the minimum 1.25.3"),
        ("nginx:1.100", None),
        ("nginx:1.25.3", None),
        ("nginx@sha256:" + "a" * 64, "pinned by digest"),
        ("nginx:latest", "uses the tag latest"),
        ("nginx", "has no tag"),
        ("nginx:stable", "is neither a number nor a version"),
    ],
)
def test_image_tag_floor(image: str, reason: str | None) -> None:
    """atLeast on an image compares its tag; a tag with no order is a violation that says why."""
    r = rule({"atLeast": "1.25.3"}, path="spec.containers[*].image")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "spec": {"containers": [{"name": "web", "image": image}]},
    }
    found = rules.evaluate([r], pod)
    if reason is None:
        assert found == ()
    else:
        (v,) = found
        assert v.path == "spec.containers[name=web].image"
        assert reason in v.message
        assert not v.known_bad


@pytest.mark.parametrize(
    ("image", "bound", "broken"),
    [
        ("nginx:1.9", "1.25", True),
        ("nginx:1.30", "1.25", False),
        ("nginx:2", 2, False),
        ("nginx:1.25.0", "1.25", False),
        ("nginx:v1.24", "1.25", True),
    ],
)
def test_image_tags_compare_as_versions_not_decimals(image: str, bound: Any, broken: bool) -> None:
    """nginx:1.9 is below 1.25 even though the decimal 1.9 is above 1.25."""
    r = rule({"atLeast": bound}, path="spec.containers[*].image")
    pod = {"kind": "Pod", "spec": {"containers": [{"name": "web", "image": image}]}}
    assert bool(rules.evaluate([r], pod)) is broken


def test_image_ceiling() -> None:
    """atMost on an image caps the tag."""
    r = rule({"atMost": "1.25"}, path="spec.containers[*].image")
    pod = {
        "kind": "Pod",
        "spec": {
            "containers": [{"name": "a", "image": "x:1.25.0"}, {"name": "b", "image": "x:1.26"}]
        },
    }
    assert [v.message for v in rules.evaluate([r], pod)] == [
        "spec.containers[name=b].image is x:1.26, above the maximum 1.25"
    ]


def test_known_bad_flag() -> None:
    """notIn and notMatches violations are known-bad values; the others are not."""
    obj = thing({"a": True, "b": "x:latest", "c": 1})
    found = rules.evaluate(
        [
            rule({"notIn": [True]}, path="spec.a"),
            rule({"notMatches": "latest"}, path="spec.b"),
            rule({"atLeast": 2}, path="spec.c"),
        ],
        obj,
    )
    assert [v.known_bad for v in found] == [True, True, False]


def test_message_for_a_kubectl_denial() -> None:
    """Concrete path, value, (known-bad) and the rule's message."""
    r = Rule.from_dict(
        {
            "name": "not-privileged",
            "path": "spec.template.spec.containers[*].securityContext.privileged",
            "notIn": [True],
            "message": "privileged containers caused INC-99",
        }
    )
    deployment = load("deployment-web.yaml")
    (v,) = rules.evaluate([r], deployment)
    assert v.message == (
        "spec.template.spec.containers[name=web].securityContext.privileged is true (known-bad): "
        "privileged containers caused INC-99"
    )
    assert v.reason == "is true (known-bad)"
    assert v.pointer == "/spec/template/spec/containers/1/securityContext/privileged"
    assert v.expected == {"notIn": [True]}


def test_selector_that_matches_no_item_is_absent() -> None:
    """[name=api] without such a container is absent: equals breaks, notIn holds."""
    deployment = load("deployment-web.yaml")
    base = "spec.template.spec.containers[name=api].image"
    assert paths_of(rules.evaluate([rule({"equals": "api:1"}, path=base)], deployment)) == [base]
    assert rules.evaluate([rule({"notIn": ["api:0"]}, path=base)], deployment) == ()


def test_rules_report_in_order() -> None:
    """Violations come rule by rule, then location by location."""
    obj = thing({"items": [{"f": 1}, {"f": 2}], "n": 0})
    found = rules.evaluate(
        [rule({"atLeast": 5}, path="spec.items[*].f"), rule({"atLeast": 1}, path="spec.n")], obj
    )
    assert paths_of(found) == ["spec.items[0].f", "spec.items[1].f", "spec.n"]


def test_json_pointer_path() -> None:
    """A rule path may be a JSON Pointer."""
    found = rules.evaluate([rule({"atLeast": 2}, path="/spec/replicas")], {"spec": {"replicas": 1}})
    assert [(v.path, v.pointer) for v in found] == [("/spec/replicas", "/spec/replicas")]


def test_empty_string_is_shown() -> None:
    """An empty string is present, and the message shows it as ""."""
    (v,) = rules.evaluate([rule({"matches": "."})], thing({"field": ""}))
    assert v.message == 'spec.field is "", which does not match /./'
    (v,) = rules.evaluate([rule({"equals": ""})], thing({"field": "x"}))
    assert v.message == 'spec.field is x, expected ""'


@pytest.mark.parametrize(
    ("constraint", "message"),
    [
        ({"equals": {"a": 1}}, 'spec.field is absent, expected {"a":1}'),
        ({"matches": "^a"}, "spec.field is absent, expected a value matching /^a/"),
        ({"atLeast": 2}, "spec.field is absent, expected at least 2"),
        ({"atMost": "1Gi"}, "spec.field is absent, expected at most 1Gi"),
        ({"present": True}, "spec.field is absent, must be set"),
    ],
)
def test_absent_messages(constraint: dict[str, Any], message: str) -> None:
    """An absent field says what was expected."""
    (v,) = rules.evaluate([rule(constraint)], thing({}))
    assert v.message == message


def test_present_false_message() -> None:
    """present: false names the value that must go."""
    (v,) = rules.evaluate([rule({"present": False})], thing({"field": {"k": "v"}}))
    assert v.message == 'spec.field is set to {"k":"v"}, must be absent'


# --- podSpec and kinds ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "deployment-web.yaml",
            ["spec.template.spec.containers[name=web].securityContext.privileged"],
        ),
        (
            "cronjob-backup.yaml",
            [
                "spec.jobTemplate.spec.template.spec.containers[name=backup].securityContext.privileged"
            ],
        ),
        ("pod-debug.yaml", ["spec.containers[name=debug].securityContext.privileged"]),
        ("configmap.yaml", []),
    ],
)
def test_pod_spec_path_covers_every_workload_kind(name: str, expected: list[str]) -> None:
    """podSpec. expands by kind; a kind without a pod spec is not checked."""
    r = rule({"notIn": [True]}, path="podSpec.containers[*].securityContext.privileged")
    assert paths_of(rules.evaluate([r], load(name))) == expected


def test_pod_spec_present_true_on_configmap_holds() -> None:
    """Even a rule that an absent field breaks does not apply to a kind without a pod spec."""
    r = rule({"present": True}, path="podSpec.serviceAccountName")
    assert rules.evaluate([r], load("configmap.yaml")) == ()
    assert len(rules.evaluate([r], load("pod-debug.yaml"))) == 1


# --- Secret data ---------------------------------------------------------------------


def test_secret_data_never_appears_in_a_violation() -> None:
    """A Secret's data values are hashed in actual and in the message."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "data": {"password": "aHVudGVyMg=="},
        "type": "Opaque",
    }
    found = rules.evaluate(
        [
            rule({"notIn": ["aHVudGVyMg=="]}, path='data["password"]'),
            rule({"equals": "kubernetes.io/tls"}, path="type"),
            rule({"present": False}, path="data"),
        ],
        secret,
    )
    assert len(found) == 3
    assert found[0].actual.startswith("sha256:")
    assert "aHVudGVyMg" not in found[0].message
    assert "aHVudGVyMg" not in found[2].message
    assert found[1].actual == "Opaque"


def test_non_secret_data_is_shown() -> None:
    """A ConfigMap's data is not secret."""
    (v,) = rules.evaluate([rule({"notIn": ["on"]}, path="data.debug")], load("configmap.yaml"))
    assert v.actual == "on"


# --- Kyverno-like policies as data ------------------------------------------------------


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DATA / name).read_text())
    return loaded


KYVERNO_CASES: list[dict[str, Any]] = yaml.safe_load((DATA / "cases.yaml").read_text())


@pytest.mark.parametrize("case", KYVERNO_CASES, ids=[c["name"] for c in KYVERNO_CASES])
def test_policy_cases(case: dict[str, Any]) -> None:
    """Matched input and expected messages kept as data (tests/unit/data/rules/cases.yaml)."""
    obj = load(case["object"]) if isinstance(case["object"], str) else case["object"]
    found = rules.evaluate([Rule.from_dict(r) for r in case["rules"]], obj)
    assert [v.message for v in found] == case["violations"]


# --- building rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"path": "spec.replicas", "atLeast": 2}, "name is required"),
        ({"name": "r", "atLeast": 2}, "path is required"),
        ({"name": "r", "path": "spec.replicas"}, "exactly one constraint .* \\(found none\\)"),
        ({"name": "r", "path": "spec.x", "atLeast": 2, "atMost": 3}, "found atLeast, atMost"),
        ({"name": "r", "path": "spec.x", "atLeast": 2, "minimum": 3}, "unknown key\\(s\\) minimum"),
        ({"name": "r", "path": "spec.x[", "atLeast": 2}, "rule 'r': bad path .* column"),
        ({"name": "r", "path": "spec.x", "notIn": "true"}, "notIn needs a list"),
        ({"name": "r", "path": "spec.x", "notIn": {"a": 1}}, "notIn needs a list"),
        ({"name": "r", "path": "spec.x", "notIn": 5}, "notIn needs a list"),
        (
            {"name": "r", "path": "spec.x", "matches": "(unclosed"},
            "bad regular expression .* position 0",
        ),
        ({"name": "r", "path": "spec.x", "notMatches": 5}, "needs a regular expression"),
        (
            {"name": "r", "path": "spec.x", "atLeast": "latest"},
            "atLeast needs a number, a quantity",
        ),
        ({"name": "r", "path": "spec.x", "atMost": True}, "atMost needs a number"),
        ({"name": "r", "path": "spec.x", "present": "yes"}, "present needs true or false"),
    ],
)
def test_bad_rules_say_what_to_fix(spec: dict[str, Any], error: str) -> None:
    """A rule that cannot work is refused when it is made, with a message naming the problem."""
    with pytest.raises(rules.RuleError, match=error):
        Rule.from_dict(spec)


def test_unknown_constraint_operator() -> None:
    """Constraint refuses an operator it does not know."""
    with pytest.raises(rules.RuleError, match="unknown constraint 'between'"):
        rules.Constraint("between", (1, 2))  # type: ignore[arg-type]


def test_rule_from_dict_keeps_message_and_optional() -> None:
    """message and optional carry over; notIn becomes a tuple; to_dict gives it back."""
    r = Rule.from_dict(
        {"name": "r", "path": "spec.x", "notIn": [1, 2], "message": "why", "optional": True}
    )
    assert (r.message, r.optional, r.constraint.operand) == ("why", True, (1, 2))
    assert r.constraint.to_dict() == {"notIn": [1, 2]}
    assert r == Rule.from_dict(
        {"name": "r", "path": "spec.x", "notIn": (1, 2), "message": "why", "optional": True}
    )


def test_equals_null_asks_for_an_absent_field() -> None:
    """`equals: null` is a constraint (the key is set): absent or null holds, a value breaks."""
    r = Rule.from_dict({"name": "r", "path": "spec.field", "equals": None})
    assert r.constraint.op == "equals"
    assert rules.evaluate([r], thing({})) == ()
    assert rules.evaluate([r], thing({"field": None})) == ()
    (v,) = rules.evaluate([r], thing({"field": 0}))
    assert v.message == "spec.field is 0, expected null"


@pytest.mark.parametrize("operand", [False, 0, ""])
def test_equals_a_falsy_value_still_needs_the_field(operand: Any) -> None:
    """`equals: false` is not `present: false`: an absent field breaks it."""
    assert len(rules.evaluate([rule({"equals": operand})], thing({}))) == 1


def test_odd_labels_and_metadata() -> None:
    """Label values read as text (a YAML 1 is "1"); metadata that is not a mapping is empty."""
    m = match(selector={"matchLabels": {"version": "1", "canary": "true"}})
    assert rules.matches(m, deploy(labels={"version": 1, "canary": True}))  # type: ignore[dict-item]
    odd = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": ["not", "a", "mapping"]}
    assert rules.matches(match(), odd)
    assert not rules.matches(m, odd)


# --- matching ---------------------------------------------------------------------------


def match(**spec: Any) -> Match:
    spec.setdefault("resources", [{"apiGroups": ["apps"], "kinds": ["Deployment", "StatefulSet"]}])
    return Match.from_dict(spec)


def deploy(
    namespace: str | None = "shop",
    labels: dict[str, str] | None = None,
    api: str = "apps/v1",
    kind: str = "Deployment",
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "web"}
    if namespace is not None:
        metadata["namespace"] = namespace
    if labels is not None:
        metadata["labels"] = labels
    return {"apiVersion": api, "kind": kind, "metadata": metadata}


@pytest.mark.parametrize(
    ("resources", "api", "kind", "selected"),
    [
        ([{"apiGroups": ["apps"], "kinds": ["Deployment"]}], "apps/v1", "Deployment", True),
        ([{"apiGroups": ["apps"], "kinds": ["Deployment"]}], "apps/v1", "StatefulSet", False),
        (
            [{"apiGroups": ["apps"], "kinds": ["Deployment"]}],
            "extensions/v1beta1",
            "Deployment",
            False,
        ),
        ([{"apiGroups": [""], "kinds": ["Pod"]}], "v1", "Pod", True),
        ([{"apiGroups": [""], "kinds": ["Pod"]}], "example.com/v1", "Pod", False),
        ([{"apiGroups": ["*"], "kinds": ["Pod"]}], "example.com/v1", "Pod", True),
        ([{"kinds": ["Pod"]}], "v1", "Pod", True),
        ([{"apiGroups": ["apps"], "kinds": ["*"]}], "apps/v1", "DaemonSet", True),
        (
            [{"apiGroups": ["batch"], "kinds": ["Job"]}, {"apiGroups": [""], "kinds": ["Pod"]}],
            "v1",
            "Pod",
            True,
        ),
    ],
)
def test_match_resources(
    resources: list[dict[str, Any]], api: str, kind: str, selected: bool
) -> None:
    """apiGroups ("" core, "*" or empty any) and kinds ("*" any)."""
    assert rules.matches(match(resources=resources), deploy(api=api, kind=kind)) is selected


@pytest.mark.parametrize(
    ("spec", "namespace", "selected"),
    [
        ({}, "shop", True),
        ({"namespaces": ["shop", "cart"]}, "shop", True),
        ({"namespaces": ["cart"]}, "shop", False),
        ({"excludeNamespaces": ["kube-system"]}, "kube-system", False),
        ({"excludeNamespaces": ["kube-system"]}, "shop", True),
        ({"namespaces": ["shop"], "excludeNamespaces": ["shop"]}, "shop", False),
        ({"namespaces": ["shop"]}, None, True),
        ({"excludeNamespaces": ["shop"]}, None, True),
    ],
)
def test_match_namespaces(spec: dict[str, Any], namespace: str | None, selected: bool) -> None:
    """namespaces empty = all; excludeNamespaces wins; cluster-scoped objects are not filtered."""
    assert rules.matches(match(**spec), deploy(namespace=namespace)) is selected


def test_namespace_object_is_filtered_by_its_name() -> None:
    """excludeNamespaces: [kube-system] also skips the kube-system Namespace object."""
    m = match(
        resources=[{"apiGroups": [""], "kinds": ["Namespace"]}], excludeNamespaces=["kube-system"]
    )
    assert not rules.matches(
        m, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}}
    )
    assert rules.matches(m, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})


@pytest.mark.parametrize(
    ("selector", "labels", "selected"),
    [
        ({}, None, True),
        ({"matchLabels": {"app": "web"}}, {"app": "web", "tier": "fe"}, True),
        ({"matchLabels": {"app": "web"}}, {"app": "api"}, False),
        ({"matchLabels": {"app": "web"}}, None, False),
        (
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}]},
            {"tier": "be"},
            True,
        ),
        (
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe"]}]},
            {"tier": "be"},
            False,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe"]}]}, {}, False),
        (
            {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["fe"]}]},
            {"tier": "be"},
            True,
        ),
        (
            {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["fe"]}]},
            {"tier": "fe"},
            False,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["fe"]}]}, {}, True),
        ({"matchExpressions": [{"key": "canary", "operator": "Exists"}]}, {"canary": ""}, True),
        ({"matchExpressions": [{"key": "canary", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]}, {}, True),
        (
            {"matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]},
            {"canary": "1"},
            False,
        ),
        (
            {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}],
            },
            {"app": "web", "canary": "1"},
            False,
        ),
    ],
)
def test_match_label_selector(
    selector: dict[str, Any], labels: dict[str, str] | None, selected: bool
) -> None:
    """matchLabels and matchExpressions with In, NotIn, Exists, DoesNotExist; all must hold."""
    assert rules.matches(match(selector=selector), deploy(labels=labels)) is selected


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"resources": []}, "match.resources needs at least one"),
        (
            {"resources": [{"apiGroups": ["apps"], "kinds": []}]},
            "match.resources needs at least one",
        ),
        (
            {
                "selector": {
                    "matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]
                }
            },
            "use one of In, NotIn",
        ),
        (
            {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
            "In on 'a' needs at least one value",
        ),
        (
            {
                "selector": {
                    "matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]
                }
            },
            "Exists on 'a' takes no values",
        ),
    ],
)
def test_bad_match_says_what_to_fix(spec: dict[str, Any], error: str) -> None:
    """A match that cannot work is refused with a message naming the problem."""
    with pytest.raises(rules.RuleError, match=error):
        match(**spec)


def test_match_with_no_resources_matches_nothing() -> None:
    """Built directly, an empty resources tuple selects no object."""
    assert not rules.matches(Match(resources=()), deploy())


def test_match_tolerates_odd_objects() -> None:
    """An object without apiVersion, kind or metadata is simply not selected (or selected by *)."""
    assert not rules.matches(match(), {})
    assert rules.matches(match(resources=[{"apiGroups": ["*"], "kinds": ["*"]}]), {})


# --- the corpus --------------------------------------------------------------------------


GENERIC_SPECS: list[dict[str, Any]] = [
    {
        "name": "priv",
        "path": "podSpec.containers[*].securityContext.privileged",
        "notIn": [True],
    },
    {"name": "tag", "path": "podSpec.containers[*].image", "notMatches": ":latest$"},
    {"name": "floor", "path": "podSpec.containers[*].image", "atLeast": "0.1"},
    {"name": "mem", "path": "podSpec.containers[*].resources.limits.memory", "atLeast": "64Mi"},
    {"name": "cpu", "path": "podSpec.initContainers[*].resources.requests.cpu", "atMost": 4},
    {"name": "replicas", "path": "spec.replicas", "atLeast": 2, "optional": True},
    {"name": "host", "path": "podSpec.hostNetwork", "present": False},
    {"name": "sa", "path": "podSpec.serviceAccountName", "matches": "^[a-z]"},
    {"name": "env", "path": "podSpec.containers[*].env[*].value", "notIn": ["debug"]},
    {"name": "ports", "path": "podSpec.containers[*].ports[*].containerPort", "atLeast": 1024},
]
GENERIC = [Rule.from_dict(spec) for spec in GENERIC_SPECS]


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared corpus is not on this machine")
def test_corpus_evaluates_without_error() -> None:
    """Every real manifest of the corpus evaluates (and matches) without an exception."""
    everything = match(
        resources=[{"apiGroups": ["*"], "kinds": ["*"]}], excludeNamespaces=["kube-system"]
    )
    checked = violations = 0
    for file in sorted(CORPUS.rglob("*.y*ml")):
        for doc in yaml.safe_load_all(file.read_text()):
            if not isinstance(doc, dict):
                continue
            checked += 1
            rules.matches(everything, doc)
            for v in rules.evaluate(GENERIC, copy.deepcopy(doc)):
                violations += 1
                assert v.message.startswith(v.path + " ")
    assert checked > 250
    assert violations > 0


# --- properties ----------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.sampled_from(
        ["", "web", "nginx:latest", "nginx:1.25.3", "512Mi", "0.5Gi", "100m", "1.2.3"]
    )
    | st.text(max_size=6)
)
field_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner, max_size=2)
    ),
    max_leaves=5,
)
constraints = st.sampled_from(
    [
        {"equals": "512Mi"},
        {"equals": {"a": 1}},
        {"notIn": [True, "web", None]},
        {"matches": "^n"},
        {"notMatches": "latest"},
        {"atLeast": "1.25"},
        {"atMost": 100},
        {"present": True},
        {"present": False},
    ]
)
items_lists = st.lists(
    st.one_of(st.just({}), field_values.map(lambda v: {"f": v}), st.just({"f": None})), max_size=5
)


@settings(max_examples=150)
@given(constraints, items_lists, st.booleans())
def test_every_item_is_the_sum_of_single_items(
    constraint: dict[str, Any], items: list[dict[str, Any]], optional: bool
) -> None:
    """Property: [*] over a list breaks exactly where the items one by one break."""
    r = rule(constraint, path="spec.items[*].f", optional=optional)
    whole = rules.evaluate([r], thing({"items": items}))
    single = [len(rules.evaluate([r], thing({"items": [item]}))) for item in items]
    assert len(whole) == sum(single)
    assert [v.pointer for v in whole] == [
        f"/spec/items/{i}/f" for i, n in enumerate(single) for _ in range(n)
    ]


@given(constraints, st.one_of(st.just(MISSING), field_values))
def test_optional_never_adds_violations(constraint: dict[str, Any], value: Any) -> None:
    """Property: optional removes only absent-field violations, never adds any."""
    obj = thing({} if value is MISSING else {"field": value})
    strict = rules.evaluate([rule(constraint)], obj)
    relaxed = rules.evaluate([rule(constraint, optional=True)], obj)
    assert [v for v in strict if v.present] == list(relaxed)


@given(scalars.filter(lambda v: v is not None), scalars.filter(lambda v: v is not None))
def test_equals_and_not_in_are_complements(value: Any, operand: Any) -> None:
    """Property: on a present scalar, notIn [x] breaks exactly when equals x holds."""
    obj = thing({"field": value})
    breaks_equals = bool(rules.evaluate([rule({"equals": operand})], obj))
    breaks_not_in = bool(rules.evaluate([rule({"notIn": [operand]})], obj))
    assert breaks_equals != breaks_not_in


@given(scalars.filter(lambda v: v is not None), st.sampled_from(["^n", "latest$", "[0-9]", "^$"]))
def test_matches_and_not_matches_are_complements(value: Any, pattern: str) -> None:
    """Property: on a present scalar, exactly one of matches / notMatches breaks."""
    obj = thing({"field": value})
    breaks_matches = bool(rules.evaluate([rule({"matches": pattern})], obj))
    breaks_not_matches = bool(rules.evaluate([rule({"notMatches": pattern})], obj))
    assert breaks_matches != breaks_not_matches


@given(st.integers(-1000, 1000), st.integers(-1000, 1000), st.sampled_from(["", "m", "k", "Ki"]))
def test_bounds_order_quantities(a: int, b: int, unit: str) -> None:
    """Property: atLeast breaks iff below, atMost iff above, for any spelling of the unit."""
    obj = thing({"field": f"{a}{unit}"})
    assert bool(rules.evaluate([rule({"atLeast": f"{b}{unit}"})], obj)) is (a < b)
    assert bool(rules.evaluate([rule({"atMost": f"{b}{unit}"})], obj)) is (a > b)


PATH_SHAPES = [
    "spec.items[*].f",
    "spec.items[name=a].f",
    "spec.items[0].f",
    "spec.items[*].sub[*].f",
    "spec.f",
    "spec",
    "/spec/items/0/f",
    "/spec/items/x",
    "spec.f.deeper",
    "podSpec.containers[*].image",
    'spec["f"]',
]
named_items = st.fixed_dictionaries(
    {"name": st.sampled_from(["a", "b"])}, optional={"f": field_values}
)
item_values = st.one_of(
    named_items,
    named_items,
    st.fixed_dictionaries({"f": field_values}),
    st.fixed_dictionaries(
        {}, optional={"sub": st.lists(st.dictionaries(st.just("f"), field_values))}
    ),
    field_values,
)
item_lists = st.lists(item_values, min_size=1, max_size=4)
spec_mappings = st.fixed_dictionaries(
    {},
    optional={
        "items": st.one_of(item_lists, item_lists, item_lists, field_values),
        "f": field_values,
        "containers": st.lists(
            st.fixed_dictionaries({"name": st.text(max_size=2)}, optional={"image": scalars}),
            max_size=3,
        ),
    },
)
objects = st.fixed_dictionaries(
    {"kind": st.sampled_from(["Thing", "Pod", "Deployment"])},
    optional={"spec": st.one_of(spec_mappings, spec_mappings, spec_mappings, field_values)},
)


CONSTRAINT_SHAPES: list[dict[str, Any]] = [
    {"equals": "512Mi"},
    {"notIn": [True, "web", None]},
    {"notMatches": "latest"},
    {"matches": "^n"},
    {"atLeast": "1.25"},
    {"present": True},
    {"present": False},
]
ALL_RULES = [
    rule(c, path=p, optional=o)
    for p in PATH_SHAPES
    for c in CONSTRAINT_SHAPES
    for o in (False, True)
]


@settings(max_examples=60)
@given(objects)
def test_fast_walk_agrees_with_full_resolution(obj: dict[str, Any]) -> None:
    """Property: the quick holds-everywhere walk never hides a violation paths.resolve finds."""
    for r in ALL_RULES:
        assert rules._evaluate_rule(r, obj, fast=True) == rules._evaluate_rule(r, obj, fast=False)


def test_render_and_compact_json_take_keys_of_mixed_types() -> None:
    """A mapping with number and string keys (YAML `9000:` beside `"9001":`) renders sorted."""
    assert rules.render({9000: "a", "9001": "b"}) == '{"9000":"a","9001":"b"}'
    assert rules.compact_json([{1: {2: "x", "y": None}}]) == '[{"1":{"2":"x","y":null}}]'


@pytest.mark.parametrize(
    ("path", "operand", "value", "holds"),
    [
        ("spec.containers[*].resources.limits.cpu", "1", "1.0", True),
        ("spec.containers[name=web].resources.requests.memory", "0.5", "0.50", True),
        ("spec.containers[*].args[*]", "1", "1.0", False),  # list items of a free field
        ("spec.containers[*].args[0]", "1.10", "1.10", True),
        ("spec.containers[*].env[name=V].value", "1.10", "1.1", False),
    ],
)
def test_equals_reads_plain_decimals_by_the_field(
    path: str, operand: str, value: str, holds: bool
) -> None:
    """Quantity fields compare "1" and "1.0" by value; free strings compare as text."""
    container = {
        "name": "web",
        "resources": {"limits": {"cpu": value}, "requests": {"memory": value}},
        "args": [value],
        "env": [{"name": "V", "value": value}],
    }
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    obj["spec"] = {"containers": [container]}
    rule = Rule.from_dict({"name": "r", "path": path, "equals": operand})
    assert (rules.evaluate([rule], obj) == ()) is holds


def test_read_only_mappings_are_walked_like_dicts() -> None:
    """Objects handed over as read-only Mappings (MappingProxyType) give the same verdicts."""

    def frozen(value: Any) -> Any:
        if isinstance(value, dict):
            return types.MappingProxyType({k: frozen(v) for k, v in value.items()})
        if isinstance(value, list):
            return [frozen(v) for v in value]
        return value

    checks = [
        rule({"equals": "512Mi"}, path="spec.containers[name=web].limits.memory"),
        rule({"present": True}, path="spec.containers[*].image"),
    ]
    obj = thing({"containers": [{"name": "web", "limits": {"memory": "128Mi"}}]})
    plain = rules.evaluate(checks, obj)
    assert paths_of(plain) == [
        "spec.containers[name=web].limits.memory",
        "spec.containers[name=web].image",
    ]
    assert rules.evaluate(checks, frozen(obj)) == plain
