"""Reloading one ProgramSpec: the second load reuses what the first computed (labels,
CO-RE, encoding, func/line info), and every edit between loads reaches the kernel."""

from __future__ import annotations

import copy
import gc
import os
import pathlib
import pickle
import subprocess
import weakref
from collections.abc import Callable

import pytest
from conftest import need_tool
from kernelmatrix import requires

import ebpf
from ebpf import asm, btf
from ebpf.btf.ext import LineInfo
from ebpf.errors import VerifierError
from ebpf.programs import Program, ProgramSpec
from ebpf.programs import _valid_template as valid_template

# the prepared-program cache is library behaviour, the same on every kernel
pytestmark = [pytest.mark.kernel, pytest.mark.hostonly]

P = ebpf.ProgramType
DATA = b"\0" * 64


def handmade_btf(func_name: str) -> tuple[btf.Spec, btf.Func]:
    """A BTF spec with ``int func_name(void *ctx)``."""
    from ebpf.btf.builder import Builder

    i32 = btf.Int("int", 4, btf.IntEncoding.SIGNED)
    proto = btf.FuncProto(i32, [btf.FuncParam("ctx", btf.Pointer(btf.Void()))])
    b = Builder()
    b.add(btf.Func(func_name, proto, btf.Linkage.GLOBAL))
    spec = btf.Spec(b.marshal())
    return spec, spec.type_by_name(func_name, btf.Func)


def spec_of(insns: list[asm.Statement], **kw: object) -> ProgramSpec:
    return ProgramSpec(name="reload", type=P.SOCKET_FILTER, license="GPL",
                       instructions=insns, **kw)  # type: ignore[arg-type]


def run(spec: ProgramSpec, **kw: object) -> int:
    with Program(spec, **kw) as p:  # type: ignore[arg-type]
        return p.test_run(data=DATA).retval


def with_lines(insns: list[asm.Instruction]) -> ProgramSpec:
    """`insns` with func info on the first and line info on each instruction."""
    spec_btf, func = handmade_btf("reload")
    for n, ins in enumerate(insns):
        ins.meta = {"line": LineInfo("reload.c", f"line {n}", n + 1, 1)}
    assert insns[0].meta is not None
    insns[0].meta["func"] = func
    return spec_of(list(insns), btf=spec_btf)


def test_field_edits_between_loads_reach_the_kernel() -> None:
    # r0 = 5; r0 += 3; fp[-8] = r0; r1 = 100; fp[-16] = r1; r0 = fp[-8]; exit
    spec = with_lines([asm.mov_imm(asm.R0, 5), asm.add_imm(asm.R0, 3),
                       asm.store_mem(asm.R10, -8, asm.R0, asm.DW), asm.mov_imm(asm.R1, 100),
                       asm.store_mem(asm.R10, -16, asm.R1, asm.DW),
                       asm.load_mem(asm.R0, asm.R10, -8, asm.DW), asm.exit()])
    insns = spec.instructions
    assert run(spec) == 8
    assert valid_template(spec, None) is not None  # the next load reuses it
    assert run(spec) == 8
    insns[1].imm = 1  # imm
    assert run(spec) == 6
    insns[5].off = -16  # off: the other stack slot
    assert run(spec) == 100
    insns[5].off = -8
    assert run(spec) == 6
    insns[1].opcode = insns[0].opcode  # opcode: r0 += 1 becomes r0 = 1
    assert run(spec) == 1
    assert isinstance(insns[1], asm.Instruction)
    insns[1].dst = asm.R2  # dst: r2 = 1, r0 stays 5
    assert run(spec) == 5


