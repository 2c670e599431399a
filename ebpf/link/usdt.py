"""USDT probes (``<sys/sdt.h>`` ``DTRACE_PROBE``/``STAP_PROBE`` markers).

A USDT probe is a ``nop`` in a binary described by a ``.note.stapsdt`` ELF
note: where it is, the semaphore that enables it, and where each argument
lives at that instruction (``-4@%esi``, ``8@-24(%rbp)``, ``4@$7``, ...).
`usdt_probes` reads those notes; `usdt` attaches a program with uprobes at
every location of one probe and stores each location's argument
specification where libbpf's ``usdt.bpf.h`` reads it, so that BPF C code
written for libbpf (``BPF_USDT``, ``bpf_usdt_arg``, ``bpf_usdt_cookie``)
works unchanged:

- the ``__bpf_usdt_specs`` array map holds one ``struct __bpf_usdt_spec`` per
  distinct argument layout (its index is the "spec id");
- each uprobe carries its spec id as the BPF cookie; on kernels without
  cookies (before 5.15) the ``__bpf_usdt_ip_to_spec_id`` hash map maps the
  probe's address in the process to the spec id instead.

Semaphores are incremented by the kernel while the uprobes exist
(``ref_ctr_offset``, Linux 4.20+).

>>> with ebpf.link.usdt(prog, "/usr/bin/python3", "python", "function__entry"):  # doctest: +SKIP
...     ...
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import re
import struct
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._sys import ops
from .._sys import validate as _validate
from .._sys.types import AttachType, MapInfo, ProgramType
from ..btf import Array, Composite, Spec, sizeof, skip_typedefs, strip_qualifiers
from ..elffile import ELFFile, ElfType, SectionType, SegmentFlags, SegmentType
from ..errors import (
    ELFError,
    InvalidArgumentError,
    KeyNotFoundError,
    NotSupportedError,
    SyscallError,
)
from ..maps import Map
from .base import Link
from .perf_event import COOKIE_FEATURE, MultiLink
from .uprobe import attach_uprobe_at, resolve_binary, uprobe_multi

if TYPE_CHECKING:
    from ..programs import Program

__all__ = [
    "USDTArg",
    "USDTLink",
    "USDTProbe",
    "encode_spec",
    "parse_usdt_args",
    "usdt",
    "usdt_probes",
]

NOTE_SECTION = ".note.stapsdt"
BASE_SECTION = ".stapsdt.base"
NOTE_OWNER = "stapsdt"
NOTE_TYPE = 3

SPECS_MAP = "__bpf_usdt_specs"
IP_MAP = "__bpf_usdt_ip_to_spec_id"
MAX_ARGS = 12  # BPF_USDT_MAX_ARG_CNT

ARG_CONST = 0
ARG_REG = 1
ARG_REG_DEREF = 2
ARG_SIB = 3

# struct __bpf_usdt_arg_spec (16 bytes): u64 val_off; u32 arg_type (u8 + SIB extras in
# libbpf 1.7+); short reg_off; bool arg_signed; char arg_bitshift.
_ARG = struct.Struct("=QIhBb")
_ARG_SIZE = 16
# struct __bpf_usdt_spec: args[12]; u64 usdt_cookie; short arg_cnt (+ padding)
_COOKIE_OFF = MAX_ARGS * _ARG_SIZE
_CNT_OFF = _COOKIE_OFF + 8
SPEC_SIZE = _CNT_OFF + 8


# --------------------------------------------------------------------------- arguments


@dataclasses.dataclass(frozen=True)
class USDTArg:
    """Where one USDT argument lives: a constant, a register, memory at a register
    plus an offset, or (x86) memory at base + index * scale + offset."""

    text: str
    size: int  # bytes: 1, 2, 4 or 8
    signed: bool
    kind: int  # ARG_CONST, ARG_REG, ARG_REG_DEREF or ARG_SIB
    val_off: int = 0  # the constant, or the memory offset
    reg_off: int = 0  # offsetof(struct pt_regs, reg)
    idx_reg_off: int = 0  # SIB: offsetof(struct pt_regs, index register)
    scale: int = 1  # SIB: 1, 2, 4 or 8

    @property
    def bitshift(self) -> int:
        """Bits to clear (and sign-extend) to widen the value to 64 bits."""
        return 64 - self.size * 8


_X86_REGS: dict[str, int] = {}
for _names, _off in (
    (("rip", "eip"), 128),
    (("rax", "eax", "ax", "al"), 80),
    (("rbx", "ebx", "bx", "bl"), 40),
    (("rcx", "ecx", "cx", "cl"), 88),
    (("rdx", "edx", "dx", "dl"), 96),
    (("rsi", "esi", "si", "sil"), 104),
    (("rdi", "edi", "di", "dil"), 112),
    (("rbp", "ebp", "bp", "bpl"), 32),
    (("rsp", "esp", "sp", "spl"), 152),
    (("r8", "r8d", "r8w", "r8b"), 72),
    (("r9", "r9d", "r9w", "r9b"), 64),
    (("r10", "r10d", "r10w", "r10b"), 56),
    (("r11", "r11d", "r11w", "r11b"), 48),
    (("r12", "r12d", "r12w", "r12b"), 24),
    (("r13", "r13d", "r13w", "r13b"), 16),
    (("r14", "r14d", "r14w", "r14b"), 8),
    (("r15", "r15d", "r15w", "r15b"), 0),
):
    for _n in _names:
        _X86_REGS[_n] = _off

_RISCV_REGS = {name: 8 * i for i, name in enumerate(
    ("pc", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3",
     "a4", "a5", "a6", "a7", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11",
     "t3", "t4", "t5", "t6"))}
_RISCV_REGS["fp"] = _RISCV_REGS["s0"]

_NUM = r"[-+]?(?:0[xX][0-9a-fA-F]+|\d+)"
_SIZE = r"(?P<size>[-+]?\d+)\s*@\s*"
_X86_SIB = re.compile(_SIZE + rf"(?P<off>{_NUM})?\s*\(\s*%(?P<base>\w+)\s*,\s*%(?P<idx>\w+)"
                      rf"\s*(?:,\s*(?P<scale>\d+)\s*)?\)")
_X86_DEREF = re.compile(_SIZE + rf"(?P<off>{_NUM})?\s*\(\s*%(?P<reg>\w+)\s*\)")
_X86_REG = re.compile(_SIZE + r"%(?P<reg>\w+)")
_X86_CONST = re.compile(_SIZE + rf"\$(?P<val>{_NUM})")
_ARM_DEREF = re.compile(_SIZE + rf"\[\s*(?P<reg>\w+)\s*(?:,\s*(?P<off>{_NUM})\s*)?\]")
_ARM_REG = re.compile(_SIZE + r"(?P<reg>[a-z]\w*)")
_PLAIN_CONST = re.compile(_SIZE + rf"(?P<val>{_NUM})")
_S390_DEREF = re.compile(_SIZE + rf"(?P<off>{_NUM})\s*\(\s*%r(?P<reg>\d+)\s*\)")
_S390_REG = re.compile(_SIZE + r"%r(?P<reg>\d+)")
_RISCV_DEREF = re.compile(_SIZE + rf"(?P<off>{_NUM})\s*\(\s*(?P<reg>\w+)\s*\)")


# one argument: non-blank characters, or [...] / (...) groups that may hold blanks
_ARG_TOKEN = re.compile(r"(?:[^\s\[(]|\[[^\]]*\]|\([^)]*\))+")


def _int(text: str | None) -> int:
    return int(text, 0) if text else 0


def _arm64_reg(name: str) -> int | None:
    if name == "sp":
        return 31 * 8
    m = re.fullmatch(r"[xw](\d+)", name)
    if m and int(m.group(1)) < 31:
        return int(m.group(1)) * 8
    return None


def _parse_arg(text: str, arch: str) -> USDTArg:
    def reg(table: dict[str, int], name: str) -> int:
        off = table.get(name)
        if off is None:
            raise InvalidArgumentError(f"unknown register {name!r} in USDT argument {text!r}")
        return off

    def make(m: re.Match[str], kind: int, **kw: int) -> USDTArg:
        size = int(m.group("size"))
        if abs(size) not in (1, 2, 4, 8):
            raise InvalidArgumentError(f"invalid size {size} in USDT argument {text!r}")
        return USDTArg(text, abs(size), size < 0, kind, **kw)

    if arch == "x86_64":
        if m := _X86_SIB.fullmatch(text):
            scale = int(m.group("scale") or 1)
            if scale not in (1, 2, 4, 8):
                raise InvalidArgumentError(f"invalid scale {scale} in USDT argument {text!r}")
            return make(m, ARG_SIB, val_off=_int(m.group("off")),
                        reg_off=reg(_X86_REGS, m.group("base")),
                        idx_reg_off=reg(_X86_REGS, m.group("idx")), scale=scale)
        if m := _X86_DEREF.fullmatch(text):
            return make(m, ARG_REG_DEREF, val_off=_int(m.group("off")),
                        reg_off=reg(_X86_REGS, m.group("reg")))
        if m := _X86_REG.fullmatch(text):
            return make(m, ARG_REG, reg_off=reg(_X86_REGS, m.group("reg")))
        if m := _X86_CONST.fullmatch(text):
            return make(m, ARG_CONST, val_off=_int(m.group("val")))
    elif arch == "aarch64":
        regs = {f"x{i}": i * 8 for i in range(31)}
        regs["sp"] = 31 * 8
        if m := _ARM_DEREF.fullmatch(text):
            off = _arm64_reg(m.group("reg"))
            if off is not None:
                return make(m, ARG_REG_DEREF, val_off=_int(m.group("off")), reg_off=off)
        elif m := _PLAIN_CONST.fullmatch(text):
            return make(m, ARG_CONST, val_off=_int(m.group("val")))
        elif m := _ARM_REG.fullmatch(text):
            off = _arm64_reg(m.group("reg"))
            if off is not None:
                return make(m, ARG_REG, reg_off=off)
    elif arch == "s390x":
        if m := _S390_DEREF.fullmatch(text):
            r = int(m.group("reg"))
            if r < 16:
                return make(m, ARG_REG_DEREF, val_off=_int(m.group("off")), reg_off=16 + 8 * r)
        elif m := _S390_REG.fullmatch(text):
            r = int(m.group("reg"))
            if r < 16:
                return make(m, ARG_REG, reg_off=16 + 8 * r)
        elif m := _PLAIN_CONST.fullmatch(text):
            return make(m, ARG_CONST, val_off=_int(m.group("val")))
    elif arch == "riscv64":
        if m := _RISCV_DEREF.fullmatch(text):
            return make(m, ARG_REG_DEREF, val_off=_int(m.group("off")),
                        reg_off=reg(_RISCV_REGS, m.group("reg")))
        if m := _PLAIN_CONST.fullmatch(text):
            return make(m, ARG_CONST, val_off=_int(m.group("val")))
        if m := _ARM_REG.fullmatch(text):
            return make(m, ARG_REG, reg_off=reg(_RISCV_REGS, m.group("reg")))
    else:
        raise NotSupportedError(f"USDT arguments on {arch}")
    raise InvalidArgumentError(f"unrecognized USDT argument {text!r} ({arch})")


def parse_usdt_args(args: str, arch: str | None = None) -> list[USDTArg]:
    """Parse a USDT argument string (``"-4@%esi 8@-24(%rbp) 4@$7"``) for `arch`
    (default: this machine)."""
    arch = arch or os.uname().machine
    if arch == "arm64":
        arch = "aarch64"
    parts = _ARG_TOKEN.findall(args)
    if len(parts) > MAX_ARGS:
        raise InvalidArgumentError(f"USDT probe has {len(parts)} arguments, at most "
                                   f"{MAX_ARGS} are supported")
    return [_parse_arg(p, arch) for p in parts]


# --------------------------------------------------------------------------- notes


@dataclasses.dataclass(frozen=True)
class USDTProbe:
    """One location of a USDT probe in a binary.

    `address` is the probe's virtual address (prelink-adjusted), `file_offset`
    where uprobes attach, `semaphore` the virtual address of its semaphore (0
    when it has none) and `semaphore_offset` its file offset.
    """

    path: str
    provider: str
    name: str
    address: int
    file_offset: int
    semaphore: int
    semaphore_offset: int
    args_text: str
    shared: bool  # the binary is ET_DYN (PIE or shared library)

    @property
    def args(self) -> list[USDTArg]:
        """The parsed argument locations."""
        return parse_usdt_args(self.args_text)


def _segment_offset(elf: ELFFile, vaddr: int, *, executable: bool) -> int | None:
    for seg in elf.segments:
        if seg.type != SegmentType.LOAD or not seg.vaddr <= vaddr < seg.vaddr + seg.memsz:
            continue
        if bool(seg.flags & SegmentFlags.X) != executable:
            continue
        return vaddr - seg.vaddr + seg.offset
    return None


def usdt_probes(binary: str | os.PathLike[str], provider: str | None = None,
                name: str | None = None) -> list[USDTProbe]:
    """Every USDT probe location in `binary` (a path or a name resolved like
    `ebpf.link.uprobe.resolve_binary`), optionally only of `provider`/`name`."""
    path = resolve_binary(binary)
    out: list[USDTProbe] = []
    with ELFFile(path) as elf:
        notes = elf.section_by_name(NOTE_SECTION)
        if notes is None or notes.type != SectionType.NOTE:
            return out
        base_sec = elf.section_by_name(BASE_SECTION)
        base_addr = base_sec.addr if base_sec is not None else 0
        fmt = ("<" if elf.little_endian else ">") + "QQQ"
        shared = elf.type == ElfType.DYN
        for note in elf.notes(notes):
            if note.name != NOTE_OWNER or note.type != NOTE_TYPE:
                continue
            if len(note.desc) < 24:
                raise ELFError("truncated USDT note", section=NOTE_SECTION)
            pc, note_base, sema = struct.unpack_from(fmt, note.desc)
            strings = note.desc[24:].split(b"\0")
            if len(strings) < 3:
                raise ELFError("USDT note without provider, name and arguments",
                               section=NOTE_SECTION)
            prov, pname, args = (s.decode("utf-8", "replace") for s in strings[:3])
            if (provider is not None and prov != provider) or (name is not None
                                                               and pname != name):
                continue
            address = pc + (base_addr - note_base) if base_addr else pc
            file_offset = _segment_offset(elf, address, executable=True)
            if file_offset is None:
                raise ELFError(f"USDT probe {prov}:{pname} at {address:#x} is not in an "
                               "executable segment", section=NOTE_SECTION)
            sema_off = 0
            if sema:
                found = _segment_offset(elf, sema, executable=False)
                if found is None:
                    raise ELFError(f"semaphore of USDT probe {prov}:{pname} at {sema:#x} is "
                                   "not in a data segment", section=NOTE_SECTION)
                sema_off = found
            out.append(USDTProbe(path, prov, pname, address, file_offset, sema, sema_off,
                                 args, shared))
    return out


# --------------------------------------------------------------------------- specs


def _sib_packer(value_type: Any) -> Any:
    """From the BTF of the specs map's value (struct __bpf_usdt_spec), a function
    that stores a SIB argument's index register and scale into a 16-byte arg
    spec (libbpf 1.7+ layouts), or None when the program's usdt.bpf.h is older."""
    t = skip_typedefs(value_type)
    if not isinstance(t, Composite):
        return None
    args = next((m for m in t.members if m.name == "args"), None)
    if args is None:
        return None
    arr = strip_qualifiers(skip_typedefs(args.type))
    if not isinstance(arr, Array):
        return None
    elem = skip_typedefs(arr.type)
    if not isinstance(elem, Composite):
        return None
    members = {m.name: m for m in elem.members}

    def bits(buf: bytearray, at: int, member: Any, value: int) -> None:
        width = member.bitfield_size or 8 * _sizeof(member.type)
        word = int.from_bytes(buf[at:at + _ARG_SIZE], "little")
        mask = ((1 << width) - 1) << member.offset_bits
        word = (word & ~mask) | ((value << member.offset_bits) & mask)
        buf[at:at + _ARG_SIZE] = word.to_bytes(_ARG_SIZE, "little")

    if "idx_reg_off" in members:
        scale_member = members.get("scale_bitshift") or members.get("scale")
        if scale_member is None:
            return None

        def pack(buf: bytearray, at: int, a: USDTArg) -> None:
            bits(buf, at, members["idx_reg_off"], a.idx_reg_off)
            bits(buf, at, scale_member, a.scale.bit_length() - 1)

        return pack
    if "idx_packed" in members:
        def pack_packed(buf: bytearray, at: int, a: USDTArg) -> None:
            bits(buf, at, members["idx_packed"],
                 (a.idx_reg_off << 4) | (a.scale.bit_length() - 1))

        return pack_packed
    return None


