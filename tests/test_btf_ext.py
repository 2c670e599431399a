"""The .BTF.ext parser: clang's output (checked against llvm-objdump), hand-made
blobs in both byte orders, forward-compatible record sizes, and malformed input
(BTFError naming the offset, never anything else, never a hang)."""

from __future__ import annotations

import re
import struct
import subprocess
from collections.abc import Sequence

import pytest
from conftest import need_tool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ebpf import btf
from ebpf._sys.types import CoreReloKind
from ebpf.btf.ext import CoreRelo, LineInfo, parse_ext
from ebpf.errors import BTFError

# -- a tiny BTF encoder for hand-made specs (shared with test_core) ---------------

KIND = {"int": 1, "ptr": 2, "array": 3, "struct": 4, "union": 5, "enum": 6, "fwd": 7,
        "typedef": 8, "volatile": 9, "const": 10, "func": 12, "func_proto": 13,
        "float": 16, "enum64": 19}


class RawBTF:
    """Builds raw BTF bytes type by type (ids are assigned in order from 1)."""

    def __init__(self, order: str = "<") -> None:
        self.order = order
        self.records: list[bytes] = []
        self.strings = bytearray(b"\0")
        self._offs: dict[str, int] = {"": 0}

    def str(self, s: str) -> int:
        off = self._offs.get(s)
        if off is None:
            off = self._offs[s] = len(self.strings)
            self.strings += s.encode() + b"\0"
        return off

    @property
    def next_id(self) -> int:
        return len(self.records) + 1

    def _add(self, kind: str, name: str, vlen: int, size_type: int, extra: Sequence[int] = (),
             kflag: bool = False) -> int:
        info = (int(kflag) << 31) | (KIND[kind] << 24) | vlen
        words = [self.str(name), info, size_type & 0xFFFFFFFF, *(w & 0xFFFFFFFF for w in extra)]
        self.records.append(struct.pack(f"{self.order}{len(words)}I", *words))
        return len(self.records)

    def int(self, name: str, size: int, signed: bool = False, bits: int | None = None,
            offset: int = 0) -> int:
        enc = (1 if signed else 0) << 24 | (offset << 16) | (bits if bits is not None else size * 8)
        return self._add("int", name, 0, size, [enc])

    def ptr(self, t: int) -> int:
        return self._add("ptr", "", 0, t)

    def typedef(self, name: str, t: int) -> int:
        return self._add("typedef", name, 0, t)

    def const(self, t: int) -> int:
        return self._add("const", "", 0, t)

    def array(self, elem: int, nelems: int, index: int) -> int:
        return self._add("array", "", 0, 0, [elem, index, nelems])

    def struct(self, name: str, size: int, members: Sequence[tuple[str, int, int, int]],
               union: bool = False) -> int:
        """members: (name, type id, bit offset, bitfield size)."""
        kflag = any(m[3] for m in members)
        extra: list[int] = []
        for mname, mtype, bit_off, bf in members:
            extra += [self.str(mname), mtype, (bf << 24 | bit_off) if kflag else bit_off]
        return self._add("union" if union else "struct", name, len(members), size, extra, kflag)

    def enum(self, name: str, values: Sequence[tuple[str, int]], size: int = 4,
             signed: bool = False) -> int:
        extra: list[int] = []
        for vname, v in values:
            extra += [self.str(vname), v]
        return self._add("enum", name, len(values), size, extra, signed)

    def enum64(self, name: str, values: Sequence[tuple[str, int]], signed: bool = False) -> int:
        extra: list[int] = []
        for vname, v in values:
            extra += [self.str(vname), v & 0xFFFFFFFF, (v >> 32) & 0xFFFFFFFF]
        return self._add("enum64", name, len(values), 8, extra, signed)

    def fwd(self, name: str, union: bool = False) -> int:
        return self._add("fwd", name, 0, 0, kflag=union)

    def func_proto(self, ret: int, params: Sequence[tuple[str, int]]) -> int:
        extra: list[int] = []
        for pname, ptype in params:
            extra += [self.str(pname), ptype]
        return self._add("func_proto", "", len(params), ret, extra)

    def func(self, name: str, proto: int, linkage: int = 1) -> int:
        return self._add("func", name, linkage, proto)

    def encode(self) -> bytes:
        types = b"".join(self.records)
        strings = bytes(self.strings)
        hdr = struct.pack(f"{self.order}HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types),
                          len(strings))
        return hdr + types + strings

    def spec(self, base: btf.Spec | None = None) -> btf.Spec:
        return btf.Spec(self.encode(), base)