def test_a_spec_loaded_once_keeps_no_template_and_tracks_no_edits() -> None:
    from ebpf.programs import load_once

    insns = [asm.mov_imm(asm.R0, 5), asm.add_imm(asm.R0, 3), asm.exit()]
    spec = with_lines(insns)
    load_once(spec)
    assert run(spec) == 8
    assert valid_template(spec, None) is None
    assert all(type(ins) is asm.Instruction for ins in insns)  # no edit-counting class
    insns[1].imm = 1  # a later load still sees every edit (prepared afresh)
    assert run(spec) == 6
    assert valid_template(spec, None) is None
    copied = spec.copy()  # copies are not marked: theirs is kept
    assert run(copied) == 6
    assert valid_template(copied, None) is not None


def test_list_edits_between_loads_reach_the_kernel() -> None:
    spec = with_lines([asm.mov_imm(asm.R0, 1), asm.exit()])
    assert run(spec) == 1
    spec.instructions.insert(1, asm.add_imm(asm.R0, 2))  # grown in place
    assert run(spec) == 3
    spec.instructions.pop(1)
    assert run(spec) == 1
    spec.instructions[0] = asm.mov_imm(asm.R0, 6)  # an instruction replaced
    assert run(spec) == 6
    fresh = spec.instructions[0]
    fresh.imm = 7  # the replacement edited later
    assert run(spec) == 7
    spec.instructions = [asm.mov_imm(asm.R0, 9), asm.exit()]  # the list replaced
    assert run(spec) == 9
    spec.instructions.append(asm.exit())  # dead code after exit: still the new code
    with pytest.raises(VerifierError):
        run(spec)
    # labels in the list: prepared afresh at every load (a Label's edits are not
    # tracked), still right
    first, second = asm.label("skip"), asm.label("out")
    spec.instructions = [asm.mov_imm(asm.R0, 1), asm.jeq_imm(asm.R0, 1, "out"), first,
                         asm.mov_imm(asm.R0, 2), second, asm.exit()]
    assert run(spec) == 1
    assert valid_template(spec, None) is None
    first.name, second.name = "out", "skip"  # the jump now lands on r0 = 2
    assert run(spec) == 2


def failing(text: str) -> tuple[ProgramSpec, list[asm.Instruction]]:
    """A program the verifier refuses at its second instruction (line text `text`)."""
    insns = [asm.mov_imm(asm.R1, 0), asm.load_mem(asm.R0, asm.R1, 0, asm.W), asm.exit()]
    spec = with_lines(insns)
    assert insns[1].meta is not None
    insns[1].meta["line"] = LineInfo("reload.c", text, 7, 1)
    return spec, insns


def refused_line(spec: ProgramSpec) -> str:
    with pytest.raises(VerifierError) as ei:
        Program(spec)
    assert ei.value.source_line is not None
    return ei.value.source_line


def test_line_info_edits_between_loads_reach_the_kernel() -> None:
    spec, insns = failing("return *x;")
    assert refused_line(spec) == "reload.c:7: return *x;"
    meta = insns[1].meta
    assert meta is not None
    line = meta["line"]
    line.line_text = "return *y;"  # the record edited in place
    assert refused_line(spec) == "reload.c:7: return *y;"
    meta["line"] = LineInfo("reload.c", "return *z;", 8, 1)  # the meta dict edited
    assert refused_line(spec) == "reload.c:8: return *z;"
    meta["line"].line = 9  # a record put in since, edited
    assert refused_line(spec) == "reload.c:9: return *z;"
    insns[1].meta = {"line": LineInfo("other.c", "return *w;", 3, 1)}  # meta replaced
    with pytest.raises(VerifierError) as ei:
        Program(spec)
    assert ei.value.source_line == "other.c:3: return *w;"
    # the kernel got the new line too: it annotates its log with the text
    assert "return *w;" in ei.value.log


