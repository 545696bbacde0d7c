"""Pydantic v2 models of keepfix's four kinds: the one source of truth.

`keepfix.api.crdgen` generates the CRD schemas in crds/ from these models, so
every description written here is what `kubectl explain` prints, and every
constraint a model can express (enums, patterns, minimum lengths) is enforced
by the API server as well as by the CLI gate that parses manifests with these
models. What the shape alone cannot say (exactly one of two fields, a field
required only when another is set) is written next to the model it
constrains, twice: as a pydantic validator (for the gate) and as CEL
(`x-kubernetes-validations`, messages naming the field) for the API server.
CEL cannot see free-form fields, so rules about those are `oneOf`/`anyOf`
lists of `required` instead.

Field names are snake_case in Python and camelCase on the wire (aliases);
both spellings are accepted when parsing. Specs forbid unknown fields, so a
typo is reported instead of silently dropped; statuses ignore unknown fields
so an older CLI can read a newer operator's status.

A free-form value (a protected field's `value`, `knownBad` items, a drift's
`expected`/`actual`) may be any JSON, including `null`: on a Mitigation field
`value: null` means the fix needs the field absent, which is not the same as
leaving `value` out (see `ProtectedField.has_value`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Self

import pydantic
from pydantic import alias_generators
from pydantic.config import JsonDict

from keepfix.api import conventions

Action = Literal["Rollback", "Alert"]
Admission = Literal["Deny", "Warn", "Off"]
Category = Literal["ConfigDrift", "Code", "Infra", "Dependency", "HumanError", "IncompleteFix"]
Enforcement = Literal["Deny", "Warn", "Audit"]
Remediation = Literal["None", "Rollback"]
Severity = Literal["Critical", "High", "Medium", "Low"]
Phase = Literal["Pending", "Watching", "Drifted", "Expired", "Invalid"]
RegressionState = Literal["Open", "Resolved"]
RegressionAction = Literal["RolledBack", "Alerted", "RollbackFailed", "Fighting"]
SinkType = Literal["slack", "teams", "webhook", "alertmanager"]
ConditionStatus = Literal["True", "False", "Unknown"]

#: The duration syntax of watch windows and repeat intervals: `30d`, `12h`, `90m`.
DURATION_PATTERN = r"^[0-9]+[dhm]$"
#: The constraints of a Guardrail rule, exactly one of which a rule sets.
RULE_CONSTRAINTS = ("equals", "notIn", "matches", "notMatches", "atLeast", "atMost", "present")
# CEL messages (the API server); the models say the same relative to where they fail.
MSG_TARGET = "spec.target: set exactly one of name or selector"
MSG_URL = "spec.sinks[].url: required for webhook and alertmanager sinks"
MSG_URL_SECRET = "spec.sinks[].urlSecretRef: required for slack and teams sinks"
#: Caps that keep lists (and the API server's CEL cost estimate) bounded.
MAX_FIELDS = 64
MAX_RULES = 64
MAX_VALUES = 64
MAX_SINKS = 16
MAX_CONDITIONS = 16
MAX_SAMPLE = 20
MAX_HISTORY = 20

#: A value that may be any JSON (object, list, string, number, boolean, null).
AnyValue = Annotated[
    Any,
    pydantic.WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True, "nullable": True}),
]


def _bound(value: object) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError('must be an integer or a string ("0.5", "512Mi", "1.25.3")')
    return value


#: A bound for atLeast/atMost: a number, a quantity such as `512Mi`, or a version.
#: Fractions are written as strings ("0.5", "500m"), as Kubernetes quantities are.
Bound = Annotated[
    int | str,
    pydantic.PlainValidator(_bound),
    pydantic.WithJsonSchema({"x-kubernetes-int-or-string": True}),
]
Duration = Annotated[str, pydantic.Field(pattern=DURATION_PATTERN)]
NonEmpty = Annotated[str, pydantic.Field(min_length=1)]


def _cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    validation: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        validation["fieldPath"] = field_path
    return validation


def _map_list(*keys: str) -> dict[str, Any]:
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


class _Model(pydantic.BaseModel):
    """Base: camelCase on the wire, either spelling accepted, unknown fields ignored."""

    model_config = pydantic.ConfigDict(
        alias_generator=alias_generators.to_camel,
        populate_by_name=True,
        extra="ignore",
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict with camelCase keys, omitting fields never set."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


class _Spec(_Model):
    """Base of everything under a spec: unknown fields are errors (typos get reported)."""

    model_config = pydantic.ConfigDict(extra="forbid")


# --- shared pieces -------------------------------------------------------------------------


class LabelSelectorRequirement(_Spec):
    """A label selector requirement, as in metav1.LabelSelector."""

    key: NonEmpty = pydantic.Field(description="The label key the requirement applies to.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = pydantic.Field(
        description="In, NotIn, Exists or DoesNotExist."
    )
    values: list[str] = pydantic.Field(
        default_factory=list,
        description="The label values; non-empty for In and NotIn, empty for Exists and "
        "DoesNotExist.",
    )


class LabelSelector(_Spec):
    """A label selector, as in metav1.LabelSelector. An empty selector matches every object."""

    match_labels: dict[str, str] = pydantic.Field(
        default_factory=dict,
        description="Labels an object must carry, each with exactly this value.",
    )
    match_expressions: list[LabelSelectorRequirement] = pydantic.Field(
        default_factory=list, description="Requirements an object's labels must all meet."
    )


class Owner(_Spec):
    """Who owns the fix and hears about its regressions."""

    team: str | None = pydantic.Field(
        default=None, description="The owning team; AlertRoutes match on it (spec.match.teams)."
    )
    contact: str | None = pydantic.Field(
        default=None, description='How to reach the team, e.g. a chat channel "#shop-oncall".'
    )
    escalation: str | None = pydantic.Field(
        default=None, description="Who to escalate to when the owning team does not respond."
    )


class Incident(_Spec):
    """The incident the fix came from."""

    id: str | None = pydantic.Field(default=None, description="The incident id, e.g. INC-1234.")
    url: str | None = pydantic.Field(default=None, description="A link to the incident record.")
    description: str | None = pydantic.Field(
        default=None, description="What happened, in a sentence an on-call can read at 3 a.m."
    )


class Fix(_Spec):
    """The change that fixed the incident."""

    commit: str | None = pydantic.Field(
        default=None, description="The commit of the fix; `keepfix verify-fix` checks for it."
    )
    repository: str | None = pydantic.Field(
        default=None, description="The repository holding the commit."
    )
    description: str | None = pydantic.Field(default=None, description="What the fix changed.")


class Condition(_Model):
    """A condition, shaped like metav1.Condition."""

    type: str = pydantic.Field(
        min_length=1,
        max_length=316,
        description="The condition type in CamelCase, e.g. Ready, Valid, Drifted, Fighting.",
    )
    status: ConditionStatus = pydantic.Field(description="True, False or Unknown.")
    reason: str = pydantic.Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="A CamelCase reason for the last transition.",
    )
    message: str = pydantic.Field(
        default="", max_length=32768, description="A human-readable message about the transition."
    )
    last_transition_time: datetime = pydantic.Field(description="When the status last changed.")
    observed_generation: int | None = pydantic.Field(
        default=None, ge=0, description="The .metadata.generation the condition was set for."
    )


def _conditions() -> Any:
    return pydantic.Field(
        default_factory=list,
        max_length=MAX_CONDITIONS,
        description="The latest observations of the object's state, one per type.",
        json_schema_extra=_map_list("type"),
    )


# --- Mitigation ----------------------------------------------------------------------------


class Target(_Spec):
    """The object(s) a Mitigation protects: one object by name, or every object a selector
    matches."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "has(self.name) != has(self.selector)",
                    MSG_TARGET,
                )
            ]
        }
    )

    api_version: NonEmpty = pydantic.Field(
        description="The apiVersion of the target, e.g. apps/v1 or v1."
    )
    kind: NonEmpty = pydantic.Field(
        description="The kind of the target, e.g. Deployment or ConfigMap; any built-in or "
        "custom kind."
    )
    name: NonEmpty | None = pydantic.Field(
        default=None, description="The name of the one target object. Set this or selector."
    )
    selector: LabelSelector | None = pydantic.Field(
        default=None,
        description="A label selector: every object of this kind it matches is protected. Set "
        "this or name.",
    )
    namespace: str | None = pydantic.Field(
        default=None,
        description="The namespace of the target; defaults to the Mitigation's own. Ignored for "
        "cluster-scoped kinds.",
    )

    @pydantic.model_validator(mode="after")
    def _name_or_selector(self) -> Self:
        if (self.name is None) == (self.selector is None):
            raise ValueError("set exactly one of name or selector")
        return self


