"""No phantom drift on real manifests: the shared corpus, captured and diffed.

Every object of every manifest under the corpus folder is captured (one
protected field per leaf, plus a few whole sub-objects) and diffed against
itself and against a respelled copy (keys in reverse order, quantities in
another unit, integers as floats). Both must report zero drift. The files
are read in place; the test skips when the corpus is not on this machine.
"""

from __future__ import annotations

import os
import pathlib
import re
from fractions import Fraction
from typing import Any

import pytest
import yaml

from keepfix.core import diff, paths, values

CORPUS = pathlib.Path(os.environ.get("KEEPFIX_CORPUS", "/work/shared/corpus/manifests"))
FILES = sorted(path for pattern in ("*.yaml", "*.yml") for path in CORPUS.glob(f"**/{pattern}"))
_ABSENT = pytest.param(
    None, marks=pytest.mark.skip(reason=f"the manifest corpus {CORPUS} is not on this machine")
)
_RESOURCE_KEYS = frozenset({"cpu", "memory", "storage", "ephemeral-storage"})
_BINARY = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
_PLAIN = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def objects(path: pathlib.Path) -> list[dict[str, Any]]:
    """The mapping documents of a (multi-document) YAML file."""
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if isinstance(doc, dict)]


def protected(obj: dict[str, Any]) -> tuple[diff.ProtectedField, ...]:
    """Every leaf, plus sub-objects: metadata, spec (also whole), labels (whole), the pod spec."""
    extra = [diff.ProtectedField("metadata", obj.get("metadata"))]
    if isinstance(obj.get("spec"), dict):
        extra.append(diff.ProtectedField("spec", obj["spec"]))
        extra.append(diff.ProtectedField("spec", obj["spec"], whole=True))
    labels = (obj.get("metadata") or {}).get("labels")
    if labels:
        extra.append(diff.ProtectedField("metadata.labels", labels, whole=True))
    pod_spec = paths.get(obj, "podSpec") if obj.get("kind") in paths.POD_SPEC_PATHS else None
    if isinstance(pod_spec, dict):
        extra.append(diff.ProtectedField("podSpec", pod_spec))
        extra.append(diff.ProtectedField("podSpec.containers", pod_spec.get("containers")))
    return diff.capture_fields(obj) + tuple(field for field in extra if field.value is not None)


def respell(value: Any, key: str | None = None) -> Any:
    """The same object spelt differently: reversed keys, other units, ints as floats."""
    if isinstance(value, dict):
        return {name: respell(value[name], name) for name in reversed(list(value))}
    if isinstance(value, list):
        return [respell(item) for item in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return f"{value * 1000}m" if key in _RESOURCE_KEYS else float(value)
    if isinstance(value, str):
        return _respell_quantity(value, key)
    return value


def _respell_quantity(text: str, key: str | None) -> str:
    try:
        amount = values.parse_quantity(text)
    except values.QuantityError:
        return text
    stripped = text.strip()
    for position, suffix in enumerate(_BINARY[:-1]):
        if stripped.endswith(suffix):
            return f"{_decimal(amount / 2 ** (10 * (position + 2)))}{_BINARY[position + 1]}"
    if _PLAIN.fullmatch(stripped) is None:
        return _decimal(amount)
    return f"{_decimal(amount * 1000)}m" if key in _RESOURCE_KEYS else text


def _decimal(number: Fraction) -> str:
    """An exact decimal spelling (quantities always have one)."""
    places = 0
    while (number * 10**places).denominator != 1:
        places += 1
    if places == 0:
        return str(number.numerator)
    digits = str(abs(number.numerator) * 10**places // number.denominator).rjust(places + 1, "0")
    sign = "-" if number < 0 else ""
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


def test_respell_changes_spelling_not_value() -> None:
    """The respelling helper really respells: other units, other order, floats."""
    obj = {
        "a": 1,
        "resources": {"limits": {"memory": "512Mi", "cpu": 1}, "requests": {"cpu": "0.5"}},
    }
    out = respell(obj)
    assert list(out) == ["resources", "a"]
    assert out["a"] == 1.0
    assert isinstance(out["a"], float)
    assert out["resources"]["limits"] == {"cpu": "1000m", "memory": "0.5Gi"}
    assert out["resources"]["requests"] == {"cpu": "500m"}
    assert respell({"v": "100m", "x": "9090", "k": "1Ki", "w": "web", "e": "1e3"}) == {
        "e": "1000",
        "w": "web",
        "k": "0.0009765625Mi",
        "x": "9090",
        "v": "0.1",
    }


@pytest.mark.parametrize(
    "path", [pytest.param(path, id=str(path.relative_to(CORPUS))) for path in FILES] or [_ABSENT]
)
def test_corpus_object_has_no_phantom_drift(path: pathlib.Path) -> None:
    """Captured from a manifest, diffed against itself and a respelled copy: zero drift."""
    for obj in objects(path):
        fields = protected(obj)
        assert diff.diff(fields, obj) == ()
        respelled = respell(obj)
        assert diff.diff(fields, respelled) == ()
        assert diff.diff(protected(respelled), obj) == ()
