"""USDT probes: .note.stapsdt parsing, argument specs (libbpf's usdt.bpf.h contract),
semaphores, cookies, pid filters and the uprobe_multi path, with a small C program
built with <sys/sdt.h> (Debian: systemtap-sdt-dev)."""

from __future__ import annotations

import os
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from bpfbuild import compile_bpf
from conftest import need_tool
from kernelmatrix import requires
from vmlinux import vmlinux_include_dir

import ebpf
import ebpf.link
from ebpf import AttachType, LinkType
from ebpf._sys import probe as _probe
from ebpf.errors import InvalidArgumentError, KeyNotFoundError, NotSupportedError
from ebpf.link.usdt import (
    ARG_CONST,
    ARG_REG,
    ARG_REG_DEREF,
    ARG_SIB,
    SPEC_SIZE,
    encode_spec,
    parse_usdt_args,
    usdt_probes,
)

pytestmark = pytest.mark.kernel

TARGET_C = r"""
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

unsigned short ebpftest_tick_semaphore __attribute__((unused, section(".probes")));
unsigned short ebpftest_gated_semaphore __attribute__((unused, section(".probes")));

struct point { long x; int y; };
static volatile struct point pts[4] = {{10, 1}, {20, 2}, {30, 3}, {40, 4}};

__attribute__((noinline)) static void step(int i, long big, struct point *p)
{
    short neg = -(short)i;
    DTRACE_PROBE5(ebpftest, tick, i, big, neg, 42, p->y);
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 3, enabled = 0;
    if (argc > 2) { char c; if (read(0, &c, 1) < 0) return 2; }  /* wait for "go" */
    for (int i = 1; i <= n; i++) {
        step(i, (long)i * 1000000007L, (struct point *)&pts[i % 4]);
        if (ebpftest_gated_semaphore) {   /* only while a probe is attached */
            enabled++;
            DTRACE_PROBE1(ebpftest, gated, i);
        }
    }
    printf("%d\n", enabled);
    return 0;
}
"""

SDT_H = ("/usr/include/sys/sdt.h", "/usr/include/x86_64-linux-gnu/sys/sdt.h")


@pytest.fixture
def no_leaks(no_fd_leaks: None) -> Iterator[None]:
    """Fail if the test leaves a descriptor open or a tracefs probe behind."""
    yield
    path = _probe.probe_events_file("uprobe")
    if path is not None:
        with open(path) as f:
            assert f"ebpf_{os.getpid()}_" not in f.read()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_tool("gcc")
    need_tool("<sys/sdt.h> (systemtap-sdt-dev)", present=any(os.path.exists(p) for p in SDT_H))
    d = tmp_path_factory.mktemp("usdt")
    (d / "target.c").write_text(TARGET_C)
    exe = d / "usdt-target"
    subprocess.run(["gcc", "-O2", "-g", "-o", str(exe), str(d / "target.c")], check=True)
    return exe


@pytest.fixture(scope="module")
def spec() -> ebpf.CollectionSpec:
    return ebpf.load_collection_spec(
        compile_bpf("link_usdt", extra_flags=[f"-I{vmlinux_include_dir()}"]))


def test_hidden_usdt_helpers_are_static(spec: ebpf.CollectionSpec) -> None:
    """The loader gives __hidden helpers (usdt.bpf.h) static linkage, as libbpf does."""
    from ebpf import btf

    funcs = [f for p in spec.programs.values() for i in p.instructions
             if isinstance(f := (i.meta or {}).get("func"), btf.Func)
             and f.name.startswith("bpf_usdt_")]
    assert funcs and all(f.linkage == btf.Linkage.STATIC for f in funcs)


@pytest.fixture
def coll(spec: ebpf.CollectionSpec, marked_programs: list[str]) -> Iterator[ebpf.Collection]:
    """Only the programs the test names with @pytest.mark.programs."""
    reason = _probe.uprobes_missing()
    if reason is not None:
        pytest.skip(reason)
    with ebpf.Collection(spec.copy(), programs=marked_programs) as c:
        yield c


def read_global(coll: ebpf.Collection, name: str) -> object:
    """A global's value through a map lookup (see test_link_uprobe.read_global)."""
    from ebpf.btf import values

    vs = coll.spec.variables[name]
    raw = coll.maps[vs.section].lookup(0, raw=True)[vs.offset:vs.offset + vs.size]
    return values.decode(vs.type, raw) if vs.type is not None else raw


