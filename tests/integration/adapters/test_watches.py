"""keepfix.adapters.watches against a real kube-apiserver."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from keepfix.adapters import kube, metrics, watches

pytestmark = pytest.mark.integration

CONFIGMAPS = kube.Resource("", "v1", "ConfigMap", "configmaps", namespaced=True)


def new_manager(
    api: kube.Kube, on_event: Callable[[watches.WatchEvent], Awaitable[None]], **options: Any
) -> watches.WatchManager:
    """A WatchManager with short retry delays and LIST pages of 2 (to exercise paging)."""
    return watches.WatchManager(
        api, on_event=on_event, backoff_initial=0.05, backoff_max=0.5, list_page_size=2, **options
    )


async def until(predicate: Callable[[], bool], what: str, *, bound: float = 60.0) -> None:
    """Poll until predicate() holds; fail naming `what` after a generous bound."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"Timed out waiting for {what}")
        await asyncio.sleep(0.02)


class Recorder:
    """Collects delivered events; `seen(type, name)` answers whether one arrived."""

    def __init__(self) -> None:
        self.events: list[watches.WatchEvent] = []

    async def __call__(self, event: watches.WatchEvent) -> None:
        self.events.append(event)

    def names(self, event_type: str) -> list[str]:
        return [e.object["metadata"]["name"] for e in self.events if e.type == event_type]

    def seen(self, event_type: str, name: str) -> Callable[[], bool]:
        return lambda: name in self.names(event_type)


@pytest.fixture
async def api(cluster: Any) -> AsyncIterator[kube.Kube]:
    async with await kube.connect(kubeconfig=str(cluster.kubeconfig)) as connection:
        yield connection


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def manager(api: kube.Kube, recorder: Recorder) -> AsyncIterator[watches.WatchManager]:
    async with new_manager(api, recorder) as running:
        yield running


