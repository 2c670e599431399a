"""ebpf.linker.link: static linking, differential against `bpftool gen object`."""

from __future__ import annotations

import pathlib
import struct
import subprocess

import pytest
from bpfbuild import compile_bpf

import ebpf
from ebpf import btf
from ebpf.elf import ELFFile
from ebpf.errors import LinkError
from ebpf.linker import link

STV_HIDDEN = 2


@pytest.fixture(scope="module")
def objects() -> tuple[pathlib.Path, pathlib.Path]:
    return compile_bpf("linked_a"), compile_bpf("linked_b")


@pytest.fixture(scope="module")
def ours(objects: tuple[pathlib.Path, pathlib.Path]) -> bytes:
    return link(list(objects))


@pytest.fixture(scope="module")
def theirs(objects: tuple[pathlib.Path, pathlib.Path],
           tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("bpftool") / "linked.o"
    subprocess.run(["bpftool", "gen", "object", str(out), *map(str, objects)], check=True,
                   capture_output=True)
    return out.read_bytes()


def _run(blob: bytes) -> dict[str, object]:
    """Load, run every program once and report results and memory."""
    spec = ebpf.load_collection_spec(blob)
    with ebpf.Collection(spec) as coll:
        xdp_a = coll.programs["linked_xdp_a"].test_run(data=b"\0" * 64).retval
        xdp_b = coll.programs["linked_xdp_b"].test_run(data=b"\0" * 64).retval
        sock = coll.programs["linked_sock_b"].test_run(data=b"\0" * 64).retval
        shared = coll.maps["linked_shared"]
        return {"retvals": (xdp_a, xdp_b, sock),
                "shared": [shared[k] for k in range(4)],
                "a_bss": coll.variables["a_bss"].get(),
                "b_bss": coll.variables["b_bss"].get()}


def test_linked_programs_behave_like_bpftools(ours: bytes, theirs: bytes) -> None:
    got, want = _run(ours), _run(theirs)
    assert got == want
    # a_bss = b_global(5) + weak_func(7) + hidden_func(1) + static_func(5) + weak_var
    #         + a_only_weak + field_exists = 21 + 207 + 3 + 4 + 2 + 40 + 1: linked_b's
    # strong weak_var (2, not linked_a's weak copy, 1) and linked_a's own static_func
    # (x - 1, not linked_b's x - 2 of the same name), as libbpf runs it (278 = 0x116 in
    # .bss after loading bpftool's output with libbpf 1.5 and running linked_xdp_a).
    assert got["a_bss"] == 278
    # b_bss = hidden_func(9) + static_func(9) + sizeof(struct xdp_md) + b_static
    #       = 27 + 7 + 24 + 13
    assert got["b_bss"] == 71
    assert got["shared"] == [1, 71, 0, 0]
    assert got["retvals"] == (2, 2, (64 - 14) * 2 + 11)  # skb->len without the Ethernet header


def test_specs_agree_with_bpftools(ours: bytes, theirs: bytes) -> None:
    a, b = ebpf.load_collection_spec(ours), ebpf.load_collection_spec(theirs)
    assert {n: (p.section, len(p.instructions)) for n, p in a.programs.items()} == {
        n: (p.section, len(p.instructions)) for n, p in b.programs.items()}
    assert sorted(a.maps) == sorted(b.maps)
    assert sorted(a.variables) == sorted(b.variables)
    for name, var in a.variables.items():
        assert var.get() == b.variables[name].get(), name


def _core(blob: bytes) -> list[tuple[str, int, str, str]]:
    spec = ebpf.load_collection_spec(blob)
    out = []
    for name, prog in spec.programs.items():
        for i, ins in enumerate(prog.instructions):
            relo = ins.meta.get("core") if ins.meta else None
            if relo is not None:
                out.append((name, i, relo.kind.name, relo.access))
    return sorted(out)


def test_core_relocations_of_both_files_survive(ours: bytes, theirs: bytes) -> None:
    relos = _core(ours)
    assert {r[0] for r in relos} >= {"linked_xdp_a", "linked_xdp_b"}
    assert relos == _core(theirs)


def _symbols(blob: bytes) -> dict[str, object]:
    elf = ELFFile(blob)
    return {s.name: s for s in elf.symbols() if s.name and s.bind != 0}


def test_cross_file_call_resolves_to_the_definition(ours: bytes) -> None:
    sym = _symbols(ours)["b_global"]
    assert sym.section_index != 0  # type: ignore[attr-defined]


def test_weak_function_yields_to_strong(ours: bytes, objects: tuple[pathlib.Path, ...]) -> None:
    # linked_a.c's .text comes first: the strong weak_func (linked_b.c's) lies after it.
    a_text = ELFFile(objects[0]).section_by_name(".text")
    assert a_text is not None
    sym = _symbols(ours)["weak_func"]
    assert sym.bind == 1 and sym.value >= a_text.size  # type: ignore[attr-defined]


def test_weak_variable_yields_to_strong_and_lone_weak_stays(ours: bytes) -> None:
    spec = ebpf.load_collection_spec(ours)
    assert spec.variables["weak_var"].get() == 2
    assert spec.variables["a_only_weak"].get() == 40
    assert _symbols(ours)["a_only_weak"].bind == 2  # type: ignore[attr-defined]


def test_hidden_function_links_across_files_and_stays_hidden(ours: bytes) -> None:
    sym = _symbols(ours)["hidden_func"]
    assert sym.visibility == STV_HIDDEN and sym.section_index != 0  # type: ignore[attr-defined]


def test_extern_map_resolves_to_the_defining_files_map(ours: bytes) -> None:
    spec = ebpf.load_collection_spec(ours)
    assert [m for m in spec.maps if not m.startswith(".")] == ["linked_shared"]
    assert spec.maps["linked_shared"].max_entries == 4
    maps = btf.load_spec(ours).type_by_name(".maps", btf.Datasec)
    assert [v.type.name for v in maps.vars] == ["linked_shared"]


def test_data_sections_merge(ours: bytes) -> None:
    spec = ebpf.load_collection_spec(ours)
    values = {n: spec.variables[n].get() for n in ("a_data", "b_data", "a_rodata", "b_rodata")}
    assert values == {"a_data": 5, "b_data": 9, "a_rodata": 7, "b_rodata": 11}
    data = btf.load_spec(ours).type_by_name(".data", btf.Datasec)
    elf = ELFFile(ours)
    data_idx = elf.section_by_name(".data").index  # type: ignore[union-attr]
    at = {s.name: s.value for s in elf.symbols() if s.section_index == data_idx and s.name}
    assert {v.type.name: v.offset for v in data.vars} == at
    assert set(at) == {"a_data", "weak_var", "a_only_weak", "b_data", "b_static"}


def test_static_functions_of_the_same_name_stay_apart(ours: bytes) -> None:
    elf = ELFFile(ours)
    statics = [s for s in elf.symbols() if s.name == "static_func"]
    assert len(statics) == 2 and statics[0].value != statics[1].value


def test_btf_is_deduplicated(ours: bytes, theirs: bytes) -> None:
    spec = btf.load_spec(ours)
    assert len(spec.types_by_name("xdp_md")) == 1
    assert len(spec) == len(btf.load_spec(theirs))


def test_layout_and_symbols_are_bpftools(ours: bytes, theirs: bytes) -> None:
    """Every section the same size (inputs at the same offsets), every named symbol at
    the same place with the same binding and visibility."""
    def shape(blob: bytes) -> tuple[dict[str, int], list[tuple[object, ...]]]:
        elf = ELFFile(blob)
        sections = {sec.name: sec.size for sec in elf.sections if sec.name and sec.flags & 2}
        symbols = sorted((sym.name, sym.value, elf.section(sym.section_index).name
                          if 0 < sym.section_index < len(elf.sections) else sym.section_index,
                          sym.bind, sym.visibility)
                         for sym in elf.symbols() if sym.name and sym.type != 4)
        return sections, symbols

    assert shape(ours) == shape(theirs)


def test_license_is_kept_once(ours: bytes) -> None:
    sec = ELFFile(ours).section_by_name("license")
    assert sec is not None and bytes(sec.data()) == b"GPL\0"


def test_linking_a_linked_object_again(ours: bytes, objects: tuple[pathlib.Path, ...]) -> None:
    again = link([ours])
    assert _run(again) == _run(ours)


def _bad(flag: str) -> pathlib.Path:
    return compile_bpf("linked_bad", extra_flags=[f"-D{flag}"])


def _bpftool_refuses(paths: list[pathlib.Path], tmp_path: pathlib.Path) -> None:
    r = subprocess.run(["bpftool", "gen", "object", str(tmp_path / "x.o"), *map(str, paths)],
                       capture_output=True)
    assert r.returncode != 0


@pytest.mark.parametrize(("flag", "message"), [
    ("DUP_STRONG", r"symbol 'b_global' is defined in both '.*linked_b-.*' and '.*linked_bad-"),
    ("BAD_FUNC", r"function 'b_global' takes 1 parameters in '.*linked_b-.*' but 2 in "
                 r"'.*linked_bad-"),
    ("BAD_VAR", r"variable 'b_data' is int 'int' of 4 bytes in '.*linked_b-.*' but int 'long' "
                r"of 8 bytes in '.*linked_bad-"),
    ("BAD_MAP", r"incompatible definitions of map 'linked_shared': max_entries is 4 in "
                r"'.*linked_a-.*' but 8 in '.*linked_bad-"),
    ("BAD_LICENSE", r"section 'license' differs between '.*linked_a-.*' \(b'GPL\\x00'\) and "
                    r"'.*linked_bad-"),
    ("FUNC_VS_VAR", r"symbol 'b_global' is a function in '.*linked_b-.*' but a variable in "
                    r"'.*linked_bad-"),
])
def test_link_errors_name_files_and_symbol(objects: tuple[pathlib.Path, pathlib.Path], flag: str,
                                           message: str, tmp_path: pathlib.Path) -> None:
    paths = [*objects, _bad(flag)]
    _bpftool_refuses(paths, tmp_path)
    with pytest.raises(LinkError, match=message):
        link(paths)


def test_non_bpf_input_is_refused(objects: tuple[pathlib.Path, pathlib.Path]) -> None:
    native = compile_bpf("linked_bad", target="x86_64-linux-gnu", extra_flags=["-DBAD_LICENSE"])
    with pytest.raises(LinkError, match=r"'.*linked_bad-.*' is not a BPF object"):
        link([objects[0], native])


def test_big_endian_input_is_refused(objects: tuple[pathlib.Path, pathlib.Path]) -> None:
    be = compile_bpf("linked_bad", target="bpfeb", extra_flags=["-DBAD_LICENSE"])
    with pytest.raises(LinkError, match=r"'.*linked_bad-.*' is a big-endian object"):
        link([objects[0], be])


def test_bytes_inputs_are_named_by_position(objects: tuple[pathlib.Path, pathlib.Path]) -> None:
    data = [p.read_bytes() for p in objects] + [_bad("DUP_STRONG").read_bytes()]
    with pytest.raises(LinkError, match=r"defined in both '<object #1>' and '<object #2>'"):
        link(data)


def test_not_an_elf_is_a_link_error() -> None:
    with pytest.raises(LinkError, match=r"'<object #0>': not an ELF file"):
        link([b"hello world" * 10])


def test_relocation_addend_of_merged_data_is_moved(ours: bytes) -> None:
    """b's .data lands after a's: the ld_imm64 of b's static variable, made through
    the .data section symbol, carries the variable's new offset in its immediate."""
    elf = ELFFile(ours)
    xdp = elf.section_by_name("xdp")
    assert xdp is not None
    code = bytes(xdp.data())
    syms = list(elf.symbols())
    data_idx = elf.section_by_name(".data").index  # type: ignore[union-attr]
    imms = [struct.unpack_from("<i", code, r.offset + 4)[0] for r in elf.relocations(xdp)
            if syms[r.symbol].type == 3 and syms[r.symbol].section_index == data_idx]
    (b_static,) = [s.value for s in syms if s.name == "b_static"]
    assert b_static >= 8 and b_static in imms  # after a's .data


def test_gen_object_writes_the_linked_object(objects: tuple[pathlib.Path, pathlib.Path],
                                             ours: bytes, tmp_path: pathlib.Path) -> None:
    from ebpf.linker.command import is_link_command, write_object

    out = tmp_path / "out.o"
    words = ["object", str(out), *map(str, objects)]
    assert is_link_command(words) and not is_link_command(list(map(str, objects)))
    write_object(str(out), words[2:])
    assert out.read_bytes() == ours
    assert [p.name for p in tmp_path.iterdir()] == ["out.o"]


def test_gen_of_several_objects_links_them_first(
        objects: tuple[pathlib.Path, pathlib.Path]) -> None:
    from ebpf.linker.command import generate_linked

    source = generate_linked(list(map(str, objects)), name="Linked", embed=True)
    namespace: dict[str, object] = {}
    exec(compile(source, "linked_gen.py", "exec"), namespace)
    spec = namespace["LinkedSpec"]().spec  # type: ignore[operator]
    assert set(spec.programs) == {"linked_xdp_a", "linked_xdp_b", "linked_sock_b"}


def test_cli_links_objects_and_generates_python_for_several(
        objects: tuple[pathlib.Path, pathlib.Path], ours: bytes, tmp_path: pathlib.Path) -> None:
    import sys

    out = tmp_path / "linked.o"
    subprocess.run([sys.executable, "-m", "ebpf", "gen", "object", str(out),
                    *map(str, objects)], check=True, capture_output=True)
    assert out.read_bytes() == ours
    py = tmp_path / "linked_bpf.py"
    subprocess.run([sys.executable, "-m", "ebpf", "gen", *map(str, objects), "-o", str(py),
                    "--name", "Linked"], check=True, capture_output=True)
    text = py.read_text()
    assert "class Linked" in text
    spec = ebpf.load_collection_spec(ours)
    assert all(f'"{name}"' in text for name in spec.programs)


def _int(name: str, size: int, signed: bool = True) -> btf.Int:
    return btf.Int(name, size, btf.IntEncoding.SIGNED if signed else btf.IntEncoding(0))


def _pair(a: btf.Type, b: btf.Type) -> tuple[list[object], int, int]:
    from ebpf.btf.records import parse_records

    builder = btf.Builder()
    ia, ib = builder.add(a), builder.add(b)
    return parse_records(builder.marshal())[0], ia, ib  # type: ignore[return-value]


def _struct(name: str, *members: tuple[str, btf.Type, int]) -> btf.Struct:
    return btf.Struct(name, 16, [btf.Member(n, t, off) for n, t, off in members])


@pytest.mark.parametrize(("a", "b", "match"), [
    # modifiers and typedefs do not count, ints match by size
    (btf.Const(btf.Volatile(_int("int", 4))), btf.Typedef("__u32", _int("unsigned int", 4,
                                                                            False)), True),
    (_int("int", 4), _int("long", 8), False),
    # behind a pointer a struct is its name; a forward matches it
    (btf.Pointer(_struct("s", ("a", _int("int", 4), 0))), btf.Pointer(btf.Fwd("s")), True),
    (btf.Pointer(_struct("s", ("a", _int("int", 4), 0))),
     btf.Pointer(_struct("s", ("b", _int("long", 8), 0))), True),
    (btf.Pointer(_struct("s")), btf.Pointer(_struct("t")), False),
    # by value: same members at the same offsets
    (_struct("s", ("a", _int("int", 4), 0)), _struct("s", ("a", _int("int", 4), 32)), False),
    (_struct("s", ("a", _int("int", 4), 0)), _struct("s", ("b", _int("int", 4), 0)), False),
    (_struct("s", ("a", _int("int", 4), 0)), btf.Fwd("s"), False),
    # arrays by element, not length; enums by name and size
    (btf.Array(_int("int", 4), 4), btf.Array(_int("int", 4), 8), True),
    (btf.Enum("e", 4, [btf.EnumValue("A", 1)]), btf.Enum("e", 4, [btf.EnumValue("B", 2)]),
     True),
    (btf.Enum("e", 4), btf.Enum("f", 4), False),
])
def test_extern_type_rules(a: btf.Type, b: btf.Type, match: bool) -> None:
    """The rules `bpftool gen object` applies between an extern and its definition."""
    from ebpf.linker.typematch import types_match

    records, ia, ib = _pair(a, b)
    assert types_match(records, ia, ib) is match  # type: ignore[arg-type]
    assert types_match(records, ib, ia) is match  # type: ignore[arg-type]