def hits(coll: ebpf.Collection) -> dict[int, tuple[list[int], int, int, int]]:
    out = {}
    for k, raw in coll.maps["hits"].items(raw=True):
        (key,) = struct.unpack("=I", k)
        *args, cookie, cnt, err = struct.unpack("=5qqii", raw)
        if cnt:
            out[key] = (args, cookie, cnt, err)
    return out


def run_target(exe: Path, n: int) -> int:
    """Run the target; returns how many times it saw its semaphore enabled."""
    out = subprocess.run([str(exe), str(n)], capture_output=True, text=True, check=True)
    return int(out.stdout)


# --------------------------------------------------------------------------- parsing


def test_parse_notes(target: Path) -> None:
    probes = usdt_probes(target)
    by_name = {p.name: p for p in probes}
    assert set(by_name) == {"tick", "gated"}
    tick = by_name["tick"]
    assert tick.provider == "ebpftest" and tick.path == str(target)
    assert tick.semaphore and tick.semaphore_offset
    assert len(tick.args) == 5
    # the ELF notes agree with readelf
    notes = subprocess.run(["readelf", "-n", str(target)], capture_output=True, text=True,
                           check=True).stdout
    assert f"Arguments: {tick.args_text}" in notes
    assert f"Location: 0x{tick.address:016x}" in notes
    assert usdt_probes(target, "ebpftest", "nope") == []


def test_parse_args_x86() -> None:
    args = parse_usdt_args("-4@%edi 8@%rax -2@%ax -4@$42 8@-24(%rbp) 4@(%rsp) "
                           "-1@-96(%rbp,%rax,8) 2@(%rdx,%rcx) 4@$-7", "x86_64")
    kinds = [a.kind for a in args]
    assert kinds == [ARG_REG, ARG_REG, ARG_REG, ARG_CONST, ARG_REG_DEREF, ARG_REG_DEREF,
                     ARG_SIB, ARG_SIB, ARG_CONST]
    assert (args[0].size, args[0].signed, args[0].reg_off, args[0].bitshift) == (4, True, 112, 32)
    assert (args[1].size, args[1].signed, args[1].reg_off, args[1].bitshift) == (8, False, 80, 0)
    assert args[3].val_off == 42 and args[8].val_off == -7
    assert (args[4].val_off, args[4].reg_off) == (-24, 32)
    assert (args[5].val_off, args[5].reg_off) == (0, 152)
    assert (args[6].val_off, args[6].reg_off, args[6].idx_reg_off, args[6].scale) == (
        -96, 32, 80, 8)
    assert (args[7].reg_off, args[7].idx_reg_off, args[7].scale) == (96, 88, 1)
    with pytest.raises(InvalidArgumentError):
        parse_usdt_args("4@%xyz", "x86_64")
    with pytest.raises(InvalidArgumentError):
        parse_usdt_args("3@%eax", "x86_64")
    with pytest.raises(InvalidArgumentError):
        parse_usdt_args("8@counter(%rip)", "x86_64")  # symbolic offsets: like libbpf, no


def test_parse_args_other_arches() -> None:
    arm = parse_usdt_args("-4@[sp, 96] 8@x1 4@5 -8@[x29]", "aarch64")
    assert [(a.kind, a.reg_off, a.val_off) for a in arm] == [
        (ARG_REG_DEREF, 248, 96), (ARG_REG, 8, 0), (ARG_CONST, 0, 5), (ARG_REG_DEREF, 232, 0)]
    s390 = parse_usdt_args("-2@-28(%r15) 8@%r2 4@71", "s390x")
    assert [(a.kind, a.reg_off, a.val_off) for a in s390] == [
        (ARG_REG_DEREF, 16 + 15 * 8, -28), (ARG_REG, 16 + 2 * 8, 0), (ARG_CONST, 0, 71)]


def test_encode_spec_layout() -> None:
    args = parse_usdt_args("-4@%edi 8@-24(%rbp) 4@$9", "x86_64")
    raw = encode_spec(args, cookie=0x1122)
    assert len(raw) == SPEC_SIZE == 208
    val_off, kind, reg_off, signed, shift = struct.unpack_from("=QIhBb", raw, 16)
    assert (val_off, kind, reg_off, signed, shift) == (2**64 - 24, ARG_REG_DEREF, 32, 0, 0)
    assert struct.unpack_from("=QIhBb", raw, 0) == (0, ARG_REG, 112, 1, 32)
    assert struct.unpack_from("=Qh", raw, 192) == (0x1122, 3)
    with pytest.raises(NotSupportedError, match="scale-index-base"):
        encode_spec(parse_usdt_args("8@(%rdx,%rcx,4)", "x86_64"))


