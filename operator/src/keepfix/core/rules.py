"""Guardrail rules: which objects a Guardrail applies to, and which rules they break.

A `Rule` is a path (DESIGN.md path syntax) and exactly one `Constraint`:
`equals`, `notIn`, `matches`, `notMatches`, `atLeast`, `atMost` or `present`.
`evaluate` resolves the path in the object (`keepfix.core.paths.resolve`) and
checks every location it finds:

- A `[*]` path must hold for every item; over a missing or empty list there is
  nothing to check, so it holds.
- A field that is absent (or null) inside an item that exists, or on a plain
  path, satisfies `notIn`, `notMatches` and `present: false`, and breaks every
  other constraint unless the rule is `optional` (`equals: null` asks for an
  absent field, so absence holds). A `[name=web]` selector that matches no item
  counts as absent.
- `equals` and `notIn` use semantic equality (`keepfix.core.values.equal`:
  `512Mi == 0.5Gi`, a declared mapping is a subset). Regular expressions are
  searched (`re.search`), not fully matched; they apply to scalars (numbers
  and booleans read as `8080`, `true`), and a mapping or list never matches.
- `atLeast`/`atMost` order numbers, quantities and versions; on an image
  reference the tag is compared. A value with no order (a digest, `latest`, a
  word) breaks the rule, and the message says why.
- A path starting with `podSpec.` means the pod spec of the object's kind; a
  kind without one (a ConfigMap) is not checked by that rule.

Values of a Secret's `data` and `stringData` never appear in a violation:
`actual` and the message carry `sha256:<hex>` instead.

`matches` decides whether a Guardrail's `match` selects an object:
`resources` by API group (`""` core, `*` or empty any) and kind (`*` any),
`namespaces` (empty: all), `excludeNamespaces` and a label `selector`
(matchLabels and matchExpressions In, NotIn, Exists, DoesNotExist). A
cluster-scoped object (no `metadata.namespace`) is not filtered by
`namespaces` or `excludeNamespaces`, except a Namespace object, which is
filtered by its own name (`excludeNamespaces: [kube-system]` skips the
kube-system Namespace too). An empty `resources` matches nothing.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, Literal, TypeAlias

from keepfix.core import paths, redaction, values

Operator: TypeAlias = Literal[
    "equals", "notIn", "matches", "notMatches", "atLeast", "atMost", "present"
]

#: The constraint keys of a rule, as spelt in a Guardrail.
CONSTRAINTS: Final[tuple[Operator, ...]] = (
    "equals",
    "notIn",
    "matches",
    "notMatches",
    "atLeast",
    "atMost",
    "present",
)
#: Constraints an absent field satisfies.
ABSENT_SATISFIES: Final = frozenset({"notIn", "notMatches"})
SELECTOR_OPERATORS: Final = ("In", "NotIn", "Exists", "DoesNotExist")
WILDCARD: Final = "*"
_RULE_KEYS: Final = frozenset({"name", "path", "message", "optional", *CONSTRAINTS})
_POINTER_INDEX: Final = re.compile(r"0|[1-9][0-9]*")


class RuleError(ValueError):
    """A rule or match that cannot be used; the message says what to change."""


# --- rules -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Constraint:
    """One constraint: `op` and its operand (a tuple for notIn)."""

    op: Operator
    operand: Any

    def __post_init__(self) -> None:
        check = _OPERAND_CHECKS.get(self.op)
        if check is None:
            raise RuleError(f"unknown constraint {self.op!r}: use one of {', '.join(CONSTRAINTS)}")
        check(self)

    def to_dict(self) -> dict[str, Any]:
        """The constraint as a Guardrail spells it, e.g. `{"notIn": [true]}`."""
        operand = list(self.operand) if self.op == "notIn" else self.operand
        return {self.op: operand}

    @property
    def pattern(self) -> re.Pattern[str]:
        """The compiled regular expression of matches/notMatches."""
        return _compile(self.operand)


def _check_not_in(c: Constraint) -> None:
    if isinstance(c.operand, str | bytes | Mapping) or not isinstance(c.operand, Iterable):
        raise RuleError(f"notIn needs a list of known-bad values, got {c.operand!r}")
    object.__setattr__(c, "operand", tuple(c.operand))


def _check_pattern(c: Constraint) -> None:
    if not isinstance(c.operand, str):
        raise RuleError(f"{c.op} needs a regular expression (a string), got {c.operand!r}")
    try:
        _compile(c.operand)
    except re.error as exc:
        raise RuleError(
            f"{c.op}: bad regular expression {c.operand!r} at position {exc.pos}: {exc.msg}"
        ) from None


def _check_bound(c: Constraint) -> None:
    try:
        values.compare(c.operand, c.operand)
    except values.NotComparable as exc:
        raise RuleError(
            f"{c.op} needs a number, a quantity (512Mi) or a version (1.25.3): {exc}"
        ) from None


def _check_present(c: Constraint) -> None:
    if not isinstance(c.operand, bool):
        raise RuleError(f"present needs true or false, got {c.operand!r}")


def _check_any(c: Constraint) -> None:
    return None


_OPERAND_CHECKS: Final = {
    "equals": _check_any,
    "notIn": _check_not_in,
    "matches": _check_pattern,
    "notMatches": _check_pattern,
    "atLeast": _check_bound,
    "atMost": _check_bound,
    "present": _check_present,
}

_PATTERNS: dict[str, re.Pattern[str]] = {}


def _compile(pattern: str) -> re.Pattern[str]:
    compiled = _PATTERNS.get(pattern)
    if compiled is None:
        compiled = _PATTERNS.setdefault(pattern, re.compile(pattern))
    return compiled


@dataclasses.dataclass(frozen=True)
class Rule:
    """A Guardrail rule; the path is parsed (and checked) when the rule is made."""

    name: str
    path: str
    constraint: Constraint
    message: str | None = None
    optional: bool = False
    parsed: paths.Path = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            parsed = paths.parse(self.path)
        except paths.PathError as exc:
            raise RuleError(f"rule {self.name!r}: {exc}") from None
        object.__setattr__(self, "parsed", parsed)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Rule:
        """A rule from its Guardrail form: `{name, path, <one constraint>, message?, optional?}`."""
        name = spec.get("name")
        where = f"rule {name!r}" if name else "rule"
        if not isinstance(name, str) or not name:
            raise RuleError(f"{where}: name is required")
        if not isinstance(spec.get("path"), str):
            raise RuleError(f"{where}: path is required (e.g. spec.replicas)")
        unknown = sorted(set(spec) - _RULE_KEYS)
        if unknown:
            raise RuleError(f"{where}: unknown key(s) {', '.join(unknown)}")
        found = [op for op in CONSTRAINTS if op in spec]
        if len(found) != 1:
            raise RuleError(
                f"{where}: set exactly one constraint of {', '.join(CONSTRAINTS)} "
                f"(found {', '.join(found) or 'none'})"
            )
        try:
            constraint = Constraint(found[0], spec[found[0]])
        except RuleError as exc:
            raise RuleError(f"{where}: {exc}") from None
        message = spec.get("message")
        return cls(
            name=name,
            path=spec["path"],
            constraint=constraint,
            message=str(message) if message else None,
            optional=bool(spec.get("optional", False)),
        )


@dataclasses.dataclass(frozen=True)
class Violation:
    """One location of an object that breaks a rule.

    `rule` is the rule's name, `path` the concrete human path
    (`spec.template.spec.containers[name=web].securityContext.privileged`),
    `pointer` its JSON pointer, `expected` the constraint as a Guardrail spells
    it, `actual` the value found (None when absent), `known_bad` whether the
    value is one the rule lists as bad (notIn, notMatches), `reason` what is
    wrong without the path (`is true (known-bad)`) and `message` the sentence a
    person reads in a kubectl denial: path, reason and the rule's message.
    """

    rule: str
    path: str
    pointer: str
    expected: dict[str, Any]
    actual: Any
    present: bool
    known_bad: bool
    reason: str
    message: str


def evaluate(rules: Iterable[Rule], obj: Mapping[str, Any]) -> tuple[Violation, ...]:
    """Every violation of `rules` in `obj`, in rule order then location order."""
    found: list[Violation] = []
    for rule in rules:
        found.extend(_evaluate_rule(rule, obj))
    return tuple(found)


def _evaluate_rule(rule: Rule, obj: Mapping[str, Any], *, fast: bool = True) -> list[Violation]:
    # Most rules hold on most objects: a plain walk decides that without building the
    # human path of every location; paths.resolve runs only when something breaks.
    path = paths.expand_pod_spec(rule.parsed, str(obj.get("kind", "")))
    if path is None:
        return []
    if fast and all(
        _verdict(rule, value, found, where) is None for value, found, where in _walk(obj, path)
    ):
        return []
    secret = obj.get("kind") == "Secret"
    found: list[Violation] = []
    for location in paths.resolve(obj, path):
        verdict = _verdict(
            rule, location.value, location.present, _field_of(location.concrete.segments)
        )
        if verdict is not None:
            found.append(_violation(rule, location, verdict, secret=secret))
    return found


#: Why a value breaks a constraint: a kind (`absent`, `differs`, `known-bad`, `no-match`,
#: `bad-match`, `set`, `below`, `above`, `no-order`) and a detail (the NotComparable text).
_Verdict: TypeAlias = tuple[str, str]


def _verdict(rule: Rule, value: Any, present: bool, where: _Field) -> _Verdict | None:
    """None when the value at one location keeps the rule."""
    c = rule.constraint
    field, parent = where
    if not present or value is None:
        absent_ok = c.op in ABSENT_SATISFIES or _wants_absent(c) or rule.optional
        return None if absent_ok else ("absent", "")
    if c.op == "equals":
        same = values.equal(c.operand, value, field=field, parent=parent)
        return None if same else ("differs", "")
    if c.op == "notIn":
        bad = any(values.equal(b, value, field=field, parent=parent) for b in c.operand)
        return ("known-bad", "") if bad else None
    if c.op in ("matches", "notMatches"):
        text = _text(value)
        hit = text is not None and c.pattern.search(text) is not None
        if c.op == "notMatches":
            return ("bad-match", "") if hit else None
        return None if hit else ("no-match", "")
    if c.op == "present":
        return None if c.operand else ("set", "")
    try:
        order = _order(value, c.operand, field)
    except values.NotComparable as exc:
        return "no-order", str(exc)
    side = -1 if c.op == "atLeast" else 1
    return None if order != side else ("below" if side < 0 else "above", "")


def _wants_absent(c: Constraint) -> bool:
    return (c.op == "present" and c.operand is False) or (c.op == "equals" and c.operand is None)


def _reason(c: Constraint, verdict: _Verdict, shown: str) -> str:
    kind, detail = verdict
    operand = render(c.operand) if c.op != "notIn" else ""
    bound = f"the {'minimum' if c.op == 'atLeast' else 'maximum'} {operand}"
    reasons = {
        "absent": _absent_reason(c),
        "differs": f"is {shown}, expected {operand}",
        "known-bad": f"is {shown} (known-bad)",
        "no-match": f"is {shown}, which does not match /{c.operand}/",
        "bad-match": f"is {shown}, which matches the known-bad pattern /{c.operand}/",
        "set": f"is set to {shown}, must be absent",
        "below": f"is {shown}, below {bound}",
        "above": f"is {shown}, above {bound}",
        "no-order": f"is {shown}, which cannot be compared with {bound}: {detail}",
    }
    return reasons[kind]


def _order(value: Any, bound: Any, field: str | None) -> int:
    if field != "image" or not isinstance(value, str):
        return values.compare(value, bound)
    # An image tag is always a version (nginx:1.9 < 1.25), and a bare name
    # (`envoy`) is an image without a tag rather than a word.
    left, right = values.version(values.image_tag(value)), values.version(bound)
    width = max(len(left), len(right))
    left, right = left + (0,) * (width - len(left)), right + (0,) * (width - len(right))
    return (left > right) - (left < right)


def _absent_reason(c: Constraint) -> str:
    if c.op == "present":
        return "is absent, must be set"
    if c.op == "equals":
        return f"is absent, expected {render(c.operand)}"
    if c.op == "matches":
        return f"is absent, expected a value matching /{c.operand}/"
    bound = "at least" if c.op == "atLeast" else "at most"
    return f"is absent, expected {bound} {render(c.operand)}"


def _violation(rule: Rule, location: paths.Match, verdict: _Verdict, *, secret: bool) -> Violation:
    present = location.present and location.value is not None
    actual = location.value if present else None
    if present and secret and _is_secret_data(location):
        actual = _redacted(actual)
    reason = _reason(rule.constraint, verdict, render(actual))
    message = f"{location.path} {reason}"
    if rule.message:
        message += f": {rule.message}"
    return Violation(
        rule=rule.name,
        path=location.path,
        pointer=location.pointer,
        expected=rule.constraint.to_dict(),
        actual=actual,
        present=present,
        known_bad=verdict[0] in ("known-bad", "bad-match"),
        reason=reason,
        message=message,
    )


def _walk(node: Any, path: paths.Path) -> Iterator[tuple[Any, bool, _Field]]:
    """(value, present, field) at every location `paths.resolve` would give, cheaply."""
    where = _field_of(path.segments)
    for value, present in _values(node, path.segments, path.pointer):
        yield value, present, where


def _values(
    node: Any, segments: tuple[paths.Segment, ...], pointer_mode: bool
) -> list[tuple[Any, bool]]:
    # One step of the path at a time over every location reached so far (in order),
    # rather than a generator per step: this runs for every rule on every object.
    frontier: list[tuple[Any, bool]] = [(node, True)]
    for segment in segments:
        reached: list[tuple[Any, bool]] = []
        if isinstance(segment, paths.Every):
            for at, present in frontier:
                if present and isinstance(at, list):
                    reached.extend((item, True) for item in at)
        elif isinstance(segment, paths.Select):
            for at, present in frontier:
                hits = paths.select_indices(at, segment) if present else ()
                reached.extend((at[index], True) for index in hits)
                if not hits:
                    reached.append((None, False))
        elif isinstance(segment, paths.Key):
            name = segment.name
            for at, present in frontier:
                if present and type(at) is dict:  # the common case, without an ABC check
                    reached.append((at[name], True) if name in at else (None, False))
                else:
                    reached.append(_child(at, present, segment, pointer_mode))
        else:
            reached = [_child(at, present, segment, pointer_mode) for at, present in frontier]
        frontier = reached
    return frontier


def _child(
    node: Any, present: bool, segment: paths.Segment, pointer_mode: bool
) -> tuple[Any, bool]:
    if not present:
        return None, False
    if isinstance(segment, paths.Index):
        found = isinstance(node, list) and segment.index < len(node)
        return (node[segment.index] if found else None), found
    assert isinstance(segment, paths.Key), "podSpec is expanded before walking"
    if isinstance(node, Mapping):
        return node.get(segment.name), segment.name in node
    if pointer_mode and isinstance(node, list) and _POINTER_INDEX.fullmatch(segment.name):
        index = int(segment.name)
        return (node[index] if index < len(node) else None), index < len(node)
    return None, False


#: (field, parent): the key a value sits under and the key above it, list steps skipped
#: (`containers[name=web].image` -> image, containers; `args[0]` -> args, ...), which
#: decide list merging and whether strings are quantities, as in `values.equal`.
_Field: TypeAlias = tuple[str | None, str | None]


def _field_of(segments: tuple[paths.Segment, ...]) -> _Field:
    field: str | None = None
    for segment in reversed(segments):
        if isinstance(segment, paths.Key):
            if field is not None:
                return field, segment.name
            field = segment.name
    return field, None


def _text(value: Any) -> str | None:
    if isinstance(value, Mapping | list):
        return None
    return paths.scalar_text(value)


def _is_secret_data(location: paths.Match) -> bool:
    return redaction.is_secret_data(location.pointer)


def _redacted(value: Any) -> str:
    return redaction.redact(value)


def render(value: Any) -> str:
    """A value in a one-line message: strings bare (`""` when empty), the rest as JSON."""
    if isinstance(value, str):
        return value if value else '""'
    return compact_json(value)


def compact_json(value: Any) -> str:
    """One-line JSON with sorted keys, whatever the key types (YAML allows `9000:` and `"a":`)."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    except TypeError:  # keys of mixed types do not sort: spell them as JSON does, as strings
        return json.dumps(_string_keys(value), sort_keys=True, separators=(",", ":"), default=str)


