"""Who changed a drifted field, from metadata.managedFields (FieldsV1)."""

from __future__ import annotations

import copy
import json
import pathlib
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from keepfix.core import attribution

# A Deployment created with `kubectl apply` (client-side), whose memory limit
# was then cut with `kubectl edit` and scaled with `kubectl scale`, and whose
# status the controller manager writes. The structure is what the API server
# returns; the ownership moves match what it does on each Update.
DEPLOYMENT = yaml.safe_load(
    """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
  annotations:
    deployment.kubernetes.io/revision: "2"
    kubectl.kubernetes.io/last-applied-configuration: "{}"
  managedFields:
  - apiVersion: apps/v1
    fieldsType: FieldsV1
    fieldsV1:
      f:metadata:
        f:annotations:
          .: {}
          f:kubectl.kubernetes.io/last-applied-configuration: {}
        f:labels:
          .: {}
          f:app: {}
      f:spec:
        f:progressDeadlineSeconds: {}
        f:revisionHistoryLimit: {}
        f:selector: {}
        f:strategy:
          f:rollingUpdate:
            .: {}
            f:maxSurge: {}
            f:maxUnavailable: {}
          f:type: {}
        f:template:
          f:metadata:
            f:labels:
              .: {}
              f:app: {}
          f:spec:
            f:containers:
              k:{"name":"web"}:
                .: {}
                f:args: {}
                f:image: {}
                f:imagePullPolicy: {}
                f:name: {}
                f:ports:
                  .: {}
                  k:{"containerPort":80,"protocol":"TCP"}:
                    .: {}
                    f:containerPort: {}
                    f:name: {}
                    f:protocol: {}
                f:resources:
                  .: {}
                  f:limits:
                    .: {}
                    f:cpu: {}
                f:terminationMessagePath: {}
                f:terminationMessagePolicy: {}
              k:{"name":"sidecar"}:
                .: {}
                f:image: {}
                f:name: {}
            f:dnsPolicy: {}
            f:restartPolicy: {}
            f:schedulerName: {}
            f:securityContext: {}
            f:terminationGracePeriodSeconds: {}
            f:tolerations: {}
    manager: kubectl-client-side-apply
    operation: Update
    time: "2026-11-01T10:00:00Z"
  - apiVersion: apps/v1
    fieldsType: FieldsV1
    fieldsV1:
      f:spec:
        f:template:
          f:spec:
            f:containers:
              k:{"name":"web"}:
                f:resources:
                  f:limits:
                    f:memory: {}
    manager: kubectl-edit
    operation: Update
    time: "2026-11-20T08:30:00Z"
  - apiVersion: apps/v1
    fieldsType: FieldsV1
    fieldsV1:
      f:spec:
        f:replicas: {}
    manager: kubectl
    operation: Update
    subresource: scale
    time: "2026-11-20T09:00:00Z"
  - apiVersion: apps/v1
    fieldsType: FieldsV1
    fieldsV1:
      f:metadata:
        f:annotations:
          f:deployment.kubernetes.io/revision: {}
      f:status:
        f:availableReplicas: {}
        f:conditions:
          .: {}
          k:{"type":"Available"}:
            .: {}
            f:lastTransitionTime: {}
            f:status: {}
            f:type: {}
        f:observedGeneration: {}
        f:replicas: {}
    manager: kube-controller-manager
    operation: Update
    subresource: status
    time: "2026-11-20T09:00:05Z"
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: sidecar
        image: envoy:1.30
      - name: web
        image: nginx:1.25.3
        args: ["--port", "80"]
        ports:
        - {containerPort: 80, name: http, protocol: TCP}
        resources:
          limits: {cpu: 500m, memory: 128Mi}
      tolerations:
      - {key: dedicated, operator: Exists}
status:
  replicas: 1
  conditions:
  - {type: Available, status: "True"}
"""
)

WEB = "/spec/template/spec/containers/1"
MEMORY = WEB + "/resources/limits/memory"
CPU = WEB + "/resources/limits/cpu"
REPLICAS = "/spec/replicas"


def managers(result: tuple[attribution.ChangedBy, ...]) -> list[str]:
    return [c.manager for c in result]