def _sizeof(t: Any) -> int:
    return int(sizeof(t))


def encode_spec(args: Sequence[USDTArg], cookie: int = 0, *, value_type: Any = None,
                value_size: int = SPEC_SIZE, byteorder: str = "=") -> bytes:
    """A ``struct __bpf_usdt_spec`` for `args` as usdt.bpf.h reads it.

    `value_type` (the BTF type of the specs map's value) is only needed for
    SIB arguments, whose encoding changed in libbpf 1.7.
    """
    if len(args) > MAX_ARGS:
        raise InvalidArgumentError(f"at most {MAX_ARGS} USDT arguments, got {len(args)}")
    if value_size < SPEC_SIZE - 6:
        raise InvalidArgumentError(f"USDT spec map values are {value_size} bytes, expected "
                                   f"{SPEC_SIZE} (struct __bpf_usdt_spec)")
    arg = struct.Struct(byteorder + "QIhBb")
    buf = bytearray(max(value_size, SPEC_SIZE))
    pack_sib = None
    for i, a in enumerate(args):
        at = i * _ARG_SIZE
        arg.pack_into(buf, at, a.val_off & (2**64 - 1), a.kind, a.reg_off, int(a.signed),
                      a.bitshift)
        if a.kind == ARG_SIB:
            if pack_sib is None and value_type is not None:
                pack_sib = _sib_packer(value_type)
            if pack_sib is None:
                raise NotSupportedError(
                    f"USDT argument {a.text!r} (scale-index-base addressing)",
                    "the program's usdt.bpf.h predates libbpf 1.7 and cannot read it")
            pack_sib(buf, at, a)
    struct.pack_into(byteorder + "Qh", buf, _COOKIE_OFF, cookie & (2**64 - 1), len(args))
    return bytes(buf[:value_size])