class ProtectedField(_Spec):
    """A protected field: the path the fix set, its stable value and the values the incident
    had."""

    path: NonEmpty = pydantic.Field(
        description="The path of the field, e.g. "
        "spec.template.spec.containers[name=web].resources.limits.memory. Dotted keys, "
        '[name=web] selectors, [0] indices, [*] every item, ["example.com/key"] for keys with '
        "dots; a leading / means a JSON Pointer."
    )
    value: AnyValue = pydantic.Field(
        default=None,
        description="The stable value (any JSON). null means the fix needs the field absent. "
        "Leave it out only with spec.capture: true, to take it from the live object.",
    )
    known_bad: list[AnyValue] = pydantic.Field(
        default_factory=list,
        max_length=MAX_VALUES,
        description="The values the incident had. A drift back to one of them is the incident "
        "itself returning (severity Critical) and is what admission rejects first.",
    )

    @property
    def has_value(self) -> bool:
        """Whether `value` was given at all (`value: null` counts as given)."""
        return "value" in self.model_fields_set


class MitigationSpec(_Spec):
    """A recorded fix: the fields it set on the target and what to do when they drift."""

    # CEL cannot see the free-form `value`, so "required unless capture" is an anyOf.
    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"properties": {"capture": {"enum": [True]}}, "required": ["capture"]},
                {"properties": {"fields": {"items": {"required": ["value"]}}}},
            ]
        }
    )

    target: Target = pydantic.Field(
        description="The object(s) the fix was made on: one object by name, or every object a "
        "label selector matches (set exactly one of name and selector)."
    )
    fields: list[ProtectedField] = pydantic.Field(
        min_length=1,
        max_length=MAX_FIELDS,
        description="The protected fields, each path at most once.",
        json_schema_extra=_map_list("path"),
    )
    capture: pydantic.StrictBool = pydantic.Field(
        default=False,
        description="Take the stable value of every field without a value from the live object "
        "when the Mitigation is created (status.stable shows what was captured).",
    )
    action: Action = pydantic.Field(
        default="Rollback",
        description="What to do on drift: Rollback puts the drifted fields back (never the whole "
        "object) and records a Regression; Alert only records and alerts.",
    )
    admission: Admission = pydantic.Field(
        default="Warn",
        description="What the admission webhook does with a change that breaks a protected "
        "field: Deny rejects it, Warn admits it with a warning, Off does not look. Defaults to "
        "Warn so a new Mitigation never blocks a deploy by surprise; set Deny once it is right.",
    )
    watch_window: Duration = pydantic.Field(
        default="30d",
        description="How long after the fix a drift counts as a regression of the incident "
        "(Nd, Nh or Nm). Drift after the window is still rolled back, with severity Low.",
    )
    category: Category = pydantic.Field(
        default="ConfigDrift",
        description="The kind of cause: ConfigDrift, Code, Infra, Dependency, HumanError or "
        "IncompleteFix; copied to every Regression.",
    )
    owner: Owner | None = pydantic.Field(default=None, description="Who owns the fix.")
    incident: Incident | None = pydantic.Field(
        default=None, description="The incident the fix came from."
    )
    fix: Fix | None = pydantic.Field(default=None, description="The change that fixed it.")
    runbook: str | None = pydantic.Field(
        default=None, description="The playbook an on-call follows when the incident recurs."
    )

    @pydantic.model_validator(mode="after")
    def _values_and_paths(self) -> Self:
        for i, field in enumerate(self.fields):
            if not (field.has_value or self.capture):
                raise ValueError(f"fields[{i}].value: required unless capture is true")
        _unique("fields", "path", [f.path for f in self.fields])
        return self


