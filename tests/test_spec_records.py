"""The specs are `ebpf._sys.fastclass.Record`s, not dataclasses (process start: `dataclasses`
imports inspect, ast, dis and tokenize): they keep what the dataclasses offered
(constructor, equality, unhashable, repr, copies, pickling, pattern matching)."""

from __future__ import annotations

import copy
import inspect
import json
import pickle
import subprocess
import sys

import pytest
from bpfbuild import compile_bpf

import ebpf
from ebpf import MapType
from ebpf._sys.fastclass import Record
from ebpf.spec import (
    CollectionSpec,
    Extern,
    MapSpec,
    ProgramSpec,
    StructOpsSpec,
    Variables,
    VariableSpec,
)

PROBE = """
import json, sys
import ebpf
spec = ebpf.load_collection_spec(sys.argv[1])
with ebpf.Collection(spec) as coll:
    names = sorted(coll.programs)
spec.copy()
print(json.dumps({"programs": names, "loaded": sorted(m for m in (
    "dataclasses", "inspect", "ast", "dis", "tokenize") if m in sys.modules)}))
"""


def test_loading_an_object_imports_no_dataclasses() -> None:
    """`load_collection_spec` + `Collection` (and `CollectionSpec.copy`) in a fresh
    interpreter import neither `dataclasses` nor what it imports."""
    obj = str(compile_bpf("loader_globals"))
    r = subprocess.run([sys.executable, "-c", PROBE, obj], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert seen["programs"]
    assert seen["loaded"] == []


def _params(cls: type) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in inspect.signature(cls).parameters.values()]


E = inspect.Parameter.empty


def test_constructors_keep_the_dataclass_signatures() -> None:
    """Same parameter names, order and defaults as the dataclasses had (a list or
    dict field's default is None: a new empty one)."""
    assert _params(Extern) == [("name", E), ("section", E), ("type", None), ("weak", False),
                               ("offset", 0), ("size", 0), ("is_func", False)]
    assert _params(VariableSpec) == [("name", E), ("section", E), ("offset", E), ("size", E),
                                     ("type", None), ("_spec", None)]
    assert [n for n, _ in _params(CollectionSpec)] == [
        "programs", "maps", "variables", "externs", "btf", "byteorder", "struct_ops"]
    assert [n for n, _ in _params(ProgramSpec)] == [
        "name", "type", "instructions", "license", "attach_type", "attach_to",
        "attach_btf_id", "attach_prog", "kernel_version", "flags", "section", "btf",
        "ifindex", "autoload"]
    assert [n for n, _ in _params(MapSpec)] == [
        "name", "type", "key_size", "value_size", "max_entries", "flags", "inner_map",
        "numa_node", "map_extra", "pinning", "key", "value", "contents", "freeze"]
    assert [n for n, _ in _params(StructOpsSpec)] == [
        "name", "type_name", "type", "data", "programs", "link", "section", "autocreate"]
    # positional use as with the dataclasses
    assert ProgramSpec("p", ebpf.ProgramType.XDP).type == ebpf.ProgramType.XDP
    assert MapSpec("m", MapType.HASH, 4, 8, 16).max_entries == 16


def test_defaults_are_fresh_per_instance() -> None:
    a, b = ProgramSpec(), ProgramSpec()
    assert a.instructions == [] and a.instructions is not b.instructions
    assert MapSpec().contents is not MapSpec().contents
    c, d = CollectionSpec(), CollectionSpec()
    assert c.programs is not d.programs and c.externs is not d.externs
    assert type(c.programs).__name__ == "Programs" and type(c.variables) is Variables
    given: list[ebpf.asm.Instruction] = []
    assert ProgramSpec(instructions=given).instructions is given  # kept, not copied


