"""keepfix.core.paths: the path syntax, resolution and pure writes."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keepfix.core import paths
from keepfix.core.paths import Every, Index, Key, Path, PodSpec, Select


def _deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app.kubernetes.io/name": "web"}},
        "spec": {
            "replicas": 2,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80}]},
                        {"name": "side", "image": "envoy:1.30"},
                    ]
                }
            },
        },
    }


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("spec.replicas", (Key("spec"), Key("replicas"))),
        ("a[0]", (Key("a"), Index(0))),
        ("a[12].b", (Key("a"), Index(12), Key("b"))),
        ("a[*].b", (Key("a"), Every(), Key("b"))),
        ("a[name=web]", (Key("a"), Select("name", "web"))),
        ('a[name="my.web"]', (Key("a"), Select("name", "my.web"))),
        ("a[name='x]y']", (Key("a"), Select("name", "x]y"))),
        ('a[name=""]', (Key("a"), Select("name", ""))),
        ("a[name=my.web]", (Key("a"), Select("name", "my.web"))),
        ('a["example.com/key"]', (Key("a"), Key("example.com/key"))),
        ("a['single']", (Key("a"), Key("single"))),
        ('a["x=y"=z]', (Key("a"), Select("x=y", "z"))),
        ('a["q\\"uote"]', (Key("a"), Key('q"uote'))),
        ('["podSpec"].x', (Key("podSpec"), Key("x"))),
        ("[0]", (Index(0),)),
        ("podSpec.containers[*].image", (PodSpec(), Key("containers"), Every(), Key("image"))),
        ("podSpec", (PodSpec(),)),
        ("x.podSpec", (Key("x"), Key("podSpec"))),
    ],
)
def test_parse_dotted(text: str, segments: tuple[paths.Segment, ...]) -> None:
    """Dotted paths parse into the documented segments."""
    assert paths.parse(text) == Path(segments)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("/spec/replicas", ("spec", "replicas")),
        ("/metadata/labels/a~1b", ("metadata", "labels", "a/b")),
        ("/a~0b", ("a~b",)),
        ("/a~01", ("a~1",)),
        ("/", ("",)),
        ("/a//b", ("a", "", "b")),
    ],
)
def test_parse_pointer(text: str, tokens: tuple[str, ...]) -> None:
    """A leading slash reads as an RFC 6901 JSON Pointer with ~0 and ~1 escapes."""
    assert paths.parse(text) == Path(tuple(Key(token) for token in tokens), pointer=True)
    assert paths.format(paths.parse(text)) == text


@pytest.mark.parametrize(
    ("text", "column", "reason"),
    [
        ("", 1, "empty path"),
        ("spec..x", 6, "empty key"),
        ("spec.", 6, "empty key"),
        (".spec", 1, "empty key"),
        ("a.[0]", 3, "empty key"),
        ("a[", 2, "unclosed '['"),
        ("a[0", 2, "unclosed '['"),
        ("a[*", 2, "unclosed '['"),
        ("a[0x]", 4, "unexpected 'x'; expected ']'"),
        ("a[name]", 7, "expected '=' in a [key=value] selector"),
        ("a[name", 2, "unclosed '['"),
        ("a[name=]", 8, "empty selector value"),
        ("a[name=web", 2, "unclosed '['"),
        ("a[=web]", 3, "empty selector key"),
        ('a["x', 3, 'unclosed "'),
        ('a["x\\', 3, 'unclosed "'),
        ("a]", 2, "unexpected ']'"),
        ("a b", 2, "unexpected ' '; expected '.' or '['"),
        ("]a", 1, "unexpected ']' in a key"),
        ('a."b"', 3, "unexpected '\"' in a key; quote the key"),
        ("/a~2", 3, "'~' must be followed by 0 or 1"),
        ("/ok/b~", 6, "'~' must be followed by 0 or 1"),
    ],
)
def test_bad_paths_name_the_column(text: str, column: int, reason: str) -> None:
    """A bad path raises PathError whose column points at the first mistake."""
    with pytest.raises(paths.PathError) as caught:
        paths.parse(text)
    assert caught.value.column == column
    assert reason in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_bad_path_message_has_a_caret_line() -> None:
    """The message quotes the path and puts a caret under the bad column."""
    with pytest.raises(paths.PathError) as caught:
        paths.parse("spec..x")
    assert str(caught.value) == 'bad path "spec..x" at column 6: empty key\n  spec..x\n       ^'


@pytest.mark.parametrize(
    ("path", "text"),
    [
        (Path((Key("a"), Key("b.c"))), 'a["b.c"]'),
        (Path((Key("a b"),)), '["a b"]'),
        (Path((Key("podSpec"), Key("x"))), '["podSpec"].x'),
        (Path((Key("a"), Select("n", "x y"))), 'a[n="x y"]'),
        (Path((Key("a"), Select("k.k", "v"))), 'a["k.k"=v]'),
        (Path((Select("0", "v"),)), '["0"=v]'),
        (Path((Key("a"), Key('q"\\'))), 'a["q\\"\\\\"]'),
        (Path((Key("a"), Key(""))), 'a[""]'),
    ],
)
def test_format_quotes_what_needs_it(path: Path, text: str) -> None:
    """Keys and selector parts that a bare word cannot carry are quoted."""
    assert paths.format(path) == text
    assert str(path) == text
    assert paths.parse(text) == path


_text = st.text(min_size=0, max_size=8)
_segment = st.one_of(
    st.builds(Key, _text),
    st.builds(Index, st.integers(min_value=0, max_value=10**6)),
    st.builds(Select, st.text(min_size=1, max_size=6), _text),
    st.just(Every()),
)


@st.composite
def _paths(draw: st.DrawFn) -> Path:
    if draw(st.booleans()):
        return Path(tuple(draw(st.lists(st.builds(Key, _text), min_size=1, max_size=5))), True)
    head = draw(st.one_of(_segment, st.just(PodSpec())))
    return Path((head, *draw(st.lists(_segment, max_size=5))))


@given(_paths())
def test_format_then_parse_round_trips(path: Path) -> None:
    """parse(format(p)) == p for any path, and format is a fixed point."""
    text = paths.format(path)
    assert paths.parse(text) == path
    assert paths.format(paths.parse(text)) == text


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("Pod", "spec.containers"),
        ("Deployment", "spec.template.spec.containers"),
        ("StatefulSet", "spec.template.spec.containers"),
        ("DaemonSet", "spec.template.spec.containers"),
        ("ReplicaSet", "spec.template.spec.containers"),
        ("Job", "spec.template.spec.containers"),
        ("CronJob", "spec.jobTemplate.spec.template.spec.containers"),
    ],
)
def test_pod_spec_expands_per_kind(kind: str, expected: str) -> None:
    """podSpec. means the pod spec of whatever workload kind the object is."""
    expanded = paths.expand_pod_spec(paths.parse("podSpec.containers"), kind)
    assert expanded is not None
    assert paths.format(expanded) == expected


def test_pod_spec_on_other_kinds() -> None:
    """A kind without a pod spec has none; a path without podSpec is unchanged."""
    assert paths.expand_pod_spec(paths.parse("podSpec.x"), "ConfigMap") is None
    plain = paths.parse("spec.x")
    assert paths.expand_pod_spec(plain, "ConfigMap") is plain
    assert paths.resolve({"kind": "ConfigMap", "data": {}}, "podSpec.containers") == ()
    assert paths.resolve([1, 2], "podSpec.containers") == ()


def test_resolve_present_value() -> None:
    """A plain path resolves to one present location with its pointer."""
    (match,) = paths.resolve(_deployment(), "spec.replicas")
    assert (match.path, match.pointer, match.value, match.present) == (
        "spec.replicas",
        "/spec/replicas",
        2,
        True,
    )


def test_resolve_selector_and_pod_spec() -> None:
    """A selector resolves to the concrete index and keeps the human form."""
    (match,) = paths.resolve(_deployment(), "podSpec.containers[name=side].image")
    assert match.path == "spec.template.spec.containers[name=side].image"
    assert match.pointer == "/spec/template/spec/containers/1/image"
    assert match.value == "envoy:1.30"


def test_resolve_every_labels_items_by_merge_key() -> None:
    """[*] yields one location per item, named by its merge key when it has one."""
    matches = paths.resolve(_deployment(), "podSpec.containers[*].image")
    assert [m.path for m in matches] == [
        "spec.template.spec.containers[name=web].image",
        "spec.template.spec.containers[name=side].image",
    ]
    assert [m.pointer for m in matches] == [
        "/spec/template/spec/containers/0/image",
        "/spec/template/spec/containers/1/image",
    ]
    (port,) = paths.resolve(_deployment(), "podSpec.containers[*].ports[*].containerPort")
    assert port.path == (
        "spec.template.spec.containers[name=web].ports[containerPort=80].containerPort"
    )


def test_resolve_every_falls_back_to_index() -> None:
    """Items without a (unique) merge key, or lists without one, are named by index."""
    obj = {"args": ["a", "b"], "env": [{"name": "X"}, {"name": "X"}, {"value": "v"}]}
    assert [m.path for m in paths.resolve(obj, "args[*]")] == ["args[0]", "args[1]"]
    assert [m.path for m in paths.resolve(obj, "env[*]")] == ["env[0]", "env[1]", "env[2]"]


def test_resolve_every_over_nothing_yields_nothing() -> None:
    """[*] over a missing, empty or non-list value has no locations."""
    objs: list[dict[str, Any]] = [{}, {"a": []}, {"a": "text"}]
    for obj in objs:
        assert paths.resolve(obj, "a[*].b") == ()


def test_resolve_selector_without_match_is_one_absent_location() -> None:
    """A selector that matches nothing gives one absent location, pointer '-'."""
    (match,) = paths.resolve(_deployment(), "podSpec.containers[name=gone].image")
    assert not match.present
    assert match.value is None
    assert match.pointer == "/spec/template/spec/containers/-/image"
    assert match.path == "spec.template.spec.containers[name=gone].image"


def test_resolve_selector_with_duplicates_names_each_by_index() -> None:
    """A selector matching several items yields each, by index."""
    obj = {"ports": [{"containerPort": 53, "protocol": "TCP"}, {"containerPort": 53}]}
    matches = paths.resolve(obj, "ports[containerPort=53].protocol")
    assert [(m.path, m.present) for m in matches] == [
        ("ports[0].protocol", True),
        ("ports[1].protocol", False),
    ]


@pytest.mark.parametrize(
    ("obj", "path"),
    [
        ({"a": {}}, "a.b"),
        ({"a": "text"}, "a.b"),
        ({"a": [1]}, "a[1]"),
        ({"a": {"0": 1}}, "a[0]"),
        ({"a": [1]}, "a.0"),
        ({"a": [1]}, "/a/1"),
        ({"a": [1]}, "/a/01"),
        ({"a": "text"}, "a[name=x]"),
    ],
)
def test_resolve_absent(obj: dict[str, Any], path: str) -> None:
    """Missing keys, short lists and wrong shapes resolve to absent, never raise."""
    (match,) = paths.resolve(obj, path)
    assert not match.present


def test_resolve_pointer_indexes_lists() -> None:
    """A JSON Pointer token indexes a list and a mapping alike."""
    (match,) = paths.resolve(_deployment(), "/spec/template/spec/containers/1/name")
    assert match.value == "side"
    assert match.path == "/spec/template/spec/containers/1/name"
    (label,) = paths.resolve(_deployment(), "/metadata/labels/app.kubernetes.io~1name")
    assert label.value == "web"
    assert label.pointer == "/metadata/labels/app.kubernetes.io~1name"


def test_selector_matches_numbers_and_booleans_by_text() -> None:
    """[containerPort=80] matches the integer 80; [on=true] matches True."""
    obj = {"l": [{"p": 80.0, "on": True}, {"p": 81, "on": False}]}
    assert paths.get(obj, "l[p=80].on") is True
    assert paths.get(obj, "l[on=false].p") == 81


def test_get_default() -> None:
    """get returns the first present value, or the default."""
    assert paths.get(_deployment(), "spec.replicas") == 2
    assert paths.get(_deployment(), "spec.missing", "dflt") == "dflt"


def test_set_value_is_pure_and_creates_parents() -> None:
    """set_value returns a new object with missing mappings created."""
    obj = _deployment()
    before = copy.deepcopy(obj)
    out = paths.set_value(obj, "podSpec.containers[name=web].resources.limits.memory", "1Gi")
    assert obj == before
    assert out["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "limits": {"memory": "1Gi"}
    }


def test_set_value_appends_item_for_selector_miss() -> None:
    """A selector that matches nothing appends an item carrying its key (typed)."""
    out = paths.set_value({}, "ports[containerPort=8080].name", "http")
    assert out == {"ports": [{"containerPort": 8080, "name": "http"}]}
    out = paths.set_value({"c": []}, "c[name=x]", {"image": "i"})
    assert out == {"c": [{"name": "x", "image": "i"}]}
    out = paths.set_value({"c": [{"name": "x", "image": "a"}]}, "c[name=x]", {"image": "i"})
    assert out == {"c": [{"name": "x", "image": "i"}]}


def test_set_value_every_and_index_and_pointer() -> None:
    """[*] writes every item, [i] one item, a pointer '-' appends."""
    obj = {"a": [{"x": 1}, {"x": 2}]}
    assert paths.set_value(obj, "a[*].x", 0) == {"a": [{"x": 0}, {"x": 0}]}
    assert paths.set_value(obj, "a[1].x", 9) == {"a": [{"x": 1}, {"x": 9}]}
    assert paths.set_value(obj, "/a/0/x", 5) == {"a": [{"x": 5}, {"x": 2}]}
    assert paths.set_value(obj, "/a/-", {"x": 3}) == {"a": [{"x": 1}, {"x": 2}, {"x": 3}]}
    assert paths.set_value({"a": []}, "a[*].x", 0) == {"a": []}


def test_set_value_every_over_missing_list_is_a_conflict() -> None:
    """[*] over a missing list cannot say which items to write: a conflict."""
    with pytest.raises(paths.PathConflict):
        paths.set_value({}, "a[*].x", 0)


@pytest.mark.parametrize(
    ("obj", "path", "reason"),
    [
        ({"a": "text"}, "a.b", "cannot set key 'b' inside a str"),
        ({"a": {}}, "a[0]", "cannot use [0] on a dict"),
        ({"a": [1]}, "a[2]", "index 2 is out of range for a list of 1"),
        ({"a": [1]}, "a[1]", "index 1 is out of range"),
        ({"a": [1]}, "/a/x", "'x' is not a list index"),
        ({"a": [1]}, "/a/3", "index 3 is out of range"),
        ({"kind": "Service"}, "podSpec.x", "a Service object has no pod spec"),
        ([], "podSpec.x", "a kindless object has no pod spec"),
        ({"c": []}, "c[name=x]", "the item at [name=x] must be a mapping"),
    ],
)
def test_set_value_conflicts(obj: Any, path: str, reason: str) -> None:
    """Writing through a scalar or past the end of a list raises PathConflict."""
    with pytest.raises(paths.PathConflict, match=re.escape(reason)) as caught:
        paths.set_value(obj, path, 1)
    assert caught.value.column is None


def test_set_value_at_a_selector_keeps_the_key() -> None:
    """A mapping written at [name=x] with another name contradicts the selector."""
    with pytest.raises(paths.PathConflict, match="'y' contradicts the selector"):
        paths.set_value({"c": []}, "c[name=x]", {"name": "y"})
    assert paths.set_value({}, "c[port=80]", {"port": 80.0}) == {"c": [{"port": 80.0}]}


def test_delete() -> None:
    """delete removes keys and list items by every selector form, purely."""
    obj = _deployment()
    before = copy.deepcopy(obj)
    out = paths.delete(obj, "podSpec.containers[name=side]")
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["web"]
    out = paths.delete(obj, "podSpec.containers[*].image")
    assert all("image" not in c for c in out["spec"]["template"]["spec"]["containers"])
    out = paths.delete(obj, "/spec/template/spec/containers/0/ports/0")
    assert out["spec"]["template"]["spec"]["containers"][0]["ports"] == []
    assert paths.delete(obj, "spec.template.spec.containers[1]")["spec"]["template"]["spec"][
        "containers"
    ] == [before["spec"]["template"]["spec"]["containers"][0]]
    assert obj == before


@pytest.mark.parametrize(
    "path", ["spec.missing", "spec.replicas.deeper", "metadata.labels[0]", "spec.x[*].y", "/s/0"]
)
def test_delete_absent_is_a_no_op(path: str) -> None:
    """Deleting what is not there returns an equal object."""
    assert paths.delete(_deployment(), path) == _deployment()


def test_delete_key_on_list_without_pointer_is_a_no_op() -> None:
    """A dotted key never indexes a list (only a JSON Pointer token does)."""
    assert paths.delete({"a": [1, 2]}, "a.0") == {"a": [1, 2]}


def test_to_pointer() -> None:
    """Concrete keys and indices render as an RFC 6901 pointer; other segments cannot."""
    assert paths.to_pointer(Path((Key("a/b"), Key("c~d"), Index(3)))) == "/a~1b/c~0d/3"
    assert paths.to_pointer([Key("x")]) == "/x"
    with pytest.raises(paths.PathError, match=r"\[\*\] has no JSON Pointer form"):
        paths.to_pointer(Path((Key("a"), Every())))


def test_path_error_without_column() -> None:
    """A PathError that is not about syntax names the path and no column."""
    error = paths.PathError("oops", text="a.b")
    assert str(error) == "bad path 'a.b': oops"
    assert str(paths.PathError("plain")) == "plain"


_json_leaf = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.booleans())
_json = st.recursive(
    _json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "name"]), children, max_size=3),
    ),
    max_leaves=10,
)
_writable_segment = st.one_of(
    st.builds(Key, st.sampled_from(["a", "b", "c.d"])),
    st.builds(Select, st.just("name"), st.sampled_from(["x", "y"])),
)


@given(
    st.dictionaries(st.sampled_from(["a", "b"]), _json, max_size=2),
    st.lists(_writable_segment, min_size=1, max_size=4),
    _json_leaf,
)
def test_set_then_get_then_delete(obj: dict[str, Any], segments: list[Any], value: Any) -> None:
    """What set_value writes, get reads back and delete removes; the input never changes."""
    path = Path((Key("root"), *segments))
    before = copy.deepcopy(obj)
    try:
        written = paths.set_value(obj, path, value)
    except paths.PathConflict:
        return
    assert obj == before
    assert paths.get(written, path) == value
    removed = paths.delete(written, path)
    assert all(not match.present for match in paths.resolve(removed, path))