class StableValue(_Model):
    """A resolved stable value of a protected field."""

    path: str = pydantic.Field(description="The protected field's path.")
    value: AnyValue = pydantic.Field(
        default=None, description="The stable value in force (null: the field must be absent)."
    )


class MitigationStatus(_Model):
    """What the operator observed about a Mitigation."""

    phase: Phase | None = pydantic.Field(
        default=None, description="Pending, Watching, Drifted, Expired or Invalid."
    )
    mitigated_at: datetime | None = pydantic.Field(
        default=None, description="When the fix was recorded; the watch window starts here."
    )
    watch_until: datetime | None = pydantic.Field(
        default=None, description="When the watch window ends."
    )
    stable: list[StableValue] = pydantic.Field(
        default_factory=list,
        max_length=MAX_FIELDS,
        description="The resolved stable values (captured ones included).",
    )
    targets: int = pydantic.Field(default=0, ge=0, description="Objects currently matched.")
    drifts: int = pydantic.Field(default=0, ge=0, description="Drifts detected so far.")
    rollbacks: int = pydantic.Field(default=0, ge=0, description="Rollbacks applied so far.")
    regressions: int = pydantic.Field(default=0, ge=0, description="Regressions recorded so far.")
    last_regression: str | None = pydantic.Field(
        default=None, description="The name of the latest Regression."
    )
    prevented: int = pydantic.Field(
        default=0, ge=0, description="Changes the admission webhook denied for this Mitigation."
    )
    observed_generation: int | None = pydantic.Field(
        default=None, ge=0, description="The .metadata.generation this status is for."
    )
    conditions: list[Condition] = _conditions()


