"""What a gate run found, independent of the output format."""

from __future__ import annotations

import re
from dataclasses import dataclass

from keepfix.core import policy


@dataclass(frozen=True)
class Checked:
    """One manifest object: where it came from, who it is, and what it breaks.

    `applicable` lists the policies that apply to it (only filled in when a
    format needs passing checks too, such as JUnit).
    """

    source: str
    document: int
    line: int
    ref: policy.Ref
    findings: tuple[policy.Finding, ...]
    applicable: tuple[policy.Ref, ...] = ()

    @property
    def where(self) -> str:
        """`file:doc`, the JSON `source` field."""
        return f"{self.source}:{self.document}"


@dataclass(frozen=True)
class Report:
    checked: tuple[Checked, ...]
    mitigations: int
    guardrails: int

    @property
    def blocked(self) -> bool:
        """At least one Deny-level finding: the gate fails."""
        return any(f.blocks for c in self.checked for f in c.findings)

    def count(self, level: policy.Level) -> int:
        """Findings at `level`."""
        return sum(1 for c in self.checked for f in c.findings if f.level is level)


def manifest_label(ref: policy.Ref) -> str:
    """`Deployment shop/web`, the way kubectl users name an object."""
    return f"{ref.kind} {ref}"


#: Characters that must not reach a terminal, a CI log or XML raw: C0 controls but tab
#: (newline too: a message is one line), DEL, C1 controls, line/paragraph separators,
#: and what XML 1.0 cannot hold at all (lone surrogates, U+FFFE, U+FFFF).
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")


def printable(text: str) -> str:
    """`text` with control characters spelled as Python escapes (`\\x1b`, `\\n`)."""
    return _UNPRINTABLE.sub(lambda found: repr(found[0])[1:-1], text)