def _string_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _string_keys(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_string_keys(item) for item in value]
    return value


# --- matching ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Resources:
    """Kinds a Guardrail applies to: API groups (`""` core, `*` or empty: any) and kinds."""

    api_groups: tuple[str, ...] = ()
    kinds: tuple[str, ...] = (WILDCARD,)

    def selects(self, group: str, kind: str) -> bool:
        """True when (group, kind) is one of these."""
        groups_ok = not self.api_groups or WILDCARD in self.api_groups or group in self.api_groups
        return groups_ok and (WILDCARD in self.kinds or kind in self.kinds)


@dataclasses.dataclass(frozen=True)
class Requirement:
    """A matchExpressions item: key, operator (In, NotIn, Exists, DoesNotExist), values."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.operator not in SELECTOR_OPERATORS:
            raise RuleError(
                f"selector operator {self.operator!r} on {self.key!r}: use one of "
                f"{', '.join(SELECTOR_OPERATORS)}"
            )
        wants_values = self.operator in ("In", "NotIn")
        if wants_values != bool(self.values):
            need = "needs at least one value" if wants_values else "takes no values"
            raise RuleError(f"selector operator {self.operator} on {self.key!r} {need}")

    def holds(self, labels: Mapping[str, str]) -> bool:
        """True when the labels meet this requirement (NotIn holds when the label is absent)."""
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        inside = self.key in labels and labels[self.key] in self.values
        return inside if self.operator == "In" else not inside


@dataclasses.dataclass(frozen=True)
class Selector:
    """A label selector; the empty selector matches every object."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()

    def selects(self, labels: Mapping[str, str]) -> bool:
        """True when every matchLabels pair and every requirement holds."""
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.holds(labels) for r in self.match_expressions
        )

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any] | None) -> Selector:
        """From metav1.LabelSelector form: `{matchLabels: {...}, matchExpressions: [...]}`."""
        spec = spec or {}
        labels = spec.get("matchLabels") or {}
        expressions = spec.get("matchExpressions") or []
        return cls(
            match_labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
            match_expressions=tuple(
                Requirement(
                    key=str(e.get("key", "")),
                    operator=str(e.get("operator", "")),
                    values=tuple(str(v) for v in e.get("values") or ()),
                )
                for e in expressions
            ),
        )


