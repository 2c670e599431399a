"""The assembler showcase: runc's cgroup v2 device filter (examples/device_filter.py).

BPF_PROG_TYPE_CGROUP_DEVICE cannot be test run (the kernel has no test_run for it),
so the filter is checked two ways:

* exhaustively, by loading the very same instructions as a BPF_PROG_TYPE_SYSCALL
  program, whose context is a plain user buffer with the layout of
  ``struct bpf_cgroup_dev_ctx``, and comparing every verdict with a Python model;
* for real, by attaching it to a fresh cgroup v2 directory and letting a child
  process in that cgroup open and mknod device nodes.
"""

from __future__ import annotations

import itertools
import os
import struct
import sys
from collections.abc import Sequence

import pytest

import ebpf
from ebpf import asm
from ebpf.errors import NotSupportedError
from ebpf.programs import Program, ProgramFlags, ProgramSpec

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))

from device_filter import (
    ACC_MKNOD,
    ACC_READ,
    ACC_WRITE,
    DEV_BLOCK,
    DEV_CHAR,
    DeviceRule,
    device_filter,
    device_filter_spec,
    try_open_in_cgroup,
)

pytestmark = pytest.mark.kernel

CONTAINER_RULES = [  # a typical container: a few character devices, nothing else
    DeviceRule("c", 1, 3, "rwm"),    # /dev/null
    DeviceRule("c", 1, 5, "r"),      # /dev/zero, read only
    DeviceRule("c", 1, 9, "rw"),     # /dev/urandom
    DeviceRule("c", 136, None, "rw"),  # /dev/pts/*
    DeviceRule("b", None, 0, "m"),   # mknod of any block device with minor 0
]
DENY_RULES = [  # deny-list mode: everything but these
    DeviceRule("c", 1, 3, "w", allow=False),
    DeviceRule("b", None, None, "rwm", allow=False),
]


def model(rules: Sequence[DeviceRule], default_allow: bool, dev_type: int, access: int,
          major: int, minor: int) -> int:
    """What the filter should decide, in Python: the first matching rule wins."""
    for r in rules:
        bits = sum({"r": ACC_READ, "w": ACC_WRITE, "m": ACC_MKNOD}[c] for c in r.access)
        if ({"c": DEV_CHAR, "b": DEV_BLOCK}[r.type] == dev_type
                and access & bits == access
                and r.major in (None, major) and r.minor in (None, minor)):
            return int(r.allow)
    return int(default_allow)


@pytest.fixture(params=[(CONTAINER_RULES, False), (DENY_RULES, True)], ids=["allow", "deny"])
def ruleset(request: pytest.FixtureRequest) -> tuple[list[DeviceRule], bool]:
    rules, default = request.param
    return rules, default


def test_program_shape() -> None:
    insns = device_filter([DeviceRule("c", 1, 3, "rw")])
    text = asm.disassemble(insns)
    # the prologue unpacks struct bpf_cgroup_dev_ctx like runc's
    assert text.splitlines()[:6] == [
        "   0: (61) r2 = *(u32 *)(r1 +0)",
        "   1: (54) w2 &= 65535",
        "   2: (61) r3 = *(u32 *)(r1 +0)",
        "   3: (74) w3 >>= 16",
        "   4: (61) r4 = *(u32 *)(r1 +4)",
        "   5: (61) r5 = *(u32 *)(r1 +8)",
    ]
    assert "block-0:" in text and "block-1:" in text
    # the default verdict ends the program
    assert insns[-2] == asm.mov_imm32(asm.R0, 0).with_symbol("block-1")
    assert insns[-1] == asm.exit()
    # "rwm" needs no access check
    assert len(device_filter([DeviceRule("c", 1, 3)])) == len(insns) - 3


def test_cgroup_device_cannot_be_test_run() -> None:
    with Program(device_filter_spec(CONTAINER_RULES)) as prog:
        assert prog.type == ebpf.ProgramType.CGROUP_DEVICE
        with pytest.raises(NotSupportedError):
            prog.test_run(ctx=struct.pack("<III", DEV_CHAR | ACC_READ << 16, 1, 3))


