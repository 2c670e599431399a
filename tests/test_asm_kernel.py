"""The disassembler against the running kernel's own text (the verifier log).

A small program is compiled with clang, loaded with ``bpftool -d`` so that the
verifier log is printed, and every ``N: (xx) text`` line of the log is compared
with `asm.format_instruction` of the instruction at slot N decoded from the
object file. Needs root, clang-19, llvm-objcopy-19 and bpftool.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess

import pytest
from conftest import need_tool
from kernelmatrix import requires

from ebpf import asm

pytestmark = pytest.mark.kernel

TOOLS = ("clang-19", "llvm-objcopy-19", "bpftool")

# The instructions of each kernel generation are behind a macro, so each test loads
# what its kernel can verify: -mcpu=v3 (atomics, JMP32: 5.12), V4 (sign extension,
# bswap, signed division, gotol: -mcpu=v4, 6.6), MAY_GOTO (6.9) and LOAD_ACQ
# (load-acquire/store-release: 6.15). Older kernels refuse the newer opcodes at load
# ("unknown opcode cb").
SOURCE = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("socket")
int prog(struct __sk_buff *skb)
{
	volatile __u64 slot = skb->len;
	__u64 x = skb->len, y = skb->protocol;
	__u64 r = __sync_fetch_and_add(&slot, 3);
	__sync_fetch_and_or(&slot, 8);
	r += __sync_lock_test_and_set(&slot, 5);
	r += __sync_val_compare_and_swap(&slot, 5, 6);
	r += __builtin_bswap64(r);
	r += x / (y | 1);
	r += x % 7;
#ifdef V4
	volatile long sink;
	long sx = (int)skb->len, sy = (short)skb->protocol;
	sink = (signed char)skb->mark;
	sink = sx / (sy | 1);
	sink = sx % 7;
#endif
	r += bpf_ktime_get_ns();
	r += bpf_get_prandom_u32();
	if ((int)r < 0)
		r = -r;
	asm volatile(
		"*(u64 *)(r10 - 16) = r0\n"
#ifdef LOAD_ACQ
		".quad 0x00000100fff0a1db\n"   /* r1 = load_acquire((u64 *)(r10 -16)) */
		".quad 0x00000110fff01acb\n"   /* store_release((u16 *)(r10 -16), r1) */
#endif
#ifdef MAY_GOTO
		"may_goto +1\n"		/* 6.12 refuses +0: "invalid may_goto off 0" */
		"r1 = 0\n"
#endif
#ifdef V4
		"gotol +0\n"
#endif
		"r1 = 0x1234567890 ll\n"
#ifdef V4
		"w1 = (s16)w1\n"
#endif
		"r1 = be16 r1\n"
		"r1 = le32 r1\n"
		"if w1 s> 0x7 goto +0\n"
		"if r1 != r0 goto +0\n"
		::: "r1");
	return r & 1;
}
char LICENSE[] SEC("license") = "GPL";
"""

BASE_NEEDLES = ("atomic64_fetch_add", "atomic64_cmpxchg", "atomic64_xchg", "be16", "le32",
                "if w1 s> 0x7", "call bpf_ktime_get_ns#5")

LOG_LINE = re.compile(r"^(\d+): (\([0-9a-f]{2}\) [^;]*?)\s*(?:;.*)?$")


def compile_variant(tmp_path: pathlib.Path, cpu: str, defines: tuple[str, ...]) -> pathlib.Path:
    for tool in TOOLS:
        need_tool(tool)
    if os.geteuid() != 0:
        pytest.skip("needs root to load programs")
    src = tmp_path / "asm_kernel.c"
    src.write_text(SOURCE)
    obj = tmp_path / "asm_kernel.o"
    subprocess.run(
        ["clang-19", "-O2", "-target", "bpf", f"-mcpu={cpu}", *(f"-D{d}" for d in defines),
         "-I/usr/include/x86_64-linux-gnu", "-c", str(src), "-o", str(obj)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return obj


def check_against_verifier_log(
    tmp_path: pathlib.Path, pin_dir: str, cpu: str, defines: tuple[str, ...],
    needles: tuple[str, ...],
) -> None:
    compiled = compile_variant(tmp_path, cpu, defines)
    raw = tmp_path / "prog.bin"
    subprocess.run(
        ["llvm-objcopy-19", "-O", "binary", "--only-section=socket", str(compiled), str(raw)],
        check=True,
        capture_output=True,
    )
    insns = asm.decode(raw.read_bytes())
    by_slot = dict(zip(asm.raw_offsets(insns), insns, strict=True))

    res = subprocess.run(
        ["bpftool", "-d", "prog", "load", str(compiled), os.path.join(pin_dir, "prog")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    seen: dict[int, str] = {}
    for line in res.stderr.splitlines():
        m = LOG_LINE.match(line)
        if m:
            seen[int(m.group(1))] = m.group(2)
    # every instruction of the program is reached and printed
    assert sorted(seen) == sorted(by_slot)
    mismatches = [
        (slot, text, asm.format_instruction(by_slot[slot]))
        for slot, text in sorted(seen.items())
        if asm.format_instruction(by_slot[slot]) != text
    ]
    assert not mismatches
    # the program exercises the instructions the log shows
    texts = "\n".join(seen.values())
    for needle in needles:
        assert needle in texts


def test_disassembler_matches_verifier_log(tmp_path: pathlib.Path, pin_dir: str) -> None:
    check_against_verifier_log(tmp_path, pin_dir, "v3", (), BASE_NEEDLES)


@requires("cpu v4 instructions (sign extension, bswap, sdiv/smod, gotol)", min_kernel="6.6")
def test_disassembler_matches_verifier_log_v4(tmp_path: pathlib.Path, pin_dir: str) -> None:
    check_against_verifier_log(tmp_path, pin_dir, "v4", ("V4",), (
        *BASE_NEEDLES, "gotol", "(s16)", "(s8)", "s/=", "s%=", "*(s32 *)"))


@requires("may_goto", min_kernel="6.9")
def test_disassembler_matches_verifier_log_may_goto(tmp_path: pathlib.Path,
                                                    pin_dir: str) -> None:
    check_against_verifier_log(tmp_path, pin_dir, "v4", ("V4", "MAY_GOTO"), (
        *BASE_NEEDLES, "gotol", "may_goto"))


@requires("load-acquire and store-release", min_kernel="6.15")
def test_disassembler_matches_verifier_log_load_acquire(tmp_path: pathlib.Path,
                                                        pin_dir: str) -> None:
    check_against_verifier_log(tmp_path, pin_dir, "v4", ("V4", "MAY_GOTO", "LOAD_ACQ"), (
        *BASE_NEEDLES, "load_acquire", "store_release", "may_goto", "gotol"))