# --------------------------------------------------------------------------- attaching


@pytest.mark.programs("on_tick", "on_gated")
def test_usdt_arguments_cookie_and_semaphore(no_leaks: None, coll: ebpf.Collection,
                                             target: Path) -> None:
    assert run_target(target, 3) == 0  # nobody attached: semaphore off
    with ebpf.link.usdt(coll.programs["on_tick"], target, "ebpftest", "tick",
                        cookie=99) as tick, \
            ebpf.link.usdt(coll.programs["on_gated"], target, "ebpftest", "gated") as gated:
        assert isinstance(tick, ebpf.link.USDTLink)
        assert len(tick.links) == 1 and tick.spec_ids != gated.spec_ids
        assert run_target(target, 3) == 3  # the kernel raised the semaphore
    assert run_target(target, 3) == 0  # and lowered it again
    got = hits(coll)
    assert set(got) == {1, 2, 3}
    for i in (1, 2, 3):
        args, cookie, cnt, err = got[i]
        assert args == [i, i * 1000000007, -i, 42, [1, 2, 3, 4][i % 4]]
        assert (cookie, cnt, err) == (99, 5, -2)  # -ENOENT for a missing argument
    assert read_global(coll, "nhits") == 3
    assert read_global(coll, "ngated") == 3
    assert read_global(coll, "gated_sum") == 6


@pytest.mark.programs("on_tick")
def test_usdt_pid_filter(no_leaks: None, coll: ebpf.Collection, target: Path) -> None:
    traced = subprocess.Popen([str(target), "2", "wait"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    other = subprocess.Popen([str(target), "5", "wait"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    try:
        with ebpf.link.usdt(coll.programs["on_tick"], target, "ebpftest", "tick",
                            pid=traced.pid):
            traced.communicate(b"x")
            other.communicate(b"x")
    finally:
        for p in (traced, other):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert read_global(coll, "nhits") == 2


@pytest.mark.programs("on_tick")
def test_usdt_spec_ids_are_reused(no_leaks: None, coll: ebpf.Collection, target: Path) -> None:
    for _ in range(3):
        with ebpf.link.usdt(coll.programs["on_tick"], target, "ebpftest", "tick") as link:
            assert link.spec_ids == [0]


@requires("multi_attach:TRACE_UPROBE_MULTI", min_kernel="6.6")
def test_usdt_uprobe_multi(no_leaks: None, spec: ebpf.CollectionSpec, target: Path) -> None:
    s = spec.copy()
    s.programs["on_tick"].attach_type = AttachType.TRACE_UPROBE_MULTI
    with ebpf.Collection(s, programs=["on_tick"]) as c:
        with ebpf.link.usdt(c.programs["on_tick"], target, "ebpftest", "tick",
                            cookie=7) as link:
            assert LinkType(link.links[0].info().type) == LinkType.UPROBE_MULTI
            run_target(target, 2)
        got = hits(c)
        assert sorted(got) == [1, 2]
        assert got[2][0][:2] == [2, 2000000014] and got[2][1] == 7


@pytest.mark.programs("on_tick")
def test_usdt_errors(coll: ebpf.Collection, target: Path, tmp_path: Path) -> None:
    with pytest.raises(KeyNotFoundError):
        ebpf.link.usdt(coll.programs["on_tick"], target, "ebpftest", "no_such_probe")
    plain = ebpf.Program(ebpf.ProgramSpec(
        type=ebpf.ProgramType.KPROBE, license="GPL",
        instructions=[ebpf.asm.mov_imm(ebpf.asm.R0, 0), ebpf.asm.exit()]))
    with plain, pytest.raises(InvalidArgumentError, match="__bpf_usdt_specs"):
        ebpf.link.usdt(plain, target, "ebpftest", "tick")
    assert usdt_probes("true") == []  # no notes at all


@pytest.mark.programs("on_tick")
def test_auto_attach_usdt(no_leaks: None, spec: ebpf.CollectionSpec, coll: ebpf.Collection,
                          target: Path) -> None:
    ps = spec.programs["on_tick"].copy()
    ps.section = f"usdt/{target}:ebpftest:tick"
    link = ebpf.link.attach_program(coll.programs["on_tick"], ps)
    assert isinstance(link, ebpf.link.USDTLink)
    with link:
        run_target(target, 1)
    assert read_global(coll, "nhits") == 1