def test_equality_and_hash() -> None:
    assert MapSpec("m", MapType.HASH, 4, 8, 1) == MapSpec("m", MapType.HASH, 4, 8, 1)
    assert MapSpec("m") != MapSpec("n")
    assert ProgramSpec("p") != MapSpec("p")
    assert ProgramSpec("p").__eq__(MapSpec("p")) is NotImplemented
    for spec in (MapSpec(), ProgramSpec(), CollectionSpec(), Extern("x", ".ksyms"),
                 VariableSpec("v", ".data", 0, 4)):
        with pytest.raises(TypeError, match="unhashable"):
            hash(spec)
    # a variable's collection is not compared (compare=False as a dataclass)
    v = VariableSpec("v", ".data", 0, 4)
    w = VariableSpec("v", ".data", 0, 4, _spec=CollectionSpec())
    assert v == w
    assert v != VariableSpec("v", ".data", 0, 8)


def test_reprs() -> None:
    assert repr(Extern("LINUX_KERNEL_VERSION", ".kconfig", size=4)) == (
        "Extern(name='LINUX_KERNEL_VERSION', section='.kconfig', type=None, weak=False, "
        "offset=0, size=4, is_func=False)")
    assert repr(MapSpec("m", MapType.HASH, 4, 8, 1)) == (
        "MapSpec(name='m', type=HASH, key_size=4, value_size=8, max_entries=1)")
    assert repr(ProgramSpec("p")) == "ProgramSpec(name='p', type=UNSPEC, 0 instructions)"
    assert repr(VariableSpec("v", ".data", 0, 4)) == (
        "VariableSpec(name='v', section='.data', offset=0, size=4)")
    assert repr(CollectionSpec()) == "CollectionSpec(programs=[], maps=[], variables=0)"


def test_replace_and_copies() -> None:
    m = MapSpec("m", MapType.ARRAY, 4, 8, 1, contents=[(0, bytearray(8))])
    r = m.replace(max_entries=2)
    assert r.max_entries == 2 and r.name == "m" and r.contents is m.contents
    if sys.version_info >= (3, 13):
        assert copy.replace(m, name="n").name == "n"  # type: ignore[attr-defined]
    with pytest.raises(ebpf.InvalidArgumentError, match="MapSpec has no field 'size'"):
        m.replace(size=1)
    c = m.copy()
    assert c == m and c.contents is not m.contents and c.contents[0][1] is not m.contents[0][1]
    ops = StructOpsSpec("o", "tcp_congestion_ops", None, b"", {"init": "p"},  # type: ignore[arg-type]
                        False, ".struct_ops")
    o = ops.copy()
    assert o == ops and o.programs is not ops.programs
    v = VariableSpec("v", ".data", 0, 4)
    coll = CollectionSpec(variables=Variables(v=v), maps=ebpf.spec.Maps(
        {".data": MapSpec(".data", MapType.ARRAY, 4, 4, 1)}))
    assert v._spec is coll
    dup = coll.copy()
    assert dup == coll and dup.variables["v"]._spec is dup and v._spec is coll
    dup.variables["v"].set(b"\x01\x00\x00\x00")
    assert v.get() == b"\x00" * 4


def test_pickle_deepcopy_and_match() -> None:
    coll = CollectionSpec(variables=Variables(v=VariableSpec("v", ".data", 0, 4)),
                          externs={"x": Extern("x", ".ksyms", is_func=True)})
    for again in (pickle.loads(pickle.dumps(coll)), copy.deepcopy(coll)):
        assert again == coll
        assert again.variables["v"]._spec is again
    match Extern("x", ".ksyms"):
        case Extern(name, section):
            assert (name, section) == ("x", ".ksyms")
    assert issubclass(MapSpec, Record)
    with pytest.raises(AttributeError):
        Extern("x", ".ksyms").other = 1  # type: ignore[attr-defined]


def test_deepcopy_of_a_parsed_object_shares_its_btf() -> None:
    spec = ebpf.load_collection_spec(compile_bpf("loader_globals"))
    dup = copy.deepcopy(spec)  # was TypeError: the BTF spec's memoryview cannot be pickled
    assert dup.btf is spec.btf and copy.copy(spec.btf) is spec.btf
    dup.variables["cfg_magic"].set(0x4321)
    assert dup.variables["cfg_magic"].get() == 0x4321
    assert spec.variables["cfg_magic"].get() == 0x1234
    assert dup.programs is not spec.programs
    assert {n: [repr(i) for i in p.instructions] for n, p in dup.programs.items()} == \
        {n: [repr(i) for i in p.instructions] for n, p in spec.programs.items()}
