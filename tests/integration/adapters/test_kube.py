"""keepfix.adapters.kube against a real kube-apiserver."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from keepfix.adapters import kube

pytestmark = pytest.mark.integration

CONFIGMAPS = kube.Resource("", "v1", "ConfigMap", "configmaps", namespaced=True)


def widget_crd(group: str) -> dict[str, Any]:
    """A minimal namespaced CRD with a status subresource."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def install_crd(cluster: Any, group: str) -> None:
    """Create the Widget CRD in `group` and wait until it is Established."""
    cluster.kubectl("apply", "-f", "-", input=json.dumps(widget_crd(group)))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=60s")


@pytest.fixture
def group(cluster: Any) -> Iterator[str]:
    """A fresh API group name; its Widget CRD (if created) is deleted afterwards."""
    name = f"g{uuid.uuid4().hex[:8]}.adapters.keepfix.test"
    yield name
    cluster.kubectl("delete", "crd", f"widgets.{name}", "--ignore-not-found", "--wait=false")


@pytest.fixture
async def api(cluster: Any) -> AsyncIterator[kube.Kube]:
    async with await kube.connect(kubeconfig=str(cluster.kubeconfig)) as connection:
        yield connection


def configmap(namespace: str, name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


async def test_discovery_finds_builtin_kinds(api: kube.Kube) -> None:
    """Built-in kinds map to their plural and scope."""
    deployments = await api.resource_for("apps/v1", "Deployment")
    namespaces = await api.resource_for("v1", "Namespace")
    assert deployments == kube.Resource("apps", "v1", "Deployment", "deployments", True)
    assert (namespaces.plural, namespaces.namespaced, namespaces.api_version) == (
        "namespaces",
        False,
        "v1",
    )


async def test_discovery_finds_a_crd_created_after_connect(
    api: kube.Kube, cluster: Any, group: str
) -> None:
    """A CRD installed after the client connected is found without a restart.

    Misses re-read discovery at most once per DISCOVERY_REFRESH_INTERVAL, so
    the kind appears within that interval of the CRD being served.
    """
    with pytest.raises(kube.UnknownKind, match=f"Widget in {group}/v1"):
        await api.resource_for(f"{group}/v1", "Widget")
    install_crd(cluster, group)
    deadline = asyncio.get_running_loop().time() + 10 * kube.DISCOVERY_REFRESH_INTERVAL
    while True:
        try:
            widgets = await api.resource_for(f"{group}/v1", "Widget")
            break
        except kube.UnknownKind:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)
    assert widgets == kube.Resource(group, "v1", "Widget", "widgets", True)


async def test_unknown_kind_in_known_group(api: kube.Kube) -> None:
    """A kind the group does not serve raises UnknownKind naming it."""
    with pytest.raises(kube.UnknownKind, match="Deploymint in apps/v1"):
        await api.resource_for("apps/v1", "Deploymint")


async def test_get_absent_is_none_and_delete_is_none_safe(api: kube.Kube, namespace: str) -> None:
    """get and delete of an absent object return None instead of raising."""
    assert await api.get(CONFIGMAPS, namespace=namespace, name="absent") is None
    assert await api.delete(CONFIGMAPS, namespace=namespace, name="absent") is None
    await api.create(CONFIGMAPS, body=configmap(namespace, "present", a="1"))
    assert await api.delete(CONFIGMAPS, namespace=namespace, name="present") is not None
    assert await api.get(CONFIGMAPS, namespace=namespace, name="present") is None


async def test_create_twice_raises_already_exists(api: kube.Kube, namespace: str) -> None:
    """A second create of one name raises AlreadyExists, a Conflict (409)."""
    created = await api.create(CONFIGMAPS, body=configmap(namespace, "twice", a="1"))
    assert created["metadata"]["uid"]
    with pytest.raises(kube.AlreadyExists) as caught:
        await api.create(CONFIGMAPS, body=configmap(namespace, "twice", a="2"))
    assert isinstance(caught.value, kube.Conflict)
    assert (caught.value.status, caught.value.reason) == (409, "AlreadyExists")


