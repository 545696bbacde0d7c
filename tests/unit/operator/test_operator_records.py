"""Pure parts of the operator: Regression names, redaction, history, status, selectors."""

from __future__ import annotations

import datetime
import re

import pytest

from keepfix.api import models
from keepfix.core import diff
from keepfix.handlers import drift, registry, regressions

NOW = datetime.datetime(2026, 12, 4, 20, 0, tzinfo=datetime.UTC)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_regression_names_are_deterministic_dns_labels() -> None:
    """Same inputs, same name; at most 63 characters; a long Mitigation name is cut."""
    a = regressions.name_for("web-memory-fix", "sha256:abc", "shop", "web")
    assert a == regressions.name_for("web-memory-fix", "sha256:abc", "shop", "web")
    assert a.startswith("web-memory-fix-")
    long = regressions.name_for("x" * 250, "sha256:abc", "shop", "web")
    assert len(long) <= 63
    assert DNS_LABEL.match(long)
    assert DNS_LABEL.match(regressions.name_for("My.Fix", "sha256:abc", None, "n"))


def test_each_target_object_gets_its_own_regression() -> None:
    """Two objects of one selector drifting the same way get two names."""
    assert regressions.name_for("m", "sha256:x", "ns", "a") != regressions.name_for(
        "m", "sha256:x", "ns", "b"
    )


def test_secret_values_become_short_hashes() -> None:
    """Only sha256:<12 hex> is written for a Secret value."""
    hashed = regressions.redact("aHVudGVyMg==")
    assert re.fullmatch(r"sha256:[0-9a-f]{12}", hashed)
    drift_ = diff.Drift("data.password", "/data/password", "Z29vZA==", "YmFk", True, False)
    [item] = regressions.drift_items([drift_], secret=True)
    assert "YmFk" not in str(item)
    assert "Z29vZA==" not in str(item)
    assert item["actual"] == regressions.redact("YmFk")


def test_history_keeps_the_newest_twenty() -> None:
    """status.history is capped at models.MAX_HISTORY, oldest dropped."""
    history = [{"n": i} for i in range(25)]
    kept = regressions.capped(history, {"n": 25})
    assert len(kept) == models.MAX_HISTORY
    assert kept[-1] == {"n": 25}
    assert kept[0] == {"n": 6}


def test_resolution_seconds_count_from_last_seen() -> None:
    """resolutionSeconds = resolvedAt - lastSeen."""
    status = regressions.resolved_status(NOW, NOW + datetime.timedelta(seconds=90))
    assert status["state"] == "Resolved"
    assert status["resolutionSeconds"] == 90.0


def test_long_label_values_are_shortened_with_a_hash() -> None:
    """A Mitigation name longer than 63 characters still makes a valid label value."""
    value = regressions.label_value("m" * 100)
    assert len(value) <= 63
    assert value != regressions.label_value("m" * 99)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {"a": "1"}, True),
        ({"matchLabels": {"tier": "db"}}, {"tier": "db"}, True),
        ({"matchLabels": {"tier": "db"}}, {"tier": "web"}, False),
        (
            {"matchExpressions": [{"key": "t", "operator": "In", "values": ["a", "b"]}]},
            {"t": "b"},
            True,
        ),
        ({"matchExpressions": [{"key": "t", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        ({"matchExpressions": [{"key": "t", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "t", "operator": "DoesNotExist"}]}, {}, True),
    ],
)
def test_label_selectors(
    selector: dict[str, object], labels: dict[str, str], expected: bool
) -> None:
    """metav1.LabelSelector semantics, as the API server applies them."""
    parsed = models.LabelSelector.model_validate(selector)
    assert registry.labels_match(parsed, labels) is expected


def test_selector_text_is_the_api_query_syntax() -> None:
    """matchLabels and matchExpressions in the syntax of ?labelSelector=."""
    parsed = models.LabelSelector.model_validate(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        }
    )
    assert registry.selector_text(parsed) == "app=web,tier in (a,b),!legacy"


def entry(**kwargs: object) -> registry.MitigationEntry:
    model = models.Mitigation.model_validate(
        {
            "metadata": {"name": "m", "namespace": "ns"},
            "spec": {
                "target": {"apiVersion": "v1", "kind": "ConfigMap", "name": "c"},
                "fields": [{"path": "data.a", "value": "1"}],
            },
        }
    )
    base: dict[str, object] = {
        "namespace": "ns",
        "name": "m",
        "uid": "u",
        "generation": 1,
        "body": {},
        "model": model,
        "fields": (),
        "to_capture": (),
        "stable": [],
        "watch_key": registry.watch_key(model, "ns"),
        "mitigated_at": NOW,
        "window": datetime.timedelta(days=30),
    }
    base.update(kwargs)
    return registry.MitigationEntry(**base)  # type: ignore[arg-type]


def test_phase_follows_targets_drift_and_window() -> None:
    """Pending without targets, Drifted with one drifted, Expired after the window."""
    assert drift.phase_of(entry(), NOW) == "Pending"
    assert drift.phase_of(entry(targets={"t"}), NOW) == "Watching"
    assert (
        drift.phase_of(entry(targets={"t"}, drifted={"t": ("sha256:x", "Alerted")}), NOW)
        == "Drifted"
    )
    later = NOW + datetime.timedelta(days=31)
    assert drift.phase_of(entry(targets={"t"}), later) == "Expired"


def test_status_carries_counters_and_conditions() -> None:
    """The written status has the counters, watchUntil and Valid/Ready conditions."""
    status = drift.status_of(entry(targets={"t"}, drifts=2, rollbacks=1, regressions=1), NOW)
    assert (status["drifts"], status["rollbacks"], status["regressions"]) == (2, 1, 1)
    assert status["watchUntil"] == "2027-01-03T20:00:00Z"
    types = {c["type"]: c["status"] for c in status["conditions"]}
    assert types["Valid"] == "True"
    assert types["Ready"] == "True"


def test_watch_key_is_the_narrowest_stream() -> None:
    """A named target watches one name; a selector target its label selector."""
    key = entry().watch_key
    assert (key.kind, key.namespace, key.name, key.label_selector) == ("ConfigMap", "ns", "c", None)


def test_covers_matches_kind_group_namespace_and_name() -> None:
    """An object is covered only when kind, group, namespace and name all fit."""
    e = entry()
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}}
    assert e.covers(obj)
    assert not e.covers({**obj, "metadata": {"name": "c", "namespace": "other"}})
    assert not e.covers({**obj, "apiVersion": "example.com/v1"})
    assert not e.covers({**obj, "metadata": {"name": "d", "namespace": "ns"}})
