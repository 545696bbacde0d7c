"""The ValidatingWebhookConfiguration: only the kinds something enforces.

`targets` (pure) reads a `core.policy.PolicySet` and says which (apiGroup,
kind) pairs each webhook must see: kinds targeted by a Mitigation with
`admission: Deny|Warn` for `mitigations.keepfix.dev`, kinds matched by a
Guardrail with `enforcement: Deny|Warn` for `guardrails.keepfix.dev`. Audit
and `admission: Off` policies are left to the runtime audit, so a kind nobody
enforces never costs an admission call. `configuration` (pure) builds the
object from resolved rules and the `Endpoint` (a URL in dev mode, a Service in
service mode).

`Registrar` (I/O) maps kinds to resources through discovery (a kind whose CRD
is not installed yet is left out and looked up again by the periodic resync,
which starts from a fresh Registrar) and
server-side applies the configuration under field manager `keepfix`, only
when it changed. A webhook without rules is left out of the configuration
rather than registered empty. The configuration is kept when the operator
stops: with `failurePolicy: Fail` a stopped operator must keep blocking
writes; `--webhook=off` removes it (`remove`).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from keepfix.adapters import kube as kube_mod
from keepfix.api import conventions
from keepfix.core import policy, rules

logger = logging.getLogger(__name__)

WILDCARD: Final = "*"
OPERATIONS: Final = ("CREATE", "UPDATE")
#: The subresource registered beside each resource (a Scale request is reviewed as
#: a change of the object's spec.replicas; see review.from_scale).
SCALE: Final = "scale"
#: Namespaces never sent to the webhook, besides the operator's own (node heartbeats
#: live in kube-node-lease: a Guardrail on every kind must not be able to stop them).
ALWAYS_EXCLUDED: Final = ("kube-node-lease", "kube-system")
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"

RESOURCE: Final = kube_mod.Resource(
    group="admissionregistration.k8s.io",
    version="v1",
    kind="ValidatingWebhookConfiguration",
    plural="validatingwebhookconfigurations",
    namespaced=False,
)

GroupKind = tuple[str, str]
Targets = Mapping[str, frozenset[GroupKind]]
Conditions = Mapping[str, Sequence[Mapping[str, str]]]
#: How an API server refuses match conditions: invalid or too costly CEL (422), or a
#: field it does not know (400; older releases answer 500 to such an apply).
REFUSED: Final = frozenset({400, 422, 500})


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where the API server reaches the webhook: a URL base (dev) or a Service."""

    url: str | None = None
    service_namespace: str | None = None
    service_name: str | None = None
    service_port: int = 443

    def client_config(self, webhook: str, ca_bundle: bytes) -> dict[str, Any]:
        path = conventions.WEBHOOK_PATH_PREFIX + webhook
        config: dict[str, Any] = {"caBundle": base64.b64encode(ca_bundle).decode()}
        if self.url is not None:
            config["url"] = self.url.rstrip("/") + path
        else:
            config["service"] = {
                "namespace": self.service_namespace,
                "name": self.service_name,
                "path": path,
                "port": self.service_port,
            }
        return config


@dataclasses.dataclass(frozen=True)
class Options:
    """The settings of every webhook in the configuration."""

    endpoint: Endpoint
    ca_bundle: bytes
    operator_namespace: str
    failure_policy: str = "Ignore"
    timeout_seconds: int = 3


def targets(policies: policy.PolicySet) -> dict[str, frozenset[GroupKind]]:
    """The (apiGroup, kind) pairs each webhook must see; Audit/Off policies add none."""
    enforced = (policy.Level.DENY, policy.Level.WARN)
    mitigated = {
        (m.group, m.kind)
        for bucket in (*policies.by_name.values(), *policies.by_selector.values())
        for m in bucket
        if m.level in enforced
    }
    guarded = {
        key
        for key, bucket in policies.guardrails.items()
        if any(g.level in enforced for _, g in bucket)
    }
    return {
        conventions.WEBHOOK_GUARDRAILS: frozenset(guarded),
        conventions.WEBHOOK_MITIGATIONS: frozenset(mitigated),
    }