def test_btf_replaced_between_loads() -> None:
    spec = with_lines([asm.mov_imm(asm.R0, 2), asm.exit()])
    with Program(spec) as p:
        assert (p.info().nr_func_info, p.info().nr_line_info) == (1, 2)
    spec.btf = None  # no BTF: loads without func/line info
    with Program(spec) as p:
        assert (p.info().nr_func_info, p.info().nr_line_info) == (0, 0)
    other_btf, other_func = handmade_btf("renamed")
    assert spec.instructions[0].meta is not None
    spec.instructions[0].meta["func"] = other_func
    spec.btf = other_btf
    with Program(spec) as p:
        info = p.info()
        assert (info.nr_func_info, info.nr_line_info) == (1, 2)
        loaded = btf.Spec(ebpf._sys.ops.btf_get_data(info.btf_id))
        assert loaded.type_by_name("renamed", btf.Func)


def test_maps_given_at_each_load() -> None:
    # r0 = *(u32 *)(&value of map "m" + 4)
    spec = with_lines([asm.ld_map_value(asm.R1, "m", 4),
                       asm.load_mem(asm.R0, asm.R1, 0, asm.W), asm.exit()])
    mspec = ebpf.MapSpec(name="m", type=ebpf.MapType.ARRAY, key_size=4, value_size=8,
                         max_entries=1)
    with ebpf.Map(mspec) as a, ebpf.Map(mspec) as b:
        a[0] = (11 << 32).to_bytes(8, "little")
        b[0] = (22 << 32).to_bytes(8, "little")
        assert run(spec, maps={"m": a}) == 11
        assert run(spec, maps={"m": b}) == 22
        assert run(spec, maps={"m": a}) == 11
        spec.instructions[0].imm = 0  # the value offset edited: now the low half
        a[0] = (33).to_bytes(8, "little")
        assert run(spec, maps={"m": a}) == 33
        with pytest.raises(ebpf.KeyNotFoundError, match="references map 'm'"):
            run(spec, maps={"n": a})


def test_tracked_instructions_stay_instructions() -> None:
    spec = with_lines([asm.mov_imm(asm.R0, 2), asm.exit()])
    Program(spec).close()
    ins = spec.instructions[0]
    assert isinstance(ins, asm.Instruction) and type(ins).__name__ == "Instruction"
    bare = spec.instructions[1]  # (meta without BTF types, which pickle refuses)
    assert type(bare) is not asm.Instruction  # tracked
    for twin in (copy.copy(ins), ins.copy(), copy.deepcopy(bare),
                 pickle.loads(pickle.dumps(bare))):
        assert type(twin) is asm.Instruction and twin in (ins, bare)
    assert asm.encode(spec.instructions) == asm.encode([i.copy() for i in spec.instructions])
    assert asm.decode(asm.encode(spec.instructions)) == [
        asm.Instruction(i.opcode, i.dst, i.src, i.off, i.imm) for i in spec.instructions]


def test_template_dies_with_its_spec() -> None:
    spec = with_lines([asm.mov_imm(asm.R0, 2), asm.exit()])
    Program(spec).close()
    gone = weakref.ref(spec)
    del spec
    gc.collect()
    assert gone() is None


CORE_C = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char _license[] SEC("license") = "GPL";

struct task_struct { int pid; } __attribute__((preserve_access_index));

