"""Secret data is shown as one short hash everywhere (operator, webhook, gate)."""

from __future__ import annotations

import hashlib

import pytest

from keepfix.core import policy, redaction, rules


def test_a_string_is_hashed_as_it_is() -> None:
    """The base64 text of a stored Secret value, hashed as is, 12 hex digits."""
    expected = "sha256:" + hashlib.sha256(b"czNjcjN0").hexdigest()[:12]
    assert redaction.redact("czNjcjN0") == expected


def test_other_values_are_hashed_as_sorted_json() -> None:
    """Key order does not change the hash of a mapping."""
    assert redaction.redact({"b": 1, "a": 2}) == redaction.redact({"a": 2, "b": 1})


@pytest.mark.parametrize(
    ("pointer", "secret"),
    [
        ("/data", True),
        ("/data/token", True),
        ("/stringData/x", True),
        ("/database", False),
        ("/metadata/name", False),
    ],
)
def test_secret_data_pointers(pointer: str, secret: bool) -> None:
    """Only data and stringData (and below) hold Secret values."""
    assert redaction.is_secret_data(pointer) is secret


def test_rules_and_gate_show_the_same_hash() -> None:
    """A Guardrail violation on Secret data shows the same hash the operator writes."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"mode": "ZGVidWc="},
    }
    rule = rules.Rule.from_dict({"name": "r", "path": "data.mode", "notIn": ["ZGVidWc="]})
    (violation,) = rules.evaluate([rule], secret)
    assert violation.actual == redaction.redact("ZGVidWc=")
    assert "ZGVidWc=" not in violation.message
    assert policy.SECRET_DATA == redaction.SECRET_DATA