def ext_blob(order: str, func: Sequence[tuple[int, Sequence[tuple[int, int]]]],
             line: Sequence[tuple[int, Sequence[tuple[int, int, int, int]]]],
             core: Sequence[tuple[int, Sequence[tuple[int, int, int, int]]]] | None,
             pad: tuple[int, int, int] = (0, 0, 0)) -> bytes:
    """A .BTF.ext blob: per subsection, (section name offset, records); `pad`
    adds that many extra zero bytes to each record (forward compatibility)."""

    def sub(chunks: Sequence[tuple[int, Sequence[tuple[int, ...]]]], nfields: int,
            extra: int) -> bytes:
        rec = nfields * 4 + extra
        out = struct.pack(order + "I", rec)
        for name_off, recs in chunks:
            out += struct.pack(order + "II", name_off, len(recs))
            for r in recs:
                out += struct.pack(f"{order}{nfields}I", *r) + b"\0" * extra
        return out

    f = sub(func, 2, pad[0])
    ln = sub(line, 4, pad[1])
    c = sub(core, 4, pad[2]) if core is not None else b""
    hdr_len = 32 if core is not None else 24
    fields = [0, len(f), len(f), len(ln)]
    if core is not None:
        fields += [len(f) + len(ln), len(c)]
    hdr = struct.pack(order + "HBBI", 0xEB9F, 1, 0, hdr_len) + struct.pack(
        f"{order}{len(fields)}I", *fields)
    return hdr + f + ln + c


def local_spec(order: str = "<") -> tuple[btf.Spec, dict[str, int]]:
    """A small object BTF: a func, a struct, and the strings .BTF.ext refers to."""
    b = RawBTF(order)
    i = b.int("int", 4, signed=True)
    s = b.struct("task_struct", 8, [("pid", i, 0, 0), ("tgid", i, 32, 0)])
    proto = b.func_proto(i, [("ctx", b.ptr(0))])
    f = b.func("prog", proto)
    g = b.func("helper", proto, linkage=0)
    strs = {name: b.str(name) for name in ("tp/sched", ".text", "prog.c",
                                           "  return 0;", "int x = 1;", "0:0", "0:1", "0")}
    strs.update(int=i, task_struct=s, func=f, helper=g)
    return b.spec(), strs


def sample_ext(order: str = "<", pad: tuple[int, int, int] = (0, 0, 0)) -> tuple[bytes, btf.Spec,
                                                                                 dict[str, int]]:
    spec, s = local_spec(order)
    data = ext_blob(
        order,
        func=[(s["tp/sched"], [(0, s["func"])]), (s[".text"], [(0, s["helper"])])],
        line=[(s["tp/sched"], [(8, s["prog.c"], s["  return 0;"], 7 << 10 | 3),
                               (0, s["prog.c"], s["int x = 1;"], 5 << 10 | 9)])],
        core=[(s["tp/sched"], [(16, s["task_struct"], s["0:1"], 0),
                               (0, s["task_struct"], s["0"], 8)])],
        pad=pad)
    return data, spec, s


# -- hand-made blobs ----------------------------------------------------------------


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("pad", [(0, 0, 0), (4, 8, 12)])
def test_parse_handmade(order: str, pad: tuple[int, int, int]) -> None:
    data, spec, s = sample_ext(order, pad)
    ext = parse_ext(data, spec)
    assert set(ext.func_infos) == {"tp/sched", ".text"}
    [(off, fn)] = ext.func_infos["tp/sched"]
    assert off == 0 and isinstance(fn, btf.Func) and fn.name == "prog"
    assert ext.func_infos[".text"][0][1].name == "helper"
    lines = ext.line_infos["tp/sched"]
    assert [o for o, _ in lines] == [0, 8]  # sorted by offset
    assert lines[0][1] == LineInfo("prog.c", "int x = 1;", 5, 9)
    assert lines[1][1] == LineInfo("prog.c", "  return 0;", 7, 3)
    assert str(lines[1][1]) == "  return 0;"
    # CO-RE relocations keep the file's order (libbpf applies them in that order)
    assert ext.core_relos["tp/sched"] == [
        CoreRelo(16, s["task_struct"], "0:1", CoreReloKind.FIELD_BYTE_OFFSET),
        CoreRelo(0, s["task_struct"], "0", CoreReloKind.TYPE_EXISTS),
    ]
    assert "2 funcs" in repr(ext)