# --------------------------------------------------------------------------- spec ids

_ids_lock = threading.Lock()
_used_ids: dict[int, set[int]] = {}  # specs map id -> spec ids in use by this process


def _allocate_id(map_id: int, max_entries: int) -> int:
    with _ids_lock:
        used = _used_ids.setdefault(map_id, set())
        for i in range(max_entries):
            if i not in used:
                used.add(i)
                return i
    raise InvalidArgumentError(
        f"all {max_entries} entries of {SPECS_MAP} are in use: raise BPF_USDT_MAX_SPEC_CNT")


def _release_ids(map_id: int, ids: Sequence[int]) -> None:
    with _ids_lock:
        used = _used_ids.get(map_id)
        if used is not None:
            used.difference_update(ids)
            if not used:  # map ids are not reused soon: reloads would pile up empty sets
                del _used_ids[map_id]


def _program_map(program: Program, name: str) -> Map | None:
    """The map called `name` (as the kernel truncates names) that `program` uses."""
    kname = name[:15]
    for map_id in program.info().map_ids:
        try:
            m = Map.from_id(map_id)
        except (KeyNotFoundError, SyscallError):
            continue
        if m.name in (name, kname):
            return m
        m.close()
    return None


def _value_btf(m: Map) -> Any:
    vt = getattr(m, "value_type", None)
    if vt is not None:
        return vt
    info = MapInfo()
    try:
        ops.obj_get_info(m.fileno(), info)
        if not info.btf_id or not info.btf_value_type_id:
            return None
        return Spec(ops.btf_get_data(int(info.btf_id))).type_by_id(int(info.btf_value_type_id))
    except Exception:
        return None


