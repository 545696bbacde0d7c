"""No phantom drift against a real API server: the shared corpus, applied and read back.

The unit half (tests/unit/core/test_corpus_nodrift.py) diffs every corpus
object against itself and a respelled copy. This half applies the corpus to
the test cluster (server-side apply, in bulk) and diffs what a Mitigation
with ``capture: true`` would record from each manifest against the object
the API server returns: defaults filled in, quantities normalised, empty
fields dropped. It also captures from the returned object and diffs against
an unchanged re-read, which is what the operator does with live objects.

The corpus is read in place (KEEPFIX_CORPUS, default
/work/shared/corpus/manifests); the tests skip when it is not there. Objects
go into namespaces made for the run (one per source project and copy
number, as several files of one project reuse a name); cluster-scoped
objects get a name prefix. Kinds that would harm a shared control plane, or
that the server does not serve, are skipped and counted. Everything is
deleted afterwards without waiting.

Phantom drift the core is known to report is listed, object by object, in
data/corpus_known_drift.yaml; each entry is its own strict xfail, so fixing
the core without updating the list fails the run.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml

from keepfix.core import diff, paths

pytestmark = pytest.mark.integration

CORPUS = Path(os.environ.get("KEEPFIX_CORPUS", "/work/shared/corpus/manifests"))
PROJECTS = sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) if CORPUS.is_dir() else []
KNOWN_DRIFT = Path(__file__).parent / "data" / "corpus_known_drift.yaml"
FIELD_MANAGER = "keepfix-corpus-tests"
#: Seconds to wait for the namespaces' default ServiceAccounts and for objects to settle.
TIMEOUT = float(os.environ.get("KEEPFIX_TEST_CORPUS_TIMEOUT", "60"))
#: The share of applicable objects the API server may reject before the test fails.
REJECTED_LIMIT = 0.10
SKIPPED_GROUPS = {
    "admissionregistration.k8s.io": "admission webhooks and policies could block every write",
    "apiregistration.k8s.io": "an APIService breaks discovery for every client",
    "apiextensions.k8s.io": "a CustomResourceDefinition changes the API of the shared server",
}
#: Apply order: what other objects need first (namespaces, then service accounts), Pods last.
ORDER = {"Namespace": 0, "ServiceAccount": 1, "Pod": 3}
#: How the server refuses a fixed clusterIP or nodePort another Service holds.
_ALLOCATED = re.compile(r"already allocated")
#: Top-level keys that are not captured whole from a returned object.
_NOT_WHOLE = frozenset({"apiVersion", "kind", "status"})

_ABSENT = pytest.param(
    None, marks=pytest.mark.skip(reason=f"the manifest corpus {CORPUS} is not on this machine")
)


class Kubectl(Protocol):
    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]: ...


Key = tuple[str, str, str, str]
"""apiVersion, kind, namespace ("" when cluster-scoped), name."""


@dataclasses.dataclass(frozen=True)
class Resource:
    """How the server serves a kind: its plural name and whether it is namespaced."""

    plural: str
    namespaced: bool


@dataclasses.dataclass
class Item:
    """One corpus object as applied: where it came from and the manifest sent."""

    project: str
    source: str
    manifest: dict[str, Any]
    resource: Resource
    #: What the test changed in the manifest beyond its namespace or name, and why.
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def key(self) -> Key:
        meta = self.manifest["metadata"]
        return (
            self.manifest["apiVersion"],
            self.manifest["kind"],
            meta.get("namespace", ""),
            meta["name"],
        )

    @property
    def label(self) -> str:
        kind, name = self.manifest["kind"], self.manifest["metadata"]["name"]
        return f"{self.source} {kind} {name}"


@dataclasses.dataclass
class Corpus:
    """The corpus as applied to the cluster, and what the server returned."""

    items: list[Item]
    skipped: list[tuple[str, str, str]]
    rejected: dict[Key, str]
    live: dict[Key, dict[str, Any]]
    #: Per object, two consecutive reads with the same resourceVersion: a no-op re-read.
    pairs: dict[Key, tuple[dict[str, Any], dict[str, Any]]]

    def applied(self, project: str) -> list[Item]:
        return [item for item in self.items if item.project == project and item.key in self.live]

    def spelling(self, project: str) -> tuple[int, int]:
        """Captured fields, and how many the server returned in another form (equal values)."""
        fields = respelled = 0
        for item in self.applied(project):
            live = self.live[item.key]
            for field in diff.capture_fields(item.manifest):
                fields += 1
                for match in paths.resolve(live, field.path):
                    respelled += match.present and match.value != field.value
        return fields, respelled

    def summary(self, project: str) -> str:
        items = [item for item in self.items if item.project == project]
        rejected = [item for item in items if item.key in self.rejected]
        adjusted = [item for item in items if item.notes]
        skipped = collections.Counter(
            reason for where, _, reason in self.skipped if where == project
        )
        settled = sum(1 for item in self.applied(project) if item.key in self.pairs)
        fields, respelled = self.spelling(project)
        lines = [
            f"{project}: {len(self.applied(project))} applied, "
            f"{sum(skipped.values())} skipped, {len(rejected)} rejected, "
            f"{len(adjusted)} adjusted, {settled} re-read unchanged; "
            f"{fields} fields captured, {respelled} returned respelled or with defaults added"
        ]
        lines += [f"  skipped {count}: {reason}" for reason, count in sorted(skipped.items())]
        lines += [f"  rejected {item.label}: {self.rejected[item.key]}" for item in rejected]
        lines += [f"  adjusted {item.label}: {'; '.join(item.notes)}" for item in adjusted]
        return "\n".join(lines)


# --- reading the corpus -------------------------------------------------------


def documents(project: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every mapping document of a project ("file#index", object), List items expanded."""
    root = CORPUS / project
    files = sorted(p for pattern in ("*.yaml", "*.yml") for p in root.glob(f"**/{pattern}"))
    for path in files:
        with path.open(encoding="utf-8") as stream:
            docs = list(yaml.safe_load_all(stream))
        for index, doc in enumerate(docs):
            if not isinstance(doc, dict):
                continue
            source = f"{path.relative_to(CORPUS)}#{index}"
            if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
                for number, item in enumerate(doc["items"]):
                    if isinstance(item, dict):
                        yield f"{source}.items[{number}]", item
            else:
                yield source, doc


