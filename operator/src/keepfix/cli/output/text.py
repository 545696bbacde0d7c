"""Short text for people: findings grouped by manifest, then one summary line."""

from __future__ import annotations

from keepfix.cli.output import report as report_
from keepfix.core import policy


def render(report: report_.Report) -> str:
    """Only manifests with findings are listed; the last line says whether the gate passed."""
    lines: list[str] = []
    for checked in report.checked:
        if not checked.findings:
            continue
        # Values come from the manifests: escape what could rewrite or hide lines of a CI log.
        header = f"{checked.where} {report_.manifest_label(checked.ref)}"
        lines.append(report_.printable(header))
        lines.extend(
            f"  {f.level.label.upper():<5} {report_.printable(f.message)}" for f in checked.findings
        )
    lines.append(_summary(report))
    return "\n".join(lines) + "\n"


def _summary(report: report_.Report) -> str:
    counts = ", ".join(
        f"{report.count(level)} {level.label.lower()}" for level in reversed(policy.Level)
    )
    verdict = "FAILED" if report.blocked else "passed"
    return (
        f"{verdict}: {_plural(len(report.checked), 'manifest')} checked against "
        f"{_plural(report.mitigations, 'Mitigation')} and "
        f"{_plural(report.guardrails, 'Guardrail')}: {counts}"
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
