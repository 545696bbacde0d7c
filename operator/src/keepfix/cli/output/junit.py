"""`--format junit`: JUnit XML as CI test reports read it (Jenkins, GitLab, GitHub actions).

One `testsuite` per manifest file; one `testcase` per manifest object and
policy that applies to it (classname `Deployment shop/web`, name `Mitigation
shop/web-fix`). A Deny-level finding is a `failure`; Warn and Audit findings
are written to the test case's `system-out`, so they show in the report
without failing the build.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable

from keepfix.cli.output import report as report_
from keepfix.core import policy


def render(report: report_.Report) -> str:
    """The XML document, `testsuites` at the root."""
    # Text from manifests goes through report_.printable: XML 1.0 cannot hold most control
    # characters at all, and a CI log should not interpret them.
    root = ET.Element("testsuites", name="keepfix gate")
    by_file: dict[str, list[report_.Checked]] = {}
    for checked in report.checked:
        by_file.setdefault(checked.source, []).append(checked)
    for source, checks in by_file.items():
        root.append(_suite(source, checks))
    _count(root, root.findall("testsuite"))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _suite(source: str, checks: list[report_.Checked]) -> ET.Element:
    suite = ET.Element("testsuite", name=report_.printable(source))
    for checked in checks:
        for ref in _policies(checked):
            suite.append(_case(checked, ref))
    _count(suite, suite.findall("testcase"))
    return suite


def _policies(checked: report_.Checked) -> list[policy.Ref]:
    # Findings name their policy even when `applicable` was not computed.
    return list(dict.fromkeys((*checked.applicable, *(f.policy for f in checked.findings))))


def _case(checked: report_.Checked, ref: policy.Ref) -> ET.Element:
    case = ET.Element(
        "testcase",
        classname=report_.printable(report_.manifest_label(checked.ref)),
        name=report_.printable(f"{ref.kind} {ref}"),
        file=report_.printable(checked.source),
        line=str(checked.line),
    )
    findings = [f for f in checked.findings if f.policy == ref]
    denied = [f for f in findings if f.blocks]
    if denied:
        failure = ET.SubElement(
            case,
            "failure",
            message=report_.printable(denied[0].message),
            type=policy.Level.DENY.label,
        )
        failure.text = _lines(denied)
    others = [f for f in findings if not f.blocks]
    if others:
        ET.SubElement(case, "system-out").text = _lines(others)
    return case


def _lines(findings: Iterable[policy.Finding]) -> str:
    return "\n".join(f"{f.level.label}: {report_.printable(f.message)}" for f in findings)


def _count(element: ET.Element, children: list[ET.Element]) -> None:
    if element.tag == "testsuite":
        tests = len(children)
        failures = sum(1 for c in children if c.find("failure") is not None)
    else:
        tests = sum(int(c.get("tests", "0")) for c in children)
        failures = sum(int(c.get("failures", "0")) for c in children)
    element.set("tests", str(tests))
    element.set("failures", str(failures))
    element.set("errors", "0")
    element.set("skipped", "0")