# --- Guardrail -----------------------------------------------------------------------------


class ResourceMatch(_Spec):
    """Kinds a Guardrail applies to."""

    api_groups: list[str] = pydantic.Field(
        default_factory=list,
        description='API groups, e.g. ["apps"]; "" is the core group, "*" any group.',
    )
    kinds: list[NonEmpty] = pydantic.Field(
        min_length=1, description='Kinds, e.g. ["Deployment", "StatefulSet"]; "*" any kind.'
    )


class GuardrailMatch(_Spec):
    """Which objects a Guardrail applies to."""

    resources: list[ResourceMatch] = pydantic.Field(
        min_length=1, description="The kinds the Guardrail applies to."
    )
    namespaces: list[str] = pydantic.Field(
        default_factory=list, description="Namespaces to check; empty means all."
    )
    exclude_namespaces: list[str] = pydantic.Field(
        default_factory=list, description="Namespaces never checked, e.g. kube-system."
    )
    selector: LabelSelector | None = pydantic.Field(
        default=None, description="A label selector on the object; absent or empty matches all."
    )


class Rule(_Spec):
    """One rule: a path and exactly one constraint on the value found there."""

    # CEL cannot see free-form fields (equals, notIn), so "exactly one" is a oneOf of requireds.
    model_config = pydantic.ConfigDict(
        json_schema_extra={"oneOf": [{"required": [c]} for c in RULE_CONSTRAINTS]}
    )

    name: NonEmpty = pydantic.Field(description="The rule's name, unique in the Guardrail.")
    path: NonEmpty = pydantic.Field(
        description="The path of the checked field (Mitigation path syntax). [*] must hold for "
        "every item; podSpec. means the pod spec of any workload kind."
    )
    message: str | None = pydantic.Field(
        default=None, description="Shown with a violation: why this value is bad."
    )
    optional: pydantic.StrictBool = pydantic.Field(
        default=False,
        description="An absent field satisfies every constraint (by default an absent field "
        "satisfies only notIn, notMatches and present: false).",
    )
    equals: AnyValue = pydantic.Field(default=None, description="The value must equal this.")
    not_in: list[AnyValue] | None = pydantic.Field(
        default=None, max_length=MAX_VALUES, description="Known-bad values the field must not have."
    )
    matches: str | None = pydantic.Field(
        default=None, description="A regular expression the value must contain a match of."
    )
    not_matches: str | None = pydantic.Field(
        default=None, description="A regular expression the value must not contain a match of."
    )
    at_least: Bound | None = pydantic.Field(
        default=None,
        description='A floor: an integer, a quantity ("512Mi", "0.5") or a version ("1.25.3"; '
        "on an image, its tag is compared). Write fractions as strings, as quantities are.",
    )
    at_most: Bound | None = pydantic.Field(
        default=None, description="A ceiling: a number, a quantity or a version."
    )
    present: pydantic.StrictBool | None = pydantic.Field(
        default=None, description="true: the field must exist; false: it must be absent."
    )

    @pydantic.model_validator(mode="after")
    def _one_constraint(self) -> Self:
        if len(self._constraints()) != 1:
            raise ValueError("set exactly one constraint of " + ", ".join(RULE_CONSTRAINTS))
        for name, pattern in (("matches", self.matches), ("notMatches", self.not_matches)):
            if pattern is not None:
                _regex(name, pattern)
        return self

    def _constraints(self) -> list[str]:
        # equals: null is a constraint (the value must be null); other nulls mean "not set".
        given = self.model_fields_set
        return [
            c
            for c in RULE_CONSTRAINTS
            if (snake := alias_generators.to_snake(c)) in given
            and (snake == "equals" or getattr(self, snake) is not None)
        ]

    def constraint(self) -> str:
        """The wire name of the one constraint this rule sets, e.g. `notIn`."""
        return self._constraints()[0]


