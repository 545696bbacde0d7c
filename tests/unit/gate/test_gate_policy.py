"""keepfix.core.policy: which Mitigations an object reverts and which Guardrails it breaks."""

from __future__ import annotations

from typing import Any

import pytest

from keepfix.core import diff, policy, rules, scoring


def mitigation(
    name: str = "web-fix",
    *,
    namespace: str = "shop",
    kind: str = "Deployment",
    group: str = "apps",
    target: str | None = "web",
    selector: dict[str, Any] | None = None,
    fields: tuple[tuple[str, Any, tuple[Any, ...]], ...] = (("spec.replicas", 3, (1,)),),
    level: policy.Level = policy.Level.DENY,
    context: policy.Context | None = None,
) -> policy.MitigationPolicy:
    match = None
    if selector is not None:
        match = rules.Match(
            resources=(rules.Resources((group,), (kind,)),),
            namespaces=(namespace,),
            selector=rules.Selector.from_dict(selector),
        )
    return policy.MitigationPolicy(
        ref=policy.Ref("Mitigation", name, namespace, "keepfix.dev/v1alpha1"),
        group=group,
        kind=kind,
        namespace=namespace,
        target_name=target,
        selector=match,
        fields=tuple((p, diff.ProtectedField(p, v, bad)) for p, v, bad in fields),
        level=level,
        context=context or policy.Context(incident="INC-1234", owner="shop-sre"),
    )


def guardrail(
    name: str = "no-privileged",
    *,
    match: dict[str, Any] | None = None,
    rule_specs: tuple[dict[str, Any], ...] = (
        {"name": "min-replicas", "path": "spec.replicas", "atLeast": 2},
    ),
    level: policy.Level = policy.Level.DENY,
    kinds: tuple[tuple[str, str], ...] = (("apps", "Deployment"),),
    context: policy.Context | None = None,
) -> policy.GuardrailPolicy:
    spec = match or {"resources": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}]}
    return policy.GuardrailPolicy(
        ref=policy.Ref("Guardrail", name, None, "keepfix.dev/v1alpha1"),
        kinds=kinds,
        match=rules.Match.from_dict(spec),
        rules=tuple(rules.Rule.from_dict(r) for r in rule_specs),
        level=level,
        context=context or policy.Context(incident="INC-99", owner="platform-sre"),
    )


def deployment(
    name: str = "web",
    *,
    namespace: str | None = "shop",
    replicas: Any = 3,
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": labels or {"app": name}}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {"replicas": replicas, **spec},
    }


def evaluate(
    manifest: dict[str, Any],
    mitigations: tuple[policy.MitigationPolicy, ...] = (),
    guardrails: tuple[policy.GuardrailPolicy, ...] = (),
    **kwargs: Any,
) -> tuple[policy.Finding, ...]:
    return policy.evaluate(policy.PolicySet.build(mitigations, guardrails), manifest, **kwargs)


# --- Mitigations ---------------------------------------------------------------------------


def test_a_revert_names_field_mitigation_incident_owner_and_expected_value() -> None:
    """A manifest that sets a protected field back is a finding with the message CI shows."""
    (finding,) = evaluate(deployment(replicas=1), (mitigation(),))
    assert finding.message == (
        "spec.replicas=1 reverts Mitigation shop/web-fix (known-bad), INC-1234, "
        "owner shop-sre: expected 3"
    )
    assert (finding.rule, finding.path, finding.expected, finding.actual) == (
        "spec.replicas",
        "spec.replicas",
        3,
        1,
    )
    assert finding.known_bad
    assert finding.severity is scoring.Severity.CRITICAL
    assert finding.level is policy.Level.DENY
    assert finding.blocks


def test_the_stable_value_in_another_spelling_is_not_a_revert() -> None:
    """Semantic equality: 0.5Gi is the 512Mi the fix set."""
    m = mitigation(
        fields=(("spec.template.spec.containers[name=web].resources.limits.memory", "512Mi", ()),)
    )
    manifest = deployment(
        template={
            "spec": {"containers": [{"name": "web", "resources": {"limits": {"memory": "0.5Gi"}}}]}
        }
    )
    assert evaluate(manifest, (m,)) == ()


