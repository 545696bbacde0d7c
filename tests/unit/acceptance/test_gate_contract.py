"""Acceptance tests of `keepfix gate` against DESIGN.md ("The command line"), by QA.

Black-box: the command is run as a user runs it, through the `keepfix`
entry point (`keepfix.cli.main.main`, argv in, exit code, stdout and stderr
out) and, where pipes and the installed script matter, as a real subprocess
(`.venv/bin/keepfix`). Tests marked ``xfail(strict=True)`` are confirmed bugs.

The contract under test:

    keepfix gate --policies PATH... --manifests PATH... [--format text|json|sarif|junit]:
    PATH is a file, a folder (recursive *.yaml|*.yml) or - for stdin; multi-document
    YAML. Exit 0: nothing blocks; 1: at least one violation at Deny level; 2: bad
    input (message names file and document). ... A manifest reverts a Mitigation when
    it targets the same object and sets a protected field to a value other than the
    stable one; a field the manifest leaves out is not a revert.
"""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest
import yaml

from keepfix.cli import main as cli

REPO = pathlib.Path(__file__).resolve().parents[3]
DATA = pathlib.Path(__file__).resolve().parent / "data"
EXAMPLES = REPO / "examples"
SARIF_SCHEMA = REPO / "tests" / "unit" / "data" / "sarif-schema-2.1.0.json"
KEEPFIX = REPO / ".venv" / "bin" / "keepfix"
#: The installed script as a user runs it; `python -m keepfix` where the venv lives elsewhere.
KEEPFIX_COMMAND = [str(KEEPFIX)] if KEEPFIX.exists() else [sys.executable, "-m", "keepfix"]


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def gate(*args: str | pathlib.Path, stdin: str = "") -> Run:
    """`keepfix gate ARGS` through the command's entry point."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main(["gate", *map(str, args)])
            except SystemExit as exit_:
                code = exit_.code
            else:  # pragma: no cover - main always exits
                code = 0
    finally:
        sys.stdin = saved
    assert isinstance(code, int), f"exit code {code!r} is not an int"
    return Run(code, out.getvalue(), err.getvalue())


def gate_process(*args: str | pathlib.Path, stdin: str = "", cwd: pathlib.Path = REPO) -> Run:
    """`keepfix gate ARGS` as a subprocess of the installed script."""
    done = subprocess.run(
        [*KEEPFIX_COMMAND, "gate", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def write(directory: pathlib.Path, name: str, text: str) -> pathlib.Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


MITIGATION = DATA / "policies" / "web-replicas-fix.yaml"
GUARDRAIL = DATA / "policies" / "nested" / "no-latest.yml"
HELM = DATA / "helm-rendered.yaml"
EXAMPLE_POLICIES = sorted(EXAMPLES.glob("mitigation-*.yaml")) + sorted(
    EXAMPLES.glob("guardrail-*.yaml")
)


def web(
    replicas: Any = 3, memory: Any = "512Mi", image: str = "nginx:1.27.3", ns: str = "shop"
) -> str:
    """The Deployment the web-replicas-fix Mitigation protects."""
    namespace = f"\n  namespace: {ns}" if ns else ""
    return (
        f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web{namespace}\n"
        f"spec:\n  replicas: {replicas}\n  template:\n    spec:\n      containers:\n"
        f"        - name: web\n          image: {image}\n"
        f"          resources:\n            limits:\n              memory: {memory}\n"
    )


VIOLATION_KEYS = {
    "manifest",
    "source",
    "policy",
    "rule",
    "path",
    "expected",
    "actual",
    "severity",
    "level",
    "message",
    "incident",
}


# --- the headline: a manifest that reverts a fix fails the pipeline --------------------


def test_a_revert_fails_with_the_message_of_the_issue() -> None:
    run = gate("--policies", MITIGATION, "--manifests", "-", stdin=web(replicas=1))
    assert run.code == 1
    assert run.err == ""
    assert (
        "spec.replicas=1 reverts Mitigation shop/web-replicas-fix, INC-1234, owner shop-sre: "
        "expected 3"
    ) in run.out
    assert run.out.rstrip().splitlines()[-1].startswith("FAILED")


def test_json_has_exactly_the_shape_of_design() -> None:
    run = gate(
        "--policies", MITIGATION, "--manifests", "-", "--format", "json", stdin=web(replicas=1)
    )
    assert run.code == 1
    body = run.json()
    assert set(body) == {"checked", "violations"}
    assert body["checked"] == 1
    [violation] = body["violations"]
    assert set(violation) == VIOLATION_KEYS
    assert violation == {
        "manifest": {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "namespace": "shop",
            "name": "web",
        },
        "source": "-:1",
        "policy": {"kind": "Mitigation", "name": "web-replicas-fix", "namespace": "shop"},
        "rule": "spec.replicas",
        "path": "spec.replicas",
        "expected": 3,
        "actual": 1,
        "severity": "Medium",  # spec.replicas has no knownBad: drifted, not known-bad
        "level": "Deny",
        "message": violation["message"],
        "incident": "INC-1234",
    }
    assert "INC-1234" in violation["message"]
    assert "shop-sre" in violation["message"]


def test_a_known_bad_revert_is_critical() -> None:
    run = gate(
        "--policies",
        MITIGATION,
        "--manifests",
        "-",
        "--format",
        "json",
        stdin=web(memory="0.125Gi"),  # 128Mi, the incident's value, respelled
    )
    assert run.code == 1
    [violation] = run.json()["violations"]
    assert violation["path"] == "spec.template.spec.containers[name=web].resources.limits.memory"
    assert violation["rule"] == "spec.template.spec.containers[name=web].resources.limits.memory"
    assert violation["expected"] == "512Mi"
    assert violation["actual"] == "0.125Gi"
    assert violation["severity"] == "Critical"


def test_some_known_bad_fields_make_it_high() -> None:
    run = gate(
        "--policies",
        MITIGATION,
        "--manifests",
        "-",
        "--format",
        "json",
        stdin=web(replicas=1, memory="128Mi"),
    )
    assert {v["severity"] for v in run.json()["violations"]} == {"High"}


@pytest.mark.parametrize(
    "manifest",
    [
        web(),
        web(replicas='"3"'),  # "an integer and the same integer are equal whatever the spelling"
        web(replicas="3.0"),
        web(memory="0.5Gi"),  # 512Mi == 0.5Gi
        web(memory="536870912"),
        web(memory="524288Ki"),
    ],
    ids=["same", "quoted-int", "float", "0.5Gi", "bytes", "Ki"],
)
def test_the_same_value_spelled_differently_is_not_a_revert(manifest: str) -> None:
    run = gate("--policies", MITIGATION, "--manifests", "-", "--format", "json", stdin=manifest)
    assert run.code == 0, run.out + run.err
    assert run.json() == {"checked": 1, "violations": []}


def test_a_field_the_manifest_leaves_out_is_not_a_revert() -> None:
    manifest = """\
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web, namespace: shop}
    spec:
      template:
        spec:
          containers:
            - name: web
              image: nginx:1.27.3
    """
    run = gate(
        "--policies",
        MITIGATION,
        "--manifests",
        "-",
        "--format",
        "json",
        stdin=textwrap.dedent(manifest),
    )
    assert run.code == 0
    assert run.json()["violations"] == []


def test_another_object_is_not_the_target() -> None:
    for other in (web(replicas=1, ns="cart"), web(replicas=1).replace("name: web", "name: api")):
        run = gate("--policies", MITIGATION, "--manifests", "-", stdin=other)
        assert run.code == 0, other


# --- levels: "Warn- and Audit-level findings print but do not fail" --------------------


@pytest.mark.parametrize(("admission", "level"), [("Warn", "Warn"), ('"Off"', "Audit")])
def test_warn_and_audit_mitigations_print_but_do_not_fail(
    tmp_path: pathlib.Path, admission: str, level: str
) -> None:
    text = MITIGATION.read_text().replace("admission: Deny", f"admission: {admission}")
    policy = write(tmp_path, "m.yaml", text)
    run = gate("--policies", policy, "--manifests", "-", "--format", "json", stdin=web(replicas=1))
    assert run.code == 0
    assert [v["level"] for v in run.json()["violations"]] == [level]
    text_run = gate("--policies", policy, "--manifests", "-", stdin=web(replicas=1))
    assert text_run.code == 0
    assert "reverts Mitigation shop/web-replicas-fix" in text_run.out
    assert level.upper() in text_run.out


@pytest.mark.parametrize(
    ("enforcement", "code", "level"),
    [("Deny", 1, "Deny"), ("Warn", 0, "Warn"), ("Audit", 0, "Audit")],
)
def test_guardrail_enforcement_decides_the_exit_code(
    tmp_path: pathlib.Path, enforcement: str, code: int, level: str
) -> None:
    policy = write(
        tmp_path,
        "g.yaml",
        GUARDRAIL.read_text().replace("enforcement: Warn", f"enforcement: {enforcement}"),
    )
    run = gate(
        "--policies",
        policy,
        "--manifests",
        "-",
        "--format",
        "json",
        stdin=web(image="nginx:latest"),
    )
    assert run.code == code
    [violation] = run.json()["violations"]
    assert violation["level"] == level
    assert violation["policy"] == {"kind": "Guardrail", "name": "no-latest", "namespace": None}
    assert violation["rule"] == "pinned"
    assert violation["path"] == "spec.template.spec.containers[name=web].image"
    assert violation["actual"] == "nginx:latest"
    assert violation["expected"] == {"notMatches": ":latest$"}
    assert violation["incident"] == "INC-99"
    assert violation["severity"] in {"Critical", "High", "Medium", "Low"}


def test_guardrail_match_is_honoured_by_the_gate(tmp_path: pathlib.Path) -> None:
    policy = write(
        tmp_path,
        "g.yaml",
        """\
        apiVersion: keepfix.dev/v1alpha1
        kind: Guardrail
        metadata: {name: floors}
        spec:
          match:
            resources: [{apiGroups: [apps], kinds: [Deployment]}]
            excludeNamespaces: [kube-system]
            selector:
              matchLabels: {tier: backend}
              matchExpressions: [{key: env, operator: NotIn, values: [dev]}]
          rules:
            - {name: min-replicas, path: spec.replicas, atLeast: 2}
          enforcement: Deny
        """,
    )

    def deploy(ns: str, labels: str) -> str:
        return (
            f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n  namespace: {ns}\n"
            f"  labels: {labels}\nspec:\n  replicas: 1\n"
        )

    assert (
        gate("--policies", policy, "--manifests", "-", stdin=deploy("shop", "{tier: backend}")).code
        == 1
    )
    assert (
        gate(
            "--policies", policy, "--manifests", "-", stdin=deploy("kube-system", "{tier: backend}")
        ).code
        == 0
    )
    assert (
        gate(
            "--policies", policy, "--manifests", "-", stdin=deploy("shop", "{tier: frontend}")
        ).code
        == 0
    )
    assert (
        gate(
            "--policies",
            policy,
            "--manifests",
            "-",
            stdin=deploy("shop", "{tier: backend, env: dev}"),
        ).code
        == 0
    )
    statefulset = deploy("shop", "{tier: backend}").replace("Deployment", "StatefulSet")
    assert gate("--policies", policy, "--manifests", "-", stdin=statefulset).code == 0


# --- the examples -----------------------------------------------------------------------


def test_the_examples_pass_against_the_example_workloads() -> None:
    # The workloads are at their fixed values, so nothing reverts and nothing is known-bad.
    run = gate(
        "--policies", *EXAMPLE_POLICIES, "--manifests", EXAMPLES / "workloads", "--format", "json"
    )
    assert run.code == 0, run.out + run.err
    body = run.json()
    assert body["checked"] == 5
    assert body["violations"] == []


def drifted_shop(tmp_path: pathlib.Path) -> pathlib.Path:
    text = (EXAMPLES / "workloads" / "shop.yaml").read_text()
    for old, new in [
        (
            "limits: {memory: 512Mi}            # the fix",
            "limits: {memory: 128Mi}            # the fix",
        ),
        ('checkout.newPricingEngine: "false"', 'checkout.newPricingEngine: "true"'),
        ("ghcr.io/example/payments:2.14.1", "ghcr.io/example/payments:2.15.0"),
        (
            "terminationGracePeriodSeconds: 45        # INC-3107",
            "terminationGracePeriodSeconds: 30 # x",
        ),
    ]:
        assert old in text, f"examples/workloads/shop.yaml changed: {old!r} is gone"
        text = text.replace(old, new)
    return write(tmp_path, "deploy/shop.yaml", text)


def test_a_drifted_copy_of_the_examples_fails_naming_mitigation_incident_and_owner(
    tmp_path: pathlib.Path,
) -> None:
    manifests = drifted_shop(tmp_path)
    run = gate("--policies", *EXAMPLE_POLICIES, "--manifests", manifests)
    assert run.code == 1
    assert run.err == ""
    out = run.out
    assert (
        "spec.template.spec.containers[name=web].resources.limits.memory=128Mi reverts "
        "Mitigation shop/web-memory-fix"
    ) in out
    assert "INC-1234" in out
    assert "owner shop-sre" in out
    assert 'data["checkout.newPricingEngine"]=true reverts Mitigation shop/pricing-flag-off' in out
    assert "INC-1502" in out
    assert "owner checkout" in out
    assert "reverts Mitigation shop/payments-image-pin" in out
    assert "INC-2001" in out
    assert "reverts Mitigation shop/backend-grace-period" in out
    assert "INC-3107" in out
    # text groups findings under their manifest: file:doc Kind ns/name
    assert f"{manifests}:2 Deployment shop/web" in out
    assert f"{manifests}:5 ConfigMap shop/shop-flags" in out

    body = gate(
        "--policies", *EXAMPLE_POLICIES, "--manifests", manifests, "--format", "json"
    ).json()
    by_policy = {(v["policy"]["name"], v["manifest"]["name"]): v for v in body["violations"]}
    assert set(by_policy) == {
        ("web-memory-fix", "web"),
        ("pricing-flag-off", "shop-flags"),
        ("payments-image-pin", "payments"),
        ("backend-grace-period", "cart"),
    }
    assert by_policy["web-memory-fix", "web"]["level"] == "Deny"
    assert by_policy["web-memory-fix", "web"]["severity"] == "Critical"
    assert by_policy["pricing-flag-off", "shop-flags"]["level"] == "Deny"
    assert by_policy["payments-image-pin", "payments"]["level"] == "Warn"
    assert by_policy["backend-grace-period", "cart"]["level"] == "Warn"  # the default
    assert by_policy["backend-grace-period", "cart"]["actual"] == 30
    assert by_policy["backend-grace-period", "cart"]["severity"] == "Critical"  # knownBad 30


# --- inputs: files, folders, stdin, multi-document, helm template output -----------------


def test_folders_are_read_recursively_for_yaml_and_yml_only() -> None:
    # data/policies holds a .yaml, a nested .yml, an AlertRoute (skipped) and a .txt that
    # is not YAML at all (never read).
    run = gate("--policies", DATA / "policies", "--manifests", HELM, "--namespace", "shop")
    assert run.code == 1, run.err
    assert "against 1 Mitigation and 1 Guardrail" in run.out


def test_helm_template_output_on_stdin_through_the_installed_script() -> None:
    run = gate_process(
        "--policies",
        DATA / "policies",
        "--manifests",
        "-",
        "--namespace",
        "shop",
        "--format",
        "json",
        stdin=HELM.read_text(),
    )
    assert run.code == 1, run.err
    body = run.json()
    assert body["checked"] == 3  # ServiceAccount, Deployment, Service; the empty doc skipped
    sources = {v["source"] for v in body["violations"]}
    assert sources == {"-:3"}  # the Deployment is the third document of the stream
    levels = sorted((v["policy"]["kind"], v["level"]) for v in body["violations"])
    assert levels == [("Guardrail", "Warn"), ("Mitigation", "Deny"), ("Mitigation", "Deny")]
    assert all(v["manifest"]["namespace"] == "shop" for v in body["violations"])


def test_multi_document_files_number_their_documents(tmp_path: pathlib.Path) -> None:
    manifests = write(
        tmp_path,
        "all.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: shop}\n---\n"
        + web(replicas=1),
    )
    body = gate("--policies", MITIGATION, "--manifests", manifests, "--format", "json").json()
    assert body["checked"] == 2
    assert [v["source"] for v in body["violations"]] == [f"{manifests}:2"]


def test_a_helm_style_list_is_checked_item_by_item(tmp_path: pathlib.Path) -> None:
    items = yaml.safe_load(web(replicas=1))
    listing = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [items, {**items, "metadata": {"name": "x", "namespace": "shop"}}],
    }
    manifests = write(tmp_path, "list.yaml", yaml.safe_dump(listing))
    body = gate("--policies", MITIGATION, "--manifests", manifests, "--format", "json").json()
    assert body["checked"] == 2
    assert [v["manifest"]["name"] for v in body["violations"]] == ["web"]


def test_a_manifest_without_a_namespace_lands_where_namespace_says() -> None:
    manifest = web(replicas=1, ns="")
    shop = gate("--policies", MITIGATION, "--manifests", "-", "--namespace", "shop", stdin=manifest)
    assert shop.code == 1
    assert "Deployment shop/web" in shop.out
    elsewhere = gate(
        "--policies",
        MITIGATION,
        "--manifests",
        "-",
        "--namespace",
        "cart",
        "--format",
        "json",
        stdin=manifest,
    )
    assert elsewhere.code == 0
    assert elsewhere.json()["violations"] == []
    # Without --namespace the namespace is unknown (helm template prints none): a revert of
    # shop/web in any namespace must not pass silently.
    unknown = gate("--policies", MITIGATION, "--manifests", "-", stdin=manifest)
    assert unknown.code == 1


def test_a_mitigation_without_a_namespace_is_in_the_gate_namespace(tmp_path: pathlib.Path) -> None:
    policy = write(tmp_path, "m.yaml", MITIGATION.read_text().replace("  namespace: shop\n", ""))
    manifest = web(replicas=1, ns="")
    assert gate("--policies", policy, "--manifests", "-", stdin=manifest).code == 1


def test_a_target_namespace_overrides_the_mitigation_namespace(tmp_path: pathlib.Path) -> None:
    policy = write(
        tmp_path,
        "m.yaml",
        MITIGATION.read_text().replace("    name: web\n", "    name: web\n    namespace: cart\n"),
    )
    assert (
        gate("--policies", policy, "--manifests", "-", stdin=web(replicas=1, ns="cart")).code == 1
    )
    assert (
        gate("--policies", policy, "--manifests", "-", stdin=web(replicas=1, ns="shop")).code == 0
    )


def test_a_field_the_fix_needs_absent_is_reverted_by_being_there(tmp_path: pathlib.Path) -> None:
    policy = write(
        tmp_path,
        "m.yaml",
        """\
        apiVersion: keepfix.dev/v1alpha1
        kind: Mitigation
        metadata: {name: no-hostnet, namespace: shop}
        spec:
          target: {apiVersion: apps/v1, kind: Deployment, name: web}
          fields:
            - path: spec.template.spec.hostNetwork
              value: null
          admission: Deny
        """,
    )
    with_field = web().replace("    spec:\n", "    spec:\n      hostNetwork: true\n")
    run = gate("--policies", policy, "--manifests", "-", "--format", "json", stdin=with_field)
    assert run.code == 1
    [violation] = run.json()["violations"]
    assert violation["expected"] is None
    assert violation["actual"] is True
    assert gate("--policies", policy, "--manifests", "-", stdin=web()).code == 0


def test_a_selector_target_applies_to_every_labelled_object() -> None:
    policy = EXAMPLES / "mitigation-selector.yaml"

    def deploy(name: str, tier: str, grace: int) -> str:
        return (
            f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: shop\n"
            f"  labels: {{tier: {tier}}}\nspec:\n  template:\n    spec:\n"
            f"      terminationGracePeriodSeconds: {grace}\n"
        )

    stream = "---\n".join(
        [deploy("a", "backend", 30), deploy("b", "frontend", 30), deploy("c", "backend", 45)]
    )
    body = gate("--policies", policy, "--manifests", "-", "--format", "json", stdin=stream).json()
    assert [v["manifest"]["name"] for v in body["violations"]] == ["a"]
    assert body["violations"][0]["severity"] == "Critical"  # 30 is the knownBad value


def test_merge_keyed_and_ordered_lists_in_a_mitigation(tmp_path: pathlib.Path) -> None:
    policy = write(
        tmp_path,
        "m.yaml",
        """\
        apiVersion: keepfix.dev/v1alpha1
        kind: Mitigation
        metadata: {name: lists, namespace: shop}
        spec:
          target: {apiVersion: apps/v1, kind: Deployment, name: web}
          fields:
            - path: spec.template.spec.containers[name=web].env
              value: [{name: A, value: "1"}]
            - path: spec.template.spec.containers[name=web].args
              value: ["--a", "--b"]
          admission: Deny
        """,
    )
    ok = web().replace(
        "          image:",
        '          env: [{name: B, value: "2"}, {name: A, value: "1"}]\n'
        '          args: ["--a", "--b"]\n          image:',
    )
    assert gate("--policies", policy, "--manifests", "-", stdin=ok).code == 0
    reordered = ok.replace('args: ["--a", "--b"]', 'args: ["--b", "--a"]')
    run = gate("--policies", policy, "--manifests", "-", "--format", "json", stdin=reordered)
    assert run.code == 1
    assert [v["rule"] for v in run.json()["violations"]] == [
        "spec.template.spec.containers[name=web].args"
    ]


def test_a_file_named_twice_is_checked_once(tmp_path: pathlib.Path) -> None:
    rendered = tmp_path / "rendered.yaml"
    shutil.copy(HELM, rendered)
    run = gate(
        "--policies", MITIGATION, "--manifests", rendered, rendered, tmp_path, "--format", "json"
    )
    assert run.json()["checked"] == 3, "rendered.yaml is named twice (and through its folder)"


# --- bad input: exit 2, names file and document, nothing printed as if it passed ---------


def assert_bad_input(run: Run, *needles: str) -> None:
    assert run.code == 2
    assert run.out == "", "nothing may be printed on stdout as if the gate had passed"
    assert "passed" not in run.err
    for needle in needles:
        assert needle in run.err, f"{needle!r} not in {run.err!r}"


def test_bad_yaml_in_a_manifest_names_file_and_document(tmp_path: pathlib.Path) -> None:
    manifests = write(
        tmp_path,
        "bad.yaml",
        web()
        + "---\n"
        + web(ns="a")
        + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: [x\n",
    )
    for fmt in ("text", "json", "sarif", "junit"):
        run = gate("--policies", MITIGATION, "--manifests", manifests, "--format", fmt)
        assert_bad_input(run, str(manifests), "document 3")


def test_bad_yaml_on_stdin_names_stdin() -> None:
    run = gate("--policies", MITIGATION, "--manifests", "-", stdin="a: [1\n")
    assert_bad_input(run, "-", "document 1")


def test_an_unknown_kind_in_policies_is_bad_input(tmp_path: pathlib.Path) -> None:
    policies = write(
        tmp_path,
        "p.yaml",
        MITIGATION.read_text() + "---\n" + web(),
    )
    run = gate("--policies", policies, "--manifests", "-", stdin=web(replicas=1))
    assert_bad_input(run, str(policies), "document 2", "Deployment")


def test_a_manifest_that_is_not_an_object_is_bad_input() -> None:
    run = gate(
        "--policies", MITIGATION, "--manifests", "-", stdin=web() + "---\n- just\n- a list\n"
    )
    assert_bad_input(run, "document 2")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (("admission: Deny", "admission: Block"), "spec.admission"),
        (("    kind: Deployment\n    name: web\n", "    kind: Deployment\n"), "spec.target"),
        (
            ("    - path: spec.replicas\n      value: 3\n", "    - path: spec.replicas\n"),
            "spec.fields[0].value",
        ),
        (("path: spec.replicas", "path: spec.replicas["), "column 14"),
        (
            ("  admission: Deny\n", "  admission: Deny\n  watchWindow: 30 days\n"),
            "spec.watchWindow",
        ),
        (("  admission: Deny\n", "  admission: Deny\n  actions: Rollback\n"), "spec.actions"),
    ],
    ids=["enum", "target", "value", "path", "window", "unknown-field"],
)
def test_a_mitigation_that_breaks_the_schema_is_bad_input(
    tmp_path: pathlib.Path, change: tuple[str, str], needle: str
) -> None:
    text = MITIGATION.read_text()
    assert change[0] in text
    policies = write(tmp_path, "pol.yaml", GUARDRAIL.read_text() + "---\n" + text.replace(*change))
    run = gate("--policies", policies, "--manifests", "-", stdin=web(replicas=1))
    assert_bad_input(run, f"{policies} (document 2)", needle)


@pytest.mark.parametrize(
    ("rule", "needle"),
    [
        ("{name: r, path: spec.replicas, atLeast: 2, atMost: 3}", "exactly one"),
        ("{name: r, path: spec.replicas}", "exactly one"),
        ("{name: r, path: 'spec..replicas', atLeast: 2}", "column 6"),
        ("{name: r, path: spec.x, matches: '(unclosed'}", "spec.rules[0].matches"),
        ("{name: r, path: spec.x, atLeast: 'nginx:latest'}", "spec.rules[0]"),
    ],
)
def test_a_guardrail_that_breaks_the_schema_is_bad_input(
    tmp_path: pathlib.Path, rule: str, needle: str
) -> None:
    policies = write(
        tmp_path,
        "g.yaml",
        f"""\
        apiVersion: keepfix.dev/v1alpha1
        kind: Guardrail
        metadata: {{name: g}}
        spec:
          match: {{resources: [{{apiGroups: [apps], kinds: [Deployment]}}]}}
          rules:
            - {rule}
        """,
    )
    run = gate("--policies", policies, "--manifests", "-", stdin=web())
    assert_bad_input(run, f"{policies} (document 1)", needle)


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        (
            "guardrail-present",
            """\
            apiVersion: keepfix.dev/v1alpha1
            kind: Guardrail
            metadata: {name: g}
            spec:
              match: {resources: [{apiGroups: [apps], kinds: [Deployment]}]}
              rules:
                - {name: r, path: spec.paused, present: "no"}
            """,
        ),
        (
            "guardrail-optional",
            """\
            apiVersion: keepfix.dev/v1alpha1
            kind: Guardrail
            metadata: {name: g}
            spec:
              match: {resources: [{apiGroups: [apps], kinds: [Deployment]}]}
              rules:
                - {name: r, path: spec.paused, equals: true, optional: "true"}
            """,
        ),
        (
            "mitigation-capture",
            """\
            apiVersion: keepfix.dev/v1alpha1
            kind: Mitigation
            metadata: {name: m, namespace: shop}
            spec:
              target: {apiVersion: apps/v1, kind: Deployment, name: web}
              fields: [{path: spec.replicas, value: 3}]
              capture: "false"
            """,
        ),
    ],
    ids=["guardrail-present", "guardrail-optional", "mitigation-capture"],
)
def test_a_string_where_the_crd_wants_a_boolean_is_bad_input(
    tmp_path: pathlib.Path, kind: str, text: str
) -> None:
    # DESIGN.md: "a Mitigation that breaks the schema -> exit 2"; the CRDs in crds/ declare
    # these fields `type: boolean`, so `kubectl apply` refuses the same object.
    policies = write(tmp_path, f"{kind}.yaml", text)
    run = gate("--policies", policies, "--manifests", "-", stdin=web())
    assert_bad_input(run, str(policies), "document 1")


def test_a_missing_path_and_stdin_named_twice_are_bad_input(tmp_path: pathlib.Path) -> None:
    assert_bad_input(
        gate("--policies", tmp_path / "nope.yaml", "--manifests", "-", stdin=web()), "nope.yaml"
    )
    assert_bad_input(gate("--policies", "-", "--manifests", "-", stdin=MITIGATION.read_text()), "-")


def test_a_file_that_is_not_utf8_is_bad_input(tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "deploy"
    folder.mkdir()
    (folder / "latin1.yaml").write_bytes("metadata: {name: caf\xe9}\n".encode("latin-1"))
    run = gate("--policies", MITIGATION, "--manifests", folder)
    assert_bad_input(run, "latin1.yaml", "UTF-8")


def test_every_problem_is_reported_at_once(tmp_path: pathlib.Path) -> None:
    one = write(tmp_path, "one.yaml", "a: [1\n")
    two = write(
        tmp_path,
        "two.yaml",
        web() + "---\n" + web().replace("kind: Deployment", "kind: Foo\napiVersion: x/v1"),
    )
    policies = write(tmp_path, "p.yaml", web())
    run = gate("--policies", policies, "--manifests", one, two)
    assert_bad_input(run, f"{one} (document 1)", f"{policies} (document 1)")


# --- empty input and determinism -----------------------------------------------------------


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "junit"])
def test_empty_input_passes_in_every_format(fmt: str) -> None:
    run = gate("--policies", MITIGATION, "--manifests", "-", "--format", fmt, stdin="")
    assert run.code == 0
    assert run.err == ""
    if fmt == "json":
        assert run.json() == {"checked": 0, "violations": []}
    elif fmt == "sarif":
        jsonschema.validate(run.json(), json.loads(SARIF_SCHEMA.read_text()))
    elif fmt == "junit":
        assert ET.fromstring(run.out).get("failures") == "0"
    else:
        assert run.out.startswith("passed: 0 manifests")


def test_output_is_deterministic_and_in_input_order(tmp_path: pathlib.Path) -> None:
    manifests = tmp_path / "m"
    write(manifests, "b/2.yaml", web(replicas=1))
    write(manifests, "a.yaml", web(replicas=2, image="nginx:latest"))
    write(manifests, "b/1.yml", web(replicas=4))
    args = ("--policies", DATA / "policies", "--manifests", manifests, "--format", "json")
    first, second = gate(*args), gate(*args)
    assert first.out == second.out
    sources = [v["source"].removeprefix(str(manifests) + "/") for v in first.json()["violations"]]
    assert sources == sorted(sources)
    assert sources[0] == "a.yaml:1"


# --- SARIF and JUnit -----------------------------------------------------------------------


def sarif_run(tmp_path: pathlib.Path) -> tuple[Run, pathlib.Path]:
    shutil.copy(HELM, tmp_path / "rendered.yaml")
    off = write(
        tmp_path,
        "policies/off.yaml",
        MITIGATION.read_text()
        .replace("web-replicas-fix", "web-audit")
        .replace("admission: Deny", 'admission: "Off"'),
    )
    assert off.exists()
    shutil.copy(MITIGATION, tmp_path / "policies" / "deny.yaml")
    shutil.copy(GUARDRAIL, tmp_path / "policies" / "warn.yml")
    run = gate_process(
        "--policies",
        "policies",
        "--manifests",
        "rendered.yaml",
        "--namespace",
        "shop",
        "--format",
        "sarif",
        cwd=tmp_path,
    )
    return run, tmp_path


def test_sarif_is_valid_2_1_0_with_levels_by_enforcement(tmp_path: pathlib.Path) -> None:
    run, _ = sarif_run(tmp_path)
    assert run.code == 1, run.err
    log = run.json()
    jsonschema.validate(log, json.loads(SARIF_SCHEMA.read_text()))
    assert log["version"] == "2.1.0"
    [sarif] = log["runs"]
    results = sarif["results"]
    levels = sorted(r["level"] for r in results)
    assert levels == ["error", "error", "note", "note", "warning"]
    rule_ids = {r["ruleId"] for r in results}
    assert "Mitigation/shop/web-replicas-fix/spec.replicas" in rule_ids
    assert "Guardrail/no-latest/pinned" in rule_ids
    descriptors = sarif["tool"]["driver"]["rules"]
    assert rule_ids == {rule["id"] for rule in descriptors}
    for result in results:
        assert descriptors[result["ruleIndex"]]["id"] == result["ruleId"]
    [replicas] = [d for d in descriptors if d["id"].endswith("web-replicas-fix/spec.replicas")]
    assert "INC-1234" in replicas["fullDescription"]["text"]
    assert "shop-sre" in replicas["fullDescription"]["text"]
    assert replicas["helpUri"] == "https://runbooks.example.com/web"
    for result in results:
        location = result["locations"][0]["physicalLocation"]
        assert location["artifactLocation"]["uri"] == "rendered.yaml"  # relative stays relative
        line = location["region"]["startLine"]
        rendered = (tmp_path / "rendered.yaml").read_text().splitlines()
        # "the first line of its document": the `---` (12), its `# Source:` (13) or the
        # first key (14); never a line of another document
        assert 12 <= line <= 14, line
        assert rendered[14 - 1] == "apiVersion: apps/v1"
        assert result["partialFingerprints"]


def test_sarif_fingerprints_survive_a_line_move(tmp_path: pathlib.Path) -> None:
    run, root = sarif_run(tmp_path)
    before = {r["partialFingerprints"]["keepfix/v1"] for r in run.json()["runs"][0]["results"]}
    rendered = root / "rendered.yaml"
    rendered.write_text("# a comment added at the top\n\n" + rendered.read_text())
    after_run = gate_process(
        "--policies",
        "policies",
        "--manifests",
        "rendered.yaml",
        "--namespace",
        "shop",
        "--format",
        "sarif",
        cwd=root,
    )
    after = {r["partialFingerprints"]["keepfix/v1"] for r in after_run.json()["runs"][0]["results"]}
    assert before == after


def test_junit_failures_are_the_deny_findings(tmp_path: pathlib.Path) -> None:
    manifests = write(
        tmp_path,
        "m.yaml",
        web(replicas=1)
        + "---\n"
        + web(image="nginx:latest").replace("name: web\n  namespace", "name: other\n  namespace"),
    )
    run = gate("--policies", DATA / "policies", "--manifests", manifests, "--format", "junit")
    assert run.code == 1
    root = ET.fromstring(run.out)
    cases = root.findall(".//testcase")
    failing = [c for c in cases if c.find("failure") is not None]
    assert [c.get("classname") for c in failing] == ["Deployment shop/web"]
    assert [c.get("name") for c in failing] == ["Mitigation shop/web-replicas-fix"]
    failure = failing[0].find("failure")
    assert failure is not None
    assert "spec.replicas=1 reverts Mitigation shop/web-replicas-fix" in (
        failure.get("message") or ""
    )
    assert root.get("failures") == "1"
    warned = [c for c in cases if c.find("system-out") is not None]
    assert [c.get("classname") for c in warned] == ["Deployment shop/other"]
    assert "latest" in (warned[0].findtext("system-out") or "")
    assert all(c.find("failure") is None for c in warned)


def test_junit_passes_when_only_warnings(tmp_path: pathlib.Path) -> None:
    run = gate(
        "--policies",
        GUARDRAIL,
        "--manifests",
        "-",
        "--format",
        "junit",
        stdin=web(image="x:latest"),
    )
    assert run.code == 0
    root = ET.fromstring(run.out)
    assert root.get("failures") == "0"
    assert int(root.get("tests") or 0) >= 1


# --- the installed script: exit codes through a real pipe ---------------------------------


def test_exit_codes_of_the_installed_script(tmp_path: pathlib.Path) -> None:
    assert gate_process("--policies", MITIGATION, "--manifests", "-", stdin=web()).code == 0
    denied = gate_process("--policies", MITIGATION, "--manifests", "-", stdin=web(replicas=1))
    assert denied.code == 1
    assert re.search(r"^-:1 Deployment shop/web$", denied.out, re.MULTILINE)
    bad = gate_process("--policies", MITIGATION, "--manifests", "-", stdin="a: [\n")
    assert bad.code == 2
    assert bad.out == ""
    assert "- (document 1)" in bad.err


# --- more of the contract -----------------------------------------------------------------


def test_guardrail_namespaces_see_the_namespace_a_manifest_lands_in(tmp_path: pathlib.Path) -> None:
    policy = write(
        tmp_path,
        "g.yaml",
        GUARDRAIL.read_text()
        .replace("    excludeNamespaces: [kube-system]\n", "    namespaces: [shop]\n")
        .replace("enforcement: Warn", "enforcement: Deny"),
    )
    manifest = web(image="nginx:latest", ns="")
    assert (
        gate("--policies", policy, "--manifests", "-", "--namespace", "shop", stdin=manifest).code
        == 1
    )
    assert (
        gate("--policies", policy, "--manifests", "-", "--namespace", "cart", stdin=manifest).code
        == 0
    )
    # An unknown namespace (no --namespace) may be any: every Guardrail of the kind applies.
    assert gate("--policies", policy, "--manifests", "-", stdin=manifest).code == 1


def test_every_item_path_in_a_mitigation_checks_each_item_that_sets_the_field(
    tmp_path: pathlib.Path,
) -> None:
    policy = write(
        tmp_path,
        "m.yaml",
        """\
        apiVersion: keepfix.dev/v1alpha1
        kind: Mitigation
        metadata: {name: unprivileged, namespace: shop}
        spec:
          target: {apiVersion: apps/v1, kind: Deployment, name: web}
          fields:
            - path: spec.template.spec.containers[*].securityContext.privileged
              value: false
              knownBad: [true]
          admission: Deny
        """,
    )
    manifest = textwrap.dedent(
        """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web, namespace: shop}
        spec:
          template:
            spec:
              containers:
                - {name: quiet}
                - {name: safe, securityContext: {privileged: false}}
                - {name: root, securityContext: {privileged: true}}
        """
    )
    run = gate("--policies", policy, "--manifests", "-", "--format", "json", stdin=manifest)
    assert run.code == 1
    assert [v["path"] for v in run.json()["violations"]] == [
        "spec.template.spec.containers[name=root].securityContext.privileged"
    ]
    assert run.json()["violations"][0]["severity"] == "Critical"


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "junit"])
def test_secret_data_never_appears_in_the_output(tmp_path: pathlib.Path, fmt: str) -> None:
    # DESIGN.md: "Secret data never appears in a Regression, Event, log or alert: only a
    # hash." A CI log is a log.
    policy = write(
        tmp_path,
        "m.yaml",
        """\
        apiVersion: keepfix.dev/v1alpha1
        kind: Mitigation
        metadata: {name: db-password, namespace: shop}
        spec:
          target: {apiVersion: v1, kind: Secret, name: db}
          fields:
            - path: stringData.password
              value: stable-s3cr3t
            - path: data.token
              value: c3RhYmxlLXRva2Vu
          admission: Deny
        """,
    )
    manifest = textwrap.dedent(
        """\
        apiVersion: v1
        kind: Secret
        metadata: {name: db, namespace: shop}
        stringData: {password: leaked-hunter2}
        data: {token: bGVha2VkLXRva2Vu}
        """
    )
    run = gate("--policies", policy, "--manifests", "-", "--format", fmt, stdin=manifest)
    assert run.code == 1
    for secret in ("stable-s3cr3t", "leaked-hunter2", "c3RhYmxlLXRva2Vu", "bGVha2VkLXRva2Vu"):
        assert secret not in run.out
    assert "sha256:" in run.out


@pytest.mark.parametrize(
    "args",
    [
        ["--policies", str(MITIGATION), "--manifests", "-", "--format", "yaml"],
        ["--manifests", "-"],
        ["--policies", str(MITIGATION)],
    ],
    ids=["unknown-format", "no-policies", "no-manifests"],
)
def test_a_bad_command_line_is_exit_2_with_nothing_on_stdout(args: list[str]) -> None:
    run = gate(*args, stdin=web(replicas=1))
    assert run.code == 2
    assert run.out == ""
    assert run.err


def test_unquoted_admission_off_is_accepted_or_explained(tmp_path: pathlib.Path) -> None:
    # DESIGN.md: `admission: Deny  # Deny | Warn | Off`. Unquoted, YAML 1.1 (PyYAML and
    # kubectl's sigs.k8s.io/yaml alike) reads Off as the boolean false. Either the gate
    # takes it as Off, or the message must say what happened and how to fix it.
    policy = write(
        tmp_path,
        "m.yaml",
        MITIGATION.read_text().replace("admission: Deny", "admission: Off"),
    )
    run = gate("--policies", policy, "--manifests", "-", stdin=web(replicas=1))
    explained = run.code == 2 and "false" in run.err.lower() and "quote" in run.err.lower()
    accepted = run.code == 0 and "AUDIT" in run.out
    assert explained or accepted, run.err


LIVE_MITIGATION = """\
apiVersion: keepfix.dev/v1alpha1
kind: Mitigation
metadata:
  name: web-replicas-fix
  namespace: shop
  uid: 3b1f0c8e-1111-2222-3333-444455556666
  resourceVersion: "4711"
  generation: 2
  creationTimestamp: "2026-01-01T00:00:00Z"
  finalizers: [keepfix.dev/cleanup]
  managedFields:
    - manager: kubectl-client-side-apply
      operation: Update
      apiVersion: keepfix.dev/v1alpha1
      time: "2026-01-01T00:00:00Z"
      fieldsType: FieldsV1
      fieldsV1: {"f:spec": {"f:replicas": {}}}
