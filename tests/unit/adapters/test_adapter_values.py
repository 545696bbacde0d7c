"""Pure parts of the adapters: error mapping, resource paths, references, note caps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from keepfix.adapters import events, kube, watches

CRDS = Path(__file__).resolve().parents[3] / "crds"


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        (403, "Forbidden", kube.Forbidden),
        (404, "NotFound", kube.NotFound),
        (409, "Conflict", kube.Conflict),
        (409, "AlreadyExists", kube.AlreadyExists),
        (410, "Expired", kube.Gone),
        (422, "Invalid", kube.Invalid),
        (429, "TooManyRequests", kube.ApiError),
        (500, "InternalError", kube.ApiError),
    ],
)
def test_status_maps_to_error_class(status: int, reason: str, expected: type) -> None:
    """Each HTTP status raises its own ApiError subclass, carrying reason and message."""
    payload = json.dumps({"kind": "Status", "reason": reason, "message": "why", "code": status})
    error = kube.ApiError.from_response(status, payload.encode())
    assert (type(error), error.status, error.reason, error.message) == (
        expected,
        status,
        reason,
        "why",
    )


def test_error_without_status_body_keeps_the_text() -> None:
    """A non-JSON body (a proxy's HTML page) still yields a readable message."""
    error = kube.ApiError.from_response(404, b"<html>not here</html>")
    assert (type(error), error.reason, error.message) == (
        kube.NotFound,
        "NotFound",
        "<html>not here</html>",
    )


@pytest.mark.parametrize(
    ("status", "replannable"), [(409, True), (422, True), (403, False), (404, False), (0, False)]
)
def test_replannable(status: int, replannable: bool) -> None:
    """Only 409 and 422 ask the caller to re-read and plan again."""
    assert kube.ApiError.from_response(status, b"").replannable is replannable


@pytest.mark.parametrize(
    ("resource", "kwargs", "expected"),
    [
        (kube.Resource("", "v1", "Pod", "pods", True), {}, "/api/v1/pods"),
        (
            kube.Resource("apps", "v1", "Deployment", "deployments", True),
            {"namespace": "shop", "name": "web"},
            "/apis/apps/v1/namespaces/shop/deployments/web",
        ),
        (
            kube.Resource("", "v1", "Namespace", "namespaces", False),
            {"namespace": "ignored", "name": "shop"},
            "/api/v1/namespaces/shop",
        ),
        (
            kube.keepfix_resource("mitigations"),
            {"namespace": "shop", "name": "fix", "subresource": "status"},
            "/apis/keepfix.dev/v1alpha1/namespaces/shop/mitigations/fix/status",
        ),
        (
            kube.Resource("", "v1", "ConfigMap", "configmaps", True),
            {"namespace": "a", "name": "odd/name?x"},
            "/api/v1/namespaces/a/configmaps/odd%2Fname%3Fx",
        ),
    ],
)
def test_resource_paths(resource: kube.Resource, kwargs: dict[str, str], expected: str) -> None:
    """Paths follow the API server's layout and quote names."""
    assert resource.path(**kwargs) == expected


@pytest.mark.parametrize("path", sorted(CRDS.glob("*.yaml")), ids=lambda p: p.name)
def test_keepfix_resources_match_the_crds(path: Path) -> None:
    """keepfix_resource() agrees with the committed CRD on kind, plural and scope."""
    crd = yaml.safe_load(path.read_text())
    names = crd["spec"]["names"]
    resource = kube.keepfix_resource(names["plural"])
    assert (resource.group, resource.kind, resource.namespaced) == (
        crd["spec"]["group"],
        names["kind"],
        crd["spec"]["scope"] == "Namespaced",
    )
    assert resource.version in [v["name"] for v in crd["spec"]["versions"]]


def test_unknown_keepfix_plural() -> None:
    """A plural that is not a keepfix kind raises UnknownKind."""
    with pytest.raises(kube.UnknownKind):
        kube.keepfix_resource("deployments")


@pytest.mark.parametrize(
    ("api_version", "expected"), [("v1", ("", "v1")), ("apps/v1", ("apps", "v1"))]
)
def test_split_api_version(api_version: str, expected: tuple[str, str]) -> None:
    """The core group is the empty string."""
    assert kube.split_api_version(api_version) == expected


def test_reference_of_an_object_and_of_a_reference() -> None:
    """reference() takes an object or a reference and keeps identity fields only."""
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "resourceVersion": "5"},
        "spec": {"replicas": 3},
    }
    expected = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
        "namespace": "shop",
        "uid": "u1",
    }
    assert events.reference(obj) == expected
    assert events.reference(expected | {"fieldPath": "spec"}) == expected


@pytest.mark.parametrize(
    ("note", "expected"),
    [("short", "short"), ("a" * 1024, "a" * 1024), ("a" * 1025, "a" * 1021 + "...")],
)
def test_cap_note(note: str, expected: str) -> None:
    """Notes keep up to 1024 bytes; longer ones end in an ellipsis."""
    assert events.cap_note(note) == expected


def test_cap_note_never_splits_a_character() -> None:
    """Cutting multi-byte text yields valid UTF-8 within the limit."""
    capped = events.cap_note("日本" * 400)
    assert len(capped.encode()) <= 1024
    assert capped.endswith("...")


def test_watch_key_defaults_and_hashing() -> None:
    """WatchKey is a hashable tuple; unset narrowing fields are None."""
    key = watches.WatchKey("apps/v1", "Deployment", "shop", "web")
    index: dict[watches.WatchKey, int] = {key: 1}
    assert index[watches.WatchKey("apps/v1", "Deployment", "shop", "web")] == 1
    assert tuple(key) == ("apps/v1", "Deployment", "shop", "web", None)