def test_a_field_the_manifest_leaves_out_is_not_a_revert() -> None:
    """Manifests rarely spell out every field; only a value that is there can revert."""
    manifest = deployment()
    del manifest["spec"]["replicas"]
    m = mitigation(
        fields=(
            ("spec.replicas", 3, ()),
            ("spec.template.spec.containers[name=web].image", "web:2", ()),
        )
    )
    assert evaluate(manifest, (m,)) == ()


def test_severity_follows_scoring_over_all_reverted_fields() -> None:
    """One field at a known-bad value and one not: High, for both findings."""
    m = mitigation(fields=(("spec.replicas", 3, (1,)), ("spec.paused", False, ())))
    findings = evaluate(deployment(replicas=1, paused=True), (m,))
    assert [f.severity for f in findings] == [scoring.Severity.HIGH] * 2
    assert [f.known_bad for f in findings] == [True, False]


def test_a_field_that_must_be_absent_reverts_by_being_present() -> None:
    """`value: null` protects an absence; the message says `expected absent`."""
    m = mitigation(fields=(("spec.paused", None, ()),), context=policy.Context())
    (finding,) = evaluate(deployment(paused=True), (m,))
    assert finding.message == "spec.paused=true reverts Mitigation shop/web-fix: expected absent"
    assert finding.severity is scoring.Severity.MEDIUM


@pytest.mark.parametrize(
    ("manifest", "found"),
    [
        (deployment(name="other", replicas=1), False),
        (deployment(namespace="other", replicas=1), False),
        ({**deployment(replicas=1), "apiVersion": "extensions/v1beta1"}, False),
        ({**deployment(replicas=1), "apiVersion": "apps/v1beta2"}, True),
        ({**deployment(replicas=1), "kind": "StatefulSet"}, False),
    ],
    ids=["other-name", "other-namespace", "other-group", "other-version-same-group", "other-kind"],
)
def test_a_mitigation_applies_to_its_target_identity_only(
    manifest: dict[str, Any], found: bool
) -> None:
    """Identity is group, kind, namespace and name; the API version does not matter."""
    assert bool(evaluate(manifest, (mitigation(),))) is found


def test_a_manifest_without_namespace_is_in_the_default_namespace() -> None:
    """As `kubectl apply` and `helm install` would place it; --namespace changes it."""
    manifest = deployment(namespace=None, replicas=1)
    assert evaluate(manifest, (mitigation(namespace="default"),))
    assert not evaluate(manifest, (mitigation(namespace="shop"),))
    assert evaluate(manifest, (mitigation(namespace="shop"),), default_namespace="shop")


def test_secret_values_show_only_as_hashes() -> None:
    """A reverted Secret key is reported by hash: CI logs and denials never carry the value."""
    m = mitigation(
        group="",
        kind="Secret",
        target="db",
        fields=(("data.password", "bmV3", ()), ("type", "Opaque", ()), ("stringData", None, ())),
    )
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "shop"},
        "type": "kubernetes.io/basic-auth",
        "data": {"password": "b2xk"},
        "stringData": {"token": "plain"},
    }
    by_path = {f.path: f for f in evaluate(secret, (m,))}
    password = by_path["data.password"]
    assert str(password.actual).startswith("sha256:")
    assert str(password.expected).startswith("sha256:")
    assert "b2xk" not in password.message
    assert "bmV3" not in password.message
    assert by_path["type"].actual == "kubernetes.io/basic-auth"
    string_data = by_path["stringData"]
    assert (string_data.expected, str(string_data.actual)[:7]) == (None, "sha256:")
    assert "plain" not in string_data.message


def test_a_cluster_scoped_target_ignores_namespaces() -> None:
    """A ClusterRole has no namespace, whatever the Mitigation's own namespace is."""
    m = mitigation(
        group="rbac.authorization.k8s.io",
        kind="ClusterRole",
        target="reader",
        fields=(("rules", [{"verbs": ["get"]}], ()),),
    )
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "reader"},
        "rules": [{"verbs": ["*"]}],
    }
    (finding,) = evaluate(role, (m,))
    assert finding.policy.name == "web-fix"
    assert policy.object_ref(role).namespace is None