# --------------------------------------------------------------------------- attaching


class USDTLink(MultiLink):
    """The uprobes of one USDT probe (every location) and the argument specs they
    use; `close()` detaches them and frees the specs' slots."""

    def __init__(self, links: Sequence[Link], program: Program, description: str,
                 specs: Map, spec_ids: Sequence[int], ip_map: Map | None,
                 ips: Sequence[int]) -> None:
        super().__init__(links, program, description)
        self._specs = specs
        self._map_id = specs.id
        self.spec_ids = list(spec_ids)
        self._ip_map = ip_map
        self._ips = list(ips)

    def close(self) -> None:
        if self.closed:
            return
        try:
            super().close()
        finally:
            if self._ip_map is not None:
                for ip in self._ips:
                    with contextlib.suppress(Exception):
                        self._ip_map.delete(ip)
                self._ip_map.close()
            _release_ids(self._map_id, self.spec_ids)
            self._specs.close()


def _process_address(pid: int, path: str, file_offset: int) -> int:
    """The address of `file_offset` of `path` mapped in process `pid`."""
    st = os.stat(path)
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError as e:
        raise SyscallError(e.errno or errno.ESRCH, f"cannot read /proc/{pid}/maps") from None
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or "x" not in parts[1]:
            continue
        dev_major, _, dev_minor = parts[3].partition(":")
        if int(parts[4]) != st.st_ino or os.makedev(int(dev_major, 16),
                                                     int(dev_minor, 16)) != st.st_dev:
            continue
        lo, _, hi = parts[0].partition("-")
        start, end, off = int(lo, 16), int(hi, 16), int(parts[2], 16)
        if off <= file_offset < off + (end - start):
            return start - off + file_offset
    raise SyscallError(errno.ESRCH, f"{path} is not mapped executable in process {pid}")