async def test_json_patch_with_failed_test_op_raises_invalid(
    api: kube.Kube, namespace: str
) -> None:
    """A JSON patch whose test op fails is a 422 Invalid, and nothing is written."""
    await api.create(CONFIGMAPS, body=configmap(namespace, "guarded", a="changed"))
    ops = [
        {"op": "test", "path": "/data/a", "value": "expected"},
        {"op": "replace", "path": "/data/a", "value": "stable"},
    ]
    with pytest.raises(kube.Invalid) as caught:
        await api.json_patch(CONFIGMAPS, namespace=namespace, name="guarded", ops=ops)
    assert (caught.value.status, caught.value.replannable) == (422, True)
    live = await api.get(CONFIGMAPS, namespace=namespace, name="guarded")
    assert live is not None
    assert live["data"] == {"a": "changed"}


async def test_json_patch_with_passing_test_op_writes_as_keepfix(
    api: kube.Kube, namespace: str
) -> None:
    """A guarded patch whose test holds is applied under field manager keepfix."""
    await api.create(
        CONFIGMAPS, body=configmap(namespace, "guarded", a="bad"), field_manager="kubectl-edit"
    )
    ops = [
        {"op": "test", "path": "/data/a", "value": "bad"},
        {"op": "replace", "path": "/data/a", "value": "good"},
    ]
    patched = await api.json_patch(CONFIGMAPS, namespace=namespace, name="guarded", ops=ops)
    assert patched["data"] == {"a": "good"}
    managers = {entry["manager"] for entry in patched["metadata"]["managedFields"]}
    assert "keepfix" in managers


async def test_json_patch_of_absent_object_raises_not_found(api: kube.Kube, namespace: str) -> None:
    """Patching an object that does not exist raises NotFound (404)."""
    with pytest.raises(kube.NotFound):
        await api.json_patch(
            CONFIGMAPS,
            namespace=namespace,
            name="absent",
            ops=[{"op": "add", "path": "/data", "value": {}}],
        )


async def test_replace_with_stale_resource_version_raises_conflict(
    api: kube.Kube, namespace: str
) -> None:
    """A PUT carrying an old resourceVersion raises Conflict, which is replannable."""
    first = await api.create(CONFIGMAPS, body=configmap(namespace, "cas", a="1"))
    await api.patch_merge(
        CONFIGMAPS, namespace=namespace, name="cas", merge_patch={"data": {"a": "2"}}
    )
    first["data"] = {"a": "3"}
    with pytest.raises(kube.Conflict) as caught:
        await api.replace(CONFIGMAPS, body=first)
    assert caught.value.replannable


async def test_list_pages_and_fills_kind(api: kube.Kube, namespace: str) -> None:
    """list reads every page, fills apiVersion/kind and honours selectors."""
    for index in range(5):
        body = configmap(namespace, f"cm-{index}", i=str(index))
        body["metadata"]["labels"] = {"parity": "even" if index % 2 == 0 else "odd"}
        await api.create(CONFIGMAPS, body=body)
    items, resource_version = await api.list(
        CONFIGMAPS, namespace=namespace, label_selector="parity", page_size=2
    )
    assert sorted(item["metadata"]["name"] for item in items) == [f"cm-{i}" for i in range(5)]
    assert {(item["apiVersion"], item["kind"]) for item in items} == {("v1", "ConfigMap")}
    assert int(resource_version) > 0
    odd, _ = await api.list(CONFIGMAPS, namespace=namespace, label_selector="parity=odd")
    one, _ = await api.list(CONFIGMAPS, namespace=namespace, field_selector="metadata.name=cm-3")
    assert sorted(item["metadata"]["name"] for item in odd) == ["cm-1", "cm-3"]
    assert [item["metadata"]["name"] for item in one] == ["cm-3"]