def served_resources(cluster: Kubectl) -> dict[tuple[str, str], Resource]:
    """(apiVersion, kind) -> Resource for every version the server serves."""
    versions = set(cluster.kubectl("api-versions").stdout.split())
    listing = cluster.kubectl("api-resources", "--no-headers").stdout
    by_group: dict[tuple[str, str], Resource] = {}
    for line in listing.splitlines():
        words = line.split()
        if len(words) < 4:
            continue
        preferred, kind = words[-3], words[-1]
        group = preferred.rpartition("/")[0]
        by_group[(group, kind)] = Resource(words[0], words[-2] == "true")
    served: dict[tuple[str, str], Resource] = {}
    for version in versions:
        group = version.rpartition("/")[0]
        for (resource_group, kind), resource in by_group.items():
            if resource_group == group:
                served[(version, kind)] = resource
    return served


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def skip_reason(doc: Mapping[str, Any], resource: Resource | None, nodes: bool) -> str | None:
    """Why a corpus document is not applied, or None to apply it.

    On a cluster with nodes (kind, an existing cluster) Pods really run, so
    workloads that would take over a node's network or run privileged
    (kube-router, node exporters) are left out there.
    """
    reason = SKIPPED_GROUPS.get(group_of(str(doc.get("apiVersion", ""))))
    if reason is not None:
        return reason
    if resource is None:
        return "kinds the API server does not serve (custom resources, old versions)"
    if not isinstance((doc.get("metadata") or {}).get("name"), str):
        return "objects without a metadata.name"
    if "$patch" in json.dumps(doc, default=str):
        return "strategic-merge patches ($patch), not objects"
    if nodes and _host_level(doc):
        return "privileged or host-namespace workloads on a cluster whose nodes would run them"
    return None


