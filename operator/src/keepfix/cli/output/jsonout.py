"""`--format json`: one object, the shape DESIGN.md gives ("The command line")."""

from __future__ import annotations

import json
from typing import Any

from keepfix.cli.output import report as report_
from keepfix.core import policy


def render(report: report_.Report) -> str:
    """`{"checked": N, "violations": [...]}`, one violation per finding in input order."""
    body = {
        "checked": len(report.checked),
        "violations": [violation(c, f) for c in report.checked for f in c.findings],
    }
    return json.dumps(body, indent=2, default=str) + "\n"


def violation(checked: report_.Checked, finding: policy.Finding) -> dict[str, Any]:
    """One finding as a JSON object; values keep their YAML types."""
    ref = checked.ref
    return {
        "manifest": {
            "apiVersion": ref.api_version,
            "kind": ref.kind,
            "namespace": ref.namespace,
            "name": ref.name,
        },
        "source": checked.where,
        "policy": {
            "kind": finding.policy.kind,
            "name": finding.policy.name,
            "namespace": finding.policy.namespace,
        },
        "rule": finding.rule,
        "path": finding.path,
        "expected": finding.expected,
        "actual": finding.actual,
        "severity": finding.severity.label,
        "level": finding.level.label,
        "message": finding.message,
        "incident": finding.context.incident,
    }