def test_edit_of_memory_limit_is_attributed_to_kubectl_edit() -> None:
    """The manager that last wrote the drifted field is named, with operation and time."""
    result = attribution.attribute_object(DEPLOYMENT, [MEMORY])
    assert result == (
        attribution.ChangedBy(
            manager="kubectl-edit",
            operation="Update",
            time="2026-11-20T08:30:00Z",
            subresource=None,
            paths=(MEMORY,),
        ),
    )


def test_list_item_is_found_by_its_merge_key_not_its_index() -> None:
    """k:{"name":"web"} matches the live item at index 1, not index 0."""
    assert managers(attribution.attribute_object(DEPLOYMENT, [CPU])) == [
        "kubectl-client-side-apply"
    ]
    sidecar_cpu = "/spec/template/spec/containers/0/resources/limits/cpu"
    assert attribution.attribute_object(DEPLOYMENT, [sidecar_cpu]) == ()


def test_port_with_a_composite_key() -> None:
    """k:{"containerPort":80,"protocol":"TCP"} matches the port item."""
    pointer = WEB + "/ports/0/name"
    assert managers(attribution.attribute_object(DEPLOYMENT, [pointer])) == [
        "kubectl-client-side-apply"
    ]


def test_scale_subresource_owns_replicas() -> None:
    """`kubectl scale` writes through the scale subresource and is named for spec.replicas."""
    (changed,) = attribution.attribute_object(DEPLOYMENT, [REPLICAS])
    assert (changed.manager, changed.subresource) == ("kubectl", "scale")


def test_newest_first_across_several_drifts() -> None:
    """Several drifted pointers: one entry per manager, newest first, with its paths."""
    result = attribution.attribute_object(DEPLOYMENT, [CPU, MEMORY, REPLICAS])
    assert managers(result) == ["kubectl", "kubectl-edit", "kubectl-client-side-apply"]
    assert [c.paths for c in result] == [(REPLICAS,), (MEMORY,), (CPU,)]
    assert attribution.newest_owner(result, MEMORY) == result[1]
    assert attribution.newest_owner(result, "/spec/paused") is None


def test_atomic_field_owns_everything_below_it() -> None:
    """f:args: {} owns args/1; f:tolerations: {} owns the items of the atomic list."""
    pointers = [WEB + "/args/1", "/spec/template/spec/tolerations/0/operator"]
    (changed,) = attribution.attribute_object(DEPLOYMENT, pointers)
    assert changed.paths == tuple(pointers)


def test_pointer_to_a_map_with_owned_children_is_owned() -> None:
    """A drift of the whole limits map names every manager that owns part of it."""
    result = attribution.attribute_object(DEPLOYMENT, [WEB + "/resources/limits"])
    assert managers(result) == ["kubectl-edit", "kubectl-client-side-apply"]


def test_status_subresource_is_skipped_for_spec_paths() -> None:
    """kube-controller-manager's status entry never explains a spec drift."""
    obj = copy.deepcopy(DEPLOYMENT)
    status_entry = obj["metadata"]["managedFields"][3]
    status_entry["fieldsV1"]["f:spec"] = {"f:replicas": {}}
    assert managers(attribution.attribute_object(obj, [REPLICAS])) == ["kubectl"]
    assert managers(attribution.attribute_object(obj, ["/status/replicas"])) == [
        "kube-controller-manager"
    ]


def test_status_condition_by_key() -> None:
    """k:{"type":"Available"} matches the condition item."""
    result = attribution.attribute_object(DEPLOYMENT, ["/status/conditions/0/status"])
    assert managers(result) == ["kube-controller-manager"]


@pytest.mark.parametrize(
    "pointer",
    [
        "/spec/paused",  # nobody wrote it
        WEB + "/resources/requests/memory",  # absent in live and unowned
        "/spec/template/spec/containers/7/image",  # no such item
        "/spec/template/spec/containers/x/image",  # not an index
        WEB + "/ports/0/hostPort",
    ],
)
def test_unowned_pointer_yields_nothing(pointer: str) -> None:
    """A pointer owned by nobody is not attributed to anyone."""
    assert attribution.attribute_object(DEPLOYMENT, [pointer]) == ()