def _host_level(doc: Mapping[str, Any]) -> bool:
    pod = paths.get(doc, "podSpec") if doc.get("kind") in paths.POD_SPEC_PATHS else None
    if not isinstance(pod, dict):
        return False
    if any(pod.get(key) for key in ("hostNetwork", "hostPID", "hostIPC")):
        return True
    containers = [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]
    return any(
        isinstance(c, dict) and (c.get("securityContext") or {}).get("privileged")
        for c in containers
    )


def plan(
    token: str, served: Mapping[tuple[str, str], Resource], nodes: bool
) -> tuple[list[Item], list[tuple[str, str, str]], list[str]]:
    """The objects to apply (rewritten), the skipped ones, and the namespaces to make.

    The n-th object of a project with a given kind and name goes into the
    project's n-th namespace, or gets the n-th name prefix when cluster-scoped,
    so objects that share a name in different files never overwrite each other.
    """
    items: list[Item] = []
    skipped: list[tuple[str, str, str]] = []
    namespaces: list[str] = []
    for number_of_project, project in enumerate(PROJECTS):
        copies: collections.Counter[tuple[str, str, str]] = collections.Counter()
        slug = re.sub(r"[^a-z0-9]+", "-", project.lower()).strip("-")[:30]
        for source, doc in documents(project):
            resource = served.get((str(doc.get("apiVersion", "")), str(doc.get("kind", ""))))
            reason = skip_reason(doc, resource, nodes)
            if reason is not None or resource is None:
                skipped.append((project, source, reason or ""))
                continue
            item = Item(project, source, copy.deepcopy(doc), resource)
            meta = item.manifest["metadata"]
            identity = (group_of(str(doc["apiVersion"])), str(doc["kind"]), str(meta["name"]))
            number = copies[identity]
            copies[identity] += 1
            if resource.namespaced:
                meta["namespace"] = f"corpus-{token}-{slug}-{number}"
                if meta["namespace"] not in namespaces:
                    namespaces.append(meta["namespace"])
                items.append(item)
                continue
            meta["name"] = f"corpus-{token}-{number_of_project}-{number}-{meta['name']}"
            if meta.pop("namespace", None) is not None:
                item.notes.append("metadata.namespace dropped: the server ignores it here")
            items.append(item)
    return items, skipped, namespaces


# --- applying and reading back ------------------------------------------------


def stream(objects: list[dict[str, Any]]) -> str:
    """A multi-document stream kubectl reads (JSON is YAML)."""
    return "\n---\n".join(json.dumps(obj, default=str) for obj in objects) + "\n"


def apply(cluster: Kubectl, items: list[Item]) -> str:
    """Server-side apply every item in one kubectl run; its stderr (errors per object)."""
    ordered = sorted(items, key=lambda item: ORDER.get(item.manifest["kind"], 2))
    proc = cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        f"--field-manager={FIELD_MANAGER}",
        "-f",
        "-",
        input=stream([item.manifest for item in ordered]),
        check=False,
    )
    return proc.stderr


def read(cluster: Kubectl, items: list[Item]) -> dict[Key, dict[str, Any]]:
    """The items as the server returns them, in their versions, by key (one kubectl run)."""
    wanted = {item.key for item in items}
    proc = cluster.kubectl("get", ",".join(_qualified(items)), "-A", "-o", "json")
    found: dict[Key, dict[str, Any]] = {}
    for obj in json.loads(proc.stdout)["items"]:
        meta = obj["metadata"]
        key = (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])
        if key in wanted:
            found[key] = obj
    return found


def _qualified(items: list[Item]) -> list[str]:
    """resource.version.group for each kind (core: resource.v1.)."""
    names = set()
    for item in items:
        group, _, version = item.key[0].rpartition("/")
        names.add(f"{item.resource.plural}.{version}.{group}")
    return sorted(names)