#: The request's namespace and name as CEL (the API server leaves empty fields out).
_CEL_NAMESPACE: Final = '(has(request.namespace) ? request.namespace : "")'
_CEL_NAME: Final = '(has(request.name) ? request.name : "")'
_CEL_LABELS: Final = "(has(object.metadata.labels) ? object.metadata.labels : {})"
#: Past this length the condition is left out and the webhook sees every request of its
#: kinds (an over-large CEL expression costs the API server more than the calls it saves).
MAX_CONDITION_CHARS: Final = 256 * 1024
MATCH_CONDITION_NAME: Final = "targeted-by-an-enforced-mitigation"
#: A wildcard rule (a Guardrail on kind `*`) skips the cluster's own plumbing: Events,
#: Leases (leader election, heartbeats), access reviews, and keepfix's own kinds, so
#: that a Deny on every kind cannot stop controllers, nodes or the operator itself.
PLUMBING_CONDITION_NAME: Final = "not-cluster-plumbing"
_CEL_GROUP: Final = '(has(request.resource.group) ? request.resource.group : "")'
_CEL_RESOURCE: Final = "request.resource.resource"
PLUMBING_CONDITION: Final = {
    "name": PLUMBING_CONDITION_NAME,
    "expression": (
        f'!({_CEL_GROUP} in ["", "events.k8s.io"] && {_CEL_RESOURCE} == "events")'
        f' && !({_CEL_GROUP} == "coordination.k8s.io" && {_CEL_RESOURCE} == "leases")'
        f' && !({_CEL_GROUP} in ["authentication.k8s.io", "authorization.k8s.io",'
        f' "{conventions.GROUP}"])'
    ),
}


def conditions(policies: policy.PolicySet) -> dict[str, tuple[dict[str, str], ...]]:
    """The matchConditions of each webhook: only requests the reviewer could act on.

    `mitigations.keepfix.dev` is called only for objects an enforced
    (Deny/Warn) Mitigation targets: by namespace and name, or by namespace and
    label selector, exactly as `core.policy` matches them (an object without
    a namespace matches by name or selector whatever the Mitigation's
    namespace). Every other write of the same kinds skips the call: no
    latency, and with `failurePolicy: Fail` a stopped operator blocks only
    writes to protected objects. Guardrails match whole kinds, so their
    webhook has no condition; neither has a webhook whose condition would be
    longer than MAX_CONDITION_CHARS.
    """
    expression = _mitigation_expression(policies)
    if expression is None or len(expression) > MAX_CONDITION_CHARS:
        return {}
    return {
        conventions.WEBHOOK_MITIGATIONS: ({"name": MATCH_CONDITION_NAME, "expression": expression},)
    }


def _mitigation_expression(policies: policy.PolicySet) -> str | None:
    enforced = (policy.Level.DENY, policy.Level.WARN)
    named = [m for bucket in policies.by_name.values() for m in bucket if m.level in enforced]
    selecting = [
        m for bucket in policies.by_selector.values() for m in bucket if m.level in enforced
    ]
    if not named and not selecting:
        return None
    clauses: list[str] = []
    if named:
        keys = sorted({f"{m.namespace}/{m.target_name}" for m in named})
        names = sorted({str(m.target_name) for m in named})
        clauses.append(
            f'({_CEL_NAMESPACE} == "" ? {_CEL_NAME} in {_cel_set(names)} : '
            f'({_CEL_NAMESPACE} + "/" + {_CEL_NAME}) in {_cel_set(keys)})'
        )
    by_selector: dict[str, set[str]] = {}
    for m in selecting:
        assert m.selector is not None  # by_selector holds selector Mitigations only
        by_selector.setdefault(_cel_selector(m.selector.selector), set()).add(m.namespace)
    for labels, namespaces in sorted(by_selector.items()):
        where = " || ".join(
            f"{_CEL_NAMESPACE} == {_cel_string(n)}" for n in sorted({"", *namespaces})
        )
        clauses.append(f"(({where}) && {labels})" if labels != "true" else f"({where})")
    return " || ".join(clauses)


