"""btf.dump_c: the C header of the kernel's BTF compiles with clang -target bpf,
its struct layouts are the kernel's, and it matches bpftool's output."""

from __future__ import annotations

import collections
import os
import re
import struct
import subprocess
from pathlib import Path

import pytest
from bpfbuild import compile_bpf, standalone_sources
from conftest import need_tool
from vmlinux import vmlinux_include_dir

from ebpf import btf
from ebpf.btf.builder import Builder
from ebpf.btf.kernel import VMLINUX
from ebpf.btf.spec import Spec
from ebpf.errors import BTFError

CLANG = "clang-19"
needs_vmlinux = pytest.mark.skipif(not os.path.exists(VMLINUX), reason=f"{VMLINUX} is missing")

LAYOUT_STRUCTS = ["task_struct", "sk_buff", "sock", "file", "inode", "bpf_prog", "net_device",
                  "iphdr", "tcphdr", "pt_regs", "xdp_buff", "mm_struct", "cred", "bpf_map"]


def compile_c(source: str, tmp: Path, name: str = "prog") -> Path:
    src = tmp / f"{name}.c"
    src.write_text(source)
    obj = tmp / f"{name}.o"
    proc = subprocess.run([CLANG, "-O2", "-g", "-target", "bpf", "-c", str(src), "-o", str(obj),
                           f"-I{tmp}"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return obj


def definition(header: str, kind: str, name: str) -> str:
    m = re.search(rf"^{kind} {re.escape(name)} {{\n.*?^}}[^;\n]*;", header, re.M | re.S)
    assert m is not None, f"{kind} {name} not in header"
    return m.group(0)


@pytest.fixture(scope="module")
def kernel_header(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    if not os.path.exists(VMLINUX):
        pytest.skip(f"{VMLINUX} is missing")
    text = btf.dump_c(btf.load_kernel_spec())
    d = tmp_path_factory.mktemp("vmlinux")
    (d / "vmlinux.h").write_text(text)
    return d, text


@needs_vmlinux
def test_kernel_header_compiles_with_kernel_layouts(kernel_header: tuple[Path, str]) -> None:
    need_tool(CLANG)
    d, _ = kernel_header
    kernel = btf.load_kernel_spec()
    asserts = []
    for name in LAYOUT_STRUCTS:
        (t,) = [t for t in kernel.types_by_name(name) if isinstance(t, btf.Struct)]
        asserts.append(f"_Static_assert(sizeof(struct {name}) == {t.size}, \"size {name}\");")
        for m in t.members:
            if m.name and not m.bitfield_size:
                asserts.append(f"_Static_assert(__builtin_offsetof(struct {name}, {m.name}) == "
                               f"{m.offset_bits // 8}, \"{name}.{m.name}\");")
    source = "#include \"vmlinux.h\"\n" + "\n".join(asserts) + """
char LICENSE[] __attribute__((section("license"), used)) = "GPL";
__attribute__((section("tp/sched/sched_process_exec"), used))
int handle(void *ctx) { return sizeof(struct task_struct) > 0; }
"""
    obj = compile_c(source, d)
    spec = btf.load_spec(str(obj))
    assert spec.types_by_name("handle")


def bpftool_dump(path: str) -> str:
    return subprocess.run(["bpftool", "btf", "dump", "file", path, "format", "c"],
                          capture_output=True, text=True, check=True).stdout


# -- comparing two headers as text ------------------------------------------------------

_PADDING_LINE = re.compile(r"^\t+(?:char|short|int|long): \d+;\n", re.M)
_MODE_ATTR = re.compile(r" __attribute__\(\(mode\(\w+\)\)\)")
_FORWARD = re.compile(r"(?:struct|union|enum) \w+")


def declarations(header: str) -> collections.Counter[str]:
    """The top-level declarations of a dumped header, each normalized for what
    may legitimately differ between two printers: the unnamed bitfields that fill
    gaps (each printer picks its own), enum mode attributes (bpftool 7.1 leaves
    some out), `void * (*f)` spacing and `{\n}` for empty records. Forward
    declarations are left out."""
    body = header.split("#endif\n\n", 1)[1].rsplit("#ifndef BPF_NO_PRESERVE_ACCESS_INDEX", 1)[0]
    out: collections.Counter[str] = collections.Counter()
    for decl in body.split(";\n\n"):
        decl = decl.strip()
        if not decl or _FORWARD.fullmatch(decl):
            continue
        decl = _MODE_ATTR.sub("", _PADDING_LINE.sub("", decl + "\n"))
        out[decl.replace("* (", "*(").replace("{\n}", "{}")] += 1
    return out


@needs_vmlinux
def test_kernel_header_matches_bpftool(kernel_header: tuple[Path, str]) -> None:
    """Every declaration bpftool prints, we print too, word for word (up to the
    normalization of `declarations`), in an order of our own. The differences
    are deliberate: va_list keeps the kernel's layout, and base types whose BTF
    name is not C (`ssizetype`) get a typedef."""
    need_tool("bpftool")
    _, ours_text = kernel_header
    theirs = declarations(bpftool_dump(VMLINUX))
    ours = declarations(ours_text.replace("__builtin_va_list___2", "__builtin_va_list"))
    kernel = btf.load_kernel_spec()
    aliased = {t.name for t in kernel if isinstance(t, btf.Int) and " " not in t.name
               and t.name not in ("char", "int", "long", "short", "_Bool", "__int128")}
    ours_only = ours - theirs
    theirs_only = theirs - ours
    assert sum(ours.values()) > 10000
    for decl in ours_only:
        name = decl.rsplit(" ", 1)[-1].strip()
        assert (decl.startswith("typedef struct __va_list_tag __builtin_va_list[1]")
                or decl == "typedef __builtin_va_list va_list\n"
                or (decl.startswith("typedef ") and name in aliased)), decl
    assert list(theirs_only) in ([], ["typedef __builtin_va_list va_list\n"]), theirs_only


# -- comparing layouts as clang computes them ---------------------------------------------

_SUFFIX = re.compile(r"___\d+$")
_RECORD_DEF = re.compile(r"^(struct|union) (\w+) \{", re.M)
_TYPEDEF_OF_ANON = re.compile(r"^\}(?: __attribute__\(\([\w()]+\)\))? (\w+);$", re.M)
# (kind, size in bytes, members as (name, bit offset, bitfield size, layout of an
# anonymous record member or None))
Layout = tuple[str, int, tuple[tuple[str, int, int, object], ...]]
Layouts = dict[str, list[Layout]]


def btf_layout(t: btf.Composite) -> Layout:
    members = []
    for m in t.members:
        inner = btf.strip_qualifiers(m.type)
        sub = btf_layout(inner) if isinstance(inner, btf.Composite) and not inner.name else None
        members.append((m.name, m.offset_bits, m.bitfield_size, sub))
    return (type(t).__name__, t.size, tuple(members))


def btf_layouts(spec: Spec) -> Layouts:
    """Layouts of the named structs/unions and of the typedefs of anonymous ones,
    by name without `___N` (several types may share a name)."""
    out: dict[str, list[Layout]] = collections.defaultdict(list)
    for t in spec:
        if isinstance(t, btf.Composite) and t.name:
            out[_SUFFIX.sub("", t.name)].append(btf_layout(t))
        elif isinstance(t, btf.Typedef):
            inner = btf.strip_qualifiers(t.type)
            if isinstance(inner, btf.Composite) and not inner.name:
                out["typedef " + _SUFFIX.sub("", t.name)].append(btf_layout(inner))
    return {k: sorted(v, key=repr) for k, v in out.items()}


_DI_NODE = re.compile(r"^!(\d+) = (?:distinct )?!(\w+)\((.*)\)$", re.M)
_DI_TUPLE = re.compile(r"^!(\d+) = !\{(.*)\}$", re.M)
_DI_FIELD = re.compile(r'(\w+): ("(?:[^"\\]|\\.)*"|[^,]+)')
_DI_QUALIFIERS = {"DW_TAG_const_type", "DW_TAG_volatile_type", "DW_TAG_restrict_type",
                  "DW_TAG_atomic_type"}
_DI_RECORDS = {"DW_TAG_structure_type": "Struct", "DW_TAG_union_type": "Union"}


def clang_layouts(header: str, tmp: Path) -> Layouts:
    """Compile `header` with clang -target bpf and return the layouts clang gives
    every record it defines, read from the debug metadata of the LLVM IR (clang's
    own record layout; generating BTF for ~10k structs takes LLVM minutes)."""
    tmp.mkdir(exist_ok=True)
    (tmp / "dump.h").write_text(header)
    names = [f"{kw} {name}" for kw, name in _RECORD_DEF.findall(header)]
    names += _TYPEDEF_OF_ANON.findall(header)
    refs = "".join(f"{name} *ref{i};\n" for i, name in enumerate(names))
    (tmp / "refs.c").write_text(f'#include "dump.h"\n{refs}')
    proc = subprocess.run([CLANG, "-target", "bpf", "-g", "-S", "-emit-llvm", "-o", "-",
                           str(tmp / "refs.c")], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return di_layouts(proc.stdout)


def di_layouts(ir: str) -> Layouts:
    nodes = {m.group(1): (m.group(2), dict(_DI_FIELD.findall(m.group(3))))
             for m in _DI_NODE.finditer(ir)}
    tuples = {m.group(1): [x.strip()[1:] for x in m.group(2).split(",") if x.strip()]
              for m in _DI_TUPLE.finditer(ir)}

    def unqualified(ref: str) -> dict[str, str]:
        node = nodes.get(ref, ("", {}))[1]
        while node.get("tag") in _DI_QUALIFIERS:
            node = nodes.get(node.get("baseType", "null")[1:], ("", {}))[1]
        return node

    def anonymous_record(node: dict[str, str]) -> bool:
        return node.get("tag") in _DI_RECORDS and "name" not in node

    def layout(node: dict[str, str]) -> Layout:
        members = []
        for ref in tuples.get(node.get("elements", "!")[1:], []):
            m = nodes[ref][1]
            bits = int(m.get("size", "0")) if "DIFlagBitField" in m.get("flags", "") else 0
            inner = unqualified(m.get("baseType", "null")[1:])
            sub = layout(inner) if anonymous_record(inner) else None
            members.append((m.get("name", '""')[1:-1], int(m.get("offset", "0")), bits, sub))
        return (_DI_RECORDS[node["tag"]], int(node.get("size", "0")) // 8, tuple(members))

    out: dict[str, list[Layout]] = collections.defaultdict(list)
    for kind, node in nodes.values():
        tag = node.get("tag")
        if kind == "DICompositeType" and tag in _DI_RECORDS and "name" in node \
                and "DIFlagFwdDecl" not in node.get("flags", ""):
            out[_SUFFIX.sub("", node["name"][1:-1])].append(layout(node))
        elif kind == "DIDerivedType" and tag == "DW_TAG_typedef":
            inner = unqualified(node.get("baseType", "null")[1:])
            if anonymous_record(inner):
                out["typedef " + _SUFFIX.sub("", node["name"][1:-1])].append(layout(inner))
    return {k: sorted(v, key=repr) for k, v in out.items()}


def differing(a: Layouts, b: Layouts) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


@needs_vmlinux
def test_kernel_layouts_differential(kernel_header: tuple[Path, str], tmp_path: Path) -> None:
    """Differential test: every struct and union of the kernel (and every typedef of
    an anonymous one), compiled from our header, has the kernel's size and member
    offsets (bitfields and anonymous members included); bpftool's header, compiled
    the same way, agrees wherever bpftool gets the kernel's layout itself."""
    need_tool(CLANG)
    need_tool("bpftool")
    _, ours_text = kernel_header
    kernel = btf_layouts(btf.load_kernel_spec())
    ours = clang_layouts(ours_text, tmp_path / "ours")
    theirs = clang_layouts(bpftool_dump(VMLINUX), tmp_path / "bpftool")
    assert len(kernel) > 9000
    assert differing(ours, kernel) == []
    # bpftool 7.1 loses a few (an enum without its mode(byte), va_list's size)
    theirs_wrong = differing(theirs, kernel)
    assert len(theirs_wrong) < len(kernel) // 100, theirs_wrong
    assert set(differing(ours, theirs)) <= set(theirs_wrong)


def object_names() -> list[str]:
    return [p.stem for p in standalone_sources()]


@pytest.mark.parametrize("name", object_names())
def test_object_layouts_differential(name: str, tmp_path: Path) -> None:
    """The same differential test for the BTF of every test object."""
    need_tool(CLANG)
    obj = compile_bpf(name, extra_flags=[f"-I{vmlinux_include_dir()}"])
    spec = btf.load_spec(str(obj))
    expected = btf_layouts(spec)
    ours = clang_layouts(btf.dump_c(spec), tmp_path / "ours")
    assert differing(ours, expected) == []
    need_tool("bpftool")
    theirs = clang_layouts(bpftool_dump(str(obj)), tmp_path / "bpftool")
    assert set(differing(ours, theirs)) <= set(differing(theirs, expected))


def test_clang_object_round_trip(tmp_path: Path) -> None:
    """Dump clang's BTF, compile the header, and get the same layouts back."""
    need_tool(CLANG)
    spec = btf.load_spec(str(compile_bpf("btf_kinds")))
    (tmp_path / "kinds.h").write_text(btf.dump_c(spec))
    obj = compile_c("""#include "kinds.h"
struct kinds k;
struct bits b;
int f(struct kinds *p, struct inner *i, struct packed *q, struct aligned *a)
{ return p->small + i->x + q->i + a->i + k.vol; }
""", tmp_path)
    back = btf.load_spec(str(obj))
    for name in ("kinds", "bits", "inner", "packed", "aligned"):
        a = spec.type_by_name(name, btf.Struct)
        b = back.type_by_name(name, btf.Struct)
        assert a.size == b.size, name
        assert [(m.name, m.offset_bits, m.bitfield_size) for m in a.members] == [
            (m.name, m.offset_bits, m.bitfield_size) for m in b.members], name


def test_small_dump_text() -> None:
    u32 = btf.Int("unsigned int", 4)
    node = btf.Struct("node", 16, [])
    node.members.append(btf.Member("next", btf.Pointer(node), 0))
    node.members.append(btf.Member("val", btf.Typedef("u32", u32), 64))
    fn = btf.Pointer(btf.FuncProto(btf.Int("int", 4, btf.IntEncoding.SIGNED),
                                   [btf.FuncParam("n", node), btf.FuncParam("", btf.Void())]))
    holder = btf.Struct("holder", 8, [btf.Member("cb", fn, 0)])
    arr = btf.Typedef("grid_t", btf.Array(btf.Array(btf.Const(u32), 4), 2))
    b = Builder()
    for t in (holder, arr):
        b.add(t)
    text = btf.dump_c(Spec(b.marshal()), header=False)
    # (the tail padding is implied by the alignment of `next`)
    assert "struct node {\n\tstruct node *next;\n\tu32 val;\n};" in text
    assert "typedef unsigned int u32;" in text
    assert text.startswith("struct node;\n\nstruct holder {\n\tint (*cb)(struct node n, ...);")
    assert "typedef const unsigned int grid_t[2][4];" in text
    assert text.index("typedef unsigned int u32;") < text.index("struct node {")


def test_mutually_referencing_structs_compile(tmp_path: Path) -> None:
    need_tool(CLANG)
    a = btf.Struct("a", 16, [])
    b_ = btf.Struct("b", 16, [])
    a.members.extend([btf.Member("b", btf.Pointer(b_), 0),
                      btf.Member("x", btf.Int("long", 8, btf.IntEncoding.SIGNED), 64)])
    b_.members.extend([btf.Member("a", a, 0)])  # embeds a: a must come first
    anon = btf.Struct("", 8, [btf.Member("p", btf.Pointer(b_), 0)])
    c = btf.Struct("c", 8, [btf.Member("", anon, 0)])
    builder = Builder()
    builder.add(c)
    builder.add(b_)
    (tmp_path / "t.h").write_text(btf.dump_c(Spec(builder.marshal())))
    compile_c('#include "t.h"\nstruct c cc; struct b bb;\nint f(void) { return 0; }\n', tmp_path)


def test_a_prototype_seen_again_declares_the_tag_it_left_out(tmp_path: Path) -> None:
    # typedef void (*fn_t)(struct outer *);  struct outer { fn_t f; };
    # The prototype is first walked for `f` while outer is being defined (its tag
    # needs no declaration there: the definition comes next), then again for the
    # typedef, written before outer: there `struct outer;` must come first (a
    # prototype's walk is only skipped when a first walk left nothing out).
    need_tool(CLANG)
    outer = btf.Struct("outer", 8, [])
    fn_t = btf.Typedef("fn_t", btf.Pointer(btf.FuncProto(
        btf.Void(), [btf.FuncParam("o", btf.Pointer(outer))])))
    outer.members.append(btf.Member("f", fn_t, 0))
    builder = Builder()
    builder.add(outer)
    text = btf.dump_c(Spec(builder.marshal()))
    assert text.index("struct outer;") < text.index("typedef void (*fn_t)") < \
        text.index("struct outer {")
    (tmp_path / "t.h").write_text(text)
    compile_c('#include "t.h"\nstruct outer o;\nint f(void) { return 0; }\n', tmp_path)


def test_cycles_and_depth_raise_btf_error() -> None:
    # typedef a b; typedef b a;  and  const -> const cycle
    words = [1, 0x08000000, 2, 3, 0x08000000, 1, 0, 0x0A000000, 4, 0, 0x0A000000, 3,
             5, 0x04000001, 8, 7, 3, 0]
    strings = b"\0a\0b\0s\0m\0"
    types = struct.pack(f"<{len(words)}I", *words)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    spec = Spec(hdr + types + strings)
    with pytest.raises(BTFError):
        btf.dump_c(spec)
    for tid in (1, 3):
        with pytest.raises(BTFError):
            btf.dump_c(spec, [spec.type_by_id(tid)])
    deep: btf.Type = btf.Int("int", 4)
    for _ in range(2000):
        deep = btf.Pointer(deep)
    b = Builder()
    b.add(btf.Typedef("deep", deep))
    with pytest.raises(BTFError):
        btf.dump_c(Spec(b.marshal()))


def test_declarators_names_and_layout_attributes(tmp_path: Path) -> None:
    """Declarators (pointers to arrays, arrays of function pointers, qualified
    pointers), names that C would not accept or that clash, and records that
    need packing, an alignment or a filler compile to the BTF's layout."""
    need_tool(CLANG)
    i32 = btf.Int("int", 4, btf.IntEncoding.SIGNED)
    char = btf.Int("char", 1, btf.IntEncoding.CHAR | btf.IntEncoding.SIGNED)
    rust_u8 = btf.Int("u8", 1)
    proto = btf.FuncProto(btf.Void(), [btf.FuncParam("", i32)])
    getter = btf.FuncProto(btf.Pointer(i32), [])
    anon = btf.Enum("", 4, [btf.EnumValue("RED", 0), btf.EnumValue("GREEN", 1)])
    decl = btf.Struct("decl", 72, [
        btf.Member("p", btf.Pointer(btf.Array(i32, 4)), 0),
        btf.Member("fns", btf.Array(btf.Pointer(proto), 2), 64),
        btf.Member("s", btf.Const(btf.Pointer(btf.Const(char))), 192),
        btf.Member("get", btf.Pointer(getter), 256),
        btf.Member("default", btf.Volatile(i32), 320),
        btf.Member("byte", rust_u8, 352),
        btf.Member("c1", anon, 384),
        btf.Member("c2", anon, 416),
        btf.Member("grid", btf.Const(btf.Array(btf.Array(char, 3), 2)), 448),
    ])
    packed = btf.Struct("dup", 5, [btf.Member("c", char, 0), btf.Member("i", i32, 8)])
    other_dup = btf.Union("dup", 16, [btf.Member("i", i32, 0)])
    filled = btf.Union("filled", 8, [btf.Member("c", char, 0)])
    small = btf.Enum("small", 1, [btf.EnumValue("X", 1)])
    big = btf.Enum("big", 8, [btf.EnumValue("X", 1 << 63)])
    big.is64 = True
    neg = btf.Enum("neg", 4, [btf.EnumValue("MINUS", -1)], signed=True)
    clash = btf.Typedef("MINUS", i32)
    b = Builder()
    for t in (decl, packed, other_dup, filled, small, big, neg, clash):
        b.add(t)
    text = btf.dump_c(Spec(b.marshal()))
    for line in ("\tint (*p)[4];", "\tvoid (*fns[2])(int);", "\tconst char * const s;",
                 "\tint *(*get)(void);", "\tvolatile int default_;", "\tu8 byte;",
                 "typedef unsigned char u8;", "\tconst char grid[2][3];",
                 "} __attribute__((packed));", "union dup___2 {",
                 "} __attribute__((aligned(16)));", "\tlong: 64;",
                 "} __attribute__((mode(byte)));", "\tX___2 = 9223372036854775808ULL,",
                 "\tMINUS = -1,", "typedef int MINUS___2;", "\t\tGREEN = 1,\n\t} c1;",
                 "\tunsigned int c2;"):
        assert line in text, (line, text)
    checks = [("struct decl", 72, {"fns": 8, "s": 24, "get": 32, "default_": 40, "byte": 44,
                                   "c1": 48, "c2": 52, "grid": 56}),
              ("struct dup", 5, {"i": 1}), ("union dup___2", 16, {}), ("union filled", 8, {}),
              ("enum small", 1, {}), ("enum big", 8, {}), ("enum neg", 4, {})]
    asserts = [f'_Static_assert(sizeof({t}) == {size}, "{t}");' for t, size, _ in checks]
    asserts += [f'_Static_assert(__builtin_offsetof({t}, {m}) == {off}, "{t}.{m}");'
                for t, _, offsets in checks for m, off in offsets.items()]
    (tmp_path / "t.h").write_text(text)
    compile_c('#include "t.h"\n' + "\n".join(asserts) + "\nint f(void) { return 0; }\n",
              tmp_path)


def test_split_btf_dump_defines_the_base_types_it_uses() -> None:
    """A module's split BTF: its own types keep their names, the base types they use
    are written too (after the module's names were given: a clash renames them)."""
    i32 = btf.Int("int", 4, btf.IntEncoding.SIGNED)
    foo = btf.Struct("foo", 8, [btf.Member("a", i32, 0), btf.Member("b", i32, 32)])
    b = Builder()
    int_id, foo_id, foo_t_id = b.add(i32), b.add(foo), b.add(btf.Typedef("foo_t", foo))
    base = Spec(b.marshal())
    first = len(base)
    names = ["x", "default", "modty", "f", "p", "cb", "foo_t", "foo", "z"]
    strings = b"".join(n.encode() + b"\0" for n in names)
    s = {n: base._str_len + strings.index(n.encode() + b"\0") for n in names}
    s["foo"] = base._str_len + strings.index(b"\0foo\0") + 1
    ptr, proto, fn_ptr = first, first + 1, first + 2
    words = [0, 2 << 24, foo_id,  # struct foo *
             0, 13 << 24 | 2, int_id, s["x"], ptr, s["default"], foo_t_id,
             0, 2 << 24, proto,
             s["modty"], 4 << 24 | 3, 24, s["f"], foo_id, 0, s["p"], ptr, 64, s["cb"], fn_ptr, 128,
             s["foo_t"], 8 << 24, foo_id,
             s["foo"], 4 << 24 | 1, 4, s["z"], int_id, 0]
    types = struct.pack(f"<{len(words)}I", *words)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    module = Spec(hdr + types + strings, base)
    text = btf.dump_c(module, header=False)
    assert text.index("struct foo___2 {\n\tint a;\n\tint b;\n};") < text.index("struct modty {")
    for decl in ("struct modty {\n\tstruct foo___2 f;\n\tstruct foo___2 *p;\n"
                 "\tint (*cb)(struct foo___2 *x, foo_t___2 default_);\n};",
                 "typedef struct foo___2 foo_t___2;", "typedef struct foo___2 foo_t;",
                 "struct foo {\n\tint z;\n};"):
        assert decl in text, (decl, text)
    only = btf.dump_c(module, [module.type_by_name("modty")], header=False)
    assert "struct modty {" in only and "struct foo {" not in only


def test_a_reference_to_no_type_names_the_record() -> None:
    # struct s { <type 99> a; } in a blob of one type
    words = [1, 0x04000001, 4, 3, 99, 0]
    strings = b"\0s\0a\0"
    types = struct.pack(f"<{len(words)}I", *words)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    with pytest.raises(BTFError, match=r"type id 1: reference to type id 99 out of range"):
        btf.dump_c(Spec(hdr + types + strings, lazy=True))


def test_names_after_the_last_type_name_are_decoded_on_demand() -> None:
    """The printer decodes the string table in bulk only up to its last printed type
    name; member, enumerator and parameter names after it (and a name that is the
    tail of another string) are decoded when used: the same text as a whole decode."""
    names = ["int", "s", "e", "fn_t", "member_a", "E_ONE", "param"]
    strings = b"\0" + b"".join(n.encode() + b"\0" for n in names)
    s = {n: strings.index(b"\0" + n.encode() + b"\0") + 1 for n in names}
    tail_a = s["member_a"] + len("member_")  # "a", inside "member_a"
    words = [s["int"], 1 << 24, 4, 1 << 24 | 32,  # 1: int
             s["s"], 4 << 24 | 3, 16, s["member_a"], 1, 0, tail_a, 1, 32, s["param"], 6, 64,
             s["e"], 6 << 24 | 1, 4, s["E_ONE"], 1,  # 3: enum e
             0, 13 << 24 | 1, 1, s["param"], 1,  # 4: int (int param)
             0, 2 << 24, 4,  # 5: pointer to 4
             s["fn_t"], 8 << 24, 5]  # 6: typedef fn_t
    types = struct.pack(f"<{len(words)}I", *words)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    blob = hdr + types + strings
    spec = Spec(blob)
    text = btf.dump_c(spec, header=False)
    assert 0 < spec._strings_end < spec._str_len  # (the tail was not decoded in bulk)
    whole = Spec(blob)
    whole._load_strings()
    assert text == btf.dump_c(whole, header=False)
    for decl in ("struct s {\n\tint member_a;\n\tint a;\n\tfn_t param;\n};",
                 "enum e {\n\tE_ONE = 1,\n};", "typedef int (*fn_t)(int param);"):
        assert decl in text, (decl, text)
    spec._load_strings()  # (the rest of the table, after the part decoded already)
    assert spec._strings_loaded
    assert {o: spec._strcache[o] for o in whole._strcache} == whole._strcache