def usdt(
    program: Program,
    binary: str | os.PathLike[str],
    provider: str,
    name: str,
    *,
    pid: int | None = None,
    cookie: int = 0,
    specs_map: Map | None = None,
    ip_map: Map | None = None,
) -> USDTLink:
    """Attach a KPROBE program written with libbpf's ``usdt.bpf.h`` to every
    location of USDT probe `provider`:`name` in `binary`.

    `pid` limits it to one process. `cookie` is what ``bpf_usdt_cookie()``
    returns. The program's ``__bpf_usdt_specs`` (and, on kernels without BPF
    cookies, ``__bpf_usdt_ip_to_spec_id``) maps are found through the program;
    pass `specs_map`/`ip_map` to use other ones.
    """
    if program.type != ProgramType.KPROBE:
        raise InvalidArgumentError(
            f"usdt needs a KPROBE program; {program.name!r} is a {program.type.name} program")
    # bpf_usdt_cookie() returns a long: negative cookies are stored as their u64 pattern
    cookie = _validate.integer(cookie, "usdt: cookie", -(1 << 63), (1 << 64) - 1)
    if pid is not None:
        pid = _validate.integer(pid, "usdt: pid", -(1 << 31), (1 << 31) - 1)
    probes = usdt_probes(binary, provider, name)
    if not probes:
        raise KeyNotFoundError(f"no USDT probe {provider}:{name} in {resolve_binary(binary)}")
    path = probes[0].path
    specs = specs_map.dup() if specs_map is not None else _program_map(program, SPECS_MAP)
    if specs is None:
        raise InvalidArgumentError(
            f"program {program.name!r} has no {SPECS_MAP} map: is it written with libbpf's "
            "<bpf/usdt.bpf.h> (BPF_USDT / bpf_usdt_arg)?")
    description = f"usdt {path}:{provider}:{name}"
    spec_ids: list[int] = []
    links: list[Link] = []
    ips: list[int] = []
    ipm: Map | None = None
    try:
        value_type = None
        by_args: dict[str, int] = {}
        location_ids: list[int] = []
        for p in probes:
            sid = by_args.get(p.args_text)
            if sid is None:
                args = p.args
                if any(a.kind == ARG_SIB for a in args) and value_type is None:
                    value_type = _value_btf(specs)
                value = encode_spec(args, cookie, value_type=value_type,
                                    value_size=specs.value_size)
                sid = _allocate_id(specs.id, specs.max_entries)
                spec_ids.append(sid)
                specs.update(sid, value)
                by_args[p.args_text] = sid
            location_ids.append(sid)
        links, ipm, ips = _attach_locations(program, path, probes, location_ids, pid, ip_map)
    except BaseException:
        for link in links:
            link.close()
        _release_ids(specs.id, spec_ids)
        specs.close()
        if ipm is not None:
            ipm.close()
        raise
    return USDTLink(links, program, description, specs, spec_ids, ipm, ips)