class WidgetCrd:
    """A Widget CRD in a fresh API group, installed on demand and deleted afterwards."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.group = f"g{uuid.uuid4().hex[:8]}.watches.keepfix.test"
        self.api_version = f"{self.group}/v1"

    def install(self) -> None:
        install_crd(self.cluster, self.group)

    def widget(self, namespace: str, name: str, size: int = 1) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": "Widget",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"size": size},
        }


@pytest.fixture
def crd(cluster: Any) -> Iterator[WidgetCrd]:
    made = WidgetCrd(cluster)
    yield made
    cluster.kubectl("delete", "crd", f"widgets.{made.group}", "--ignore-not-found", "--wait=false")


def install_crd(cluster: Any, group: str) -> None:
    crd = {
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
    cluster.kubectl("apply", "-f", "-", input=json.dumps(crd))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=60s")


def configmap(namespace: str, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "data": {"v": "0"},
    }


async def set_value(api: kube.Kube, namespace: str, name: str, value: str) -> None:
    await api.patch_merge(
        CONFIGMAPS, namespace=namespace, name=name, merge_patch={"data": {"v": value}}
    )


def watch_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("keepfix-watch")]


async def test_list_then_watch_delivers_added_modified_deleted(
    api: kube.Kube, manager: watches.WatchManager, recorder: Recorder, namespace: str
) -> None:
    """Objects present before the watch come as ADDED, then changes and deletions follow."""
    for name in ("before", "before-2", "before-3"):
        await api.create(CONFIGMAPS, body=configmap(namespace, name))
    key = watches.WatchKey("v1", "ConfigMap", namespace)
    await manager.ensure(key)
    await asyncio.wait_for(manager.wait_synced(key), 60)
    assert {"before", "before-2", "before-3"} <= set(recorder.names("ADDED"))
    await api.create(CONFIGMAPS, body=configmap(namespace, "after"))
    await set_value(api, namespace, "before", "1")
    await api.delete(CONFIGMAPS, namespace=namespace, name="after")
    await until(recorder.seen("DELETED", "after"), "DELETED after")
    assert recorder.seen("MODIFIED", "before")()
    modified = next(e for e in recorder.events if e.type == "MODIFIED")
    assert (modified.object["kind"], modified.object["data"], modified.key) == (
        "ConfigMap",
        {"v": "1"},
        key,
    )
    assert "after" in recorder.names("ADDED")


async def test_name_watch_sees_only_that_object(
    api: kube.Kube, manager: watches.WatchManager, recorder: Recorder, namespace: str
) -> None:
    """A key with a name uses a field selector: other objects never arrive."""
    for name in ("web", "other"):
        await api.create(CONFIGMAPS, body=configmap(namespace, name))
    key = watches.WatchKey("v1", "ConfigMap", namespace, "web")
    await manager.ensure(key)
    await asyncio.wait_for(manager.wait_synced(key), 60)
    await set_value(api, namespace, "other", "1")
    await set_value(api, namespace, "web", "1")
    await until(recorder.seen("MODIFIED", "web"), "MODIFIED web")
    assert {e.object["metadata"]["name"] for e in recorder.events} == {"web"}


async def test_label_selector_watch_follows_label_changes(
    api: kube.Kube, manager: watches.WatchManager, recorder: Recorder, namespace: str
) -> None:
    """An object that gains the label arrives; one that loses it is DELETED from the stream."""
    await api.create(CONFIGMAPS, body=configmap(namespace, "in", {"tier": "web"}))
    await api.create(CONFIGMAPS, body=configmap(namespace, "out"))
    key = watches.WatchKey("v1", "ConfigMap", namespace, label_selector="tier=web")
    await manager.ensure(key)
    await asyncio.wait_for(manager.wait_synced(key), 60)
    assert recorder.names("ADDED") == ["in"]
    await api.patch_merge(
        CONFIGMAPS,
        namespace=namespace,
        name="out",
        merge_patch={"metadata": {"labels": {"tier": "web"}}},
    )
    await api.patch_merge(
        CONFIGMAPS, namespace=namespace, name="in", merge_patch={"metadata": {"labels": None}}
    )
    await until(recorder.seen("DELETED", "in"), "DELETED in (label removed)")
    await until(recorder.seen("ADDED", "out"), "ADDED out (label added)")
    assert manager.watched_objects == 1


async def test_relist_after_410_delivers_what_changed_while_disconnected(
    api: kube.Kube,
    crd: WidgetCrd,
    manager: watches.WatchManager,
    recorder: Recorder,
    namespace: str,
) -> None:
    """Resuming from a resourceVersion the server no longer has (410) relists and delivers the diff.

    A custom resource's watch cache starts at the CRD's creation, so resuming
    from resourceVersion 1 is answered with a real 410 Expired.
    """
    crd.install()
    widgets = await api.resource_for(crd.api_version, "Widget")
    for name in ("kept", "changed", "removed"):
        await api.create(widgets, body=crd.widget(namespace, name))
    key = watches.WatchKey(crd.api_version, "Widget", namespace)
    await manager.ensure(key)
    await asyncio.wait_for(manager.wait_synced(key), 60)
    assert sorted(recorder.names("ADDED")) == ["changed", "kept", "removed"]
    await manager._suspend(key)
    recorder.events.clear()
    await api.patch_merge(
        widgets, namespace=namespace, name="changed", merge_patch={"spec": {"size": 2}}
    )
    await api.delete(widgets, namespace=namespace, name="removed")
    await api.create(widgets, body=crd.widget(namespace, "new"))
    manager._resume(key, resource_version="1")
    await until(lambda: len(recorder.events) >= 3, "three events after the relist")
    delivered = {(e.type, e.object["metadata"]["name"]) for e in recorder.events}
    assert delivered == {("MODIFIED", "changed"), ("DELETED", "removed"), ("ADDED", "new")}
    assert manager._stream(key).relists == 2
    gone = next(e.object for e in recorder.events if e.type == "DELETED")
    assert (gone["kind"], gone["metadata"]["namespace"]) == ("Widget", namespace)
    assert manager.watched_objects == 3


async def test_watch_of_a_kind_whose_crd_comes_later(
    api: kube.Kube,
    crd: WidgetCrd,
    manager: watches.WatchManager,
    recorder: Recorder,
    namespace: str,
) -> None:
    """A watch on a kind not yet served starts delivering once its CRD is installed."""
    key = watches.WatchKey(crd.api_version, "Widget", namespace)
    await manager.ensure(key)
    assert not manager.synced(key)
    crd.install()
    widgets = await api.resource_for(crd.api_version, "Widget")
    await api.create(widgets, body=crd.widget(namespace, "late"))
    await until(recorder.seen("ADDED", "late"), "ADDED late")


async def test_release_stops_the_task_after_the_last_reference(
    api: kube.Kube, manager: watches.WatchManager, recorder: Recorder, namespace: str
) -> None:
    """Watches are reference-counted; the last release ends the task and forgets the objects."""
    await api.create(CONFIGMAPS, body=configmap(namespace, "x"))
    key = watches.WatchKey("v1", "ConfigMap", namespace, "x")
    await manager.ensure(key)
    await manager.ensure(key)
    await asyncio.wait_for(manager.wait_synced(key), 60)
    assert (manager.open_watches(), manager.references(key), len(watch_tasks())) == ([key], 2, 1)
    await manager.release(key)
    assert manager.open_watches() == [key]
    await manager.release(key)
    await manager.release(key)  # one too many: ignored
    assert (manager.open_watches(), manager.watched_objects, watch_tasks()) == ([], 0, [])
    recorder.events.clear()
    await set_value(api, namespace, "x", "9")
    await asyncio.sleep(0.3)
    assert recorder.events == []


async def test_close_ends_every_task(api: kube.Kube, recorder: Recorder, namespace: str) -> None:
    """close() stops all watches, leaves no task behind and refuses new ones."""
    manager = new_manager(api, recorder)
    for name in ("a", "b"):
        await manager.ensure(watches.WatchKey("v1", "ConfigMap", namespace, name))
    await manager.ensure(watches.WatchKey("v1", "Secret", namespace))
    assert len(watch_tasks()) == 3
    for key in manager.open_watches():
        # (Settled first: cancelling a TLS handshake can leak a transport in CPython 3.11.)
        await asyncio.wait_for(manager.wait_synced(key), 60)
    await manager.close()
    assert (manager.open_watches(), watch_tasks()) == ([], [])
    with pytest.raises(RuntimeError):
        await manager.ensure(watches.WatchKey("v1", "ConfigMap", namespace))


async def test_resumes_after_server_timeout_without_relisting(
    api: kube.Kube, recorder: Recorder, namespace: str
) -> None:
    """When the server ends a watch (timeoutSeconds), it resumes from the last resourceVersion."""
    await api.create(CONFIGMAPS, body=configmap(namespace, "long"))
    key = watches.WatchKey("v1", "ConfigMap", namespace, "long")
    async with new_manager(api, recorder, watch_timeout_seconds=1) as manager:
        await manager.ensure(key)
        await asyncio.wait_for(manager.wait_synced(key), 60)
        for value in ("1", "2", "3"):
            await asyncio.sleep(0.7)
            await set_value(api, namespace, "long", value)
        await until(
            lambda: [e.object["data"]["v"] for e in recorder.events][-1:] == ["3"], "value 3"
        )
        assert [e.object["data"]["v"] for e in recorder.events] == ["0", "1", "2", "3"]
        assert manager._stream(key).relists == 1


async def test_resync_redelivers_unchanged_objects(
    api: kube.Kube, recorder: Recorder, namespace: str
) -> None:
    """With resync_seconds, objects are delivered again as MODIFIED although nothing changed."""
    await api.create(CONFIGMAPS, body=configmap(namespace, "quiet"))
    key = watches.WatchKey("v1", "ConfigMap", namespace)
    async with new_manager(api, recorder, resync_seconds=1) as manager:
        await manager.ensure(key)
        await until(recorder.seen("MODIFIED", "quiet"), "a resync of quiet")
    assert recorder.names("ADDED").count("quiet") == 1


async def test_callback_errors_do_not_stop_the_watch(api: kube.Kube, namespace: str) -> None:
    """An exception in on_event is logged and the next event still arrives."""
    seen: list[str] = []

    async def flaky(event: watches.WatchEvent) -> None:
        seen.append(event.object["data"]["v"])
        if len(seen) == 1:
            raise ValueError("handler bug")

    await api.create(CONFIGMAPS, body=configmap(namespace, "f"))
    async with new_manager(api, flaky) as manager:
        await manager.ensure(watches.WatchKey("v1", "ConfigMap", namespace, "f"))
        await until(lambda: seen == ["0"], "the first event")
        await set_value(api, namespace, "f", "1")
        await until(lambda: seen == ["0", "1"], "the event after the failing one")


async def test_watched_objects_gauge(api: kube.Kube, recorder: Recorder, namespace: str) -> None:
    """keepfix_watched_objects counts the objects of every open watch."""
    registry = metrics.Metrics()
    for name in ("g1", "g2", "g3"):
        await api.create(CONFIGMAPS, body=configmap(namespace, name))

    def gauge() -> float | None:
        value: float | None = registry.registry.get_sample_value("keepfix_watched_objects")
        return value

    async with new_manager(api, recorder, metrics=registry) as manager:
        key = watches.WatchKey("v1", "ConfigMap", namespace, label_selector="!absent")
        await manager.ensure(key)
        await asyncio.wait_for(manager.wait_synced(key), 60)
        # three ConfigMaps plus the kube-root-ca.crt the controller-manager adds (maybe later)
        await until(lambda: gauge() in (3.0, 4.0), "gauge at 3 or 4")
        before = gauge()
        await api.delete(CONFIGMAPS, namespace=namespace, name="g1")
        await until(recorder.seen("DELETED", "g1"), "DELETED g1")
        assert gauge() in (2.0, 3.0)
        assert gauge() == manager.watched_objects
        assert before is not None
        await manager.release(key)
        assert gauge() == 0.0


async def test_retries_until_rbac_allows_the_watch(
    cluster: Any, namespace: str, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """A Forbidden list is retried with backoff; once RBAC allows it, the objects arrive."""
    user = f"watcher-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "configmap", "guarded", "-n", namespace)
    kubeconfig = cluster.mint_kubeconfig(user, [])
    async with (
        await kube.connect(kubeconfig=str(kubeconfig)) as limited,
        new_manager(limited, recorder) as manager,
    ):
        key = watches.WatchKey("v1", "ConfigMap", namespace)
        await manager.ensure(key)
        await until(lambda: "403 Forbidden" in caplog.text, "a logged 403")
        assert (manager.synced(key), manager.healthy()) == (False, True)
        cluster.kubectl(
            "create",
            "role",
            "read-cm",
            "-n",
            namespace,
            "--verb=get,list,watch",
            "--resource=configmaps",
        )
        cluster.kubectl(
            "create", "rolebinding", "read-cm", "-n", namespace, "--role=read-cm", f"--user={user}"
        )
        await until(recorder.seen("ADDED", "guarded"), "ADDED guarded after the RoleBinding")


async def test_bookmarks_advance_a_quiet_watch(
    api: kube.Kube, recorder: Recorder, namespace: str
) -> None:
    """A watch that sees no events still moves its resourceVersion on with bookmarks."""
    for name in ("quiet", "busy"):
        await api.create(CONFIGMAPS, body=configmap(namespace, name))
    key = watches.WatchKey("v1", "ConfigMap", namespace, "quiet")
    async with new_manager(api, recorder, watch_timeout_seconds=3) as manager:
        await manager.ensure(key)
        await asyncio.wait_for(manager.wait_synced(key), 60)
        listed = int(manager._stream(key).resource_version or 0)
        for value in range(100):  # other writes move the cluster's resourceVersion on
            await set_value(api, namespace, "busy", str(value))
            if int(manager._stream(key).resource_version or 0) > listed:
                break
            await asyncio.sleep(0.2)
        assert int(manager._stream(key).resource_version or 0) > listed, "no bookmark arrived"
        assert [(e.type, e.object["metadata"]["name"]) for e in recorder.events] == [
            ("ADDED", "quiet")
        ]
        assert manager._stream(key).relists == 1


async def test_release_from_inside_the_callback(api: kube.Kube, namespace: str) -> None:
    """A callback may release its own key (stop on DELETED) without deadlock or leak."""
    holder: list[watches.WatchManager] = []
    released: list[str] = []

    async def stop_on_delete(event: watches.WatchEvent) -> None:
        if event.type == "DELETED":
            released.append(event.object["metadata"]["name"])
            await holder[0].release(event.key)

    await api.create(CONFIGMAPS, body=configmap(namespace, "once"))
    key = watches.WatchKey("v1", "ConfigMap", namespace, "once")
    async with new_manager(api, stop_on_delete) as manager:
        holder.append(manager)
        await manager.ensure(key)
        await asyncio.wait_for(manager.wait_synced(key), 60)
        await api.delete(CONFIGMAPS, namespace=namespace, name="once")
        await until(lambda: not watch_tasks(), "the watch task to end")
        assert (released, manager.open_watches()) == (["once"], [])


async def test_many_names_share_one_stream(
    api: kube.Kube, recorder: Recorder, namespace: str
) -> None:
    """From coalesce_names names on, one stream of the namespace serves them, routed by name."""
    for name in ("n1", "n2", "n3", "noise"):
        await api.create(CONFIGMAPS, body=configmap(namespace, name))
    keys = [watches.WatchKey("v1", "ConfigMap", namespace, name) for name in ("n1", "n2", "n3")]
    async with new_manager(api, recorder, coalesce_names=3) as manager:
        for key in keys[:2]:
            await manager.ensure(key)
            # (Settled first: cancelling a TLS handshake can leak a transport in CPython 3.11.)
            await asyncio.wait_for(manager.wait_synced(key), 60)
        assert sorted(manager.open_streams()) == sorted(keys[:2])
        await manager.ensure(keys[2])
        shared = watches.WatchKey("v1", "ConfigMap", namespace)
        assert manager.open_streams() == [shared]
        for key in keys:
            await asyncio.wait_for(manager.wait_synced(key), 60)
        assert {(e.object["metadata"]["name"], e.key) for e in recorder.events} == {
            (key.name, key) for key in keys
        }
        for name in ("noise", "n2"):
            await set_value(api, namespace, name, "1")
        await until(recorder.seen("MODIFIED", "n2"), "MODIFIED n2 through the shared stream")
        assert "noise" not in recorder.names("MODIFIED")
        assert (manager.watched_objects, len(watch_tasks())) == (3, 1)
        await manager.release(keys[0])
        assert manager.watched_objects == 2
        for key in keys[1:]:
            await manager.release(key)
        assert (manager.open_streams(), manager.watched_objects, watch_tasks()) == ([], 0, [])


async def test_a_name_joins_an_open_namespace_stream(
    api: kube.Kube, manager: watches.WatchManager, recorder: Recorder, namespace: str
) -> None:
    """A name key in a namespace already watched whole opens no new stream and gets its state."""
    for name in ("web", "db"):
        await api.create(CONFIGMAPS, body=configmap(namespace, name))
    whole = watches.WatchKey("v1", "ConfigMap", namespace)
    web = watches.WatchKey("v1", "ConfigMap", namespace, "web")
    await manager.ensure(whole)
    await asyncio.wait_for(manager.wait_synced(whole), 60)
    await manager.ensure(web)
    await asyncio.wait_for(manager.wait_synced(web), 60)
    assert manager.open_streams() == [whole]
    assert [e.type for e in recorder.events if e.key == web] == ["ADDED"]
    await set_value(api, namespace, "web", "1")
    await until(
        lambda: {e.key for e in recorder.events if e.type == "MODIFIED"} == {whole, web},
        "MODIFIED web for both keys",
    )
    await manager.release(whole)
    assert (manager.open_streams(), manager.watched_objects) == ([whole], 1)
    recorder.events.clear()
    await set_value(api, namespace, "db", "1")
    await set_value(api, namespace, "web", "2")
    await until(recorder.seen("MODIFIED", "web"), "MODIFIED web after the whole key left")
    assert {e.object["metadata"]["name"] for e in recorder.events} == {"web"}


async def test_survives_its_crd_being_deleted_and_created_again(
    api: kube.Kube,
    crd: WidgetCrd,
    manager: watches.WatchManager,
    recorder: Recorder,
    namespace: str,
) -> None:
    """Deleting the CRD deletes its objects (DELETED arrives); a new CRD is watched again."""
    crd.install()
    widgets = await api.resource_for(crd.api_version, "Widget")
    await api.create(widgets, body=crd.widget(namespace, "first"))
    key = watches.WatchKey(crd.api_version, "Widget", namespace)
    await manager.ensure(key)
    await until(recorder.seen("ADDED", "first"), "ADDED first")
    crd.cluster.kubectl("delete", "crd", f"widgets.{crd.group}", "--wait=true", "--timeout=60s")
    await until(recorder.seen("DELETED", "first"), "DELETED first with its CRD")
    crd.install()
    widgets = await api.resource_for(crd.api_version, "Widget")
    await api.create(widgets, body=crd.widget(namespace, "second"))
    await until(recorder.seen("ADDED", "second"), "ADDED second after the CRD came back")
    assert manager.healthy()


async def test_cluster_scoped_and_all_namespace_keys(
    api: kube.Kube, cluster: Any, manager: watches.WatchManager, recorder: Recorder, namespace: str
) -> None:
    """A cluster-scoped kind is watched by name; namespace None spans every namespace."""
    own = watches.WatchKey("v1", "Namespace", None, namespace)
    everywhere = watches.WatchKey("v1", "ConfigMap", None, label_selector=f"probe={namespace}")
    await api.create(CONFIGMAPS, body=configmap(namespace, "labelled", {"probe": namespace}))
    for key in (own, everywhere):
        await manager.ensure(key)
        await asyncio.wait_for(manager.wait_synced(key), 60)
    assert {(e.object["kind"], e.object["metadata"]["name"]) for e in recorder.events} == {
        ("Namespace", namespace),
        ("ConfigMap", "labelled"),
    }
    cluster.kubectl("label", "namespace", namespace, "touched=yes")
    await until(recorder.seen("MODIFIED", namespace), "MODIFIED namespace")


async def test_a_resource_version_ahead_of_the_server_relists_after_an_error(
    api: kube.Kube, manager: watches.WatchManager, recorder: Recorder, namespace: str
) -> None:
    """After an error, a resourceVersion the server has not reached (etcd restored) means a relist.

    Otherwise the watch would wait silently for a version that never comes.
    """
    await api.create(CONFIGMAPS, body=configmap(namespace, "restored"))
    key = watches.WatchKey("v1", "ConfigMap", namespace, "restored")
    await manager.ensure(key)
    await asyncio.wait_for(manager.wait_synced(key), 60)
    await manager._suspend(key)
    await set_value(api, namespace, "restored", "changed while disconnected")
    ahead = str(int(manager._stream(key).resource_version or 0) + 10_000_000)
    manager._resume(key, resource_version=ahead, after_error=True)
    await until(recorder.seen("MODIFIED", "restored"), "MODIFIED restored from the relist")
    assert manager._stream(key).relists == 2
    await set_value(api, namespace, "restored", "after")
    await until(
        lambda: recorder.events[-1].object["data"]["v"] == "after", "the watch working again"
    )
