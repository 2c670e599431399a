"""ebpf.symbols: kernel symbols from kallsyms, user symbols from ELF files mapped by a
process, and stacks a BPF program stored with bpf_get_stackid, compared with nm and
addr2line."""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from bpfbuild import compile_bpf
from conftest import fork_while_held
from hypothesis import given, settings
from hypothesis import strategies as st
from kernelmatrix import requires
from vmlinux import vmlinux_include_dir

import ebpf
import ebpf.link
from ebpf import symbols
from ebpf.symbols import ElfSymbols, Frame, KernelSymbols, Symbolizer, parse_kallsyms, parse_maps

TARGET_C = r"""
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* getpid without libc: the syscall instruction is in this function */
__attribute__((noinline)) long ebpf_stack_leaf(void)
{
	long ret;

	__asm__ volatile("syscall" : "=a"(ret) : "a"(SYS_getpid) : "rcx", "r11", "memory");
	return ret;
}

__attribute__((noinline)) long ebpf_stack_middle(int use_libc)
{
	return use_libc ? (long)getpid() : ebpf_stack_leaf();
}

/* one getpid per byte read from stdin, acknowledged with one byte on stdout */
int main(int argc, char **argv)
{
	int use_libc = argc > 1 && strcmp(argv[1], "libc") == 0;
	char c;

	while (read(0, &c, 1) == 1) {
		ebpf_stack_middle(use_libc);
		if (write(1, "k", 1) != 1)
			return 1;
	}
	return 0;
}
"""


def _kallsyms_by_grep(name: str) -> int:
    """The address of `name` as a plain text search of /proc/kallsyms finds it."""
    with open("/proc/kallsyms") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == name:
                return int(parts[0], 16)
    raise AssertionError(f"{name} not in /proc/kallsyms")


# ---------------------------------------------------------------------------- kernel

@pytest.mark.kernel
def test_kernel_symbol_both_ways() -> None:
    ks = symbols.kernel_symbols()
    assert not ks.hidden  # root
    addr = ks.address("__x64_sys_getpid")
    assert addr == _kallsyms_by_grep("__x64_sys_getpid")
    frame = Symbolizer().kernel(addr + 3)
    assert frame == Frame(addr + 3, "__x64_sys_getpid", 3, None)
    assert str(frame) == "__x64_sys_getpid+0x3"
    # the next symbol starts where the previous one ends
    other = ks.address("do_syscall_64")
    assert ks.resolve(other).name == "do_syscall_64" and ks.resolve(other - 1).name != (
        "do_syscall_64")
    with pytest.raises(ebpf.KeyNotFoundError):
        ks.address("no_such_kernel_symbol_ebpf")
    assert symbols.kernel_symbols() is ks  # cached


@pytest.mark.kernel
def test_a_child_forked_while_a_thread_symbolizes_can_symbolize() -> None:
    """A Symbolizer shared by threads: a child forked while one of them is inside it
    (holding its lock) symbolizes with it too, instead of hanging on that lock."""
    sym = Symbolizer()
    getpid = ctypes.cast(ctypes.CDLL(None).getpid, ctypes.c_void_p).value or 0

    def in_child() -> None:
        assert sym.user(os.getpid(), getpid).name == "getpid"

    # (its lock held: where a thread is while it symbolizes; None: the child hung on it)
    assert fork_while_held(sym._lock, in_child) == 0


def test_kallsyms_parser() -> None:
    text = ("ffffffff81000000 T _stext\n"
            "ffffffff81000000 T srso_alias_untrain_ret\n"
            "ffffffff81000000 T _text\n"
            "ffffffff81000010 t local_fn\n"
            "0000000000000000 A fixed_percpu_data\n"
            "ffffffffc0001000 t bpf_prog_0afa56fcd9325709_xdp_count\t[bpf]\n"
            "ffffffffc0002000 T nft_register\t[nf_tables]\n"
            "garbage line\n")
    entries = parse_kallsyms(text)
    assert len(entries) == 7
    assert entries[5] == (0xffffffffc0001000, "t", "bpf_prog_0afa56fcd9325709_xdp_count", "bpf")
    ks = KernelSymbols(entries)
    assert ks.resolve(0xffffffff81000004) == Frame(0xffffffff81000004, "srso_alias_untrain_ret",
                                                   4, None)
    assert ks.resolve(0xffffffff81000014).name == "local_fn"
    assert ks.resolve(0xffffffffc0002008) == Frame(0xffffffffc0002008, "nft_register", 8,
                                                   "nf_tables")
    assert ks.address("_text") == 0xffffffff81000000  # every name is found
    assert ks.resolve(0x1000).name is None  # below every symbol; absolute ones ignored


