"""keepfix.api.models: the kinds as the gate and the operator parse them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import hypothesis
import jsonschema
import pydantic
import pytest
import yaml
from hypothesis import strategies as st

from keepfix.api import conventions, crdgen, models

MALFORMED = yaml.safe_load(
    (Path(__file__).parents[1] / "data" / "api" / "malformed.yaml").read_text(encoding="utf-8")
)


def mitigation(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "fields": [{"path": "spec.replicas", "value": 3}],
    }
    body.update(spec)
    return {
        "apiVersion": conventions.API_VERSION,
        "kind": "Mitigation",
        "metadata": {"name": "m", "namespace": "shop"},
        "spec": body,
    }


def guardrail(*rules: dict[str, Any], **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "match": {"resources": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}]},
        "rules": list(rules) or [{"name": "r", "path": "spec.replicas", "atLeast": 2}],
    }
    body.update(spec)
    return {"apiVersion": conventions.API_VERSION, "kind": "Guardrail", "spec": body}


@pytest.mark.parametrize("case", MALFORMED, ids=[c["id"] for c in MALFORMED])
def test_malformed_objects_are_rejected_naming_the_field(case: dict[str, Any]) -> None:
    """Every object the API server rejects, the models reject too, naming the field."""
    field = case["field"] if isinstance(case["field"], str) else case["field"][0]
    with pytest.raises(pydantic.ValidationError) as caught:
        models.parse(case["object"])
    assert re.findall(r"[A-Za-z]+", field)[-1] in str(caught.value)


def test_defaults_are_the_documented_ones() -> None:
    """A minimal Mitigation, Guardrail and AlertRoute get the defaults DESIGN documents."""
    m = models.Mitigation.model_validate(mitigation()).spec
    g = models.Guardrail.model_validate(guardrail()).spec
    a = models.AlertRouteSpec.model_validate({"sinks": [{"type": "webhook", "url": "https://x"}]})
    assert (m.action, m.admission, m.watch_window, m.capture, m.category) == (
        "Rollback",
        "Warn",
        "30d",
        False,
        "ConfigDrift",
    )
    assert (g.enforcement, g.remediation) == ("Audit", "None")
    assert (a.repeat_interval, a.match.min_severity, a.match.teams) == ("4h", "Low", [])


def test_wire_names_round_trip_in_camel_case() -> None:
    """to_wire() gives back exactly the camelCase document that was parsed."""
    doc = mitigation(
        fields=[{"path": "spec.x", "value": {"a": [1, None]}, "knownBad": ["128Mi", None]}],
        watchWindow="7d",
        owner={"team": "shop-sre"},
    )
    assert models.Mitigation.model_validate(doc).to_wire() == doc


def test_snake_case_names_are_accepted_too() -> None:
    """Python code may build models with field names instead of aliases."""
    spec = models.MitigationSpec(
        target=models.Target(api_version="v1", kind="ConfigMap", name="flags"),
        fields=[models.ProtectedField(path="data.x", value="1", known_bad=["0"])],
        watch_window="1h",
    )
    assert spec.to_wire()["fields"] == [{"path": "data.x", "value": "1", "knownBad": ["0"]}]
    assert spec.to_wire()["watchWindow"] == "1h"


@pytest.mark.parametrize(
    ("field", "has_value", "value"),
    [
        ({"path": "a", "value": "x"}, True, "x"),
        ({"path": "a", "value": None}, True, None),
        ({"path": "a"}, False, None),
    ],
    ids=["given", "null-means-absent", "omitted"],
)
def test_a_null_value_is_not_an_omitted_value(
    field: dict[str, Any], has_value: bool, value: Any
) -> None:
    """value: null (the field must be absent) is told apart from no value (capture it)."""
    parsed = models.ProtectedField.model_validate(field)
    assert (parsed.has_value, parsed.value) == (has_value, value)


def test_capture_allows_fields_without_value() -> None:
    """With capture: true a field may leave its value to the live object."""
    doc = mitigation(fields=[{"path": "spec.replicas"}], capture=True)
    assert models.Mitigation.model_validate(doc).spec.capture is True


def test_a_selector_target_is_valid() -> None:
    """A target may be a label selector instead of a name."""
    doc = mitigation(target={"apiVersion": "v1", "kind": "ConfigMap", "selector": {}})
    target = models.Mitigation.model_validate(doc).spec.target
    assert (target.name, target.selector) == (None, models.LabelSelector())


@pytest.mark.parametrize(
    ("rule", "constraint"),
    [
        ({"equals": None}, "equals"),
        ({"equals": 3}, "equals"),
        ({"notIn": [True]}, "notIn"),
        ({"matches": "^nginx:"}, "matches"),
        ({"notMatches": ":latest$"}, "notMatches"),
        ({"atLeast": "512Mi"}, "atLeast"),
        ({"atMost": 10}, "atMost"),
        ({"present": False}, "present"),
    ],
)
def test_a_rule_reports_its_one_constraint(rule: dict[str, Any], constraint: str) -> None:
    """Rule.constraint() names the constraint set, equals: null included."""
    parsed = models.Rule.model_validate({"name": "r", "path": "spec.x", **rule})
    assert parsed.constraint() == constraint


def test_a_null_constraint_other_than_equals_is_not_set() -> None:
    """present: null is dropped by the API server, so it does not count as a constraint."""
    with pytest.raises(pydantic.ValidationError, match="exactly one constraint"):
        models.Rule.model_validate({"name": "r", "path": "x", "present": None})


@pytest.mark.parametrize("field", ["matches", "notMatches"])
def test_a_bad_regular_expression_is_rejected(field: str) -> None:
    """The gate reports an invalid regex instead of crashing on it later."""
    with pytest.raises(pydantic.ValidationError, match=f"{field}: not a valid regular expression"):
        models.Rule.model_validate({"name": "r", "path": "x", field: "(unclosed"})


def test_status_ignores_unknown_fields() -> None:
    """A newer operator's status fields do not break an older reader."""
    status = models.MitigationStatus.model_validate({"phase": "Watching", "futureField": 1})
    assert status.phase == "Watching"


