"""From keepfix objects (plain dicts as read from YAML or the API) to core policies.

`mitigation` and `guardrail` validate with `keepfix.api.models`, then check
what the model's shape alone cannot (exactly one of target name/selector, a
value for every field unless `capture`, exactly one constraint per rule,
paths that parse, regular expressions that compile), and build the frozen
`keepfix.core.policy` inputs. Every problem found is reported at once in
`InvalidPolicy.errors`, each as `spec.fields[0].path: message` so a person can
find the field.

The gate and the operator's registry both go through here, so a Mitigation the
gate accepts is one the operator enforces the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import pydantic

from keepfix.api import models
from keepfix.core import diff, paths, policy, rules

M = TypeVar("M", bound=pydantic.BaseModel)


class InvalidPolicy(ValueError):
    """A Mitigation or Guardrail the gate and the operator cannot use; `errors` say why."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(self.errors))


def mitigation(
    obj: Mapping[str, Any], *, default_namespace: str = "default"
) -> policy.MitigationPolicy:
    """The policy form of a Mitigation; no metadata.namespace reads as `default_namespace`."""
    model = _validate(models.Mitigation, obj)
    spec = model.spec
    errors = [*_name_errors(model.metadata), *_target_errors(spec.target)]
    namespace = str(model.metadata.get("namespace") or default_namespace)
    fields = []
    for i, f in enumerate(spec.fields):
        errors.extend(_path_errors(f"spec.fields[{i}].path", f.path))
        errors.extend(_server_owned_errors(f"spec.fields[{i}].path", f.path))
        if not f.has_value and not spec.capture:
            errors.append(f"spec.fields[{i}].value: required unless spec.capture is true")
        if f.has_value:
            fields.append((f.path, diff.ProtectedField(f.path, f.value, tuple(f.known_bad))))
    if errors:
        raise InvalidPolicy(errors)
    target = spec.target
    group = policy.group_of(target.api_version)
    target_namespace = target.namespace or namespace
    return policy.MitigationPolicy(
        ref=policy.Ref(
            models.Mitigation.KIND, str(model.metadata["name"]), namespace, model.api_version
        ),
        group=group,
        kind=target.kind,
        namespace=target_namespace,
        target_name=target.name,
        selector=None
        if target.selector is None
        else _target_match(group, target.kind, target_namespace, target.selector),
        fields=tuple(fields),
        level=policy.Level.from_admission(spec.admission),
        context=_context(spec.incident, spec.owner, spec.runbook),
    )


def guardrail(obj: Mapping[str, Any]) -> policy.GuardrailPolicy:
    """The policy form of a Guardrail (cluster-scoped: metadata.namespace is ignored)."""
    model = _validate(models.Guardrail, obj)
    spec = model.spec
    errors = list(_name_errors(model.metadata))
    core_rules = []
    for i, rule in enumerate(spec.rules):
        try:
            core_rules.append(_rule(f"spec.rules[{i}]", rule))
        except InvalidPolicy as exc:
            errors.extend(exc.errors)
    errors.extend(_duplicates("spec.rules", (r.name for r in spec.rules)))
    try:
        match = rules.Match.from_dict(spec.match.to_wire())
    except rules.RuleError as exc:
        errors.append(f"spec.match: {exc}")
    if errors:
        raise InvalidPolicy(errors)
    return policy.GuardrailPolicy(
        ref=policy.Ref(models.Guardrail.KIND, str(model.metadata["name"]), None, model.api_version),
        kinds=_kinds(spec.match),
        match=match,
        rules=tuple(core_rules),
        level=policy.Level.from_enforcement(spec.enforcement),
        context=_context(spec.incident, spec.owner, None),
    )


def _validate(model: type[M], obj: Mapping[str, Any]) -> M:
    try:
        return model.model_validate(obj)
    except pydantic.ValidationError as exc:
        errors = [_pydantic_error(e) for e in exc.errors()]
        # A schema error must not hide a bad path of the same object: report both at once.
        raise InvalidPolicy([*errors, *_raw_path_errors(obj)]) from None


def _raw_path_errors(obj: Mapping[str, Any]) -> Iterator[str]:
    """Path syntax errors of `spec.fields[*].path` and `spec.rules[*].path`, before validation."""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return
    for name in ("fields", "rules"):
        items = spec.get(name)
        for i, item in enumerate(items if isinstance(items, list) else ()):
            if isinstance(item, Mapping) and isinstance(item.get("path"), str):
                yield from _path_errors(f"spec.{name}[{i}].path", item["path"])