def test_exclude_drops_a_manager() -> None:
    """Callers can leave keepfix's own writes out."""
    result = attribution.attribute_object(DEPLOYMENT, [MEMORY, CPU], exclude={"kubectl-edit"})
    assert managers(result) == ["kubectl-client-side-apply"]


def test_shared_ownership_after_server_side_apply_newest_wins() -> None:
    """Two appliers of the same value both own it; the newest comes first, ties by name."""
    fields: dict[str, Any] = {"f:spec": {"f:replicas": {}}}
    entries: list[dict[str, Any]] = [
        {"manager": "argocd-controller", "operation": "Apply", "time": "2026-11-20T09:00:00Z"},
        {"manager": "keepfix", "operation": "Apply", "time": "2026-11-20T10:00:00+01:00"},
        {"manager": "flux", "operation": "Apply", "time": "2026-11-20T09:00:00Z"},
        {"manager": "helm", "operation": "Update", "time": "2026-11-21T00:00:00Z"},
    ]
    for entry in entries:
        entry.update(fieldsType="FieldsV1", fieldsV1=fields)
    result = attribution.attribute(entries, [REPLICAS], live={"spec": {"replicas": 3}})
    assert managers(result) == ["helm", "argocd-controller", "flux", "keepfix"]


def test_entries_without_time_or_with_bad_time_sort_last() -> None:
    """A missing or malformed time never crashes; such entries are treated as oldest."""
    fields: dict[str, Any] = {"f:spec": {"f:replicas": {}}}
    entries: list[dict[str, Any]] = [
        {"manager": "a", "operation": "Update", "fieldsV1": fields},
        {"manager": "b", "operation": "Update", "fieldsV1": fields, "time": "yesterday"},
        {"manager": "c", "operation": "Update", "fieldsV1": fields, "time": "2026-01-01T00:00:00"},
    ]
    result = attribution.attribute(entries, [REPLICAS], live={"spec": {"replicas": 3}})
    assert managers(result) == ["c", "a", "b"]
    assert result[1].time is None
    assert result[1].to_dict() == {"manager": "a", "operation": "Update"}


def test_set_like_list_and_index_keys() -> None:
    """v:<json> matches a set member by value, i:<n> an item by index."""
    live = {"spec": {"finalizers": ["a.example/x", "b.example/y"], "items": [{"x": 1}]}}
    entries: list[dict[str, Any]] = [
        {
            "manager": "m",
            "operation": "Apply",
            "time": "2026-01-01T00:00:00Z",
            "fieldsV1": {
                "f:spec": {
                    "f:finalizers": {'v:"b.example/y"': {}, "v:{bad json": {}},
                    "f:items": {"i:0": {"f:x": {}}},
                }
            },
        }
    ]
    assert managers(attribution.attribute(entries, ["/spec/finalizers/1"], live=live)) == ["m"]
    assert attribution.attribute(entries, ["/spec/finalizers/0"], live=live) == ()
    assert managers(attribution.attribute(entries, ["/spec/items/0/x"], live=live)) == ["m"]


def test_key_types_must_match() -> None:
    """k:{"containerPort":80} does not match a live port "80" (string) or True."""
    fields: dict[str, Any] = {
        "f:ports": {'k:{"containerPort":80}': {"f:name": {}}, "k:[1]": {}, "k:{}": {}}
    }
    entries = [{"manager": "m", "operation": "Update", "fieldsV1": fields}]
    for port, owned in [(80, True), (80.0, True), ("80", False), (True, False)]:
        live = {"ports": [{"containerPort": port, "name": "http"}]}
        result = attribution.attribute(entries, ["/ports/0/name"], live=live)
        assert bool(result) is owned, port


def test_escaped_pointer_tokens() -> None:
    """~1 and ~0 in a pointer name keys with / and ~ (annotations, labels)."""
    result = attribution.attribute_object(
        DEPLOYMENT, ["/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"]
    )
    assert managers(result) == ["kubectl-client-side-apply"]
    assert attribution.split_pointer("/a~1b/c~0d") == ("a/b", "c~d")


def test_pointer_must_start_with_slash() -> None:
    """A dotted path is not a pointer; the error says how to write one."""
    with pytest.raises(ValueError, match="must start with '/'"):
        attribution.attribute_object(DEPLOYMENT, ["spec.replicas"])