spec:
  target: {apiVersion: apps/v1, kind: Deployment, name: web}
  fields:
    - {path: spec.replicas, value: 3}
  capture: false
  action: Rollback
  admission: Deny
  watchWindow: 30d
  category: ConfigDrift
status:
  phase: Watching
  mitigatedAt: "2026-01-01T00:00:00Z"
  watchUntil: "2026-01-31T00:00:00Z"
  stable: [{path: spec.replicas, value: 3}]
  targets: 1
  drifts: 0
  rollbacks: 0
  regressions: 0
"""


def test_a_mitigation_as_the_api_server_returns_it_is_a_policy() -> None:
    # `kubectl get mit web-replicas-fix -o yaml > policies/web.yaml` is how a team pulls a
    # Mitigation made during an incident into its repository.
    run = gate(
        "--policies",
        "-",
        "--manifests",
        MITIGATION.parent.parent / "helm-rendered.yaml",
        "--namespace",
        "shop",
        stdin=LIVE_MITIGATION,
    )
    assert run.code == 1, run.err
    assert "reverts Mitigation shop/web-replicas-fix" in run.out


def test_policies_exported_as_a_kubectl_list_are_read_item_by_item() -> None:
    exported = {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": [yaml.safe_load(LIVE_MITIGATION), yaml.safe_load(GUARDRAIL.read_text())],
    }
    run = gate(
        "--policies",
        "-",
        "--manifests",
        HELM,
        "--namespace",
        "shop",
        stdin=yaml.safe_dump(exported),
    )
    assert run.code == 1, run.err
    assert "against 1 Mitigation and 1 Guardrail" in run.out


@pytest.mark.parametrize(
    ("resources", "selected"),
    [
        ("[{kinds: [Deployment]}]", True),  # no apiGroups: any group
        ('[{apiGroups: ["*"], kinds: ["*"]}]', True),
        ('[{apiGroups: [apps], kinds: ["*"]}]', True),
        ('[{apiGroups: ["*"], kinds: [Deployment]}]', True),
        ('[{apiGroups: [""], kinds: [Deployment]}]', False),  # "" is the core group
        ("[{apiGroups: [extensions], kinds: [Deployment]}]", False),
        (
            "[{apiGroups: [apps], kinds: [StatefulSet]}, {apiGroups: [apps], kinds: [Deployment]}]",
            True,
        ),
    ],
)
def test_the_gate_selects_guardrails_by_group_and_kind_like_the_cluster(
    tmp_path: pathlib.Path, resources: str, selected: bool
) -> None:
    policy = write(
        tmp_path,
        "g.yaml",
        f"""\
        apiVersion: keepfix.dev/v1alpha1
        kind: Guardrail
        metadata: {{name: g}}
        spec:
          match: {{resources: {resources}}}
          rules:
            - {{name: r, path: spec.replicas, atLeast: 2}}
          enforcement: Deny
        """,
    )
    manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec: {replicas: 1}\n"
    assert gate("--policies", policy, "--manifests", "-", stdin=manifest).code == int(selected)


CONTROL_MANIFEST = (
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n"
    "spec:\n  template:\n    spec:\n      containers:\n"
    '        - {name: web, image: "evil\\x1b[2K\\r:latest"}\n'
)


def test_junit_stays_well_formed_whatever_the_manifest_holds() -> None:
    run = gate(
        "--policies", GUARDRAIL, "--manifests", "-", "--format", "junit", stdin=CONTROL_MANIFEST
    )
    assert run.code == 0  # Warn only
    ET.fromstring(run.out)


def test_text_output_has_no_raw_control_characters() -> None:
    run = gate("--policies", GUARDRAIL, "--manifests", "-", stdin=CONTROL_MANIFEST)
    assert "WARN" in run.out
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", run.out), repr(run.out)


def test_json_and_sarif_escape_control_characters() -> None:
    for fmt in ("json", "sarif"):
        run = gate(
            "--policies", GUARDRAIL, "--manifests", "-", "--format", fmt, stdin=CONTROL_MANIFEST
        )
        assert "\x1b" not in run.out
        assert "evil" in json.dumps(run.json())


def test_one_mitigation_defined_twice_is_bad_input_or_enforced_once(tmp_path: pathlib.Path) -> None:
    # The cluster holds one object per namespace/name: `kubectl apply -f policies/` leaves
    # the last one. The gate must not demand two values of one field at once; refusing the
    # ambiguity (exit 2, naming both files) is as good as keeping one definition.
    first = write(tmp_path, "a.yaml", MITIGATION.read_text())
    second = write(tmp_path, "b.yaml", MITIGATION.read_text().replace("value: 3", "value: 5"))
    at_three = gate("--policies", first, second, "--manifests", "-", stdin=web(replicas=3))
    if at_three.code == 2:
        assert_bad_input(at_three, "a.yaml", "b.yaml")
        return
    at_five = gate("--policies", first, second, "--manifests", "-", stdin=web(replicas=5))
    assert 0 in (at_three.code, at_five.code), at_three.out + at_five.out


def test_a_schema_error_does_not_hide_a_bad_path_in_the_same_document(
    tmp_path: pathlib.Path,
) -> None:
    text = (
        MITIGATION.read_text()
        .replace("admission: Deny", "admission: Block")
        .replace("path: spec.replicas", "path: spec..replicas")
    )
    run = gate("--policies", write(tmp_path, "m.yaml", text), "--manifests", "-", stdin=web())
    assert_bad_input(run, "spec.admission", "column 6")


TCP_SERVICES = """\
# ingress-nginx's documented way to expose TCP services: the keys are port numbers,
# unquoted. kubectl (sigs.k8s.io/yaml) sends them as the strings "9000", "8080".
apiVersion: v1
kind: ConfigMap
metadata: {name: tcp-services, namespace: ingress-nginx}
data:
  9000: "default/wrong:8080"