SEC("syscall")
int pid_offset(void *ctx)
{
	return bpf_core_field_offset(struct task_struct, pid);
}
"""


def test_core_target_and_relocation_edits_between_loads(tmp_path: pathlib.Path) -> None:
    from bpfbuild import BASE_FLAGS, CLANG

    from ebpf.btf.builder import Builder

    need_tool(CLANG)
    (tmp_path / "core_pid.c").write_text(CORE_C)
    obj = tmp_path / "core_pid.o"
    subprocess.run([CLANG, *BASE_FLAGS, "-target", "bpf", str(tmp_path / "core_pid.c"),
                    "-o", str(obj)], check=True, capture_output=True)
    spec = ebpf.load_collection_spec(str(obj)).programs["pid_offset"]
    kernel = btf.load_kernel_spec()
    want = kernel.type_by_name("task_struct", btf.Struct).member("pid").offset_bits // 8
    i32 = btf.Int("int", 4, btf.IntEncoding.SIGNED)
    other = Builder()
    other.add(btf.Struct("task_struct", 128, [btf.Member("pad", btf.Array(i32, 31, i32)),
                                              btf.Member("pid", i32, 31 * 32)]))
    target = btf.Spec(other.marshal())

    def offset(**kw: object) -> int:
        with Program(spec, **kw) as p:  # type: ignore[arg-type]
            return p.test_run().retval

    for _ in range(2):  # each target its own relocation, also when reloaded
        assert offset() == want
        assert offset(kernel_btf=target) == 124
    relo = next(i.meta["core"] for i in spec.instructions if i.meta and "core" in i.meta)
    access = relo.access
    relo.access = "0:7"  # the record edited in place: no such member (a stale load: 124)
    with pytest.raises(ebpf.Error, match=r"0:7"):
        offset(kernel_btf=target)
    relo.access = access
    assert offset(kernel_btf=target) == 124


def test_deep_copies_and_pickles_of_a_loaded_spec_follow_their_edits() -> None:
    spec = spec_of([asm.mov_imm(asm.R0, 1), asm.exit()])
    assert run(spec) == 1
    for twin in (copy.deepcopy(spec), pickle.loads(pickle.dumps(spec))):
        assert run(twin) == 1
        twin.instructions[0].imm = 2  # untracked copies: edits still seen
        assert run(twin) == 2
    shallow = copy.copy(spec)  # the same instructions: the same template stays right
    shallow.instructions[0].imm = 3
    assert run(shallow) == 3
    assert run(spec) == 3


def test_copies_of_a_loaded_spec_start_with_its_template_and_follow_their_edits() -> None:
    spec = with_lines([asm.mov_imm(asm.R0, 5), asm.add_imm(asm.R0, 3), asm.exit()])
    assert run(spec) == 8
    tpl = valid_template(spec, None)
    assert tpl is not None
    twins = [spec.copy() for _ in range(3)]
    for twin in twins:  # copies load what the original computed, without computing it
        assert valid_template(twin, None) is tpl
        assert run(twin) == 8
    twins[0].instructions[1].imm = 1  # an edited copy: its own code, not the template's
    assert valid_template(twins[0], None) is None
    assert run(twins[0]) == 6
    twins[1].instructions[0].meta = None  # line/func info dropped: no longer the same
    assert valid_template(twins[1], None) is None
    assert run(twins[1]) == 8
    assert run(twins[2]) == 8 and run(spec) == 8  # the others are unaffected
    assert spec.instructions[1].imm == 3


@requires("kfuncs bpf_task_from_pid/bpf_task_release in syscall programs",
          min_kernel="6.2")
def test_collection_reloads_keep_kfunc_templates() -> None:
    from bpfbuild import compile_bpf
    from vmlinux import vmlinux_include_dir

    spec = ebpf.load_collection_spec(
        compile_bpf("kfunc_btf", extra_flags=[f"-I{vmlinux_include_dir()}"]))
    ps = spec.programs["task_of_pid"]
    # a child of ours, not os.getppid(): an orphaned test run's parent may be a reaper
    # the kernel's init pid namespace does not know by that number
    child = subprocess.Popen(["sleep", "30"])
    try:
        for pid in (child.pid, os.getpid()):  # kfuncs resolved at each load, spec reused
            spec.variables["target_pid"].set(pid)
            with ebpf.Collection(spec, programs=["task_of_pid"]) as coll:
                assert coll.programs["task_of_pid"].test_run().retval == 0
                assert coll.variables["found_pid"].get() == pid
            assert valid_template(ps, None) is not None
    finally:
        child.kill()
        child.wait()


def test_collection_reloads_resolve_typeless_ksyms_each_time() -> None:
    from bpfbuild import compile_bpf

    spec = ebpf.load_collection_spec(compile_bpf("loader_externs"))
    with open("/proc/kallsyms") as f:
        addr = next(int(line.split()[0], 16) for line in f
                    if line.split()[2] == "entry_SYSCALL_64")
    for _ in range(2):  # a copy with the address each time: the spec itself stays as parsed
        with ebpf.Collection(spec, programs=["check_ksyms"]) as coll:
            assert coll.programs["check_ksyms"].test_run(ctx=b"").retval == 0
            assert coll.variables["sym_addr"].get() == addr
    assert all(ins.reference for ins in spec.programs["check_ksyms"].instructions
               if ins.meta and "extern" in ins.meta)


def test_tracked_classes_slots_only() -> None:
    """Objects whose class (or a base) has a __dict__, or which have no slots, are not
    tracked; slotted classes are, through one subclass each."""
    from ebpf._objcache import tracked_classes

    class Plain:
        pass

    class Slotted:
        __slots__ = ("x",)

    class SlottedOnPlain(Plain):
        __slots__ = ("y",)

    class PlainOnSlotted(Slotted):
        pass

    assert tracked_classes(Plain) is None and tracked_classes(SlottedOnPlain) is None
    assert tracked_classes(PlainOnSlotted) is None and tracked_classes(object) is None
    pair = tracked_classes(Slotted)
    assert pair is not None and pair[0] is Slotted and issubclass(pair[1], Slotted)
    assert tracked_classes(pair[1]) == pair


def test_field_edits_after_a_load_are_checked_and_reach_the_kernel() -> None:
    """The fixed part of the load attr kept with the template is reused only for the very
    field objects it was made from: every other value is checked and loaded afresh."""
    from ebpf.errors import InvalidArgumentError

    spec = with_lines([asm.mov_imm(asm.R0, 4), asm.exit()])
    assert run(spec) == 4
    tpl = valid_template(spec, None)
    assert tpl is not None and tpl.fixed is not None  # kept: the next load copies it
    fixed = tpl.fixed
    assert run(spec) == 4 and tpl.fixed is fixed
    bad: list[tuple[str, object, str]] = [
        ("name", 5, r"^ProgramSpec\.name must be a str, got int$"),
        ("license", None, r"^ProgramSpec\.license must be a str, got NoneType$"),
        ("flags", True, r"^ProgramSpec\.flags must be an integer"),
        ("flags", 1 << 32, r"^ProgramSpec\.flags must be in 0\.\.4294967295"),
        ("kernel_version", 1.0, r"^ProgramSpec\.kernel_version must be an integer"),
        ("ifindex", -1, r"^ProgramSpec\.ifindex must be in"),
        ("attach_btf_id", "1", r"^ProgramSpec\.attach_btf_id must be an integer"),
        ("attach_type", 1 << 32, r"^ProgramSpec\.attach_type must be in"),
        ("type", 1000, r"^ProgramSpec\.type 1000 is not a program type"),
    ]
    for field, value, message in bad:
        good = getattr(spec, field)
        setattr(spec, field, value)
        with pytest.raises(InvalidArgumentError, match=message):
            Program(spec)
        setattr(spec, field, good)
        assert run(spec) == 4
    spec.name = "renamed_prog"  # a new name reaches the kernel (and is kept from then on)
    with Program(spec) as p:
        assert p.info().name == "renamed_prog"
    assert tpl.fixed is not fixed and tpl.fixed.fields[0] == "renamed_prog"
    with Program(spec) as p:
        assert p.info().name == "renamed_prog"
    spec.license = "Proprietary"  # a GPL-only helper would now be refused: not the case here
    assert run(spec) == 4
    spec.type = P.XDP  # another type: the kernel's test run gets an xdp_md context
    with Program(spec) as p:
        assert p.type == P.XDP and p.info().type == P.XDP
    spec.instructions = [asm.mov_imm(asm.R0, 2), asm.exit()]  # the template rebuilt: same part
    assert run(spec) == 2


def test_spec_field_reads_once_per_load() -> None:
    """`_check_spec` reads the fields once: what it checked is what the attr holds."""
    from ebpf.programs import _check_spec

    spec = spec_of([asm.mov_imm(asm.R0, 1), asm.exit()])
    ptype, fields, fixed = _check_spec(spec)
    assert ptype == P.SOCKET_FILTER and fixed is None
    assert fields[:2] == ("reload", "GPL")
    assert run(spec) == 1
    again = _check_spec(spec)
    assert again[2] is not None and again[0] == P.SOCKET_FILTER


def test_vmlinux_only_templates_ignore_module_changes(tmp_path: pathlib.Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A template whose CO-RE relocations found their types in vmlinux stays valid when
    the set of modules with BTF changes; one that looked at the modules does not."""
    from bpfbuild import BASE_FLAGS, CLANG

    from ebpf.btf import core, kernel

    need_tool(CLANG)
    src = CORE_C.replace("SEC(\"syscall\")", """
struct no_such_type_anywhere { int x; } __attribute__((preserve_access_index));

SEC("syscall")
int missing(void *ctx)
{
	return bpf_core_field_exists(struct no_such_type_anywhere, x);
}

SEC("syscall")""")
    (tmp_path / "core_mods.c").write_text(src)
    obj = tmp_path / "core_mods.o"
    subprocess.run([CLANG, *BASE_FLAGS, "-target", "bpf", str(tmp_path / "core_mods.c"),
                    "-o", str(obj)], check=True, capture_output=True)
    programs = ebpf.load_collection_spec(str(obj)).programs
    found, missing = programs["pid_offset"], programs["missing"]
    want = btf.load_kernel_spec().type_by_name("task_struct", btf.Struct).member(
        "pid").offset_bits // 8
    for spec, vmlinux_only, retval in ((found, True, want), (missing, False, 0)):
        with Program(spec) as p:
            assert p.test_run().retval == retval
        tpl = valid_template(spec, None)
        assert tpl is not None and tpl.vmlinux_only is vmlinux_only
    names = kernel.kernel_module_names()
    monkeypatch.setattr(kernel, "kernel_module_names", lambda: [*names, "zz_new_module"])
    monkeypatch.setattr(core, "_kernel_targets", None)

    def no_module_btf(name: str) -> btf.Spec:
        raise AssertionError(f"module {name}'s BTF consulted")

    monkeypatch.setattr(kernel, "load_kernel_module_spec", no_module_btf)
    assert valid_template(found, None) is not None  # vmlinux's answers hold
    assert valid_template(missing, None) is None  # the new module may have the type
    with Program(found) as p:
        assert p.test_run().retval == want


