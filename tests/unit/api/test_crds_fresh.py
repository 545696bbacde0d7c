"""crds/ is generated from keepfix.api.models and kept fresh; examples/ parse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pydantic
import pytest
import yaml

from keepfix.api import conventions, crdgen, models
from keepfix.cli import main as cli

REPO = Path(__file__).resolve().parents[3]
CHART_CRDS = REPO / crdgen.DEFAULT_CHART_DIR
EXAMPLES = sorted((REPO / "examples").rglob("*.yaml"))


def test_committed_crds_are_fresh() -> None:
    """Regenerating gives exactly the committed crds/ files."""
    committed = {p.name: p.read_text(encoding="utf-8") for p in (REPO / "crds").glob("*.yaml")}
    assert committed == crdgen.rendered_files(), "crds/ is stale: run `make crds`"


@pytest.mark.skipif(not CHART_CRDS.is_dir(), reason="the chart has no templates/crd/ folder")
def test_chart_crds_are_fresh() -> None:
    """The chart's templates/crd/ holds the same CRDs, wrapped for Helm."""
    committed = {p.name: p.read_text(encoding="utf-8") for p in CHART_CRDS.glob("*.yaml")}
    assert committed == crdgen.rendered_files(chart=True), "chart CRDs are stale: run `make crds`"


def _properties(schema: dict[str, Any], path: str = "") -> Iterator[str]:
    for name, sub in schema.get("properties", {}).items():
        yield f"{path}.{name}"
        yield from _properties(sub, f"{path}.{name}")
    if "items" in schema:
        yield from _properties(schema["items"], f"{path}[]")


def _model_fields(model: type[pydantic.BaseModel], path: str = "") -> Iterator[str]:
    for name, info in model.model_fields.items():
        here = f"{path}.{info.alias or name}"
        yield here
        for arg in _types(info.annotation):
            if isinstance(arg, type) and issubclass(arg, pydantic.BaseModel):
                suffix = "[]" if _is_list(info.annotation) else ""
                yield from _model_fields(arg, here + suffix)


def _types(annotation: Any) -> Iterator[Any]:
    yield annotation
    for arg in getattr(annotation, "__args__", ()):
        yield from _types(arg)


def _is_list(annotation: Any) -> bool:
    return any(getattr(t, "__origin__", None) is list for t in _types(annotation))


@pytest.mark.parametrize("kind", models.KINDS, ids=lambda k: k.KIND)
def test_every_model_field_is_in_the_schema_and_nothing_else(kind: type[models.Resource]) -> None:
    """One source of truth: the CRD schema has exactly the models' fields."""
    schema = crdgen.openapi_schema(kind)
    expected = {".apiVersion", ".kind", ".metadata"}
    for part in ("spec", "status"):
        expected.add(f".{part}")
        expected |= set(
            _model_fields(crdgen.model_of(kind.model_fields[part].annotation), f".{part}")
        )
    assert set(_properties(schema)) == expected


def test_descriptions_reach_kubectl_explain() -> None:
    """Field descriptions from the models are in the schema kubectl explain reads."""
    schema = crdgen.openapi_schema(models.Mitigation)["properties"]["spec"]
    field = models.MitigationSpec.model_fields["admission"]
    assert schema["properties"]["admission"]["description"] == field.description
    assert "set exactly one of name and selector" in schema["properties"]["target"]["description"]


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@pytest.mark.parametrize("kind", models.KINDS, ids=lambda k: k.KIND)
def test_schemas_are_structural(kind: type[models.Resource]) -> None:
    """No $ref, no nullable unions, no titles; every typed node or a free-form marker."""
    schema = crdgen.openapi_schema(kind)
    for node in _walk(schema):
        assert not {"$ref", "$defs", "title", "const"} & node.keys()
        assert all(s.get("type") != "null" for s in node.get("anyOf", []))
    for node in _spine(schema):
        free_form = node.get("x-kubernetes-preserve-unknown-fields") or node.get(
            "x-kubernetes-int-or-string"
        )
        assert node.get("type") or free_form, node
        for branch in node.get("anyOf", []) + node.get("oneOf", []):
            assert not {"type", "description", "default", "nullable"} & branch.keys()


