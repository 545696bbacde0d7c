"""keepfix.api.convert: Mitigation and Guardrail objects to core policies, with readable errors."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from keepfix.api import convert
from keepfix.core import policy, rules


def mitigation_obj(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "fields": [{"path": "spec.replicas", "value": 3, "knownBad": [1]}],
        "admission": "Warn",
        "owner": {"team": "shop-sre"},
        "incident": {"id": "INC-1234"},
        "runbook": "https://runbooks.example.com/web",
    }
    base.update(spec)
    return {
        "apiVersion": "keepfix.dev/v1alpha1",
        "kind": "Mitigation",
        "metadata": {"name": "web-fix", "namespace": "shop"},
        "spec": base,
    }


def guardrail_obj(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "match": {"resources": [{"apiGroups": ["apps"], "kinds": ["Deployment", "StatefulSet"]}]},
        "rules": [{"name": "min-replicas", "path": "spec.replicas", "atLeast": 2}],
        "enforcement": "Deny",
        "owner": {"team": "platform-sre"},
        "incident": {"id": "INC-99"},
    }
    base.update(spec)
    return {
        "apiVersion": "keepfix.dev/v1alpha1",
        "kind": "Guardrail",
        "metadata": {"name": "floors"},
        "spec": base,
    }


def errors_of(fn: Any, obj: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(convert.InvalidPolicy) as caught:
        fn(obj)
    return caught.value.errors


# --- Mitigation ----------------------------------------------------------------------------


def test_a_mitigation_by_name() -> None:
    """Identity, fields, level and context come over."""
    m = convert.mitigation(mitigation_obj())
    assert m.ref == policy.Ref("Mitigation", "web-fix", "shop", "keepfix.dev/v1alpha1")
    assert (m.group, m.kind, m.namespace, m.target_name, m.selector) == (
        "apps",
        "Deployment",
        "shop",
        "web",
        None,
    )
    ((declared, field),) = m.fields
    assert (declared, field.path, field.value, field.known_bad) == (
        "spec.replicas",
        "spec.replicas",
        3,
        (1,),
    )
    assert m.level is policy.Level.WARN
    assert m.context == policy.Context("INC-1234", "shop-sre", "https://runbooks.example.com/web")


def test_the_target_namespace_defaults_to_the_mitigations_own() -> None:
    """Unless the target names one; a Mitigation without namespace takes the default given."""
    assert convert.mitigation(mitigation_obj()).namespace == "shop"
    other = mitigation_obj(
        target={"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "web"}
    )
    assert convert.mitigation(other).namespace == "web"
    bare = mitigation_obj()
    del bare["metadata"]["namespace"]
    m = convert.mitigation(bare, default_namespace="ci")
    assert (m.ref.namespace, m.namespace) == ("ci", "ci")


def test_a_selector_target_becomes_a_match_on_kind_namespace_and_labels() -> None:
    """The label selector is core.rules' own, pinned to the target's kind and namespace."""
    obj = mitigation_obj(
        target={
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "Exists"}],
            },
        }
    )
    m = convert.mitigation(obj)
    assert m.target_name is None
    assert m.selector is not None
    cm: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"namespace": "shop", "labels": {"app": "web", "tier": "x"}},
    }
    assert rules.matches(m.selector, cm)
    assert not rules.matches(
        m.selector, {**cm, "metadata": {"namespace": "shop", "labels": {"app": "web"}}}
    )
    assert not rules.matches(
        m.selector, {**cm, "metadata": {**cm["metadata"], "namespace": "other"}}
    )


def test_captured_fields_without_value_are_left_out() -> None:
    """capture: true and no value: nothing a manifest can be checked against."""
    obj = mitigation_obj(
        capture=True, fields=[{"path": "spec.replicas"}, {"path": "spec.paused", "value": None}]
    )
    m = convert.mitigation(obj)
    assert [d for d, _ in m.fields] == ["spec.paused"]
    assert m.fields[0][1].requires_absent


@pytest.mark.parametrize(
    ("admission", "level"), [("Deny", policy.Level.DENY), ("Off", policy.Level.AUDIT)]
)
def test_admission_sets_the_level(admission: str, level: policy.Level) -> None:
    """Deny -> Deny, Off -> Audit."""
    assert convert.mitigation(mitigation_obj(admission=admission)).level is level


def test_schema_errors_name_every_field() -> None:
    """All pydantic errors, each as `path: message` with list indices in brackets."""
    obj = mitigation_obj(
        fields=[{"value": 3}, {"path": "spec.x", "value": 1, "extra": True}], admission="Maybe"
    )
    errors = errors_of(convert.mitigation, obj)
    assert "spec.fields[0].path: field required" in errors
    assert "spec.fields[1].extra: extra inputs are not permitted" in errors
    assert any(
        e.startswith("spec.admission: input should be 'Deny', 'Warn' or 'Off'") for e in errors
    )


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"fields": [{"path": "spec.replicas"}]}, "spec.fields[0].value: required unless"),
        (
            {"target": {"apiVersion": "apps/v1", "kind": "Deployment"}},
            "spec.target: set exactly one of name or selector",
        ),
        (
            {"fields": [{"path": "spec..replicas", "value": 1}]},
            'spec.fields[0].path: bad path "spec..replicas" at column 6',
        ),
    ],
    ids=["value-missing", "no-target", "bad-path"],
)
def test_what_the_schema_cannot_say_is_checked_too(change: dict[str, Any], error: str) -> None:
    """Exactly one target, a value unless captured, a path that parses (with its column)."""
    errors = errors_of(convert.mitigation, mitigation_obj(**change))
    assert any(e.startswith(error) for e in errors), errors


def test_a_mitigation_without_a_name_is_invalid() -> None:
    """metadata.name is what findings are reported under."""
    obj = mitigation_obj()
    obj["metadata"] = {"namespace": "shop"}
    assert "metadata.name: field required" in errors_of(convert.mitigation, obj)


def test_a_bad_target_selector_is_reported() -> None:
    """An In requirement without values cannot select anything."""
    obj = mitigation_obj(
        target={
            "apiVersion": "v1",
            "kind": "Pod",
            "selector": {"matchExpressions": [{"key": "a", "operator": "In"}]},
        }
    )
    (error,) = errors_of(convert.mitigation, obj)
    assert error.startswith("spec.target.selector")


# --- Guardrail -----------------------------------------------------------------------------


def test_a_guardrail() -> None:
    """Kinds for the index, the core match and rules, the level and context."""
    g = convert.guardrail(guardrail_obj())
    assert g.ref == policy.Ref("Guardrail", "floors", None, "keepfix.dev/v1alpha1")
    assert g.kinds == (("apps", "Deployment"), ("apps", "StatefulSet"))
    assert [r.name for r in g.rules] == ["min-replicas"]
    assert g.level is policy.Level.DENY
    assert g.context == policy.Context("INC-99", "platform-sre", None)


def test_guardrail_without_api_groups_is_indexed_under_any_group() -> None:
    """Empty apiGroups means any group, as core.rules reads it."""
    g = convert.guardrail(guardrail_obj(match={"resources": [{"kinds": ["Pod"]}]}))
    assert g.kinds == (("*", "Pod"),)


def test_enforcement_defaults_to_audit() -> None:
    """A new Guardrail never blocks until someone says so."""
    obj = guardrail_obj()
    del obj["spec"]["enforcement"]
    assert convert.guardrail(obj).level is policy.Level.AUDIT


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ({"name": "r", "path": "spec.[", "atLeast": 1}, "spec.rules[0].path: bad path"),
        ({"name": "r", "path": "spec.x", "matches": "(unclosed"}, "spec.rules[0]"),
        ({"name": "r", "path": "spec.x", "atLeast": 1, "atMost": 3}, "spec.rules[0]"),
        ({"name": "r", "path": "spec.x"}, "spec.rules[0]"),
        ({"name": "r", "path": "spec.x", "atLeast": "soon"}, "spec.rules[0]"),
    ],
    ids=["bad-path", "bad-regex", "two-constraints", "no-constraint", "bad-bound"],
)
def test_bad_rules_are_reported_with_their_index(rule: dict[str, Any], error: str) -> None:
    """Every rule problem names spec.rules[i]."""
    errors = errors_of(convert.guardrail, guardrail_obj(rules=[rule]))
    assert any(e.startswith(error) for e in errors), errors


def test_two_rules_with_one_name_are_reported() -> None:
    """Rule names identify findings: they must be unique."""
    rule = {"name": "r", "path": "spec.replicas", "atLeast": 2}
    errors = errors_of(convert.guardrail, guardrail_obj(rules=[rule, copy.deepcopy(rule)]))
    assert any("'r'" in e for e in errors), errors


def test_a_bad_match_selector_is_reported() -> None:
    """A selector operator core.rules does not know."""
    match = {
        "resources": [{"kinds": ["Pod"]}],
        "selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]},
    }
    errors = errors_of(convert.guardrail, guardrail_obj(match=match))
    assert any(e.startswith("spec.match") for e in errors), errors


def test_a_guardrail_without_a_name_is_invalid() -> None:
    """metadata.name is required."""
    obj = guardrail_obj()
    obj["metadata"] = {}
    assert "metadata.name: field required" in errors_of(convert.guardrail, obj)


def test_location_formats_pydantic_locations() -> None:
    """Keys dotted, indices bracketed."""
    assert convert.location(("spec", "fields", 0, "path")) == "spec.fields[0].path"
    assert convert.location((0, "a")) == "[0].a"
    assert convert.location(()) == ""


def test_unquoted_off_says_to_quote_it() -> None:
    """`admission: Off` unquoted is YAML 1.1 false: the error says so and how to fix it."""
    errors = errors_of(convert.mitigation, mitigation_obj(admission=False))
    assert errors == (
        "spec.admission: false is not one of Deny, Warn, Off \N{EM DASH} YAML reads an unquoted "
        'Off as false; write "Off"',
    )


@pytest.mark.parametrize("admission", [True, "off", 0])
def test_other_bad_admissions_keep_the_schema_message(admission: Any) -> None:
    """Only a boolean false is the unquoted-Off trap."""
    (error,) = errors_of(convert.mitigation, mitigation_obj(admission=admission))
    assert error.startswith("spec.admission: input should be 'Deny', 'Warn' or 'Off'")


@pytest.mark.parametrize("text", ["false", "no", "true"])
def test_a_string_is_not_a_boolean(text: str) -> None:
    """The CRD says boolean: `capture: "false"`, `optional: "true"` are bad input."""
    assert errors_of(convert.mitigation, mitigation_obj(capture=text)) == (
        "spec.capture: input should be a valid boolean",
    )
    rule = {"name": "r", "path": "spec.paused", "present": text, "optional": text}
    errors = errors_of(convert.guardrail, guardrail_obj(rules=[rule]))
    assert "spec.rules[0].optional: input should be a valid boolean" in errors
    assert "spec.rules[0].present: input should be a valid boolean" in errors


def test_a_schema_error_and_a_bad_path_are_both_reported() -> None:
    """Every problem at once: the schema error does not hide the path error."""
    obj = mitigation_obj(admission="Block", fields=[{"path": "spec..replicas", "value": 1}])
    errors = errors_of(convert.mitigation, obj)
    assert any(e.startswith("spec.admission: input should be") for e in errors), errors
    assert any(e.startswith('spec.fields[0].path: bad path "spec..replicas"') for e in errors)
    rule = {"name": "r", "path": "spec[", "atLeast": 2, "optional": "yes"}
    errors = errors_of(convert.guardrail, guardrail_obj(rules=[rule, "junk"]))
    assert any(e.startswith("spec.rules[0].path: bad path") for e in errors), errors


@pytest.mark.parametrize(
    "path",
    [
        "status.replicas",
        "status",
        "/status/replicas",
        "metadata.resourceVersion",
        "metadata.managedFields[0].manager",
    ],
)
def test_a_field_the_server_owns_cannot_be_protected(path: str) -> None:
    """status and server-written metadata are Invalid: a rollback there would be dropped."""
    obj = mitigation_obj(fields=[{"path": path, "value": 3}])
    (error,) = errors_of(convert.mitigation, obj)
    assert error.startswith(f"spec.fields[0].path: {path} is written by the API server")


@pytest.mark.parametrize("path", ["metadata.labels.app", "spec.replicas", "data.mode"])
def test_fields_people_write_can_be_protected(path: str) -> None:
    """metadata labels, spec and data are fine."""
    assert convert.mitigation(mitigation_obj(fields=[{"path": path, "value": "x"}]))
