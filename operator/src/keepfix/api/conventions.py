"""Every string the cluster sees, defined once.

Labels, annotations, event reasons, condition types, field managers and the
API group live here so that handlers, adapters, the CLI and the tests agree
on them; renaming one is a breaking change (see CHANGELOG.md).
"""

from __future__ import annotations

from typing import Final

#: The API group and version of keepfix's own kinds.
GROUP: Final = "keepfix.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
#: The kubectl category that lists every keepfix kind (`kubectl get keepfix`).
CATEGORY: Final = "keepfix"

KIND_MITIGATION: Final = "Mitigation"
KIND_GUARDRAIL: Final = "Guardrail"
KIND_REGRESSION: Final = "Regression"
KIND_ALERT_ROUTE: Final = "AlertRoute"

PLURAL_MITIGATIONS: Final = "mitigations"
PLURAL_GUARDRAILS: Final = "guardrails"
PLURAL_REGRESSIONS: Final = "regressions"
PLURAL_ALERT_ROUTES: Final = "alertroutes"

#: Field manager for every write keepfix makes (patches and server-side apply).
FIELD_MANAGER: Final = "keepfix"
#: The controller name reported in events.k8s.io/v1 Events.
REPORTING_CONTROLLER: Final = "keepfix.dev/operator"

# Labels keepfix puts on the objects it owns (Regressions), never on targets.
#: The Mitigation a Regression belongs to.
LABEL_MITIGATION: Final = f"{GROUP}/mitigation"
#: The severity of a Regression, for label selectors (`-l keepfix.dev/severity=Critical`).
LABEL_SEVERITY: Final = f"{GROUP}/severity"
#: The owning team of a Regression.
LABEL_TEAM: Final = f"{GROUP}/team"
#: Marks objects created and managed by keepfix.
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "keepfix"

# Event reasons (DESIGN.md "Runtime behaviour").
REASON_DRIFT_DETECTED: Final = "DriftDetected"
REASON_DRIFT_ROLLED_BACK: Final = "DriftRolledBack"
REASON_ROLLBACK_FAILED: Final = "RollbackFailed"
REASON_REGRESSION_DETECTED: Final = "RegressionDetected"
REASON_FIGHT_DETECTED: Final = "FightDetected"
REASON_GUARDRAIL_VIOLATION: Final = "GuardrailViolation"
REASON_MITIGATION_EXPIRED: Final = "MitigationExpired"
#: A new or edited Mitigation put its stable values on an object that did not carry
#: them yet (adoption: not a recurrence, so no Regression).
REASON_FIX_APPLIED: Final = "FixApplied"
#: A new or edited Mitigation found an object without its stable values (action Alert).
REASON_FIX_MISSING: Final = "FixMissing"

# Condition types (metav1.Condition shaped).
CONDITION_READY: Final = "Ready"
CONDITION_VALID: Final = "Valid"
CONDITION_DRIFTED: Final = "Drifted"
CONDITION_FIGHTING: Final = "Fighting"
CONDITION_RESOLVED: Final = "Resolved"

# Mitigation phases.
PHASE_PENDING: Final = "Pending"
PHASE_WATCHING: Final = "Watching"
PHASE_DRIFTED: Final = "Drifted"
PHASE_EXPIRED: Final = "Expired"
PHASE_INVALID: Final = "Invalid"

# Regression states and actions.
STATE_OPEN: Final = "Open"
STATE_RESOLVED: Final = "Resolved"
ACTION_ROLLED_BACK: Final = "RolledBack"
ACTION_ALERTED: Final = "Alerted"
ACTION_ROLLBACK_FAILED: Final = "RollbackFailed"
ACTION_FIGHTING: Final = "Fighting"

#: The name of the ValidatingWebhookConfiguration the operator manages.
WEBHOOK_CONFIGURATION_NAME: Final = "keepfix"
#: The webhook name kubectl shows in a denial.
WEBHOOK_GUARDRAILS: Final = "guardrails.keepfix.dev"
#: The webhook kubectl names when a change would revert a Mitigation's fix.
WEBHOOK_MITIGATIONS: Final = "mitigations.keepfix.dev"
#: URL path prefix of the webhooks: `/validate/<webhook name>`.
WEBHOOK_PATH_PREFIX: Final = "/validate/"

# Verdict label values of keepfix_admission_reviews_total{kind,verdict}.
#: No finding.
VERDICT_ALLOWED: Final = "Allowed"
#: A Deny-level finding new with this change: the request was refused.
VERDICT_DENIED: Final = "Denied"
#: Allowed with admission warnings (Warn level, or a violation the old object had).
VERDICT_WARNED: Final = "Warned"
#: Allowed; only Audit-level findings (counted, not shown).
VERDICT_AUDITED: Final = "Audited"
#: The review failed inside keepfix and the request was allowed (fail open).
VERDICT_ERROR: Final = "Error"
