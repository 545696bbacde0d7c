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
from keepfix.core import policy

logger = logging.getLogger(__name__)

WILDCARD: Final = "*"
OPERATIONS: Final = ("CREATE", "UPDATE")
#: The subresource registered beside each resource (a Scale request is reviewed as
#: a change of the object's spec.replicas; see review.from_scale).
SCALE: Final = "scale"
#: Namespaces never sent to the webhook, besides the operator's own.
ALWAYS_EXCLUDED: Final = ("kube-system",)
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
    rules_by_webhook: Mapping[str, Sequence[Mapping[str, Any]]], options: Options
) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration body, webhooks in a stable order."""
    excluded = sorted({options.operator_namespace, *ALWAYS_EXCLUDED})
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


class Registrar:
    """Keeps the cluster's ValidatingWebhookConfiguration equal to `configuration(...)`."""

    def __init__(self, *, kube: kube_mod.Kube, options: Options) -> None:
        self._kube = kube
        self.options = options
        self._applied: str | None = None
        self._wanted: dict[str, frozenset[GroupKind]] | None = None
        self._groups: dict[str, tuple[str, ...]] | None = None
        # Kinds discovery did not know; asked again only by a new Registrar (the
        # periodic resync), not on every policy change.
        self._missing: set[GroupKind] = set()
        #: (group, plural) -> kind of every resource registered so far.
        self.kinds_by_resource: dict[tuple[str, str], str] = {}

    async def sync(self, wanted: Targets) -> bool:
        """Apply the configuration for `wanted`; True when the cluster was written."""
        if dict(wanted) == self._wanted:
            return False
        rules = {name: await self._rules(kinds) for name, kinds in wanted.items()}
        body = configuration(rules, self.options)
        text = json.dumps(body, sort_keys=True)
        if text == self._applied:
            self._wanted = dict(wanted)
            return False
        await self._kube.apply(RESOURCE, body=body, force=True)
        self._applied, self._wanted = text, dict(wanted)
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