def test_a_cluster_scoped_custom_kind_matches_in_any_namespace() -> None:
    """The webhook passes no namespace for a cluster-scoped object of a kind core cannot know."""
    m = mitigation(
        group="cert-manager.io",
        kind="ClusterIssuer",
        target="letsencrypt",
        namespace="cert-manager",
        fields=(("spec.acme.server", "https://acme-v02.api.letsencrypt.org/directory", ()),),
    )
    issuer = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": "letsencrypt"},
        "spec": {"acme": {"server": "https://acme-staging-v02.api.letsencrypt.org/directory"}},
    }
    (finding,) = evaluate(issuer, (m,), default_namespace="")
    assert finding.policy.namespace == "cert-manager"
    assert evaluate(issuer, (m,)) == (), "the gate's default namespace makes it a namespaced object"


def test_a_selector_target_matches_cluster_scoped_objects_by_labels() -> None:
    """Selector Mitigations are found for objects without a namespace too."""
    m = mitigation(
        group="", kind="Namespace", target=None, selector={"matchLabels": {"team": "shop"}}
    )
    ns = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "shop", "labels": {"team": "shop"}},
        "spec": {"replicas": 1},
    }
    assert evaluate(ns, (m,))


def test_a_selector_target_applies_to_objects_whose_labels_match() -> None:
    """Selector Mitigations are indexed by kind and namespace, then matched on labels."""
    m = mitigation(target=None, selector={"matchLabels": {"tier": "web"}})
    assert evaluate(deployment(replicas=1, labels={"tier": "web"}), (m,))
    assert not evaluate(deployment(replicas=1, labels={"tier": "db"}), (m,))


def test_a_selector_bucket_entry_without_selector_matches_nothing() -> None:
    """A policy with neither name nor selector (convert never builds one) is inert."""
    m = mitigation(target=None)
    assert evaluate(deployment(replicas=1), (m,)) == ()


def test_mitigation_admission_maps_to_levels() -> None:
    """Deny blocks; Warn and Off (Audit) are reported without blocking."""
    assert policy.Level.from_admission("Deny") is policy.Level.DENY
    assert policy.Level.from_admission("Warn") is policy.Level.WARN
    assert policy.Level.from_admission("Off") is policy.Level.AUDIT
    (finding,) = evaluate(deployment(replicas=1), (mitigation(level=policy.Level.WARN),))
    assert not finding.blocks
    assert not policy.blocks([finding])


def test_two_mitigations_on_one_object_both_report() -> None:
    """By name and by selector, in that order."""
    by_name = mitigation("a")
    by_selector = mitigation("b", target=None, selector={"matchLabels": {"app": "web"}})
    findings = evaluate(deployment(replicas=1), (by_name, by_selector))
    assert [f.policy.name for f in findings] == ["a", "b"]


# --- Guardrails ----------------------------------------------------------------------------


def test_a_guardrail_violation_names_guardrail_rule_incident_and_owner() -> None:
    """The message is the one a kubectl denial shows."""
    g = guardrail(
        rule_specs=(
            {
                "name": "not-privileged",
                "path": "spec.template.spec.containers[*].securityContext.privileged",
                "notIn": [True],
                "message": "privileged containers caused INC-99",
            },
        ),
    )
    manifest = deployment(
        template={
            "spec": {"containers": [{"name": "web", "securityContext": {"privileged": True}}]}
        }
    )
    (finding,) = evaluate(manifest, guardrails=(g,))
    assert finding.message == (
        "Guardrail no-privileged, rule not-privileged: "
        "spec.template.spec.containers[name=web].securityContext.privileged is true "
        "(known-bad; INC-99, owner platform-sre): privileged containers caused INC-99"
    )
    assert finding.expected == {"notIn": [True]}
    assert finding.known_bad
    assert finding.policy == policy.Ref("Guardrail", "no-privileged", None, "keepfix.dev/v1alpha1")


@pytest.mark.parametrize(
    ("level", "severity"),
    [
        (policy.Level.DENY, scoring.Severity.HIGH),
        (policy.Level.WARN, scoring.Severity.MEDIUM),
        (policy.Level.AUDIT, scoring.Severity.LOW),
    ],
)
def test_guardrail_severity_follows_enforcement(
    level: policy.Level, severity: scoring.Severity
) -> None:
    """Deny -> High, Warn -> Medium, Audit -> Low; only Deny blocks."""
    (finding,) = evaluate(deployment(replicas=1), guardrails=(guardrail(level=level),))
    assert finding.severity is severity
    assert finding.blocks is (level is policy.Level.DENY)