def test_root_pointer_and_odd_entries() -> None:
    """The root pointer is owned by any entry with fields; empty or non-FieldsV1 entries never."""
    entries: list[Any] = [
        {"manager": "a", "operation": "Update", "fieldsV1": {"f:spec": {}}},
        {"manager": "b", "operation": "Update", "fieldsV1": {}},
        {"manager": "c", "operation": "Update", "fieldsType": "FieldsV2", "fieldsV1": {"f:x": {}}},
        {"manager": "d", "operation": "Update"},
        "not an entry",
    ]
    assert managers(attribution.attribute(entries, [""], live={})) == ["a"]
    assert attribution.attribute(None, [REPLICAS], live={}) == ()
    assert attribution.attribute_object({}, [REPLICAS]) == ()


def test_duplicate_pointers_are_reported_once() -> None:
    """The same pointer twice gives one path."""
    (changed,) = attribution.attribute_object(DEPLOYMENT, [MEMORY, MEMORY])
    assert changed.paths == (MEMORY,)


def test_to_dict_for_the_regression() -> None:
    """changedBy items carry manager, operation, time and the subresource when there is one."""
    (changed,) = attribution.attribute_object(DEPLOYMENT, [REPLICAS])
    assert changed.to_dict() == {
        "manager": "kubectl",
        "operation": "Update",
        "time": "2026-11-20T09:00:00Z",
        "subresource": "scale",
    }


# --- objects as a real kube-apiserver (v1.37) returned them ---------------------------
# Made with the control plane of keepfix.localcluster: `kubectl apply` (client-side),
# `kubectl edit` (memory 512Mi -> 128Mi), `kubectl scale --replicas=1`, `kubectl patch`
# (image), then `kubectl apply --server-side --field-manager=argocd-controller` (env,
# minReadySeconds; kubectl migrated the client-side ownership and dropped the edited
# memory limit) and `kubectl label`. Saved with `kubectl get -o json --show-managed-fields`.

REAL = pathlib.Path(__file__).parent.parent / "data" / "attribution"
REAL_WEB = "/spec/template/spec/containers/1"