def _attach_locations(program: Program, path: str, probes: Sequence[USDTProbe],
                      ids: Sequence[int], pid: int | None, ip_map: Map | None,
                      ) -> tuple[list[Link], Map | None, list[int]]:
    """Uprobes at every probe location with spec ids as cookies: one uprobe_multi
    link when the program was loaded for it, else one perf-event uprobe each; on
    kernels without BPF cookies, the ip -> spec id map instead."""
    spec = getattr(program, "spec", None)
    if getattr(spec, "attach_type", None) == AttachType.TRACE_UPROBE_MULTI:
        return [_multi(program, path, probes, ids, pid)], None, []
    links: list[Link] = []
    try:
        for p, sid in zip(probes, ids, strict=True):
            links.append(attach_uprobe_at(program, path, p.file_offset, pid=pid, cookie=sid,
                                          ref_ctr_offset=p.semaphore_offset,
                                          description=f"usdt {p.provider}:{p.name} "
                                                      f"{path}:{p.file_offset:#x}"))
        return links, None, []
    except NotSupportedError as e:
        for link in links:
            link.close()
        if e.feature != COOKIE_FEATURE:
            raise
    except SyscallError as e:
        for link in links:
            link.close()
        if e.errno != errno.EINVAL or links:
            raise
        # a program loaded with attach type TRACE_UPROBE_MULTI refuses perf events
        try:
            return [_multi(program, path, probes, ids, pid)], None, []
        except SyscallError:
            raise e from None
    return _attach_without_cookies(program, path, probes, ids, pid, ip_map)