def test_no_core_header() -> None:
    spec, s = local_spec()
    data = ext_blob("<", [(s["tp/sched"], [(0, s["func"])])], [], None)
    ext = parse_ext(data, spec)
    assert ext.core_relos == {} and ext.line_infos == {}
    assert list(ext.func_infos) == ["tp/sched"]


def _u32(data: bytes, off: int, value: int) -> bytes:
    return data[:off] + struct.pack("<I", value) + data[off + 4:]


def _malformed() -> list[tuple[str, bytes, str, int]]:
    data, _, s = sample_ext()
    func_start = 32  # hdr_len; func_info_off is 0
    func_len = struct.unpack_from("<I", data, 12)[0]
    line_start = 32 + func_len
    line_len = struct.unpack_from("<I", data, 20)[0]
    core_start = line_start + line_len
    cases = [
        ("short", data[:6], "shorter than its header", 0),
        ("magic", b"\x00\x00" + data[2:], "magic", 0),
        ("version", data[:2] + b"\x02" + data[3:], "version", 2),
        ("flags", data[:3] + b"\x01" + data[4:], "flags", 3),
        ("hdr_len small", _u32(data, 4, 16), "header length", 4),
        ("hdr_len huge", _u32(data, 4, 1 << 30), "header length", 4),
        ("func beyond", _u32(data, 12, 1 << 20), "outside", func_start),
        ("func unaligned", _u32(data, 8, 2), "aligned", func_start + 2),
        ("rec_size small", _u32(data, func_start, 4), "record size", func_start),
        ("rec_size unaligned", _u32(data, func_start, 10), "record size", func_start),
        ("zero records", _u32(data, func_start + 8, 0), "zero records", func_start + 4),
        ("too many records", _u32(data, func_start + 8, 1000), "exceed", func_start + 4),
        ("section name", _u32(data, func_start + 4, 1 << 20), "section name", func_start + 4),
        ("empty section name", _u32(data, func_start + 4, 0), "empty section name",
         func_start + 4),
        ("insn_off", _u32(data, func_start + 12, 3), "multiple of 8", func_start + 12),
        ("not a func", _u32(data, func_start + 16, s["int"]), "not a Func", func_start + 16),
        ("func type range", _u32(data, func_start + 16, 999), "out of range", func_start + 16),
        ("line file", _u32(data, line_start + 16, 1 << 20), "file name", line_start + 16),
        ("line text", _u32(data, line_start + 20, 1 << 20), "line", line_start + 20),
        ("core kind", _u32(data, core_start + 24, 99), "unknown relocation kind",
         core_start + 24),
        ("core type", _u32(data, core_start + 16, 999), "out of range", core_start + 16),
        ("core access", _u32(data, core_start + 20, 1 << 20), "access string", core_start + 20),
        ("truncated section header", _u32(data, 28, 8), "truncated section header",
         core_start + 4),
    ]
    return cases


@pytest.mark.parametrize("name,data,message,offset", _malformed(), ids=lambda v: str(v)[:20])
def test_malformed(name: str, data: bytes, message: str, offset: int) -> None:
    spec, _ = local_spec()
    with pytest.raises(BTFError, match=re.escape(message)) as info:
        parse_ext(data, spec)
    assert info.value.offset is not None
    if offset >= 0:
        assert info.value.offset == offset, (name, str(info.value))
    assert "BTF offset" in str(info.value)


@settings(max_examples=400, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=256))
def test_fuzz_random(data: bytes) -> None:
    spec, _ = local_spec()
    try:
        parse_ext(data, spec)
    except BTFError:
        pass