def test_keys_put_in_an_empty_meta_dict_after_a_load_are_seen() -> None:
    from ebpf.programs import meta_key_indexes

    spec, func = handmade_btf("reload")
    insns = [asm.mov_imm(asm.R0, 1), asm.exit()]
    for ins in insns:
        ins.meta = {}
    prog = spec_of(insns, btf=spec)
    with Program(prog) as p:
        assert p.info().nr_func_info == 0
    assert meta_key_indexes(prog, "extern") == []
    assert insns[0].meta is not None
    insns[0].meta["func"] = func  # in place, into the empty dict
    assert valid_template(prog, None) is None
    with Program(prog) as p:
        assert p.info().nr_func_info == 1
    insns[1].meta["extern"] = "x"  # type: ignore[index]
    assert meta_key_indexes(prog, "extern") == [1]


def test_the_kept_attr_needs_the_same_fields_and_btf_handle() -> None:
    """A reload copies the whole attr a load before made (`_Ready`) only for the very
    field objects it was made from and, with func/line info, a BTF handle of the blob
    their records were made for; any other load makes its attr afresh."""
    from ebpf.btf.handle import Handle
    from ebpf.programs import object_btf_blob

    spec, insns = failing("return *x;")
    assert spec.btf is not None
    assert refused_line(spec) == "reload.c:7: return *x;"  # (its own BTF object)
    blob = object_btf_blob(spec.btf)  # (holding the line info's strings since)
    with Handle(blob) as handle, Handle.from_spec(handmade_btf("another")[0]) as other:
        assert other.blob_size() != len(blob)
        tpl = valid_template(spec, None)
        assert tpl is not None and tpl.ready is None
        with pytest.raises(VerifierError):
            Program(spec, btf_handle=handle)
        ready = tpl.ready
        assert ready is not None and ready.btf_size == len(blob)
        spec.instructions[1] = asm.mov_imm(asm.R0, 3)  # a new template: a new attr
        with Program(spec, btf_handle=handle) as p:
            assert p.test_run(data=DATA).retval == 3
            assert p.info().btf_id == handle.id and p.info().nr_line_info == 2
        tpl = valid_template(spec, None)
        assert tpl is not None and tpl.ready is not None and tpl.ready is not ready
        ready = tpl.ready
        with Program(spec, btf_handle=other) as p:  # not the blob: the program's own BTF
            assert p.info().btf_id not in (handle.id, other.id)
            assert p.info().nr_line_info == 2
        assert tpl.ready is ready
        spec.license = "Dual MIT/GPL"  # other fields: checked, and a new attr kept
        with Program(spec, btf_handle=handle) as p:
            assert p.test_run(data=DATA).retval == 3 and p.info().btf_id == handle.id
        assert tpl.ready is not ready and tpl.ready is not None
        assert tpl.ready.fixed.fields[1] == "Dual MIT/GPL"
        assert object_btf_blob(spec.btf) is object_btf_blob(spec.btf)  # (nothing added)
        spec.instructions[1] = insns[1]  # the refused load again, with the handle
        with pytest.raises(VerifierError) as ei:
            Program(spec, btf_handle=handle)
        assert ei.value.source_line == "reload.c:7: return *x;"
        assert insns[1].meta is not None
        insns[1].meta["line"] = LineInfo("reload.c", "return *w;", 5, 1)  # in place
        with pytest.raises(VerifierError) as ei:  # (a new string: the handle lacks it)
            Program(spec, btf_handle=handle)
        assert ei.value.source_line == "reload.c:5: return *w;"
        assert "return *w;" in ei.value.log