def wait_for_default_service_accounts(cluster: Kubectl, namespaces: list[str]) -> None:
    """Pods are refused until the controller made the namespace's "default" ServiceAccount."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        proc = cluster.kubectl(
            "get",
            "serviceaccounts",
            "-A",
            "--field-selector=metadata.name=default",
            "-o",
            "jsonpath={.items[*].metadata.namespace}",
        )
        missing = set(namespaces) - set(proc.stdout.split())
        if not missing:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"no default ServiceAccount after {TIMEOUT}s in {sorted(missing)}")
        time.sleep(0.2)


def rejection(item: Item, stderr: str) -> str:
    """The stderr lines that name the item (kubectl reports per object)."""
    name = item.manifest["metadata"]["name"]
    lines = [
        line.strip() for line in stderr.splitlines() if re.search(rf"\b{re.escape(name)}\b", line)
    ]
    return " | ".join(lines) or "not found after apply"


def _drop_allocations(item: Item) -> bool:
    """Drop a Service's fixed clusterIP and nodePorts; whether anything was dropped."""
    spec = item.manifest.get("spec") or {}
    dropped = False
    for key in ("clusterIP", "clusterIPs"):
        if spec.get(key) not in (None, "None", ["None"]):
            del spec[key]
            dropped = True
    for port in spec.get("ports") or []:
        if isinstance(port, dict) and port.get("nodePort"):
            del port["nodePort"]
            dropped = True
    if dropped:
        item.notes.append("fixed clusterIP/nodePort dropped: already allocated")
    return dropped


def stable_pairs(
    cluster: Kubectl, items: list[Item], first: dict[Key, dict[str, Any]]
) -> dict[Key, tuple[dict[str, Any], dict[str, Any]]]:
    """Re-read until each object was read twice in a row unchanged (controllers settle)."""
    pairs: dict[Key, tuple[dict[str, Any], dict[str, Any]]] = {}
    previous = first
    deadline = time.monotonic() + TIMEOUT
    while True:
        current = read(cluster, items)
        for key, obj in previous.items():
            again = current.get(key)
            if key not in pairs and again is not None and _version(again) == _version(obj):
                pairs[key] = (obj, again)
        if set(pairs) >= set(first) or time.monotonic() > deadline:
            return pairs
        previous = current
        time.sleep(0.5)


def _version(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["resourceVersion"])


def clean_up(cluster: Kubectl, items: list[Item], namespaces: list[str]) -> None:
    """Delete the run's namespaces and cluster-scoped objects, without waiting."""
    cluster_scoped = [item.manifest for item in items if not item.resource.namespaced]
    namespace_docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}} for name in namespaces
    ]
    cluster.kubectl(
        "delete",
        "--wait=false",
        "--ignore-not-found",
        "-f",
        "-",
        input=stream(cluster_scoped + namespace_docs),
        check=False,
    )


@pytest.fixture(scope="module")
def corpus(cluster: Kubectl) -> Iterator[Corpus]:
    """The corpus applied to the cluster once for the module, read back, then deleted."""
    token = secrets.token_hex(3)
    nodes = bool(cluster.kubectl("get", "nodes", "-o", "name").stdout.strip())
    items, skipped, namespaces = plan(token, served_resources(cluster), nodes)
    try:
        cluster.kubectl(
            "apply",
            "--server-side",
            f"--field-manager={FIELD_MANAGER}",
            "-f",
            "-",
            input=stream(
                [
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                    for name in namespaces
                ]
            ),
        )
        wait_for_default_service_accounts(cluster, namespaces)
        stderr = apply(cluster, items)
        live = read(cluster, items)
        retry = [
            item
            for item in items
            if item.key not in live
            and item.manifest["kind"] == "Service"
            and _ALLOCATED.search(rejection(item, stderr))
            and _drop_allocations(item)
        ]
        if retry:
            stderr += apply(cluster, retry)
            live = read(cluster, items)
        rejected = {item.key: rejection(item, stderr) for item in items if item.key not in live}
        yield Corpus(items, skipped, rejected, live, stable_pairs(cluster, items, live))
    finally:
        clean_up(cluster, items, namespaces)


# --- the checks ---------------------------------------------------------------


class PhantomDrift(AssertionError):
    """A known phantom drift is (still) reported."""


def forward_drifts(corpus: Corpus, item: Item) -> tuple[diff.Drift, ...]:
    """What a Mitigation captured from the manifest reports against the returned object."""
    return diff.diff(diff.capture_fields(item.manifest), corpus.live[item.key])