def test_enforcement_names_map_to_levels() -> None:
    """A Guardrail's `enforcement` is a level by name."""
    assert [policy.Level.from_enforcement(e) for e in ("Deny", "Warn", "Audit")] == [
        policy.Level.DENY,
        policy.Level.WARN,
        policy.Level.AUDIT,
    ]
    assert [lv.label for lv in policy.Level] == ["Audit", "Warn", "Deny"]


def test_a_guardrail_without_context_has_a_bare_message() -> None:
    """No incident and no owner: nothing in brackets."""
    g = guardrail(context=policy.Context())
    (finding,) = evaluate(deployment(replicas=1), guardrails=(g,))
    assert finding.message.startswith(
        "Guardrail no-privileged, rule min-replicas: spec.replicas is 1"
    )
    assert "owner" not in finding.message
    assert not finding.message.endswith(")")


def test_a_guardrail_skips_objects_its_match_excludes() -> None:
    """The (group, kind) index narrows; `rules.matches` has the last word."""
    g = guardrail(
        match={
            "resources": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}],
            "excludeNamespaces": ["shop"],
        }
    )
    assert evaluate(deployment(replicas=1), guardrails=(g,)) == ()
    assert evaluate(deployment(replicas=1, namespace="web"), guardrails=(g,))


def test_guardrail_namespaces_see_the_default_namespace_of_a_bare_manifest() -> None:
    """A manifest without namespace is checked as if in the default namespace."""
    g = guardrail(
        match={
            "resources": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}],
            "namespaces": ["prod"],
        }
    )
    bare = deployment(namespace=None, replicas=1)
    assert evaluate(bare, guardrails=(g,)) == ()
    assert evaluate(bare, guardrails=(g,), default_namespace="prod")
    assert "namespace" not in bare["metadata"], "the manifest itself is never changed"


@pytest.mark.parametrize(
    "kinds",
    [(("apps", "*"),), (("*", "Deployment"),), (("*", "*"),), (("apps", "Deployment"), ("*", "*"))],
    ids=["any-kind", "any-group", "anything", "both-buckets"],
)
def test_wildcard_buckets_find_guardrails_once(kinds: tuple[tuple[str, str], ...]) -> None:
    """A Guardrail under several buckets that all apply is evaluated once."""
    g = guardrail(match={"resources": [{"apiGroups": ["*"], "kinds": ["*"]}]}, kinds=kinds)
    assert len(evaluate(deployment(replicas=1), guardrails=(g,))) == 1


def test_guardrails_keep_their_order_across_buckets() -> None:
    """Findings come in the order the Guardrails were given, whichever bucket held them."""
    wide = guardrail("a-wide", match={"resources": [{"kinds": ["*"]}]}, kinds=(("*", "*"),))
    exact = guardrail("b-exact")
    scoped = guardrail(
        "c-scoped",
        match={
            "resources": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}],
            "namespaces": ["shop"],
        },
    )
    findings = evaluate(deployment(replicas=1), guardrails=(wide, exact, scoped))
    assert [f.policy.name for f in findings] == ["a-wide", "b-exact", "c-scoped"]


def test_a_cluster_scoped_object_meets_namespace_scoped_guardrails() -> None:
    """Namespaces do not filter cluster-scoped objects (core.rules), so all buckets apply."""
    g = guardrail(
        match={"resources": [{"apiGroups": [""], "kinds": ["Namespace"]}], "namespaces": ["prod"]},
        kinds=(("", "Namespace"),),
        rule_specs=({"name": "owner", "path": 'metadata.labels["team"]', "present": True},),
    )
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}}
    (finding,) = evaluate(ns, guardrails=(g,))
    assert finding.rule == "owner"


def test_an_update_keeps_preexisting_guardrail_violations_from_blocking() -> None:
    """Admission UPDATE: a violation the old object had is flagged and no longer blocks."""
    g = guardrail()
    old = deployment(replicas=1)
    (finding,) = evaluate(deployment(replicas=1, paused=True), guardrails=(g,), old=old)
    assert finding.preexisting
    assert not finding.blocks
    (fresh,) = evaluate(deployment(replicas=1), guardrails=(g,), old=deployment(replicas=3))
    assert not fresh.preexisting
    assert fresh.blocks