@settings(max_examples=600, deadline=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutations(data: st.DataObject) -> None:
    order = data.draw(st.sampled_from(["<", ">"]))
    blob, spec, _ = sample_ext(order)
    buf = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        if data.draw(st.booleans()):
            buf[pos] = data.draw(st.integers(0, 255))
        else:  # a whole u32, often a boundary value
            v = data.draw(st.sampled_from([0, 1, 3, 4, 8, 0x7FFFFFFF, 0xFFFFFFFF,
                                           len(buf), len(buf) + 4]))
            pos -= pos % 4
            buf[pos:pos + 4] = struct.pack(order + "I", v)[: len(buf) - pos]
    cut = data.draw(st.integers(0, len(buf)))
    try:
        parse_ext(bytes(buf[:cut] if data.draw(st.booleans()) else buf), spec)
    except BTFError:
        pass


# -- clang's output, checked against llvm-objdump ---------------------------------

_OBJDUMP_RELO = re.compile(
    r"^\s+([0-9a-f]+):\s+CO-RE <(\w+)> \[(\d+)\] (.*?)(?: \(([\d:]+)\))?$")

_KIND_BY_NAME = {
    "byte_off": CoreReloKind.FIELD_BYTE_OFFSET, "byte_sz": CoreReloKind.FIELD_BYTE_SIZE,
    "field_exists": CoreReloKind.FIELD_EXISTS, "signed": CoreReloKind.FIELD_SIGNED,
    "lshift_u64": CoreReloKind.FIELD_LSHIFT_U64, "rshift_u64": CoreReloKind.FIELD_RSHIFT_U64,
    "local_type_id": CoreReloKind.TYPE_ID_LOCAL, "target_type_id": CoreReloKind.TYPE_ID_TARGET,
    "type_exists": CoreReloKind.TYPE_EXISTS, "type_size": CoreReloKind.TYPE_SIZE,
    "type_matches": CoreReloKind.TYPE_MATCHES, "enumval_exists": CoreReloKind.ENUMVAL_EXISTS,
    "enumval_value": CoreReloKind.ENUMVAL_VALUE,
}


def _objdump_relos(path: str) -> dict[str, list[tuple[int, CoreReloKind, int, str | None]]]:
    out = subprocess.run(["llvm-objdump-19", "-dr", "--no-show-raw-insn", path],
                         capture_output=True, text=True, check=True).stdout
    relos: dict[str, list[tuple[int, CoreReloKind, int, str | None]]] = {}
    section = ""
    for line in out.splitlines():
        m = re.match(r"^Disassembly of section (.*):$", line)
        if m:
            section = m.group(1)
            continue
        m = _OBJDUMP_RELO.match(line)
        if m:
            off, kind, tid, _, access = m.groups()
            relos.setdefault(section, []).append(
                (int(off, 16), _KIND_BY_NAME[kind], int(tid), access))
    return relos


@pytest.fixture(scope="module")
def core_fields_obj() -> str:
    need_tool("clang-19")
    need_tool("bpftool")
    from bpfbuild import compile_bpf

    return str(compile_bpf("core_fields"))  # against tests/bpf/core_types.h


def _sections(path: str) -> tuple[btf.Spec, bytes]:
    from ebpf.elf import ELFFile

    with open(path, "rb") as f:
        elf = ELFFile(f.read())
    btf_sec, ext_sec = elf.section_by_name(".BTF"), elf.section_by_name(".BTF.ext")
    assert btf_sec is not None and ext_sec is not None
    return btf.Spec(bytes(btf_sec.data())), bytes(ext_sec.data())


def test_clang_object(core_fields_obj: str) -> None:
    spec, data = _sections(core_fields_obj)
    ext = parse_ext(data, spec)
    sec = "raw_tp/sys_enter"
    [(off, fn)] = ext.func_infos[sec]
    assert off == 0 and fn.name == "core_fields"
    lines = ext.line_infos[sec]
    assert len(lines) > 20
    assert all(li.file_name.endswith("core_fields.c") for _, li in lines)
    assert any("BPF_CORE_READ(task, pid)" in li.line_text for _, li in lines)
    assert all(li.line > 0 for _, li in lines)
    assert [o for o, _ in lines] == sorted(o for o, _ in lines)

    need_tool("llvm-objdump-19")
    expected = _objdump_relos(core_fields_obj)[sec]
    got = ext.core_relos[sec]
    assert len(got) == len(expected) > 50
    for relo, (off, kind, tid, access) in zip(got, expected, strict=True):
        assert (relo.insn_off, relo.kind, relo.type_id) == (off, kind, tid)
        if access is not None:
            assert relo.access == access
        elif kind in (CoreReloKind.TYPE_EXISTS, CoreReloKind.TYPE_SIZE,
                      CoreReloKind.TYPE_MATCHES, CoreReloKind.TYPE_ID_LOCAL,
                      CoreReloKind.TYPE_ID_TARGET):
            assert relo.access == "0"