def test_kallsyms_hidden() -> None:
    ks = KernelSymbols(parse_kallsyms("0000000000000000 T _text\n0000000000000000 T foo\n"))
    assert ks.hidden
    with pytest.raises(ebpf.PermissionError, match="CAP_SYSLOG"):
        ks.address("foo")
    with pytest.raises(ebpf.PermissionError):
        ks.resolve(0xffffffff81000000)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 2**64 - 1), st.sampled_from("tTwWdDrRbB"),
                          st.from_regex(r"[A-Za-z_][A-Za-z0-9_.$]{0,40}", fullmatch=True),
                          st.none() | st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True)),
                min_size=1, max_size=40))
def test_kallsyms_roundtrip(rows: list[tuple[int, str, str, str | None]]) -> None:
    """Lines in kallsyms' layout parse back to what they say, and every address
    resolves to a symbol starting at that address with offset 0."""
    text = "".join(f"{a:016x} {t} {n}" + (f"\t[{m}]" if m else "") + "\n"
                   for a, t, n, m in rows)
    assert parse_kallsyms(text) == rows
    ks = KernelSymbols(rows)
    for a, _, _, _ in rows:
        f = ks.resolve(a)
        assert f.offset == 0 and (a, f.name) in {(r[0], r[2]) for r in rows}
    for _, _, n, _ in rows:
        assert ks.address(n) == min(r[0] for r in rows if r[2] == n)


# ---------------------------------------------------------------------------- /proc/PID/maps

def test_parse_maps() -> None:
    text = ("5631b2f11000-5631b2f13000 r--p 00000000 fe:00 260131      /usr/bin/cat\n"
            "5631b2f13000-5631b2f18000 r-xp 00002000 fe:00 260131      /usr/bin/cat\n"
            "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n"
            "7ffd1000-7ffd3000 r-xp 00000000 00:00 0                  [vdso]\n"
            "7f1000000000-7f1000001000 r-xp 00001000 08:01 42         /tmp/a b (deleted)\n")
    maps = parse_maps(text)
    assert [m.path for m in maps] == ["/usr/bin/cat", "/usr/bin/cat", "", "[vdso]", "/tmp/a b"]
    assert maps[1].start == 0x5631b2f13000 and maps[1].offset == 0x2000 and maps[1].is_file
    assert maps[4].deleted and not maps[3].is_file and not maps[2].is_file


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**47), st.integers(1, 2**20),
                          st.sampled_from(["r--p", "r-xp", "rw-s", "---p"]),
                          st.integers(0, 2**40), st.integers(0, 2**32),
                          st.sampled_from(["", "[heap]", "[vdso]", "/usr/lib/libc.so.6",
                                           "/tmp/with space", "/x (deleted)"])),
                max_size=20))
def test_parse_maps_roundtrip(rows: list[tuple[int, int, str, int, int, str]]) -> None:
    text = "".join(f"{s:x}-{s + n:x} {p} {o:08x} fe:01 {i}" + (f"    {path}" if path else " ")
                   + "\n" for s, n, p, o, i, path in rows)
    maps = parse_maps(text)
    assert [(m.start, m.end - m.start, m.perms, m.offset, m.inode) for m in maps] == [
        r[:5] for r in rows]
    assert [m.path + (" (deleted)" if m.deleted else "") for m in maps] == [r[5] for r in rows]


# ---------------------------------------------------------------------------- ELF