def _regex(field: str, pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as err:
        raise ValueError(f"{field}: not a valid regular expression: {err}") from err


def _unique(field: str, key: str, values: list[str]) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise ValueError(f"{field}[{i}].{key}: duplicate value {value!r}")
        seen.add(value)


class GuardrailSpec(_Spec):
    """Immutable defaults and known-bad config, checked at admission and at runtime."""

    match: GuardrailMatch = pydantic.Field(description="Which objects the rules apply to.")
    rules: list[Rule] = pydantic.Field(
        min_length=1,
        max_length=MAX_RULES,
        description="The rules; every one must hold. Each has a unique name, a path and "
        "exactly one constraint: equals, notIn, matches, notMatches, atLeast, atMost or present.",
        json_schema_extra=_map_list("name"),
    )
    enforcement: Enforcement = pydantic.Field(
        default="Audit",
        description="At admission: Deny rejects a violating object, Warn admits it with a "
        "warning, Audit only counts it in status. Defaults to Audit so a new Guardrail never "
        "causes an outage; switch to Deny once status.violations is clean.",
    )
    remediation: Remediation = pydantic.Field(
        default="None",
        description="At runtime: Rollback sets a violating field back where the rule implies "
        "one value (equals), None leaves it.",
    )
    owner: Owner | None = pydantic.Field(default=None, description="Who owns the Guardrail.")
    incident: Incident | None = pydantic.Field(
        default=None, description="The incident that motivated it."
    )

    @pydantic.model_validator(mode="after")
    def _unique_names(self) -> Self:
        _unique("rules", "name", [r.name for r in self.rules])
        return self


class ViolationSample(_Model):
    """One object breaking a rule."""

    api_version: str = pydantic.Field(description="The object's apiVersion.")
    kind: str = pydantic.Field(description="The object's kind.")
    namespace: str | None = pydantic.Field(default=None, description="The object's namespace.")
    name: str = pydantic.Field(description="The object's name.")
    rule: str = pydantic.Field(description="The broken rule's name.")
    path: str = pydantic.Field(description="The concrete path that broke it.")
    message: str | None = pydantic.Field(default=None, description="What is wrong.")


class GuardrailStatus(_Model):
    """What the operator observed about a Guardrail."""

    violations: int = pydantic.Field(default=0, ge=0, description="Objects violating it now.")
    sample: list[ViolationSample] = pydantic.Field(
        default_factory=list,
        max_length=MAX_SAMPLE,
        description=f"Up to {MAX_SAMPLE} of the violations.",
    )
    prevented: int = pydantic.Field(
        default=0, ge=0, description="Changes the admission webhook denied."
    )
    observed_generation: int | None = pydantic.Field(
        default=None, ge=0, description="The .metadata.generation this status is for."
    )
    conditions: list[Condition] = _conditions()


# --- Regression ----------------------------------------------------------------------------


class MitigationRef(_Spec):
    """The Mitigation that regressed."""

    name: str = pydantic.Field(description="The Mitigation's name (same namespace).")
    uid: str | None = pydantic.Field(default=None, description="The Mitigation's uid.")


class ObjectRef(_Spec):
    """The object that drifted."""

    api_version: str = pydantic.Field(description="The object's apiVersion.")
    kind: str = pydantic.Field(description="The object's kind.")
    namespace: str | None = pydantic.Field(default=None, description="The object's namespace.")
    name: str = pydantic.Field(description="The object's name.")
    uid: str | None = pydantic.Field(default=None, description="The object's uid.")


class DriftItem(_Spec):
    """One drifted protected field. Secret data never appears: only a sha256: hash."""

    path: str = pydantic.Field(description="The protected field's path.")
    expected: AnyValue = pydantic.Field(default=None, description="The stable value.")
    actual: AnyValue = pydantic.Field(
        default=None, description="The value found (null: absent; sha256:... for Secret data)."
    )
    known_bad: pydantic.StrictBool = pydantic.Field(
        default=False, description="Whether the value found is one the incident had."
    )


class ChangedBy(_Spec):
    """A writer of a drifted field, from metadata.managedFields."""

    manager: str = pydantic.Field(description="The field manager, e.g. kubectl-edit.")
    operation: str | None = pydantic.Field(default=None, description="Apply or Update.")
    time: datetime | None = pydantic.Field(default=None, description="When it wrote.")
    subresource: str | None = pydantic.Field(
        default=None, description="The subresource written, e.g. scale."
    )


class Review(_Spec):
    """The post-incident review, filled in by the directly responsible individual."""

    root_cause_delta: str | None = pydantic.Field(
        default=None, description="Why the fix did not hold: what differs from the first cause."
    )
    prevention_steps: list[str] = pydantic.Field(
        default_factory=list, description="What will stop it coming back."
    )
    acknowledged_by: str | None = pydantic.Field(
        default=None, description="Who reviewed the regression."
    )


class RegressionSpec(_Spec):
    """One recurrence pattern of a fixed incident on one object, written by the operator."""

    mitigation: MitigationRef = pydantic.Field(description="The Mitigation that regressed.")
    target: ObjectRef = pydantic.Field(description="The object that drifted.")
    severity: Severity = pydantic.Field(
        description="Critical (the incident's own known-bad values are back), High (some are), "
        "Medium (other drift in the window) or Low (after the window)."
    )
    category: Category = pydantic.Field(
        default="ConfigDrift", description="Copied from the Mitigation."
    )
    signature: str = pydantic.Field(
        description="sha256:... of the kind and drifted paths and values; one Regression per "
        "signature."
    )
    drift: list[DriftItem] = pydantic.Field(
        default_factory=list, max_length=MAX_FIELDS, description="The drifted fields."
    )
    changed_by: list[ChangedBy] = pydantic.Field(
        default_factory=list, max_length=MAX_FIELDS, description="Who changed them."
    )
    incident: Incident | None = pydantic.Field(default=None, description="The original incident.")
    fix: Fix | None = pydantic.Field(default=None, description="The original fix.")
    owner: Owner | None = pydantic.Field(default=None, description="Who owns the fix.")
    runbook: str | None = pydantic.Field(default=None, description="The playbook to follow.")
    first_seen: datetime = pydantic.Field(description="The first occurrence.")
    last_seen: datetime = pydantic.Field(description="The latest occurrence.")
    occurrences: int = pydantic.Field(default=1, ge=1, description="How often it happened.")
    review: Review | None = pydantic.Field(
        default=None, description="The post-incident review (not written by the operator)."
    )


class HistoryDrift(_Model):
    """A drifted field's value at one occurrence."""

    path: str = pydantic.Field(description="The protected field's path.")
    actual: AnyValue = pydantic.Field(default=None, description="The value found.")


class HistoryEntry(_Model):
    """One occurrence of the regression."""

    time: datetime = pydantic.Field(description="When it happened.")
    severity: Severity = pydantic.Field(description="The severity it had.")
    action: RegressionAction | None = pydantic.Field(
        default=None, description="What the operator did."
    )
    drift: list[HistoryDrift] = pydantic.Field(
        default_factory=list, max_length=MAX_FIELDS, description="The values found."
    )


class RegressionStatus(_Model):
    """Where the regression stands."""

    state: RegressionState | None = pydantic.Field(default=None, description="Open or Resolved.")
    action: RegressionAction | None = pydantic.Field(
        default=None, description="RolledBack, Alerted, RollbackFailed or Fighting."
    )
    resolved_at: datetime | None = pydantic.Field(
        default=None, description="When the object was back at its stable state."
    )
    resolution_seconds: float | None = pydantic.Field(
        default=None, ge=0, description="From lastSeen to resolvedAt: the regression's MTTR."
    )
    history: list[HistoryEntry] = pydantic.Field(
        default_factory=list,
        max_length=MAX_HISTORY,
        description=f"The latest {MAX_HISTORY} occurrences, oldest first.",
    )
    conditions: list[Condition] = _conditions()


# --- AlertRoute ----------------------------------------------------------------------------


class SecretKeyRef(_Spec):
    """A key of a Secret."""

    namespace: NonEmpty = pydantic.Field(description="The Secret's namespace.")
    name: NonEmpty = pydantic.Field(description="The Secret's name.")
    key: NonEmpty = pydantic.Field(description="The key holding the value.")


class SecretRef(_Spec):
    """A Secret whose keys are used as a whole."""

    namespace: NonEmpty = pydantic.Field(description="The Secret's namespace.")
    name: NonEmpty = pydantic.Field(description="The Secret's name.")


class RouteMatch(_Spec):
    """Which regressions a route sends."""

    teams: list[str] = pydantic.Field(
        default_factory=list, description="Owner teams (spec.owner.team); empty means any."
    )
    min_severity: Severity = pydantic.Field(
        default="Low", description="The lowest severity sent: Critical, High, Medium or Low."
    )
    categories: list[Category] = pydantic.Field(
        default_factory=list, description="Categories sent; empty means any."
    )


class Sink(_Spec):
    """Where messages go."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!(self.type in ['webhook', 'alertmanager']) || has(self.url)",
                    MSG_URL,
                    ".url",
                ),
                _cel(
                    "!(self.type in ['slack', 'teams']) || has(self.urlSecretRef)",
                    MSG_URL_SECRET,
                    ".urlSecretRef",
                ),
            ]
        }
    )

    type: SinkType = pydantic.Field(description="slack, teams, webhook or alertmanager.")
    url: NonEmpty | None = pydantic.Field(
        default=None, description="The endpoint, for webhook and alertmanager sinks."
    )
    url_secret_ref: SecretKeyRef | None = pydantic.Field(
        default=None,
        description="The Secret key holding the incoming-webhook URL, for slack and teams (the "
        "URL is a credential).",
    )
    headers_secret_ref: SecretRef | None = pydantic.Field(
        default=None, description="A Secret whose keys and values are sent as HTTP headers."
    )

    @pydantic.model_validator(mode="after")
    def _endpoint(self) -> Self:
        if self.type in ("webhook", "alertmanager") and self.url is None:
            raise ValueError("url: required for webhook and alertmanager sinks")
        if self.type in ("slack", "teams") and self.url_secret_ref is None:
            raise ValueError("urlSecretRef: required for slack and teams sinks")
        return self


class AlertRouteSpec(_Spec):
    """Who hears about a regression, and how."""

    match: RouteMatch = pydantic.Field(
        default_factory=RouteMatch, description="Which regressions this route sends."
    )
    sinks: list[Sink] = pydantic.Field(
        min_length=1, max_length=MAX_SINKS, description="Where to send them."
    )
    repeat_interval: Duration = pydantic.Field(
        default="4h",
        description="At most one message per regression signature per interval (Nd, Nh or Nm).",
    )


class AlertRouteStatus(_Model):
    """What the operator observed about a route."""

    last_sent: datetime | None = pydantic.Field(default=None, description="The last delivery.")
    conditions: list[Condition] = _conditions()


# --- the kinds -----------------------------------------------------------------------------


class Resource(_Model):
    """A keepfix object: apiVersion, kind, metadata, spec and status."""

    KIND: ClassVar[str]
    PLURAL: ClassVar[str]
    SHORT_NAME: ClassVar[str]
    NAMESPACED: ClassVar[bool]

    api_version: str = conventions.API_VERSION
    kind: str
    metadata: dict[str, Any] = pydantic.Field(default_factory=dict)

    @pydantic.field_validator("api_version")
    @classmethod
    def _api_version_matches(cls, api_version: str) -> str:
        if api_version != conventions.API_VERSION:
            raise ValueError(f"apiVersion must be {conventions.API_VERSION}, not {api_version}")
        return api_version

    @pydantic.field_validator("kind")
    @classmethod
    def _kind_matches(cls, kind: str) -> str:
        if kind != cls.KIND:
            raise ValueError(f"kind must be {cls.KIND}, not {kind}")
        return kind


class Mitigation(Resource):
    """A recorded fix that keepfix keeps in place."""

    KIND = conventions.KIND_MITIGATION
    PLURAL = conventions.PLURAL_MITIGATIONS
    SHORT_NAME = "mit"
    NAMESPACED = True
    kind: str = conventions.KIND_MITIGATION
    spec: MitigationSpec
    status: MitigationStatus | None = None


class Guardrail(Resource):
    """Immutable defaults and known-bad config for every matching object in the cluster."""

    KIND = conventions.KIND_GUARDRAIL
    PLURAL = conventions.PLURAL_GUARDRAILS
    SHORT_NAME = "gr"
    NAMESPACED = False
    kind: str = conventions.KIND_GUARDRAIL
    spec: GuardrailSpec
    status: GuardrailStatus | None = None


class Regression(Resource):
    """A recurrence of a fixed incident, written by the operator."""

    KIND = conventions.KIND_REGRESSION
    PLURAL = conventions.PLURAL_REGRESSIONS
    SHORT_NAME = "reg"
    NAMESPACED = True
    kind: str = conventions.KIND_REGRESSION
    spec: RegressionSpec
    status: RegressionStatus | None = None


class AlertRoute(Resource):
    """Routes regressions to chat, webhooks or Alertmanager."""

    KIND = conventions.KIND_ALERT_ROUTE
    PLURAL = conventions.PLURAL_ALERT_ROUTES
    SHORT_NAME = "ar"
    NAMESPACED = False
    kind: str = conventions.KIND_ALERT_ROUTE
    spec: AlertRouteSpec
    status: AlertRouteStatus | None = None


#: The four kinds, in the order crdgen writes them.
KINDS: tuple[type[Resource], ...] = (AlertRoute, Guardrail, Mitigation, Regression)
_BY_KIND = {k.KIND: k for k in KINDS}


def parse(obj: dict[str, Any]) -> Resource:
    """Parse one keepfix object by its kind; raises pydantic.ValidationError or KeyError."""
    return _BY_KIND[obj["kind"]].model_validate(obj)
