"""keepfix.cli.sources: documents with their file, number and first line; every problem kept."""

from __future__ import annotations

import io
import pathlib

import pytest
import yaml

from keepfix.cli import sources

TEXT = """\
# a comment before the first document
apiVersion: v1
kind: ConfigMap
metadata: {name: a}
---
---
# the third document starts below
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
"""


@pytest.mark.parametrize(
    "loader", [yaml.SafeLoader, sources.Loader], ids=["pure-python", "fastest"]
)
def test_documents_keep_their_number_and_first_line(
    monkeypatch: pytest.MonkeyPatch, loader: type[yaml.SafeLoader]
) -> None:
    """Empty documents count in the numbering but are not returned; lines are 1-based."""
    monkeypatch.setattr(sources, "Loader", loader)
    loaded = sources.read(["-"], stdin=io.StringIO(TEXT))
    assert loaded.problems == ()
    assert [(d.source, d.index, d.line, d.body["metadata"]["name"]) for d in loaded.documents] == [
        ("-", 1, 2, "a"),
        ("-", 3, 8, "c"),
    ]


def test_the_fastest_loader_is_libyaml_when_available() -> None:
    """The gate parses with libyaml when PyYAML has it."""
    expected: type = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
    assert issubclass(sources.Loader, expected)


def test_a_folder_is_read_recursively_in_sorted_order(tmp_path: pathlib.Path) -> None:
    """Only *.yaml and *.yml files, sorted by path."""
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.yml").write_text("kind: z\n")
    (tmp_path / "a.yaml").write_text("kind: a\n")
    (tmp_path / "c.json").write_text('{"kind": "c"}\n')
    (tmp_path / "d.yaml").mkdir()
    loaded = sources.read([str(tmp_path)], stdin=io.StringIO())
    assert [d.body["kind"] for d in loaded.documents] == ["a", "z"]


def test_an_error_stops_only_its_own_file(tmp_path: pathlib.Path) -> None:
    """Documents before the error and other files are still read; the error names its document."""
    (tmp_path / "1.yaml").write_text("kind: ok\n---\nkind: [\n")
    (tmp_path / "2.yaml").write_text("kind: also-ok\n")
    loaded = sources.read([str(tmp_path)], stdin=io.StringIO())
    assert [d.body["kind"] for d in loaded.documents] == ["ok", "also-ok"]
    (problem,) = loaded.problems
    assert (problem.source, problem.document) == (str(tmp_path / "1.yaml"), 2)
    assert str(problem).startswith(f"{tmp_path / '1.yaml'} (document 2): invalid YAML: line ")


def test_a_tag_pyyaml_will_not_construct_is_bad_yaml() -> None:
    """Safe loading: a python/object tag is an error, not code execution."""
    loaded = sources.read(["-"], stdin=io.StringIO("a: !!python/object:os.system {}\n"))
    (problem,) = loaded.problems
    assert problem.document == 1
    assert "invalid YAML" in problem.message


def test_a_problem_about_a_whole_file_has_no_document() -> None:
    """A missing file is named without a document number."""
    assert str(sources.Problem("x.yaml", None, "no such file or directory")) == (
        "x.yaml: no such file or directory"
    )


def test_a_byte_order_mark_is_not_part_of_the_first_document(tmp_path: pathlib.Path) -> None:
    """Files saved by some Windows editors start with a BOM."""
    (tmp_path / "bom.yaml").write_bytes(b"\xef\xbb\xbfapiVersion: v1\nkind: ConfigMap\n")
    loaded = sources.read([str(tmp_path / "bom.yaml")], stdin=io.StringIO())
    assert [d.body for d in loaded.documents] == [{"apiVersion": "v1", "kind": "ConfigMap"}]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("9000", "9000"),
        ('"9001"', "9001"),
        ("true", "true"),
        ("~", "null"),
        ("1.0", "1"),
        ("0.5", "0.5"),
        ("name", "name"),
    ],
)
def test_mapping_keys_are_read_as_the_strings_kubectl_sends(key: str, expected: str) -> None:
    """A key YAML reads as a number (ConfigMap `9000:`) is the string the API server gets."""
    loaded = sources.read(["-"], stdin=io.StringIO(f"data:\n  {key}: v\n  nested: {{{key}: w}}\n"))
    assert loaded.documents[0].body == {"data": {expected: "v", "nested": {expected: "w"}}}


def test_merge_keys_still_merge_with_string_keys() -> None:
    """YAML merge keys (`<<`) keep working; the merged number key becomes a string too."""
    text = "base: &b {8080: a}\nport:\n  <<: *b\n  9000: b\n"
    body = sources.read(["-"], stdin=io.StringIO(text)).documents[0].body
    assert body["port"] == {"8080": "a", "9000": "b"}


def test_a_key_with_an_unknown_tag_is_still_a_yaml_error() -> None:
    """Only keys PyYAML can construct are rewritten; `!custom 1:` fails as before."""
    loaded = sources.read(["-"], stdin=io.StringIO("data:\n  !custom 1: v\n"))
    assert loaded.documents == ()
    (problem,) = loaded.problems
    assert problem.message.startswith("invalid YAML: line 2, column 3: could not determine")
