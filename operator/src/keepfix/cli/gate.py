"""`keepfix gate`: fail a pipeline whose manifests revert a fix or ship known-bad config.

Everything is read and validated before anything is printed: bad input (YAML
that does not parse, a policy of a kind the gate does not know, a Mitigation
or Guardrail that breaks the schema, a manifest that is not a Kubernetes
object) is reported on stderr, every problem at once, and the exit code is 2
with nothing on stdout. Otherwise the report goes to stdout in the chosen
format and the exit code is 1 when some finding is at Deny level, else 0.

Evaluation is `keepfix.core.policy.evaluate`, the same function the admission
webhook calls.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from keepfix.api import conventions, convert
from keepfix.cli import sources
from keepfix.cli.output import jsonout, junit, sarif, text
from keepfix.cli.output import report as report_
from keepfix.core import policy

EXIT_PASSED = 0
EXIT_BLOCKED = 1
EXIT_BAD_INPUT = 2

RENDERERS: Mapping[str, Callable[[report_.Report], str]] = {
    "text": text.render,
    "json": jsonout.render,
    "sarif": sarif.render,
    "junit": junit.render,
}
#: keepfix kinds that are not policies: accepted in --policies and skipped.
NOT_POLICIES = frozenset({conventions.KIND_REGRESSION, conventions.KIND_ALERT_ROUTE})


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "gate",
        help="CI/CD gate: manifests vs Mitigations and Guardrails",
        description="Check Kubernetes manifests against Mitigations and Guardrails. Exit 0: "
        "nothing blocks; 1: at least one Deny-level violation; 2: bad input.",
    )
    p.add_argument(
        "--policies",
        nargs="+",
        action="extend",
        required=True,
        metavar="PATH",
        help="Mitigation and Guardrail YAML: files, folders (*.yaml, *.yml) or - for stdin",
    )
    p.add_argument(
        "--manifests",
        nargs="+",
        action="extend",
        required=True,
        metavar="PATH",
        help="the manifests to check: files, folders or - for stdin (e.g. helm template output)",
    )
    p.add_argument(
        "--format", choices=sorted(RENDERERS), default="text", help="output format (default: text)"
    )
    p.add_argument(
        "--namespace",
        default="",
        help="the namespace manifests that name none will be applied to, as kubectl apply -n "
        "(default: unknown, so they match Mitigations of their kind and name in any namespace "
        "and Guardrails whatever their namespaces)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return gate(
        policies=args.policies,
        manifests=args.manifests,
        output_format=args.format,
        namespace=args.namespace,
        stdin=sys.stdin,
        stdout=sys.stdout,
        stderr=sys.stderr,
    )


def gate(
    *,
    policies: Sequence[str],
    manifests: Sequence[str],
    output_format: str = "text",
    namespace: str = "",
    stdin: TextIO,
    stdout: TextIO,
    stderr: TextIO,
) -> int:
    """The whole command with its streams passed in; returns the exit code."""
    try:
        with _without_gc():
            return _gate(
                policies=policies,
                manifests=manifests,
                output_format=output_format,
                namespace=namespace,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
            )
    except Exception as exc:  # exit 1 must only ever mean a Deny finding: a crash is 2
        stderr.write(
            f"error: internal error in keepfix gate ({type(exc).__name__}: {exc}); "
            "the input was not checked, please report this with the input that caused it\n"
        )
        return EXIT_BAD_INPUT


@contextlib.contextmanager
def _without_gc() -> Iterator[None]:
    # Every document stays loaded until all input is validated, so the cyclic GC
    # would traverse a growing heap again and again (~10% of a 10,000-manifest run)
    # to find nothing: YAML, policies and findings hold no reference cycles.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _gate(
    *,
    policies: Sequence[str],
    manifests: Sequence[str],
    output_format: str,
    namespace: str,
    stdin: TextIO,
    stdout: TextIO,
    stderr: TextIO,
) -> int:
    problems: list[sources.Problem] = []
    if [*policies, *manifests].count(sources.STDIN) > 1:
        problems.append(
            sources.Problem(sources.STDIN, None, "standard input can be read only once")
        )
    loaded_policies = sources.read(policies, stdin=stdin)
    loaded_manifests = sources.read(manifests, stdin=stdin)
    before = len(problems)
    mitigations, guardrails = _policies(loaded_policies.documents, namespace, problems)
    if not (mitigations or guardrails or loaded_policies.problems or len(problems) > before):
        # A gate that checks nothing would pass every pipeline: say so instead.
        problems.append(
            sources.Problem(
                " ".join(policies),
                None,
                "no policies found: --policies takes keepfix.dev/v1alpha1 Mitigation and "
                "Guardrail objects",
            )
        )
    objects = list(_objects(loaded_manifests.documents, problems))
    problems[:0] = [*loaded_policies.problems, *loaded_manifests.problems]
    if problems:
        stderr.writelines(f"error: {p}\n" for p in problems)
        return EXIT_BAD_INPUT
    policy_set = policy.PolicySet.build(mitigations, guardrails)
    report = check(policy_set, objects, namespace=namespace, applicable=output_format == "junit")
    stdout.write(RENDERERS[output_format](report))
    return EXIT_BLOCKED if report.blocked else EXIT_PASSED


@dataclass(frozen=True)
class Manifest:
    """One object to check and the document it came from."""

    document: sources.Document
    body: Mapping[str, Any]


def check(
    policies: policy.PolicySet,
    objects: Sequence[Manifest],
    *,
    namespace: str,
    applicable: bool = False,
) -> report_.Report:
    """Evaluate every object; `applicable` also lists the policies that passed (for JUnit)."""
    checked = []
    for obj in objects:
        findings = policy.evaluate(policies, obj.body, default_namespace=namespace)
        checked.append(
            report_.Checked(
                source=obj.document.source,
                document=obj.document.index,
                line=obj.document.line,
                ref=policy.object_ref(obj.body, default_namespace=namespace),
                findings=findings,
                applicable=policy.applicable(policies, obj.body, default_namespace=namespace)
                if applicable
                else (),
            )
        )
    return report_.Report(tuple(checked), policies.mitigation_count, policies.guardrail_count)


def _policies(
    documents: Sequence[sources.Document], namespace: str, problems: list[sources.Problem]
) -> tuple[list[policy.MitigationPolicy], list[policy.GuardrailPolicy]]:
    mitigations: list[policy.MitigationPolicy] = []
    guardrails: list[policy.GuardrailPolicy] = []
    # The cluster holds one object per name: a second definition is ambiguous, not a second rule.
    defined: dict[policy.Ref, str] = {}
    for doc, where, body in _policy_objects(documents):
        try:
            found = _policy(body, namespace)
        except convert.InvalidPolicy as exc:
            problems.extend(sources.Problem(doc.source, doc.index, where + e) for e in exc.errors)
            continue
        if found is None:
            continue
        if found.ref in defined:
            twice = f"{found.ref.kind} {found.ref} defined twice: also in {defined[found.ref]}"
            problems.append(sources.Problem(doc.source, doc.index, where + twice))
            continue
        defined[found.ref] = (
            f"{doc.source} (document {doc.index}{', ' + where[:-2] if where else ''})"
        )
        if isinstance(found, policy.MitigationPolicy):
            mitigations.append(found)
        else:
            guardrails.append(found)
    return mitigations, guardrails


def _policy(body: Any, namespace: str) -> policy.MitigationPolicy | policy.GuardrailPolicy | None:
    """The policy in one object; None for a keepfix kind that is not one; InvalidPolicy else."""
    kind = body.get("kind") if isinstance(body, dict) else None
    if not isinstance(body, dict) or body.get("apiVersion") != conventions.API_VERSION:
        raise convert.InvalidPolicy([_not_a_policy(body)])
    if kind == conventions.KIND_MITIGATION:
        # A Mitigation is namespaced: without a namespace it lands where kubectl would put it.
        return convert.mitigation(body, default_namespace=namespace or "default")
    if kind == conventions.KIND_GUARDRAIL:
        return convert.guardrail(body)
    if kind in NOT_POLICIES:
        return None
    raise convert.InvalidPolicy([_not_a_policy(body)])


def _policy_objects(
    documents: Sequence[sources.Document],
) -> Iterator[tuple[sources.Document, str, Any]]:
    """(document, `items[i]: ` or "", object): a `kind: List` (kubectl get -o yaml) item by item."""
    for doc in documents:
        if _is_list(doc.body):
            for i, item in enumerate(doc.body["items"]):
                yield doc, f"items[{i}]: ", item
        else:
            yield doc, "", doc.body


def _not_a_policy(body: Any) -> str:
    if not isinstance(body, dict):
        return f"expected a keepfix Mitigation or Guardrail, found a YAML {type(body).__name__}"
    kind, api_version = body.get("kind"), body.get("apiVersion")
    return (
        f"unknown kind {kind!r} (apiVersion {api_version!r}): --policies takes "
        f"{conventions.API_VERSION} Mitigation and Guardrail objects"
    )


def _objects(
    documents: Sequence[sources.Document], problems: list[sources.Problem]
) -> Iterator[Manifest]:
    for doc in documents:
        body = doc.body
        if not _is_object(body):
            problems.append(
                sources.Problem(
                    doc.source,
                    doc.index,
                    "not a Kubernetes object: a mapping with apiVersion and kind",
                )
            )
            continue
        if _is_list(body):
            yield from _list_items(doc, body["items"], problems)
        else:
            yield Manifest(doc, body)


def _list_items(
    doc: sources.Document, items: list[Any], problems: list[sources.Problem]
) -> Iterator[Manifest]:
    # `kubectl get -o yaml` and some generators wrap objects in a v1 List.
    for i, item in enumerate(items):
        if _is_object(item):
            yield Manifest(doc, item)
        else:
            problems.append(
                sources.Problem(doc.source, doc.index, f"items[{i}]: not a Kubernetes object")
            )


def _is_list(body: Any) -> bool:
    return (
        _is_object(body) and body["kind"].endswith("List") and isinstance(body.get("items"), list)
    )


def _is_object(body: Any) -> bool:
    return (
        isinstance(body, dict)
        and isinstance(body.get("apiVersion"), str)
        and isinstance(body.get("kind"), str)
        and bool(body["kind"])
    )
