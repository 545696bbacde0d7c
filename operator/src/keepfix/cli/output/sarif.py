"""`--format sarif`: SARIF 2.1.0 for GitHub code scanning and other SARIF viewers.

One reporting rule per policy rule (a Guardrail rule, or a Mitigation's
protected field), listed only when some result uses it. Levels map Deny ->
`error`, Warn -> `warning`, Audit -> `note`. A result points at the manifest
file and the line its document starts on. Its `partialFingerprints` hash the
policy rule, the object identity and the concrete path, never the line or the
values, so a code-scanning alert survives edits elsewhere in the file and
closes when the object stops breaking the rule.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import urllib.parse
from typing import Any

import keepfix
from keepfix.cli.output import report as report_
from keepfix.core import policy

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
VERSION = "2.1.0"
FINGERPRINT = "keepfix/v1"
LEVELS = {policy.Level.DENY: "error", policy.Level.WARN: "warning", policy.Level.AUDIT: "note"}


def render(report: report_.Report) -> str:
    """The SARIF log of one run, as indented JSON."""
    rules: dict[str, tuple[int, dict[str, Any]]] = {}
    results = [
        _result(checked, finding, rules)
        for checked in report.checked
        for finding in checked.findings
    ]
    run = {
        "tool": {
            "driver": {
                "name": "keepfix",
                "semanticVersion": keepfix.__version__,
                "version": keepfix.__version__,
                "rules": [descriptor for _, descriptor in rules.values()],
            }
        },
        "invocations": [{"executionSuccessful": True}],
        "results": results,
    }
    log = {"$schema": SCHEMA, "version": VERSION, "runs": [run]}
    return json.dumps(log, indent=2, default=str) + "\n"


def rule_id(finding: policy.Finding) -> str:
    """`Mitigation/shop/web-fix/spec.replicas`, `Guardrail/no-privileged/not-privileged`."""
    return f"{finding.policy.kind}/{finding.policy}/{finding.rule}"


def _result(
    checked: report_.Checked, finding: policy.Finding, rules: dict[str, tuple[int, dict[str, Any]]]
) -> dict[str, Any]:
    rid = rule_id(finding)
    if rid not in rules:
        rules[rid] = (len(rules), _descriptor(rid, finding))
    return {
        "ruleId": rid,
        "ruleIndex": rules[rid][0],
        "level": LEVELS[finding.level],
        "message": {"text": f"{report_.manifest_label(checked.ref)}: {finding.message}"},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": artifact_uri(checked.source)},
                    "region": {"startLine": checked.line},
                },
                "logicalLocations": [
                    {
                        "name": checked.ref.name,
                        "fullyQualifiedName": _object_name(checked.ref, finding),
                        "kind": "object",
                    }
                ],
            }
        ],
        "partialFingerprints": {FINGERPRINT: fingerprint(checked.ref, finding)},
        "properties": {
            "severity": finding.severity.label,
            "level": finding.level.label,
            "path": finding.path,
            "expected": finding.expected,
            "actual": finding.actual,
            "knownBad": finding.known_bad,
            "document": checked.document,
        },
    }


def _descriptor(rid: str, finding: policy.Finding) -> dict[str, Any]:
    ctx = finding.context
    what = "protected field" if finding.policy.kind == policy.KIND_MITIGATION else "rule"
    text = f"{finding.policy.kind} {finding.policy}, {what} {finding.rule}"
    descriptor: dict[str, Any] = {
        "id": rid,
        "name": f"{finding.policy.kind}/{finding.policy.name}/{finding.rule}",
        "shortDescription": {"text": text},
        "fullDescription": {"text": "; ".join(p for p in (text, _incident(ctx), _owner(ctx)) if p)},
        "defaultConfiguration": {"level": LEVELS[finding.level]},
        "properties": {
            "incident": ctx.incident,
            "owner": ctx.owner,
            "tags": ["keepfix", finding.policy.kind],
        },
    }
    if ctx.runbook and ctx.runbook.startswith(("https://", "http://")):
        descriptor["helpUri"] = ctx.runbook
    return descriptor


def _incident(ctx: policy.Context) -> str:
    return f"incident {ctx.incident}" if ctx.incident else ""


def _owner(ctx: policy.Context) -> str:
    return f"owner {ctx.owner}" if ctx.owner else ""


def _object_name(ref: policy.Ref, finding: policy.Finding) -> str:
    return f"{ref.api_version}/{ref.kind}/{ref}:{finding.path}"


def fingerprint(ref: policy.Ref, finding: policy.Finding) -> str:
    """Stable across runs, line moves and value changes of the same broken field."""
    group = policy.group_of(ref.api_version)
    key = [
        finding.policy.kind,
        str(finding.policy),
        finding.rule,
        group,
        ref.kind,
        str(ref),
        finding.path,
    ]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()


def artifact_uri(source: str) -> str:
    """A relative path stays relative (code scanning resolves it against the repository)."""
    path = pathlib.PurePath(source)
    if path.is_absolute():
        return pathlib.Path(source).as_uri()
    return urllib.parse.quote(path.as_posix())