def real(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((REAL / f"deployment-{name}.json").read_text())
    return loaded


def test_real_edit_scale_patch_newest_first() -> None:
    """memory by kubectl-edit, image by kubectl-patch, replicas by kubectl scale (no time)."""
    pointers = [REAL_WEB + "/resources/limits/memory", REAL_WEB + "/image", "/spec/replicas"]
    result = attribution.attribute_object(real("after-edit"), pointers)
    assert [(c.manager, c.time, c.subresource, c.paths) for c in result] == [
        ("kubectl-patch", "2026-12-04T20:06:02Z", None, (REAL_WEB + "/image",)),
        ("kubectl-edit", "2026-12-04T20:05:59Z", None, (REAL_WEB + "/resources/limits/memory",)),
        ("kubectl", None, "scale", ("/spec/replicas",)),
    ]


def test_real_granular_map_owned_as_a_node_does_not_claim_its_keys() -> None:
    """kubectl-client-side-apply's `f:annotations: {}` loses to the exact owner of a key."""
    obj = real("after-edit")
    revision = "/metadata/annotations/deployment.kubernetes.io~1revision"
    applied = "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"
    assert managers(attribution.attribute_object(obj, [revision])) == ["kube-controller-manager"]
    assert managers(attribution.attribute_object(obj, [applied])) == ["kubectl-edit"]


def test_real_field_dropped_by_server_side_apply_has_no_owner() -> None:
    """After the argocd apply removed the memory limit, nobody owns it."""
    obj = real("after-ssa")
    assert attribution.attribute_object(obj, [REAL_WEB + "/resources/limits/memory"]) == ()


def test_real_server_side_apply_and_label() -> None:
    """argocd-controller owns what it applied (a keyed env item), kubectl-label the label."""
    pointers = [REAL_WEB + "/env/0/value", "/spec/minReadySeconds", "/metadata/labels/tier"]
    result = attribution.attribute_object(real("after-ssa"), pointers)
    assert [(c.manager, c.operation, c.paths) for c in result] == [
        ("kubectl-label", "Update", ("/metadata/labels/tier",)),
        ("argocd-controller", "Apply", (REAL_WEB + "/env/0/value", "/spec/minReadySeconds")),
    ]


def test_real_atomic_claim_is_the_fallback() -> None:
    """A pointer nobody owns exactly falls back to an ancestor owned whole."""
    obj = real("after-ssa")
    pointer = "/spec/template/spec/securityContext/runAsNonRoot"
    assert managers(attribution.attribute_object(obj, [pointer])) == ["kubectl-client-side-apply"]


def test_exact_owner_beats_atomic_claim() -> None:
    """Ownership levels: exact reach, atomic ancestor, none."""
    node_only: dict[str, Any] = {"f:metadata": {"f:annotations": {}}}
    exact: dict[str, Any] = {"f:metadata": {"f:annotations": {"f:a": {}}}}
    live = {"metadata": {"annotations": {"a": "1", "b": "2"}}}
    assert (
        attribution.ownership(node_only, "/metadata/annotations/a", live)
        is attribution.Ownership.ATOMIC
    )
    assert (
        attribution.ownership(exact, "/metadata/annotations/a", live) is attribution.Ownership.EXACT
    )
    assert (
        attribution.ownership(exact, "/metadata/annotations/b", live) is attribution.Ownership.NONE
    )
    assert attribution.owns(node_only, "/metadata/annotations/b", live)
    entries = [
        {
            "manager": "csa",
            "operation": "Update",
            "time": "2026-01-02T00:00:00Z",
            "fieldsV1": node_only,
        },
        {
            "manager": "edit",
            "operation": "Update",
            "time": "2026-01-01T00:00:00Z",
            "fieldsV1": exact,
        },
    ]
    pointers = ["/metadata/annotations/a", "/metadata/annotations/b"]
    result = attribution.attribute(entries, pointers, live=live)
    assert [(c.manager, c.paths) for c in result] == [
        ("csa", ("/metadata/annotations/b",)),
        ("edit", ("/metadata/annotations/a",)),
    ]


# --- properties ------------------------------------------------------------------------

leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=4)
documents = st.recursive(
    leaf,
    lambda inner: (
        st.lists(inner, min_size=1, max_size=3)
        | st.dictionaries(
            st.text(alphabet="ab/~.c", min_size=1, max_size=3), inner, min_size=1, max_size=3
        )
    ),
    max_leaves=10,
)


def trie(value: Any) -> dict[str, Any]:
    """The FieldsV1 a manager that wrote every leaf of `value` would own."""
    if isinstance(value, dict):
        return {f"f:{k}": trie(v) for k, v in value.items()}
    if isinstance(value, list):
        return {f"i:{i}": trie(v) for i, v in enumerate(value)}
    return {}


def leaves(value: Any, prefix: str = "") -> list[str]:
    """Every leaf pointer of `value`."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in leaves(v, f"{prefix}/{escape(k)}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in leaves(v, f"{prefix}/{i}")]
    return [prefix]


def escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


@given(st.dictionaries(st.sampled_from(["spec", "metadata"]), documents, min_size=1))
def test_a_writer_of_everything_owns_every_leaf(obj: dict[str, Any]) -> None:
    """Property: the owner of every leaf is named for every leaf pointer, escaped keys included."""
    entries = [{"manager": "w", "operation": "Update", "fieldsV1": trie(obj)}]
    pointers = leaves(obj)
    for pointer in pointers:
        assert attribution.ownership(trie(obj), pointer, obj) is attribution.Ownership.EXACT
    result = attribution.attribute(entries, pointers, live=obj)
    assert [c.paths for c in result] == [tuple(dict.fromkeys(pointers))]


@given(st.dictionaries(st.sampled_from(["spec", "metadata"]), documents, min_size=1))
def test_a_writer_of_the_spec_owns_nothing_in_metadata(obj: dict[str, Any]) -> None:
    """Property: ownership never leaks into a sibling subtree."""
    fields = {"f:spec": trie(obj["spec"])} if "spec" in obj else {"f:spec": {"f:x": {}}}
    for pointer in leaves(obj.get("metadata"), "/metadata") if "metadata" in obj else []:
        assert not attribution.owns(fields, pointer, obj)
