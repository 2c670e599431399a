"""A cgroup v2 device filter built with the assembler, the way runc does it.

runc (and containerd) do not ship a compiled BPF object for device access
control: they assemble the program at run time from the container's device
rules with cilium/ebpf's ``asm`` package, load it as a
BPF_PROG_TYPE_CGROUP_DEVICE program and attach it to the container's cgroup.
This is the same program shape in Python (compare runc's
``libcontainer/cgroups/devices/devicefilter.go``).

The kernel calls the program for every open(2)/mknod(2) of a device node by a
task in the cgroup, with ``struct bpf_cgroup_dev_ctx``::

    u32 access_type;   /* (access << 16) | type */
    u32 major;
    u32 minor;

and allows the access when it returns 1. The rules are checked in order; the
first one that matches decides, and `default_allow` decides when none does.

Run it as root (it creates and removes a cgroup under /sys/fs/cgroup/unified)::

    python examples/device_filter.py

It starts a child process in the cgroup, which may read and write /dev/null,
only read /dev/zero, do anything with /dev/urandom (even mknod a copy of it),
and nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import ebpf
from ebpf import asm

# include/uapi/linux/bpf.h: enum bpf_devcg_dev_type / access bits
DEV_BLOCK = 1
DEV_CHAR = 2
ACC_MKNOD = 1
ACC_READ = 2
ACC_WRITE = 4
_ACCESS_BITS = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}
_DEV_TYPES = {"c": DEV_CHAR, "b": DEV_BLOCK}


@dataclass(frozen=True)
class DeviceRule:
    """One device rule, as in an OCI runtime spec (``linux.resources.devices``).

    `type` is ``"c"`` (character) or ``"b"`` (block); `major`/`minor` None
    match any number; `access` is a subset of ``"rwm"`` (read, write, mknod)
    and the rule matches an access whose bits are all in it.
    """

    type: str
    major: int | None
    minor: int | None
    access: str = "rwm"
    allow: bool = True

    def __post_init__(self) -> None:
        if self.type not in _DEV_TYPES:
            raise ValueError(f"device type must be 'c' or 'b', not {self.type!r}")
        if not self.access or set(self.access) - set(_ACCESS_BITS):
            raise ValueError(f"access must be a non-empty subset of 'rwm', not {self.access!r}")
        for what, n in (("major", self.major), ("minor", self.minor)):
            if n is not None and not 0 <= n <= 0x7FFF_FFFF:
                raise ValueError(f"{what} {n} is out of range")


def device_filter(rules: Sequence[DeviceRule],
                  default_allow: bool = False) -> list[asm.Instruction]:
    """The instructions of a cgroup device program enforcing `rules` (first match wins)."""
    prog: list[asm.Instruction | asm.Label] = [
        # r2 = type (low 16 bits of access_type), r3 = access (high 16 bits)
        asm.load_mem(asm.R2, asm.R1, 0, asm.W),
        asm.and_imm32(asm.R2, 0xFFFF),
        asm.load_mem(asm.R3, asm.R1, 0, asm.W),
        asm.rsh_imm32(asm.R3, 16),
        # r4 = major, r5 = minor
        asm.load_mem(asm.R4, asm.R1, 4, asm.W),
        asm.load_mem(asm.R5, asm.R1, 8, asm.W),
    ]
    for i, rule in enumerate(rules):
        nxt = f"block-{i + 1}"
        prog.append(asm.label(f"block-{i}"))
        prog.append(asm.jne_imm(asm.R2, _DEV_TYPES[rule.type], nxt))
        bits = 0
        for c in rule.access:
            bits |= _ACCESS_BITS[c]
        if bits != ACC_READ | ACC_WRITE | ACC_MKNOD:
            # if (access & bits) != access: the access asks for more than the rule grants
            prog += [
                asm.mov_reg32(asm.R1, asm.R3),
                asm.and_imm32(asm.R1, bits),
                asm.jne_reg(asm.R1, asm.R3, nxt),
            ]
        if rule.major is not None:
            prog.append(asm.jne_imm(asm.R4, rule.major, nxt))
        if rule.minor is not None:
            prog.append(asm.jne_imm(asm.R5, rule.minor, nxt))
        prog += [asm.mov_imm32(asm.R0, int(rule.allow)), asm.exit()]
    prog += [
        asm.label(f"block-{len(rules)}"),
        asm.mov_imm32(asm.R0, int(default_allow)),
        asm.exit(),
    ]
    return asm.assemble(prog)


def device_filter_spec(rules: Sequence[DeviceRule], default_allow: bool = False,
                       name: str = "devfilter") -> ebpf.ProgramSpec:
    """A ProgramSpec for `device_filter(rules)`, ready to load and attach to a cgroup."""
    return ebpf.ProgramSpec(
        name=name,
        type=ebpf.ProgramType.CGROUP_DEVICE,
        attach_type=ebpf.AttachType.CGROUP_DEVICE,
        license="GPL",
        instructions=device_filter(rules, default_allow),
    )


# A child that joins the cgroup, then tries each "path:mode" and prints ok or EPERM.
# Mode r/w opens the device for reading/writing; m makes a copy of its node (mknod).
CHILD = r"""
import os, stat, sys, tempfile
with open(sys.argv[1] + "/cgroup.procs", "w") as f:
    f.write(str(os.getpid()))