def test_conditions_are_shaped_like_metav1_condition() -> None:
    """A condition needs type, status, reason and lastTransitionTime; status is tri-state."""
    good = {
        "type": conventions.CONDITION_READY,
        "status": "True",
        "reason": "TargetsFound",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    assert models.Condition.model_validate(good).to_wire() == good
    with pytest.raises(pydantic.ValidationError, match="status"):
        models.Condition.model_validate({**good, "status": "Yes"})
    with pytest.raises(pydantic.ValidationError, match="reason"):
        models.Condition.model_validate({**good, "reason": "not camel case"})


def test_parse_dispatches_by_kind_and_checks_the_api_version() -> None:
    """parse() picks the model by kind; a wrong apiVersion or kind is an error."""
    assert isinstance(models.parse(guardrail()), models.Guardrail)
    with pytest.raises(pydantic.ValidationError, match="apiVersion"):
        models.parse({**guardrail(), "apiVersion": "keepfix.dev/v1"})
    with pytest.raises(pydantic.ValidationError, match="kind must be Mitigation"):
        models.Mitigation.model_validate({**guardrail(), "spec": mitigation()["spec"]})


def test_enums_match_the_conventions() -> None:
    """The phase, state and action strings the models accept are the conventions' strings."""
    phases = {
        conventions.PHASE_PENDING,
        conventions.PHASE_WATCHING,
        conventions.PHASE_DRIFTED,
        conventions.PHASE_EXPIRED,
        conventions.PHASE_INVALID,
    }
    actions = {
        conventions.ACTION_ROLLED_BACK,
        conventions.ACTION_ALERTED,
        conventions.ACTION_ROLLBACK_FAILED,
        conventions.ACTION_FIGHTING,
    }
    assert set(models.Phase.__args__) == phases
    assert set(models.RegressionState.__args__) == {
        conventions.STATE_OPEN,
        conventions.STATE_RESOLVED,
    }
    assert set(models.RegressionAction.__args__) == actions


def test_a_regression_with_status_parses() -> None:
    """The operator's Regression, with history and conditions, round-trips."""
    doc = {
        "apiVersion": conventions.API_VERSION,
        "kind": "Regression",
        "metadata": {"name": "web-memory-fix-1a2b", "namespace": "shop"},
        "spec": {
            "mitigation": {"name": "web-memory-fix", "uid": "u1"},
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "severity": "Critical",
            "category": "ConfigDrift",
            "signature": "sha256:ab",
            "drift": [{"path": "spec.replicas", "expected": 3, "actual": 1, "knownBad": True}],
            "changedBy": [{"manager": "kubectl-edit", "operation": "Update"}],
            "firstSeen": "2026-01-01T00:00:00Z",
            "lastSeen": "2026-01-02T00:00:00Z",
            "occurrences": 2,
        },
        "status": {
            "state": "Resolved",
            "action": "RolledBack",
            "resolutionSeconds": 1.5,
            "history": [
                {
                    "time": "2026-01-02T00:00:00Z",
                    "severity": "Critical",
                    "drift": [{"path": "spec.replicas", "actual": 1}],
                }
            ],
        },
    }
    assert models.Regression.model_validate(doc).to_wire() == doc


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


MITIGATION_SCHEMA = crdgen.openapi_schema(models.Mitigation)


@hypothesis.settings(deadline=None, max_examples=50)
@hypothesis.given(value=JSON, known_bad=st.lists(JSON, max_size=3))
def test_any_json_value_round_trips_and_fits_the_crd(value: Any, known_bad: list[Any]) -> None:
    """A protected field's value and knownBad may be any JSON, null included."""
    doc = mitigation(fields=[{"path": "spec.x", "value": value, "knownBad": known_bad}])
    assert models.Mitigation.model_validate(doc).to_wire() == doc
    jsonschema.validate(doc, MITIGATION_SCHEMA)


def test_cel_messages_name_the_field() -> None:
    """Every CEL rule in the CRDs carries a message that starts with the field path."""
    rules = [
        rule
        for kind in models.KINDS
        for node in _nodes(crdgen.openapi_schema(kind))
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert {r["message"] for r in rules} == {
        models.MSG_TARGET,
        models.MSG_URL,
        models.MSG_URL_SECRET,
    }
    assert all(r["message"].startswith("spec.") for r in rules)


def _nodes(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)