def test_old_is_ignored_when_nothing_is_broken() -> None:
    """No findings, nothing to compare."""
    assert (
        evaluate(deployment(replicas=3), guardrails=(guardrail(),), old=deployment(replicas=1))
        == ()
    )


def test_mitigations_come_before_guardrails() -> None:
    """Reverts first, then violations."""
    findings = evaluate(deployment(replicas=1), (mitigation(),), (guardrail(),))
    assert [f.policy.kind for f in findings] == ["Mitigation", "Guardrail"]


# --- index and helpers ---------------------------------------------------------------------


def test_build_counts_and_indexes_without_pairs() -> None:
    """Named targets by identity, selectors by kind+namespace, Guardrails by kind and namespace."""
    ps = policy.PolicySet.build(
        (mitigation("a"), mitigation("b", target=None, selector={"matchLabels": {"app": "web"}})),
        (
            guardrail(),
            guardrail(
                "scoped",
                match={
                    "resources": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}],
                    "namespaces": ["x", "y"],
                },
            ),
        ),
    )
    assert (ps.mitigation_count, ps.guardrail_count) == (2, 2)
    assert set(ps.by_name) == {("apps", "Deployment", "shop", "web")}
    assert set(ps.by_selector) == {("apps", "Deployment", "shop")}
    assert set(ps.any_namespace_by_name) == {("apps", "Deployment", "web")}
    assert set(ps.any_namespace_by_selector) == {("apps", "Deployment")}
    assert set(ps.guardrails) == {("apps", "Deployment")}
    assert set(ps.scoped) == {
        ("apps", "Deployment", "*"),
        ("apps", "Deployment", "x"),
        ("apps", "Deployment", "y"),
    }


def test_an_empty_policy_set_finds_nothing() -> None:
    """No policies, no findings, and nothing applies."""
    ps = policy.PolicySet.build((), ())
    assert policy.evaluate(ps, deployment(replicas=1)) == ()
    assert policy.applicable(ps, deployment()) == ()


def test_applicable_lists_policies_that_hold_too() -> None:
    """For reports that show passes (JUnit): every policy that applies, broken or not."""
    ps = policy.PolicySet.build(
        (mitigation(),),
        (
            guardrail(),
            guardrail(
                "other", match={"resources": [{"apiGroups": ["apps"], "kinds": ["StatefulSet"]}]}
            ),
        ),
    )
    refs = policy.applicable(ps, deployment(replicas=3))
    assert [r.name for r in refs] == ["web-fix", "no-privileged"]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (deployment(), policy.Ref("Deployment", "web", "shop", "apps/v1")),
        (deployment(namespace=None), policy.Ref("Deployment", "web", "default", "apps/v1")),
        (
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}},
            policy.Ref("Namespace", "x", None, "v1"),
        ),
        (
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": None},
            policy.Ref("ConfigMap", "", "default", "v1"),
        ),
        ({"kind": "Thing"}, policy.Ref("Thing", "", "default", "")),
    ],
)
def test_object_ref(obj: dict[str, Any], expected: policy.Ref) -> None:
    """The identity the gate reports, with the namespace it assumed."""
    assert policy.object_ref(obj) == expected


def test_objects_with_odd_metadata_still_evaluate() -> None:
    """metadata that is not a mapping is treated as empty, not a crash."""
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": "x", "spec": {"replicas": 1}}
    findings = evaluate(obj, guardrails=(guardrail(),))
    assert [f.rule for f in findings] == ["min-replicas"]


@pytest.mark.parametrize(
    ("api_version", "group"),
    [("apps/v1", "apps"), ("v1", ""), ("keepfix.dev/v1alpha1", "keepfix.dev")],
)
def test_group_of(api_version: str, group: str) -> None:
    """The group of an apiVersion; the core group is empty."""
    assert policy.group_of(api_version) == group


def test_refs_print_like_kubectl() -> None:
    """namespace/name, or just the name when cluster-scoped."""
    assert str(policy.Ref("Mitigation", "fix", "shop")) == "shop/fix"
    assert str(policy.Ref("Guardrail", "g")) == "g"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("512Mi", "512Mi"),
        (3, "3"),
        (True, "true"),
        (None, "null"),
        ({"b": 1, "a": [1]}, '{"a":[1],"b":1}'),
    ],
)
def test_render(value: Any, text: str) -> None:
    """Strings bare, everything else as compact JSON."""
    assert policy.render(value) == text