scratch = tempfile.mkdtemp()
for arg in sys.argv[2:]:
    path, mode = arg.rsplit(":", 1)
    try:
        if mode == "m":
            node = os.path.join(scratch, "node")
            os.mknod(node, stat.S_IFCHR | 0o600, os.stat(path).st_rdev)
            os.unlink(node)
        else:
            os.close(os.open(path, {"r": os.O_RDONLY, "w": os.O_WRONLY}[mode]))
        print(arg, "ok")
    except OSError as e:
        print(arg, "EPERM" if e.errno == 1 else e.strerror)
os.rmdir(scratch)
"""


def try_open_in_cgroup(cgroup_dir: str, accesses: Iterable[str]) -> dict[str, str]:
    """Run a child in `cgroup_dir` that tries each access: ``"/dev/null:r"`` (open for
    reading), ``":w"`` (writing), ``":m"`` (mknod a copy of the node). Returns
    ``{access: "ok" | "EPERM" | other error}``."""
    out = subprocess.run([sys.executable, "-c", CHILD, cgroup_dir, *accesses],
                         check=True, capture_output=True, text=True).stdout
    result: dict[str, str] = {}
    for line in out.splitlines():
        access, outcome = line.rsplit(" ", 1)
        result[access] = outcome
    return result


def main() -> None:
    rules = [
        DeviceRule("c", 1, 3, "rw"),  # /dev/null: read and write
        DeviceRule("c", 1, 5, "r"),   # /dev/zero: read only
        DeviceRule("c", 1, 9, "rwm"),  # /dev/urandom: anything, even mknod
    ]
    insns = device_filter(rules)
    print(asm.disassemble(insns))
    root = "/sys/fs/cgroup/unified"
    cgroup_dir = os.path.join(root, f"ebpf-devfilter-{uuid.uuid4().hex[:8]}")
    os.mkdir(cgroup_dir)
    try:
        with ebpf.Program(device_filter_spec(rules)) as prog, ebpf.link.cgroup(prog, cgroup_dir):
            print(f"\nloaded {prog.name!r} (id {prog.id}, tag {prog.tag}), "
                  f"attached to {cgroup_dir}\n")
            accesses = ["/dev/null:r", "/dev/null:w", "/dev/null:m", "/dev/zero:r",
                        "/dev/zero:w", "/dev/urandom:r", "/dev/urandom:m", "/dev/random:r"]
            for access, outcome in try_open_in_cgroup(cgroup_dir, accesses).items():
                print(f"  {access:16} {outcome}")
    finally:
        os.rmdir(cgroup_dir)


if __name__ == "__main__":
    main()