def _pydantic_error(error: Mapping[str, Any]) -> str:
    where = location(error["loc"])
    if _unquoted_off(error):
        choices = str(error["ctx"]["expected"]).replace("'", "").replace(" or ", ", ")
        return (
            f"{where}: false is not one of {choices} \N{EM DASH} YAML reads an unquoted Off "
            'as false; write "Off"'
        )
    message = str(error["msg"]).removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    # A model validator on `spec` says `fields[0].value: ...`: name the field in full.
    inner = _FIELD_MESSAGE.match(message)
    if where and inner and not inner[1].startswith(where):
        return f"{where}.{inner[1]}: {inner[2]}"
    return f"{where}: {message}" if where else message


def _unquoted_off(error: Mapping[str, Any]) -> bool:
    # YAML 1.1 (PyYAML, and kubectl's sigs.k8s.io/yaml) reads `admission: Off` as false.
    expected = error.get("ctx", {}).get("expected", "")
    return error["type"] == "literal_error" and error.get("input") is False and "'Off'" in expected


_FIELD_MESSAGE = re.compile(r"^([A-Za-z]\w*(?:\[\d+\]|\.[A-Za-z]\w*)*): (.+)$", re.DOTALL)


def location(loc: Iterable[int | str]) -> str:
    """`("spec", "fields", 0, "path")` -> `spec.fields[0].path`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _name_errors(metadata: Mapping[str, Any]) -> Iterator[str]:
    if not isinstance(metadata.get("name"), str) or not metadata["name"]:
        yield "metadata.name: field required"


def _target_errors(target: models.Target) -> Iterator[str]:
    if (target.name is None) == (target.selector is None):
        yield "spec.target: set exactly one of name or selector"


#: Fields the API server or controllers own: a fix cannot be kept there (a patch
#: to status through the main resource is silently dropped).
SERVER_OWNED: tuple[tuple[str, ...], ...] = (
    ("status",),
    ("metadata", "managedFields"),
    ("metadata", "resourceVersion"),
    ("metadata", "generation"),
    ("metadata", "uid"),
    ("metadata", "creationTimestamp"),
    ("metadata", "deletionTimestamp"),
)


def _server_owned_errors(where: str, text: str) -> Iterator[str]:
    try:
        parsed = paths.parse(text)
    except paths.PathError:
        return
    keys = tuple(s.name for s in parsed.segments[:2] if isinstance(s, paths.Key))
    for owned in SERVER_OWNED:
        if keys[: len(owned)] == owned:
            yield (
                f"{where}: {text} is written by the API server or a controller, "
                "not by people: keepfix cannot keep a fix there (protect spec, data or "
                "metadata labels and annotations)"
            )
            return


def _path_errors(where: str, text: str) -> Iterator[str]:
    try:
        paths.parse(text)
    except paths.PathError as exc:
        yield f"{where}: {exc}"


def _rule(where: str, rule: models.Rule) -> rules.Rule:
    errors = list(_path_errors(f"{where}.path", rule.path))
    for name, pattern in (("matches", rule.matches), ("notMatches", rule.not_matches)):
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                errors.append(
                    f"{where}.{name}: bad regular expression at position {exc.pos}: {exc.msg}"
                )
    if errors:
        raise InvalidPolicy(errors)
    try:
        return rules.Rule.from_dict(rule.to_wire())
    except rules.RuleError as exc:
        raise InvalidPolicy([f"{where}: {exc}"]) from None


def _target_match(
    group: str, kind: str, namespace: str, selector: models.LabelSelector
) -> rules.Match:
    # A selector target is a Guardrail-style match pinned to the target's kind and namespace,
    # so label matching is the one core.rules implements.
    try:
        label_selector = rules.Selector.from_dict(selector.to_wire())
    except rules.RuleError as exc:
        raise InvalidPolicy([f"spec.target.selector: {exc}"]) from None
    return rules.Match(
        resources=(rules.Resources(api_groups=(group,), kinds=(kind,)),),
        namespaces=(namespace,) if namespace else (),
        selector=label_selector,
    )


def _duplicates(where: str, names: Iterable[str]) -> Iterator[str]:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            yield f"{where}: rule name {name!r} used twice"
        seen.add(name)


def _context(
    incident: models.Incident | None, owner: models.Owner | None, runbook: str | None
) -> policy.Context:
    return policy.Context(
        incident=incident.id if incident else None,
        owner=owner.team if owner else None,
        runbook=runbook,
    )


def _kinds(match: models.GuardrailMatch) -> tuple[tuple[str, str], ...]:
    return tuple(
        (group, kind)
        for resource in match.resources
        for group in (resource.api_groups or [policy.WILDCARD])
        for kind in resource.kinds
    )