def test_the_parsers_meta_dicts_count_their_edits() -> None:
    """The ELF parser's meta dicts count their edits (`_objcache.CountingDict`): a template
    keeps no copy of them, and each edit in place makes the next load prepare afresh;
    copies and pickles of the spec hold plain dicts."""
    from bpfbuild import compile_bpf

    from ebpf._objcache import CountingDict

    spec = ebpf.load_collection_spec(compile_bpf("loader_calls")).programs["second_user"]
    metas = [ins.meta for ins in spec.instructions if ins.meta is not None]
    assert len(metas) > 2 and {type(m) for m in metas} == {CountingDict}  # (with a callee's)

    def funcs() -> int:
        with Program(spec) as p:
            assert p.test_run().retval == 42
            return p.info().nr_func_info

    assert funcs() == 2
    tpl = valid_template(spec, None)
    assert tpl is not None and tpl.metas == [] and {"func", "line"} <= tpl.meta_keys
    first = metas[0]
    func = first["func"]
    edits: list[Callable[[dict[str, object]], object]] = [
        lambda m: m.pop("func"), lambda m: m.__setitem__("func", func),
        lambda m: m.popitem(), lambda m: m.update(func=func), lambda m: m.setdefault("x", 1),
        lambda m: m.__delitem__("x"), lambda m: m.__ior__({"x": 2}), lambda m: m.clear(),
    ]
    want = [0, 2, 0, 2, 2, 2, 2, 0]
    for edit, n in zip(edits, want, strict=True):
        edit(first)
        assert valid_template(spec, None) is None
        assert funcs() == n  # (func info for one function of two: dropped, with a warning)
        assert valid_template(spec, None) is not None
    for twin in (spec.copy(), copy.deepcopy(spec), pickle.loads(pickle.dumps(spec))):
        assert {type(ins.meta) for ins in twin.instructions} <= {dict, type(None)}
