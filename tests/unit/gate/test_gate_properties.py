"""Properties of gate evaluation on arbitrary objects: no crash, no mutation, deterministic."""

from __future__ import annotations

import copy
import io
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from keepfix.api import convert
from keepfix.cli import gate
from keepfix.core import policy

POLICIES = [
    {
        "apiVersion": "keepfix.dev/v1alpha1",
        "kind": "Mitigation",
        "metadata": {"name": "web-fix", "namespace": "shop"},
        "spec": {
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "fields": [
                {"path": "spec.replicas", "value": 3, "knownBad": [1]},
                {
                    "path": "spec.template.spec.containers[name=web].resources.limits.memory",
                    "value": "512Mi",
                },
                {"path": "spec.paused", "value": None},
            ],
            "admission": "Deny",
        },
    },
    {
        "apiVersion": "keepfix.dev/v1alpha1",
        "kind": "Mitigation",
        "metadata": {"name": "labelled", "namespace": "shop"},
        "spec": {
            "target": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "selector": {"matchLabels": {"app": "web"}},
            },
            "fields": [{"path": "podSpec.containers[*].image", "value": "web:1"}],
        },
    },
    {
        "apiVersion": "keepfix.dev/v1alpha1",
        "kind": "Guardrail",
        "metadata": {"name": "everything"},
        "spec": {
            "match": {
                "resources": [{"apiGroups": ["*"], "kinds": ["*"]}],
                "excludeNamespaces": ["kube-system"],
            },
            "rules": [
                {
                    "name": "privileged",
                    "path": "podSpec.containers[*].securityContext.privileged",
                    "notIn": [True],
                },
                {"name": "replicas", "path": "spec.replicas", "atLeast": 2, "optional": True},
                {"name": "image", "path": "podSpec.containers[*].image", "notMatches": ":latest$"},
                {"name": "team", "path": 'metadata.labels["team"]', "present": True},
                {
                    "name": "memory",
                    "path": "podSpec.containers[*].resources.limits.memory",
                    "atMost": "2Gi",
                },
            ],
            "enforcement": "Deny",
        },
    },
]
POLICY_SET = policy.PolicySet.build(
    [convert.mitigation(p) for p in POLICIES if p["kind"] == "Mitigation"],
    [convert.guardrail(p) for p in POLICIES if p["kind"] == "Guardrail"],
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(
        ["", "web", "web:latest", "web:1.2.3", "512Mi", "0.5Gi", "1e3", "latest", "true"]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(["name", "image", "replicas", "privileged", "limits", "x"]),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=12,
)
containers = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.one_of(st.sampled_from(["web", "side"]), values),
            "image": values,
            "securityContext": st.one_of(st.fixed_dictionaries({"privileged": values}), values),
            "resources": st.one_of(
                st.fixed_dictionaries({"limits": st.fixed_dictionaries({"memory": values})}), values
            ),
        },
    ),
    max_size=3,
)
manifests = st.fixed_dictionaries(
    {
        "apiVersion": st.sampled_from(["apps/v1", "v1", "batch/v1", "example.com/v1"]),
        "kind": st.sampled_from(["Deployment", "Pod", "CronJob", "Namespace", "Widget"]),
    },
    optional={
        "metadata": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "name": st.sampled_from(["web", "api", ""]),
                    "namespace": st.sampled_from(["shop", "kube-system", ""]),
                    "labels": st.one_of(
                        st.dictionaries(
                            st.sampled_from(["app", "team"]), st.sampled_from(["web", "x"])
                        ),
                        values,
                    ),
                },
            ),
            values,
        ),
        "spec": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "replicas": values,
                    "paused": values,
                    "template": st.fixed_dictionaries(
                        {"spec": st.fixed_dictionaries({"containers": containers})}
                    ),
                    "containers": st.one_of(containers, values),
                },
            ),
            values,
        ),
    },
)


@settings(max_examples=300, deadline=None)
@given(manifests, st.one_of(st.none(), manifests), st.sampled_from(["default", "shop", ""]))
def test_evaluate_never_crashes_nor_changes_its_input(
    manifest: dict[str, Any], old: dict[str, Any] | None, namespace: str
) -> None:
    """Any object gets a tuple of findings with one-line messages; the input is left as it was."""
    before = copy.deepcopy(manifest)
    findings = policy.evaluate(POLICY_SET, manifest, old=old, default_namespace=namespace)
    assert manifest == before
    for f in findings:
        assert f.message
        assert "\n" not in f.message
        assert f.level in policy.Level
    assert policy.evaluate(POLICY_SET, manifest, old=old, default_namespace=namespace) == findings


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("policies") / "policies.yaml"
    path.write_text(yaml.safe_dump_all(POLICIES))
    return str(path)


@settings(max_examples=60, deadline=None)
@given(
    objects=st.lists(manifests, min_size=1, max_size=4),
    fmt=st.sampled_from(["text", "json", "sarif", "junit"]),
)
def test_the_gate_answers_0_or_1_for_any_objects(
    policy_file: str, objects: list[dict[str, Any]], fmt: str
) -> None:
    """Whatever objects come in on stdin, the gate renders them and never reports bad input."""
    out, err = io.StringIO(), io.StringIO()
    code = gate.gate(
        policies=[policy_file],
        manifests=["-"],
        output_format=fmt,
        stdin=io.StringIO(yaml.safe_dump_all(objects)),
        stdout=out,
        stderr=err,
    )
    assert err.getvalue() == ""
    assert code in (gate.EXIT_PASSED, gate.EXIT_BLOCKED)
    assert out.getvalue()