def _spine(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for sub in node.get("properties", {}).values():
        yield from _spine(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from _spine(node[key])


def test_crd_names_scope_and_printer_columns() -> None:
    """Short names, category, scope and status subresource as DESIGN says."""
    expected = {
        models.Mitigation: ("mit", "Namespaced"),
        models.Guardrail: ("gr", "Cluster"),
        models.Regression: ("reg", "Namespaced"),
        models.AlertRoute: ("ar", "Cluster"),
    }
    for kind, (short, scope) in expected.items():
        crd = crdgen.crd(kind)
        version = crd["spec"]["versions"][0]
        assert crd["metadata"]["name"] == f"{kind.PLURAL}.{conventions.GROUP}"
        assert crd["spec"]["names"]["shortNames"] == [short]
        assert crd["spec"]["names"]["categories"] == [conventions.CATEGORY]
        assert (crd["spec"]["scope"], version["name"]) == (scope, conventions.VERSION)
        assert version["subresources"] == {"status": {}}
        assert version["additionalPrinterColumns"][-1]["name"] == "Age"


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in EXAMPLES:
        for i, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            docs.append((f"{path.relative_to(REPO)}:{i}", doc))
    return docs


KEEPFIX_EXAMPLES = [
    (src, d) for src, d in _documents() if d["apiVersion"] == conventions.API_VERSION
]


def test_examples_cover_every_kind_a_user_writes() -> None:
    """At least four Mitigations, two Guardrails and an AlertRoute, commented."""
    kinds = [doc["kind"] for _, doc in KEEPFIX_EXAMPLES]
    assert kinds.count("Mitigation") >= 4
    assert kinds.count("Guardrail") >= 2
    assert kinds.count("AlertRoute") >= 1
    for path in EXAMPLES:
        assert path.read_text(encoding="utf-8").startswith("#"), f"{path} has no comment"


@pytest.mark.parametrize(("source", "doc"), KEEPFIX_EXAMPLES, ids=[s for s, _ in KEEPFIX_EXAMPLES])
def test_examples_parse_and_match_the_schema(source: str, doc: dict[str, Any]) -> None:
    """Every keepfix object in examples/ parses with the models and validates against its CRD."""
    kind = type(models.parse(doc))
    jsonschema.validate(doc, crdgen.openapi_schema(kind))


def test_keepfix_crds_prints_four_crds(capsys: pytest.CaptureFixture[str]) -> None:
    """`keepfix crds` prints the four CRDs as parseable YAML, the same as crds/."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["crds"])
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert exited.value.code == 0
    assert [d["metadata"]["name"] for d in docs] == [
        f"{k.PLURAL}.{conventions.GROUP}" for k in models.KINDS
    ]
    assert docs == [yaml.safe_load(crdgen.render(k)) for k in models.KINDS]


def test_crdgen_writes_and_prunes(tmp_path: Path) -> None:
    """The generator writes one file per kind and removes a stale generated file."""
    (tmp_path / f"{conventions.GROUP}_old.yaml").write_text("stale", encoding="utf-8")
    (tmp_path / "README.md").write_text("kept", encoding="utf-8")
    assert crdgen.main(["--out", str(tmp_path), "--chart-dir", str(tmp_path / "chart")]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.yaml")) == sorted(crdgen.rendered_files())
    assert (tmp_path / "README.md").exists()
    chart = (tmp_path / "chart" / crdgen.file_name(models.Mitigation)).read_text(encoding="utf-8")
    assert "{{- if .Values.crds.install }}" in chart
    assert "helm.sh/resource-policy: keep" in chart
