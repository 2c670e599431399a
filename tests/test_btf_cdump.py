"""btf.dump_c: the C header of the kernel's BTF compiles with clang -target bpf,
its struct layouts are the kernel's, and it matches bpftool's output."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from bpfbuild import compile_bpf

from ebpf import btf
from ebpf.btf.builder import Builder
from ebpf.btf.kernel import VMLINUX
from ebpf.btf.spec import Spec
from ebpf.errors import BTFError

CLANG = "clang-19"
needs_clang = pytest.mark.skipif(shutil.which(CLANG) is None, reason=f"{CLANG} is missing")
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
@needs_clang
def test_kernel_header_compiles_with_kernel_layouts(kernel_header: tuple[Path, str]) -> None:
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


@needs_vmlinux
def test_kernel_header_matches_bpftool(kernel_header: tuple[Path, str]) -> None:
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is missing")
    theirs = subprocess.run(["bpftool", "btf", "dump", "file", VMLINUX, "format", "c"],
                            capture_output=True, text=True, check=True).stdout
    _, ours = kernel_header
    for name in LAYOUT_STRUCTS:
        assert definition(ours, "struct", name) == definition(theirs, "struct", name), name
    # Everything else too, except what newer libbpf prints and bpftool's 1.1 does not:
    # one-byte enums get `__attribute__((mode(byte)))`, type tags are kept.
    ours_lines = ours.splitlines()
    theirs_lines = theirs.splitlines()
    assert len(ours_lines) == len(theirs_lines)
    diff = [(a, b) for a, b in zip(ours_lines, theirs_lines, strict=True) if a != b]
    for a, b in diff:
        assert a.replace(" __attribute__((mode(byte)))", "") == b or "btf_type_tag" in a, (a, b)


@needs_clang
def test_clang_object_round_trip(tmp_path: Path) -> None:
    """Dump clang's BTF, compile the header, and get the same layouts back."""
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


@needs_clang
def test_mutually_referencing_structs_compile(tmp_path: Path) -> None:
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