def test_filter_logic_matches_model(ruleset: tuple[list[DeviceRule], bool]) -> None:
    rules, default_allow = ruleset
    # the same instructions as a SYSCALL program: its ctx is our 12-byte struct
    spec = ProgramSpec(name="devfilter_sim", type=ebpf.ProgramType.SYSCALL, license="GPL",
                       flags=ProgramFlags.SLEEPABLE,
                       instructions=device_filter(rules, default_allow))
    accesses = [ACC_READ, ACC_WRITE, ACC_MKNOD, ACC_READ | ACC_WRITE,
                ACC_READ | ACC_WRITE | ACC_MKNOD]
    checked = 0
    with Program(spec) as prog:
        for dev_type, access, major, minor in itertools.product(
                (DEV_CHAR, DEV_BLOCK), accesses, (0, 1, 8, 136), (0, 3, 5, 9)):
            ctx = struct.pack("<III", access << 16 | dev_type, major, minor)
            got = prog.test_run(ctx=ctx).retval
            want = model(rules, default_allow, dev_type, access, major, minor)
            assert got == want, (dev_type, access, major, minor)
            checked += 1
    assert checked == 2 * 5 * 4 * 4


def test_attached_to_cgroup_allow_list(cgroup: str) -> None:
    rules = [
        DeviceRule("c", 1, 3, "rw"),    # /dev/null: read, write, no mknod
        DeviceRule("c", 1, 5, "r"),     # /dev/zero: read only
        DeviceRule("c", 1, 9, "rwm"),   # /dev/urandom: everything
    ]
    accesses = ["/dev/null:r", "/dev/null:w", "/dev/null:m", "/dev/zero:r", "/dev/zero:w",
                "/dev/urandom:r", "/dev/urandom:m", "/dev/random:r", "/dev/full:w"]
    before = try_open_in_cgroup(cgroup, accesses)
    assert set(before.values()) == {"ok"}  # no filter yet: all allowed
    with Program(device_filter_spec(rules)) as prog, ebpf.link.cgroup(prog, cgroup):
        got = try_open_in_cgroup(cgroup, accesses)
    assert got == {
        "/dev/null:r": "ok",
        "/dev/null:w": "ok",
        "/dev/null:m": "EPERM",
        "/dev/zero:r": "ok",
        "/dev/zero:w": "EPERM",
        "/dev/urandom:r": "ok",
        "/dev/urandom:m": "ok",
        "/dev/random:r": "EPERM",
        "/dev/full:w": "EPERM",
    }
    # detached again: everything allowed
    assert set(try_open_in_cgroup(cgroup, accesses).values()) == {"ok"}


def test_attached_to_cgroup_deny_list(cgroup: str) -> None:
    rules = [DeviceRule("c", 1, 3, "w", allow=False)]  # /dev/null may not be written
    accesses = ["/dev/null:r", "/dev/null:w", "/dev/zero:w", "/dev/zero:m"]
    spec = device_filter_spec(rules, default_allow=True)
    with Program(spec) as prog, ebpf.link.cgroup(prog, cgroup):
        got = try_open_in_cgroup(cgroup, accesses)
    assert got == {"/dev/null:r": "ok", "/dev/null:w": "EPERM", "/dev/zero:w": "ok",
                   "/dev/zero:m": "ok"}


def test_only_the_cgroup_is_filtered(cgroup: str) -> None:
    with Program(device_filter_spec([])) as prog, ebpf.link.cgroup(prog, cgroup):  # deny everything
        assert try_open_in_cgroup(cgroup, ["/dev/null:r"]) == {"/dev/null:r": "EPERM"}
        os.close(os.open("/dev/null", os.O_RDONLY))  # this process is not in the cgroup


def test_bad_rules() -> None:
    with pytest.raises(ValueError):
        DeviceRule("x", 1, 3)
    with pytest.raises(ValueError):
        DeviceRule("c", 1, 3, "rx")
    with pytest.raises(ValueError):
        DeviceRule("c", -1, 3)