def _multi(program: Program, path: str, probes: Sequence[USDTProbe], ids: Sequence[int],
           pid: int | None) -> Link:
    return uprobe_multi(program, path, offsets=[p.file_offset for p in probes],
                        cookies=list(ids),
                        ref_ctr_offsets=[p.semaphore_offset for p in probes], pid=pid)


def _attach_without_cookies(program: Program, path: str, probes: Sequence[USDTProbe],
                            ids: Sequence[int], pid: int | None, ip_map: Map | None,
                            ) -> tuple[list[Link], Map | None, list[int]]:
    ipm = ip_map.dup() if ip_map is not None else _program_map(program, IP_MAP)
    if ipm is None:
        raise InvalidArgumentError(f"program {program.name!r} has no {IP_MAP} map, needed on "
                                   "kernels without BPF cookies")
    links: list[Link] = []
    ips: list[int] = []
    try:
        for p, sid in zip(probes, ids, strict=True):
            if p.shared:
                if pid is None or pid < 0:
                    raise NotSupportedError(
                        "USDT probes in shared objects or PIE for every process",
                        "this kernel has no BPF cookies (Linux < 5.15): give a pid")
                ip = _process_address(pid, path, p.file_offset)
            else:
                ip = p.address
            ipm.update(ip, sid)
            ips.append(ip)
            links.append(attach_uprobe_at(program, path, p.file_offset, pid=pid,
                                          ref_ctr_offset=p.semaphore_offset))
    except BaseException:
        for link in links:
            link.close()
        for ip in ips:
            with contextlib.suppress(Exception):
                ipm.delete(ip)
        ipm.close()
        raise
    return links, ipm, ips
