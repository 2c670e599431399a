"""btf.dedup: identical types collapse, forwards resolve, nothing that differs merges."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpf import btf
from ebpf.errors import BTFError
from tests.bpfbuild import compile_bpf


def _spec(*types: btf.Type) -> btf.Spec:
    b = btf.Builder()
    for t in types:
        b.add(t)
    return btf.Spec(b.marshal())


def _list_struct(name: str = "node") -> btf.Struct:
    """struct node { struct node *next; int v; } (a fresh copy of the objects)."""
    s = btf.Struct(name, 16, [])
    s.members.extend([btf.Member("next", btf.Pointer(s), 0),
                      btf.Member("v", btf.Int("int", 4, btf.IntEncoding.SIGNED), 64)])
    for m in s.members:
        m._owner = s
    return s


def _census(spec: btf.Spec) -> Counter[tuple[str, str]]:
    return Counter((type(t).__name__, t.name) for t in spec)


def test_identical_types_collapse_and_strings_are_stored_once() -> None:
    a = btf.Struct("pair", 8, [btf.Member("x", btf.Int("int", 4, btf.IntEncoding.SIGNED), 0),
                               btf.Member("y", btf.Int("int", 4, btf.IntEncoding.SIGNED), 32)])
    b = btf.Struct("pair", 8, [btf.Member("x", btf.Int("int", 4, btf.IntEncoding.SIGNED), 0),
                               btf.Member("y", btf.Int("int", 4, btf.IntEncoding.SIGNED), 32)])
    spec = _spec(a, b)
    assert _census(spec)[("Struct", "pair")] == 2
    out = btf.dedup(spec)
    assert _census(out) == Counter({("Void", ""): 1, ("Struct", "pair"): 1, ("Int", "int"): 1})
    raw = out.raw
    assert raw.count(b"\0pair\0") == 1 and raw.count(b"\0int\0") == 1


def test_recursive_structs_through_pointers_collapse() -> None:
    spec = _spec(_list_struct(), _list_struct())
    assert _census(spec)[("Struct", "node")] == 2
    out = btf.dedup(spec)
    node = out.type_by_name("node", btf.Struct)
    assert _census(out)[("Struct", "node")] == 1
    ptr = node.member("next").type
    assert isinstance(ptr, btf.Pointer) and ptr.type is node


def test_types_that_differ_are_kept_apart() -> None:
    a = btf.Struct("s", 8, [btf.Member("x", btf.Int("int", 4), 0)])
    b = btf.Struct("s", 8, [btf.Member("x", btf.Int("int", 4), 32)])  # other offset
    c = btf.Struct("s", 8, [btf.Member("x", btf.Int("long", 8), 0)])  # other member type
    d = btf.Struct("s", 8, [btf.Member("y", btf.Int("int", 4), 0)])  # other member name
    out = btf.dedup(_spec(a, b, c, d))
    assert _census(out)[("Struct", "s")] == 4


def test_cycles_of_different_length_are_kept_apart() -> None:
    # node -> node versus node -> other node -> ... : same as infinite trees, so equal.
    one = _list_struct()
    two_a = btf.Struct("node", 16, [])
    two_b = btf.Struct("node", 16, [])
    for s, nxt in ((two_a, two_b), (two_b, two_a)):
        s.members.extend([btf.Member("next", btf.Pointer(nxt), 0),
                          btf.Member("v", btf.Int("int", 4, btf.IntEncoding.SIGNED), 64)])
        for m in s.members:
            m._owner = s
    assert _census(btf.dedup(_spec(one, two_a)))[("Struct", "node")] == 1
    # ... but a cycle through a member of another type is different.
    other = btf.Struct("node", 16, [])
    other.members.extend([btf.Member("next", btf.Pointer(other), 0),
                          btf.Member("v", btf.Int("unsigned int", 4), 64)])
    for m in other.members:
        m._owner = other
    assert _census(btf.dedup(_spec(one, other)))[("Struct", "node")] == 2


def test_forward_resolves_to_its_only_definition() -> None:
    fwd = btf.Fwd("task")
    holder_fwd = btf.Struct("holder", 8, [btf.Member("t", btf.Pointer(fwd), 0)])
    task = btf.Struct("task", 4, [btf.Member("pid", btf.Int("int", 4), 0)])
    holder_full = btf.Struct("holder", 8, [btf.Member("t", btf.Pointer(task), 0)])
    out = btf.dedup(_spec(holder_fwd, holder_full))
    census = _census(out)
    assert census[("Fwd", "task")] == 0
    assert census[("Struct", "holder")] == 1  # the two holders became the same type
    assert out.type_by_name("holder", btf.Struct).member("t").type.type is (
        out.type_by_name("task", btf.Struct))


def test_forward_with_several_candidates_stays() -> None:
    fwd = btf.Fwd("task")
    a = btf.Struct("task", 4, [btf.Member("pid", btf.Int("int", 4), 0)])
    b = btf.Struct("task", 8, [btf.Member("pid", btf.Int("long", 8), 0)])
    out = btf.dedup(_spec(btf.Pointer(fwd), a, b))
    assert _census(out)[("Fwd", "task")] == 1
    assert _census(out)[("Struct", "task")] == 2


def test_union_forward_does_not_resolve_to_a_struct() -> None:
    fwd = btf.Fwd("u", union=True)
    s = btf.Struct("u", 4, [btf.Member("x", btf.Int("int", 4), 0)])
    out = btf.dedup(_spec(btf.Pointer(fwd), s))
    assert _census(out)[("Fwd", "u")] == 1


def _color(*values: tuple[str, int], size: int = 4) -> btf.Enum:
    return btf.Enum("color", size, [btf.EnumValue(n, v) for n, v in values])


def _enum_holder(color: btf.Type) -> btf.Struct:
    """struct holder { enum color *c; } (clang gives `enum color;` size 0, no values)."""
    return btf.Struct("holder", 8, [btf.Member("c", btf.Pointer(color), 0)])


def _enums(spec: btf.Spec) -> list[tuple[str, int, int]]:
    return sorted((t.name, t.size, len(t.values)) for t in spec if isinstance(t, btf.Enum))


def test_enum_forward_resolves_to_its_only_definition() -> None:
    full = _color(("RED", 0), ("GREEN", 5))
    out = btf.dedup(_spec(_enum_holder(_color(size=0)), _enum_holder(full), full))
    assert _enums(out) == [("color", 4, 2)]
    assert _census(out)[("Struct", "holder")] == 1
    assert out.type_by_name("holder", btf.Struct).member("c").type.type is (
        out.type_by_name("color", btf.Enum))


def test_enum_forward_resolves_to_an_enum64_definition() -> None:
    full = _color(("BIG", 1 << 40), size=8)
    out = btf.dedup(_spec(_enum_holder(_color(size=0)), full))
    assert _enums(out) == [("color", 8, 1)]


def test_lone_enum_forwards_stay_and_collapse() -> None:
    out = btf.dedup(_spec(_enum_holder(_color(size=0)), _enum_holder(_color(size=0))))
    assert _enums(out) == [("color", 0, 0)]
    assert _census(out)[("Struct", "holder")] == 1


def test_enum_forward_with_several_definitions_stays() -> None:
    a, b = _color(("RED", 0)), _color(("BLUE", 1))
    out = btf.dedup(_spec(_enum_holder(_color(size=0)), a, b))
    assert _enums(out) == [("color", 0, 0), ("color", 4, 1), ("color", 4, 1)]


def test_enum_forward_never_becomes_a_struct() -> None:
    s = btf.Struct("color", 4, [btf.Member("x", btf.Int("int", 4), 0)])
    out = btf.dedup(_spec(_enum_holder(_color(size=0)), s))
    assert _enums(out) == [("color", 0, 0)]
    assert _census(btf.dedup(_spec(btf.Pointer(btf.Fwd("color")), _color(("RED", 0))))
                   )[("Fwd", "color")] == 1


def test_variables_and_datasecs_are_never_merged() -> None:
    i = btf.Int("int", 4)
    v1, v2 = btf.Var("x", i, btf.Linkage.GLOBAL), btf.Var("x", i, btf.Linkage.GLOBAL)
    ds = btf.Datasec(".data", 8, [btf.VarSecinfo(v1, 0, 4), btf.VarSecinfo(v2, 4, 4)])
    out = btf.dedup(_spec(ds))
    assert _census(out)[("Var", "x")] == 2
    assert [v.offset for v in out.type_by_name(".data", btf.Datasec).vars] == [0, 4]


def test_split_btf_is_refused() -> None:
    base = _spec(btf.Int("int", 4))
    split = btf.Spec(btf.Builder().marshal(), base)
    with pytest.raises(BTFError, match="split BTF"):
        btf.dedup(split)


@pytest.mark.parametrize("name", ["loader_globals", "loader_maps", "core_fields", "btf_kinds"])
def test_same_type_count_as_bpftool(name: str, tmp_path: object) -> None:
    """`bpftool gen object OUT IN` deduplicates the BTF of its one input: same count."""
    import pathlib

    obj = compile_bpf(name)
    out = pathlib.Path(str(tmp_path)) / "one.o"
    subprocess.run(["bpftool", "gen", "object", str(out), str(obj)], check=True,
                   capture_output=True)
    ours = btf.dedup(btf.load_spec(str(obj)))
    theirs = btf.load_spec(str(out))
    assert len(ours) == len(theirs)
    assert _census(ours) == _census(theirs)


# -- properties -----------------------------------------------------------------------------

_NAMES = st.sampled_from(["a", "b", "c"])


@st.composite
def _graphs(draw: st.DrawFn) -> list[tuple[object, ...]]:
    """A description of a type graph: nodes referring to others by index."""
    n = draw(st.integers(1, 10))
    nodes: list[tuple[object, ...]] = []
    for i in range(n):
        kind = draw(st.sampled_from(["int", "struct", "ptr", "typedef", "fwd", "union",
                                     "enum"]))
        if kind == "enum":  # no values: a forward (`enum a;`)
            nodes.append(("enum", draw(_NAMES), draw(st.sampled_from([0, 1, 2]))))
        elif kind == "int":
            nodes.append(("int", draw(_NAMES), draw(st.sampled_from([1, 4, 8]))))
        elif kind in ("struct", "union"):
            members = draw(st.lists(st.tuples(_NAMES, st.integers(0, n - 1)), max_size=3,
                                    unique_by=lambda m: m[0]))
            nodes.append((kind, draw(_NAMES), tuple(members)))
        elif kind == "ptr":
            nodes.append(("ptr", draw(st.integers(0, n - 1))))
        elif kind == "typedef":
            nodes.append(("typedef", draw(_NAMES), draw(st.integers(0, i)) if i else -1))
        else:
            nodes.append(("fwd", draw(_NAMES), draw(st.booleans())))
    return nodes


def _build(nodes: Sequence[tuple[object, ...]]) -> list[btf.Type]:
    """Fresh type objects for a description. By-value members of composites are
    turned into pointers unless they point at an int (so sizes stay finite)."""
    types: list[btf.Type] = []
    for node in nodes:
        kind = node[0]
        if kind == "int":
            types.append(btf.Int(str(node[1]), int(node[2])))  # type: ignore[call-overload]
        elif kind in ("struct", "union"):
            cls = btf.Struct if kind == "struct" else btf.Union
            types.append(cls(str(node[1]), 0, []))
        elif kind == "ptr":
            types.append(btf.Pointer(btf.Void()))
        elif kind == "typedef":
            types.append(btf.Typedef(str(node[1]), btf.Void()))
        elif kind == "enum":
            count = int(node[2])  # type: ignore[call-overload]
            types.append(btf.Enum(str(node[1]), 4 if count else 0,
                                  [btf.EnumValue(f"V{j}", j) for j in range(count)]))
        else:
            types.append(btf.Fwd(str(node[1]), bool(node[2])))
    for node, t in zip(nodes, types, strict=True):
        if isinstance(t, btf.Composite):
            off = 0
            for mname, ref in node[2]:  # type: ignore[attr-defined]
                target = types[ref]
                mtype: btf.Type = target if isinstance(target, btf.Int) else btf.Pointer(target)
                m = btf.Member(mname, mtype, off * 8 if isinstance(t, btf.Struct) else 0)
                m._owner = t
                t.members.append(m)
                if isinstance(t, btf.Struct):
                    off += btf.sizeof(mtype)
            t.size = off if isinstance(t, btf.Struct) else max(
                (btf.sizeof(m.type) for m in t.members), default=0)
        elif isinstance(t, btf.Pointer):
            t.type = types[int(node[1])]  # type: ignore[call-overload]
        elif isinstance(t, btf.Typedef):
            ref = int(node[2])  # type: ignore[call-overload]
            t.type = types[ref] if ref >= 0 else btf.Int("int", 4)
    return types


def _layouts(spec: btf.Spec) -> set[tuple[object, ...]]:
    """The C layout of every named struct/union: kind, name, size, members by name."""
    out = set()
    for t in spec:
        if isinstance(t, btf.Composite):
            members = tuple((m.name, m.offset_bits, type(m.type).__name__,
                             btf.sizeof(m.type)) for m in t.members)
            out.add((type(t).__name__, t.name, t.size, members))
    return out


_SETTINGS = settings(max_examples=150, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(_graphs())
def test_dedup_is_idempotent(nodes: list[tuple[object, ...]]) -> None:
    once = btf.dedup(_spec(*_build(nodes)))
    assert btf.dedup(once).raw == once.raw


@_SETTINGS
@given(_graphs())
def test_dedup_keeps_every_named_type(nodes: list[tuple[object, ...]]) -> None:
    spec = _spec(*_build(nodes))
    out = btf.dedup(spec)
    before = {(type(t).__name__, t.name) for t in spec if t.name}
    after = {(type(t).__name__, t.name) for t in out if t.name}
    resolved = {("Fwd", t.name) for t in spec if isinstance(t, btf.Fwd)}
    assert before - resolved <= after
    for kind, name in before & resolved:
        # a forward that went away resolved to a definition of that name
        if (kind, name) not in after:
            assert ("Struct", name) in after or ("Union", name) in after


@_SETTINGS
@given(_graphs())
def test_dedup_never_changes_a_layout(nodes: list[tuple[object, ...]]) -> None:
    spec = _spec(*_build(nodes))
    out = btf.dedup(spec)
    assert _layouts(out) == _layouts(spec)


@_SETTINGS
@given(_graphs())
def test_two_copies_dedup_like_one(nodes: list[tuple[object, ...]]) -> None:
    one = btf.dedup(_spec(*_build(nodes)))
    two = btf.dedup(_spec(*_build(nodes), *_build(nodes)))
    assert len(two) == len(one)
    assert _census(two) == _census(one)