def _cel_selector(selector: rules.Selector) -> str:
    """A label selector over the object's labels, as CEL (`true` for the empty selector)."""
    labels = _CEL_LABELS
    terms = [
        f"({_cel_string(k)} in {labels} && {labels}[{_cel_string(k)}] == {_cel_string(v)})"
        for k, v in selector.match_labels
    ]
    for r in selector.match_expressions:
        present = f"{_cel_string(r.key)} in {_CEL_LABELS}"
        inside = (
            f"({present} && {_CEL_LABELS}[{_cel_string(r.key)}] in "
            f"[{', '.join(_cel_string(v) for v in r.values)}])"
        )
        terms.append(
            {
                "Exists": f"({present})",
                "DoesNotExist": f"!({present})",
                "In": inside,
                "NotIn": f"!{inside}",
            }[r.operator]
        )
    return " && ".join(terms) if terms else "true"


def _cel_set(values: Iterable[str]) -> str:
    # A map literal: `in` is a lookup, not a scan of a list.
    return "{" + ", ".join(f"{_cel_string(v)}: true" for v in values) + "}"


def _cel_string(value: str) -> str:
    # JSON string escapes are valid CEL string escapes.
    return json.dumps(value, ensure_ascii=True)


def rule(group: str, resources: Iterable[str]) -> dict[str, Any]:
    """One webhook rule: CREATE and UPDATE of `resources` in `group`, every version."""
    return {
        "apiGroups": [group],
        "apiVersions": [WILDCARD],
        "operations": list(OPERATIONS),
        "resources": sorted(set(resources)),
        "scope": WILDCARD,
    }