"""


def test_a_number_key_is_read_as_the_string_kubectl_sends(tmp_path: pathlib.Path) -> None:
    policy = write(
        tmp_path,
        "m.yaml",
        """\
        apiVersion: keepfix.dev/v1alpha1
        kind: Mitigation
        metadata: {name: tcp-route, namespace: ingress-nginx}
        spec:
          target: {apiVersion: v1, kind: ConfigMap, name: tcp-services}
          fields:
            - path: data["9000"]
              value: default/example-go:8080
          admission: Deny
        """,
    )
    run = gate("--policies", policy, "--manifests", "-", stdin=TCP_SERVICES)
    assert run.code == 1, run.out
    assert 'data["9000"]=default/wrong:8080 reverts Mitigation' in run.out


def test_a_number_key_in_a_reported_value_does_not_crash_the_gate(tmp_path: pathlib.Path) -> None:
    policy = write(
        tmp_path,
        "m.yaml",
        """\
        apiVersion: keepfix.dev/v1alpha1
        kind: Mitigation
        metadata: {name: tcp-routes, namespace: ingress-nginx}
        spec:
          target: {apiVersion: v1, kind: ConfigMap, name: tcp-services}
          fields:
            - path: data
              value: {"9000": "default/example-go:8080"}
          admission: Warn
        """,
    )
    mixed = TCP_SERVICES + '  "9001": "default/example-udp:53"\n'  # one key quoted, one not
    run = gate_process("--policies", policy, "--manifests", "-", stdin=mixed)
    assert "Traceback" not in run.err
    assert run.code == 0, run.err  # a Warn finding never fails the gate
    assert "WARN" in run.out