@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The stack target built as PIE and as a non-PIE executable whose text is mapped
    at an address unrelated to its file offset; frame pointers kept."""
    d = tmp_path_factory.mktemp("symbols")
    src = d / "target.c"
    src.write_text(TARGET_C)
    out = {}
    for name, flags in (("pie", ["-fPIE", "-pie"]),
                        ("nopie", ["-fno-pie", "-no-pie", "-Wl,-Ttext-segment=0x20000000"])):
        exe = d / f"target-{name}"
        subprocess.run(["gcc", "-O0", "-g", "-fno-omit-frame-pointer", *flags, "-o", str(exe),
                        str(src)], check=True)
        out[name] = exe
    return out


def _nm(path: Path) -> dict[str, int]:
    out = subprocess.run(["nm", str(path)], capture_output=True, text=True, check=True).stdout
    return {p[2]: int(p[0], 16) for p in (ln.split() for ln in out.splitlines())
            if len(p) == 3 and p[1] in "tTwW"}


def _addr2line(path: Path, vaddr: int) -> str:
    out = subprocess.run(["addr2line", "-f", "-e", str(path), f"{vaddr:#x}"],
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0]


def _build_id_by_readelf(path: Path) -> str:
    out = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", out)
    assert m is not None
    return m.group(1)


@pytest.mark.parametrize("kind", ["pie", "nopie"])
def test_elf_symbols_match_nm(binaries: dict[str, Path], kind: str) -> None:
    exe = binaries[kind]
    elf = ElfSymbols(str(exe))
    assert elf.shared == (kind == "pie")
    assert elf.build_id == _build_id_by_readelf(exe)
    nm = _nm(exe)
    for name in ("main", "ebpf_stack_leaf", "ebpf_stack_middle"):
        assert elf.address(name) == nm[name]
        f = elf.resolve(nm[name] + 4)
        assert (f.name, f.offset, f.module) == (name, 4, str(exe))
        assert _addr2line(exe, nm[name] + 4) == name


def test_shared_library_symbols() -> None:
    libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    elf = ElfSymbols(libc)
    out = subprocess.run(["nm", "-D", "--defined-only", libc], capture_output=True, text=True,
                         check=True).stdout
    by_nm = {p[2].split("@")[0]: int(p[0], 16) for p in (ln.split() for ln in out.splitlines())
             if len(p) == 3}
    assert elf.address("getpid") == by_nm["getpid"]
    assert elf.resolve(by_nm["getpid"] + 1).name == "getpid"  # not its alias __getpid
    assert elf.build_id == _build_id_by_readelf(Path(libc))


# ---------------------------------------------------------------------------- stacks

@pytest.fixture(scope="module")
def stack_spec() -> ebpf.CollectionSpec:
    return ebpf.load_collection_spec(
        compile_bpf("symbols_stack", extra_flags=[f"-I{vmlinux_include_dir()}"]))


class Target:
    """A running target process that calls getpid once per `step()`."""

    def __init__(self, exe: Path, *args: str) -> None:
        self.proc = subprocess.Popen([str(exe), *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE)
        self.pid = self.proc.pid

    def step(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"x")
        self.proc.stdin.flush()
        assert self.proc.stdout.read(1) == b"k"

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def stack_of(stack_spec: ebpf.CollectionSpec) -> Iterator[
        tuple[ebpf.Collection, ebpf.link.Link]]:
    with ebpf.Collection(stack_spec.copy()) as coll, ebpf.link.raw_tracepoint(
            coll.programs["stack_getpid"], "sys_enter") as link:
        yield coll, link


def _capture(coll: ebpf.Collection, target: Target) -> tuple[int, int]:
    coll.maps["target"][0] = target.pid
    target.step()
    ids = coll.maps["ids"]
    assert int(ids[2]) == 1
    return int.from_bytes(ids.lookup(0, raw=True), "little", signed=True), int.from_bytes(
        ids.lookup(1, raw=True), "little", signed=True)


@requires("helper:RAW_TRACEPOINT:get_stackid", min_kernel="4.17")
def test_kernel_stack(stack_of: tuple[ebpf.Collection, ebpf.link.Link],
                      binaries: dict[str, Path]) -> None:
    coll, _ = stack_of
    target = Target(binaries["pie"])
    try:
        kid, _ = _capture(coll, target)
    finally:
        target.close()
    addrs = symbols.stack_addresses(coll.maps["kernel_stacks"], kid)
    # a table read before the program was loaded does not know it (here: a table that
    # knows nothing near these addresses): the symbolizer reads kallsyms again
    old = KernelSymbols(parse_kallsyms("ffffffff81000000 T _text\n"))
    frames = symbols.stack_frames(coll.maps["kernel_stacks"], kid,
                                  symbolizer=Symbolizer(old, kernel_refresh=0))
    assert [f.addr for f in frames] == addrs and len(addrs) >= 2
    assert all(f.name for f in frames), symbols.format_stack(frames)
    names = [f.name for f in frames]
    # innermost: the program that called bpf_get_stackid, a BPF symbol of the kernel's
    assert frames[0].module == "bpf" and frames[0].name is not None
    assert frames[0].name.startswith("bpf_prog_") and frames[0].name.endswith("_stack_getpid")
    # a system call enters the kernel through do_syscall_64
    assert "do_syscall_64" in names, symbols.format_stack(frames)
    # each frame: a kallsyms line with that name at the address minus the offset
    with open("/proc/kallsyms") as fh:
        lines = {(int(p[0], 16), p[2]) for p in (ln.split() for ln in fh) if len(p) >= 3}
    for f in frames:
        assert (f.addr - f.offset, f.name) in lines


@pytest.mark.parametrize("kind", ["pie", "nopie"])
@requires("helper:RAW_TRACEPOINT:get_stackid", min_kernel="4.17")
def test_user_stack(stack_of: tuple[ebpf.Collection, ebpf.link.Link],
                    binaries: dict[str, Path], kind: str) -> None:
    coll, _ = stack_of
    exe = binaries[kind]
    target = Target(exe)
    try:
        _, uid = _capture(coll, target)
        sym = Symbolizer()
        frames = symbols.stack_frames(coll.maps["stacks"], uid, pid=target.pid, symbolizer=sym)
        maps = open(f"/proc/{target.pid}/maps").read()
    finally:
        target.close()
    names = [f.name for f in frames]
    # frame pointers: the leaf (it made the syscall), its caller, main
    assert names[:3] == ["ebpf_stack_leaf", "ebpf_stack_middle", "main"], \
        symbols.format_stack(frames)
    assert all(f.module == str(exe) for f in frames[:3])
    # the same as addr2line and nm say for the address in the file
    base = 0
    if kind == "pie":  # where the file's first page was mapped
        base = min(int(ln.split("-")[0], 16) for ln in maps.splitlines()
                   if ln.endswith(str(exe)) and ln.split()[2] == "00000000")
    nm = _nm(exe)
    for f in frames[:3]:
        vaddr = f.addr - base
        assert _addr2line(exe, vaddr) == f.name
        assert f.name is not None and nm[f.name] + f.offset == vaddr
    # past main: the C library's start-up code
    assert any(f.module is not None and "libc" in f.module for f in frames[3:])


@requires("helper:RAW_TRACEPOINT:get_stackid", min_kernel="4.17")
def test_user_stack_in_shared_library(stack_of: tuple[ebpf.Collection, ebpf.link.Link],
                                      binaries: dict[str, Path]) -> None:
    coll, _ = stack_of
    target = Target(binaries["pie"], "libc")
    try:
        _, uid = _capture(coll, target)
        frames = symbols.stack_frames(coll.maps["stacks"], uid, pid=target.pid)
    finally:
        target.close()
        symbols.default_symbolizer().forget(target.pid)
    # the innermost frame is libc's getpid (a leaf without a frame of its own, so the
    # unwinder goes from it straight to its caller's caller)
    assert frames[0].name == "getpid" and frames[0].module is not None
    assert frames[0].module.endswith("libc.so.6")
    assert "main" in [f.name for f in frames[1:3]]


def test_stack_id_errors(stack_spec: ebpf.CollectionSpec) -> None:
    with ebpf.Collection(stack_spec.copy()) as coll:
        with pytest.raises(ebpf.InvalidArgumentError, match="EEXIST"):
            symbols.stack_addresses(coll.maps["stacks"], -17)
        with pytest.raises(ebpf.KeyNotFoundError):
            symbols.stack_addresses(coll.maps["stacks"], 3)


def test_user_unknown_process() -> None:
    pid = 2**22 + 12345  # above pid_max's largest value: never a process
    assert Symbolizer().user(pid, 0x401000) == Frame(0x401000)


def test_frame_str() -> None:
    assert str(Frame(0x10, "f", 0x4, "/bin/x")) == "f+0x4 [/bin/x]"
    assert str(Frame(0x10, None, 0, "[vdso]")) == "0x10 [vdso]"