def configuration(
    rules_by_webhook: Mapping[str, Sequence[Mapping[str, Any]]],
    options: Options,
    match_conditions: Conditions | None = None,
) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration body, webhooks in a stable order."""
    excluded = sorted({options.operator_namespace, *ALWAYS_EXCLUDED})
    match_conditions = match_conditions or {}
    webhooks = [
        {
            "name": name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": options.failure_policy,
            "matchPolicy": "Equivalent",
            "timeoutSeconds": options.timeout_seconds,
            "namespaceSelector": {
                "matchExpressions": [
                    {"key": NAMESPACE_NAME_LABEL, "operator": "NotIn", "values": excluded}
                ]
            },
            "rules": [dict(r) for r in rules],
            # Left out when empty: API servers before 1.28 do not know the field, and
            # server-side apply drops a condition this manager applied before.
            **_conditions_field([*match_conditions.get(name, ()), *_plumbing(rules)]),
            "clientConfig": options.endpoint.client_config(name, options.ca_bundle),
        }
        for name, rules in sorted(rules_by_webhook.items())
        if rules
    ]
    return {
        "apiVersion": RESOURCE.api_version,
        "kind": RESOURCE.kind,
        # No labels: the Helm chart creates this object and owns its labels
        # (`app.kubernetes.io/managed-by: Helm` is how Helm recognises it).
        "metadata": {"name": conventions.WEBHOOK_CONFIGURATION_NAME},
        "webhooks": webhooks,
    }


def _plumbing(rules: Sequence[Mapping[str, Any]]) -> list[Mapping[str, str]]:
    wildcard = any(WILDCARD in r.get("resources", ()) for r in rules)
    return [PLUMBING_CONDITION] if wildcard else []


def _conditions_field(found: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    return {"matchConditions": [dict(c) for c in found]} if found else {}


class Registrar:
    """Keeps the cluster's ValidatingWebhookConfiguration equal to `configuration(...)`."""

    def __init__(self, *, kube: kube_mod.Kube, options: Options) -> None:
        self._kube = kube
        self.options = options
        self._applied: str | None = None
        self._wanted: tuple[dict[str, frozenset[GroupKind]], dict[str, Any]] | None = None
        self._groups: dict[str, tuple[str, ...]] | None = None
        # Kinds discovery did not know; asked again only by a new Registrar (the
        # periodic resync), not on every policy change.
        self._missing: set[GroupKind] = set()
        #: (group, plural) -> kind of every resource registered so far.
        self.kinds_by_resource: dict[tuple[str, str], str] = {}

    async def sync(self, wanted: Targets, match_conditions: Conditions | None = None) -> bool:
        """Apply the configuration for `wanted`; True when the cluster was written.

        Should the API server refuse the match conditions (a CEL cost limit,
        or a release before 1.28 that has no such field), the configuration is
        applied without them: every request of the kinds is then reviewed, as
        before conditions existed.
        """
        key = (dict(wanted), dict(match_conditions or {}))
        if key == self._wanted:
            return False
        rules = {name: await self._rules(kinds) for name, kinds in wanted.items()}
        body = configuration(rules, self.options, match_conditions)
        text = json.dumps(body, sort_keys=True)
        if text == self._applied:
            self._wanted = key
            return False
        try:
            await self._kube.apply(RESOURCE, body=body, force=True)
        except kube_mod.ApiError as error:
            if error.status not in REFUSED or not match_conditions:
                raise
            logger.warning(
                "Webhook match conditions refused, every request of the kinds goes to the "
                "webhook: %s",
                error,
            )
            body = configuration(rules, self.options)
            text = json.dumps(body, sort_keys=True)
            await self._kube.apply(RESOURCE, body=body, force=True)
        self._applied, self._wanted = text, key
        logger.info(
            "ValidatingWebhookConfiguration applied: name=%s webhooks=%s",
            conventions.WEBHOOK_CONFIGURATION_NAME,
            {name: [r["resources"] for r in rs] for name, rs in rules.items() if rs},
        )
        return True

    async def _rules(self, kinds: Iterable[GroupKind]) -> list[dict[str, Any]]:
        by_group: dict[str, set[str]] = {}
        for group, kind in sorted(kinds):
            for found_group, plural in await self._resources(group, kind):
                by_group.setdefault(found_group, set()).add(plural)
                if plural != WILDCARD:
                    # `kubectl scale` writes the scale subresource, not the object.
                    by_group[found_group].add(f"{plural}/{SCALE}")
                    self.kinds_by_resource[(found_group, plural)] = kind
        if WILDCARD in by_group.get(WILDCARD, set()):
            return [rule(WILDCARD, [WILDCARD])]
        return [rule(group, plurals) for group, plurals in sorted(by_group.items())]

    async def _resources(self, group: str, kind: str) -> list[GroupKind]:
        if kind == WILDCARD:
            return [(group, WILDCARD)]
        if (group, kind) in self._missing:
            return []
        groups = await self._group_versions()
        candidates = sorted(groups) if group == WILDCARD else [group]
        found: list[GroupKind] = []
        for candidate in candidates:
            plural = await self._plural(candidate, groups.get(candidate, ()), kind)
            if plural is not None:
                found.append((candidate, plural))
        if not found:
            self._missing.add((group, kind))
            logger.info("Webhook target kind not served: group=%r kind=%s", group, kind)
        return found

    async def _plural(self, group: str, versions: Sequence[str], kind: str) -> str | None:
        for version in versions:
            api_version = f"{group}/{version}" if group else version
            try:
                return (await self._kube.resource_for(api_version, kind)).plural
            except kube_mod.UnknownKind:
                continue
        return None

    async def _group_versions(self) -> dict[str, tuple[str, ...]]:
        if self._groups is None:
            listing = await _get_json(self._kube, "/apis")
            groups: dict[str, tuple[str, ...]] = {"": ("v1",)}
            for item in listing.get("groups", []):
                preferred = item.get("preferredVersion", {}).get("version")
                versions = [v["version"] for v in item.get("versions", [])]
                ordered = [preferred] if preferred else []
                groups[item["name"]] = tuple(dict.fromkeys([*ordered, *versions]))
            self._groups = groups
            return groups
        return self._groups


async def remove(*, kube: kube_mod.Kube) -> None:
    """Delete the configuration (`--webhook=off`); absent or forbidden is logged only."""
    name = conventions.WEBHOOK_CONFIGURATION_NAME
    try:
        await kube.delete(RESOURCE, namespace=None, name=name)
    except kube_mod.ApiError as error:
        logger.warning("ValidatingWebhookConfiguration not deleted: name=%s %s", name, error)
    else:
        logger.info("ValidatingWebhookConfiguration deleted: name=%s", name)


async def _get_json(kube: kube_mod.Kube, path: str) -> dict[str, Any]:
    async with kube.stream("GET", path) as response:
        decoded = json.loads(await response.read())
    return decoded if isinstance(decoded, dict) else {}