async def test_server_side_apply_conflicts_unless_forced(api: kube.Kube, namespace: str) -> None:
    """SSA of a field another manager owns raises Conflict; force takes it over."""
    await api.apply(
        CONFIGMAPS, body=configmap(namespace, "owned", a="theirs"), field_manager="gitops"
    )
    with pytest.raises(kube.Conflict):
        await api.apply(CONFIGMAPS, body=configmap(namespace, "owned", a="ours"))
    applied = await api.apply(CONFIGMAPS, body=configmap(namespace, "owned", a="ours"), force=True)
    assert applied["data"] == {"a": "ours"}
    keepfix_entry = [e for e in applied["metadata"]["managedFields"] if e["manager"] == "keepfix"]
    assert [e["operation"] for e in keepfix_entry] == ["Apply"]


async def test_status_and_merge_patches_on_a_custom_resource(
    api: kube.Kube, cluster: Any, namespace: str, group: str
) -> None:
    """patch_status writes only status; patch_merge writes the object; both None-delete keys."""
    install_crd(cluster, group)
    widgets = await api.resource_for(f"{group}/v1", "Widget")
    body = {
        "apiVersion": f"{group}/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": namespace},
        "spec": {"size": 1, "color": "red"},
    }
    await api.create(widgets, body=body)
    await api.patch_status(
        widgets, namespace=namespace, name="w", merge_patch={"status": {"phase": "Watching"}}
    )
    # A status write through the main resource is ignored, the subresource is not.
    await api.patch_merge(
        widgets,
        namespace=namespace,
        name="w",
        merge_patch={"spec": {"color": None}, "status": {"phase": "Ignored"}},
    )
    live = await api.get(widgets, namespace=namespace, name="w")
    assert live is not None
    assert (live["spec"], live["status"]) == ({"size": 1}, {"phase": "Watching"})
    with pytest.raises(kube.NotFound):
        await api.patch_status(
            widgets, namespace=namespace, name="absent", merge_patch={"status": {"phase": "x"}}
        )


async def test_forbidden_for_a_user_without_rbac(cluster: Any, namespace: str) -> None:
    """A user with no RBAC binding gets Forbidden (403), not a generic error."""
    kubeconfig = cluster.mint_kubeconfig("adapters-nobody", [])
    async with await kube.connect(kubeconfig=str(kubeconfig)) as nobody:
        with pytest.raises(kube.Forbidden) as caught:
            await nobody.get(CONFIGMAPS, namespace=namespace, name="anything")
    assert (caught.value.status, caught.value.replannable) == (403, False)


async def test_unreachable_server_raises_transport_error(cluster: Any, tmp_path: Path) -> None:
    """A server that does not answer raises TransportError (status 0)."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = "https://127.0.0.1:1"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    async with await kube.connect(kubeconfig=str(path)) as down:
        with pytest.raises(kube.TransportError) as caught:
            await down.get(CONFIGMAPS, namespace="default", name="x")
    assert caught.value.status == 0


async def test_list_pages_yields_each_page(api: kube.Kube, namespace: str) -> None:
    """list_pages hands over pages of page_size as they arrive, all with one resourceVersion."""
    for index in range(5):
        await api.create(CONFIGMAPS, body=configmap(namespace, f"p-{index}"))
    pages = [
        (len(items), version)
        async for items, version in api.list_pages(
            CONFIGMAPS,
            namespace=namespace,
            field_selector="metadata.name!=kube-root-ca.crt",
            page_size=2,
        )
    ]
    assert [size for size, _ in pages] == [2, 2, 1]
    assert len({version for _, version in pages}) == 1


async def test_bursts_share_a_bounded_set_of_connections(cluster: Any, namespace: str) -> None:
    """100 concurrent reads all succeed with at most max_requests in flight."""
    async with await kube.connect(kubeconfig=str(cluster.kubeconfig), max_requests=4) as api:
        await api.create(CONFIGMAPS, body=configmap(namespace, "hot", a="1"))
        results = await asyncio.gather(
            *(api.get(CONFIGMAPS, namespace=namespace, name="hot") for _ in range(100))
        )
        assert {r["data"]["a"] for r in results if r is not None} == {"1"}
        assert api._requests._value == 4  # every slot given back