@dataclasses.dataclass(frozen=True)
class Match:
    """Which objects a Guardrail applies to (see the module docstring)."""

    resources: tuple[Resources, ...]
    namespaces: tuple[str, ...] = ()
    exclude_namespaces: tuple[str, ...] = ()
    selector: Selector = dataclasses.field(default_factory=Selector)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Match:
        """From a Guardrail's `spec.match` form."""
        resources = tuple(
            Resources(
                api_groups=tuple(str(g) for g in r.get("apiGroups") or ()),
                kinds=tuple(str(k) for k in r.get("kinds") or ()),
            )
            for r in spec.get("resources") or ()
        )
        if not resources or not all(r.kinds for r in resources):
            raise RuleError(
                "match.resources needs at least one {apiGroups: [...], kinds: [...]} with a "
                'kind, e.g. {apiGroups: ["apps"], kinds: ["Deployment"]}'
            )
        return cls(
            resources=resources,
            namespaces=tuple(str(n) for n in spec.get("namespaces") or ()),
            exclude_namespaces=tuple(str(n) for n in spec.get("excludeNamespaces") or ()),
            selector=Selector.from_dict(spec.get("selector")),
        )


def matches(match: Match, obj: Mapping[str, Any]) -> bool:
    """True when the Guardrail's `match` selects `obj`."""
    group = str(obj.get("apiVersion") or "").rpartition("/")[0]
    kind = str(obj.get("kind") or "")
    if not any(r.selects(group, kind) for r in match.resources):
        return False
    metadata = _mapping(obj.get("metadata"))
    namespace = metadata.get("namespace") or (
        metadata.get("name") if kind == "Namespace" and not group else None
    )
    if namespace:
        if match.namespaces and namespace not in match.namespaces:
            return False
        if namespace in match.exclude_namespaces:
            return False
    selector = match.selector
    if not (selector.match_labels or selector.match_expressions):
        return True
    labels = _mapping(metadata.get("labels"))
    if not all(isinstance(v, str) for v in labels.values()):
        labels = {str(k): paths.scalar_text(v) for k, v in labels.items()}
    return selector.selects(labels)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