def recaptured_drifts(corpus: Corpus, item: Item) -> tuple[diff.Drift, ...]:
    """Fields captured from one read, diffed against the next.

    Every leaf as a declared value and as a captured (whole) one, which is how
    the operator takes a stable value from a live object, plus each top-level
    value (metadata, spec, data, rules, ...) whole.
    """
    before, after = corpus.pairs[item.key]
    leaves = diff.capture_fields(before)
    whole = [dataclasses.replace(field, whole=True) for field in leaves]
    whole += [
        diff.ProtectedField(key, value, whole=True)
        for key, value in before.items()
        if key not in _NOT_WHOLE
    ]
    return diff.diff((*leaves, *whole), after)


def describe(item: Item, drift: diff.Drift) -> str:
    actual = repr(drift.actual) if drift.present else "(absent)"
    return f"{item.label}: {drift.path}: declared {drift.expected!r}, returned {actual}"


def _known() -> tuple[dict[str, str], list[dict[str, Any]]]:
    data = yaml.safe_load(KNOWN_DRIFT.read_text(encoding="utf-8"))
    return data["causes"], data["known"]


CAUSES, KNOWN = _known()
KNOWN_PLACES = {(entry["source"], path) for entry in KNOWN for path in entry["paths"]}
_KNOWN_PARAMS = [
    pytest.param(
        entry,
        id=entry["source"],
        marks=pytest.mark.xfail(strict=True, raises=PhantomDrift, reason=CAUSES[entry["cause"]]),
    )
    for entry in KNOWN
]


@pytest.mark.parametrize("project", PROJECTS or [_ABSENT])
def test_applied_corpus_has_no_phantom_drift(corpus: Corpus, project: str) -> None:
    """Captured from each manifest, diffed against what the API server returns: zero drift."""
    print(corpus.summary(project))
    items = [item for item in corpus.items if item.project == project]
    applied = corpus.applied(project)
    assert applied, corpus.summary(project)
    assert len(items) - len(applied) <= REJECTED_LIMIT * len(items), corpus.summary(project)
    drifted = [
        describe(item, drift)
        for item in applied
        for drift in forward_drifts(corpus, item)
        if (item.source, drift.path) not in KNOWN_PLACES
    ]
    assert not drifted, f"{len(drifted)} phantom drifts:\n" + "\n".join(drifted)


@pytest.mark.parametrize("project", PROJECTS or [_ABSENT])
def test_server_form_recaptured_has_no_drift(corpus: Corpus, project: str) -> None:
    """Captured from the returned object, diffed against an unchanged re-read: zero drift."""
    applied = corpus.applied(project)
    unsettled = [item.label for item in applied if item.key not in corpus.pairs]
    assert len(unsettled) <= REJECTED_LIMIT * len(applied), (
        f"never read twice unchanged: {unsettled}"
    )
    drifted = [
        describe(item, drift)
        for item in applied
        if item.key in corpus.pairs
        for drift in recaptured_drifts(corpus, item)
    ]
    assert not drifted, f"{len(drifted)} drifts on a no-op re-read:\n" + "\n".join(drifted)


_NONE_KNOWN = pytest.param(
    None, marks=pytest.mark.skip(reason="no phantom drift is known (data/corpus_known_drift.yaml)")
)


@pytest.mark.parametrize("entry", (_KNOWN_PARAMS or [_NONE_KNOWN]) if PROJECTS else [_ABSENT])
def test_known_phantom_drift(corpus: Corpus, entry: dict[str, Any]) -> None:
    """Each known phantom drift, object by object: once the core fixes it, this XPASSes."""
    skipped = [reason for _, source, reason in corpus.skipped if source == entry["source"]]
    if skipped:
        pytest.skip(f"{entry['source']} is not applied here: {skipped[0]}")
    (item,) = [item for item in corpus.items if item.source == entry["source"]]
    if item.key not in corpus.live:
        pytest.fail(f"{item.label} was not applied: {corpus.rejected.get(item.key)}")
    listed = set(entry["paths"])
    drifted = {drift.path: drift for drift in forward_drifts(corpus, item) if drift.path in listed}
    if set(drifted) == listed:
        raise PhantomDrift("\n".join(describe(item, drift) for drift in drifted.values()))
    if drifted:
        fixed = sorted(listed - set(drifted))
        pytest.fail(f"{item.label}: {fixed} no longer drift: update {KNOWN_DRIFT.name}")
