"""The ELF loader and collections, driven by self-checking BPF programs (references/001):
each returns 0 when every assertion holds, else the __LINE__ of the first failure."""

from __future__ import annotations

import os
import re
import struct
import threading
from typing import Any

import pytest
from bpfbuild import compile_bpf
from kernelmatrix import requires

import ebpf
from ebpf import MapType

pytestmark = pytest.mark.kernel


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _run(prog: ebpf.Program, **kw: object) -> int:
    return int(prog.test_run(**kw).retval)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def globals_spec() -> ebpf.CollectionSpec:
    return ebpf.load_collection_spec(compile_bpf("loader_globals"))


def test_global_data_defaults(globals_spec: ebpf.CollectionSpec) -> None:
    with ebpf.Collection(globals_spec) as coll:
        assert _run(coll.programs["check_defaults"]) == 0
        v = coll.variables
        assert v["data_counter"].get() == 101
        assert v["bss_hits"].get() == 1
        assert v["bss_bytes"].get() == [0, 0xAA, 0]
        assert v["bss_after"].get() == 0x55
        assert v["cfg_name"].get() == "default"
        assert v["cfg_pair"].get() == {"a": 1, "b": 2, "c": 3}


def test_sections_become_maps(globals_spec: ebpf.CollectionSpec) -> None:
    assert set(globals_spec.maps) >= {".rodata", ".data", ".bss", ".data.custom",
                                       ".rodata.custom"}
    ro = globals_spec.maps[".rodata"]
    assert ro.type == MapType.ARRAY and ro.max_entries == 1 and ro.freeze
    assert globals_spec.variables["custom_data"].section == ".data.custom"
    assert globals_spec.variables["cfg_pad"].offset == 4


def test_rodata_template_rewrite(globals_spec: ebpf.CollectionSpec) -> None:
    spec = globals_spec.copy()
    spec.variables["cfg_magic"].set(99)
    spec.variables["cfg_enabled"].set(1)
    assert globals_spec.variables["cfg_magic"].get() == 0x1234, "copy() must not share data"
    with ebpf.Collection(spec) as coll:
        assert _run(coll.programs["read_config"]) == 99 + 7
        with pytest.raises(ebpf.InvalidArgumentError, match="constant"):
            coll.variables["cfg_magic"].set(1)
        with pytest.raises(ebpf.SyscallError):
            coll.maps[".rodata"][0] = bytes(len(coll.maps[".rodata"][0]))


def test_rodata_constants_prune_dead_code(globals_spec: ebpf.CollectionSpec) -> None:
    """With cfg_enabled == 0 in .rodata the verifier drops the dead branch."""
    counts = []
    for enabled in (0, 1):
        spec = globals_spec.copy()
        spec.variables["cfg_enabled"].set(enabled)
        with ebpf.Collection(spec, programs=["read_config"]) as coll:
            counts.append(len(coll.programs["read_config"].info().instructions()))
    assert counts[0] < counts[1]


def test_variable_type_checks(globals_spec: ebpf.CollectionSpec) -> None:
    spec = globals_spec.copy()
    with pytest.raises(ebpf.InvalidArgumentError, match="does not fit"):
        spec.variables["cfg_pad"].set(256)
    with pytest.raises(ebpf.InvalidArgumentError, match="longer than"):
        spec.variables["cfg_name"].set("x" * 13)
    with pytest.raises(ebpf.InvalidArgumentError, match="no member"):
        spec.variables["cfg_pair"].set({"zz": 1})
    spec.variables["cfg_name"].set("abc")
    assert spec.variables["cfg_name"].get() == "abc"
    with pytest.raises(KeyError, match="cfg_magic"):
        spec.variables["nope"]


def test_live_data_variables(globals_spec: ebpf.CollectionSpec) -> None:
    with ebpf.Collection(globals_spec) as coll:
        coll.variables["data_counter"].set(5000)
        assert _run(coll.programs["check_defaults"]) == 1 + _line_of("data_counter == 100")
        assert coll.variables["data_counter"].get() == 5000


@requires("a bpf_spin_lock in a global data section", min_kernel="6.2")
def test_variables_of_an_unmapped_section_set_from_two_threads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two variables of a section the kernel does not map (it holds a spin lock), set
    from two threads at once: both values stay. Each set reads the section, changes its
    variable and writes the section back; another set in between used to be lost."""
    spec = ebpf.load_collection_spec(compile_bpf("locked_globals"))
    with ebpf.Collection(spec, programs=[]) as coll:  # (its maps are what is exercised)
        v = coll.variables
        assert v["first"]._mmap() is None  # (served by lookups)
        lookup = ebpf.Map.lookup
        others: list[threading.Thread] = []

        def setting_second_meanwhile(self: ebpf.Map, *args: Any, **kw: Any) -> Any:
            value = lookup(self, *args, **kw)
            if not others:  # another thread's set, while this one has read the section
                others.append(threading.Thread(target=v["second"].set, args=(20,)))
                others[0].start()
                others[0].join(0.5)  # (done by now, unless it waits for this set)
            return value

        monkeypatch.setattr(ebpf.Map, "lookup", setting_second_meanwhile)
        v["first"].set(10)
        others[0].join(5)
        monkeypatch.undo()
        assert (v["first"].get(), v["second"].get()) == (10, 20)


def _line_of(text: str) -> int:
    src = (compile_bpf.__globals__["BPF_DIR"] / "loader_globals.c").read_text().splitlines()
    return next(i for i, line in enumerate(src) if text in line)


def test_maps_btf_map_in_map_and_tail_calls() -> None:
    spec = ebpf.load_collection_spec(compile_bpf("loader_maps"))
    assert spec.maps["outer"].contents == [(1, "inner_a"), (3, "inner_b")]
    assert spec.maps["jumps"].contents == [(2, "tail_target"), (5, "tail_other")]
    with ebpf.Collection(spec) as coll:
        assert _run(coll.programs["check_maps"]) == 0
        assert coll.maps["points"][1] is not None
        ctx = bytearray(192)  # struct __sk_buff; mark at offset 8
        for mark, want in ((2, 42), (5, 43), (3, 7)):
            struct.pack_into("<I", ctx, 8, mark)
            assert _run(coll.programs["do_tail_call"], data=b"\0" * 64, ctx=bytes(ctx)) == want


def test_subprograms_and_callbacks() -> None:
    spec = ebpf.load_collection_spec(compile_bpf("loader_calls"))
    with ebpf.Collection(spec) as coll:
        assert _run(coll.programs["check_calls"]) == 0
        assert _run(coll.programs["second_user"]) == 42


def test_kconfig_and_ksym_externs() -> None:
    spec = ebpf.load_collection_spec(compile_bpf("loader_externs"))
    assert spec.externs["CONFIG_HZ"].section == ".kconfig"
    assert spec.externs["CONFIG_EBPF_TEST_DOES_NOT_EXIST"].weak
    with ebpf.Collection(spec) as coll:
        assert _run(coll.programs["check_kconfig"]) == 0
        assert _run(coll.programs["check_ksyms"]) == 0
        # the leading a.b[.c] of the release, whatever follows ("6.12.117+deb12-amd64")
        m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", os.uname().release)
        assert m is not None
        a, b, c = int(m[1]), int(m[2]), int(m[3] or 0)
        if not os.path.exists("/proc/version_signature"):  # Ubuntu's is read instead
            assert coll.variables["seen_version"].get() == (a << 16) + (b << 8) + min(c, 255)
        with open("/proc/kallsyms") as f:
            addr = next(int(line.split()[0], 16) for line in f
                        if line.split()[2] == "entry_SYSCALL_64")
        assert coll.variables["sym_addr"].get() == addr


@pytest.mark.parametrize(("release", "code"), [
    ("6.12.117+deb12-amd64", (6 << 16) + (12 << 8) + 117),
    ("6.1.0-56-amd64", (6 << 16) + (1 << 8)),
    ("6.18.44-fc-v669", (6 << 16) + (18 << 8) + 44),
    ("5.15.0-91-generic", (5 << 16) + (15 << 8)),
    ("4.19.300", (4 << 16) + (19 << 8) + 255),
    ("6.8-rc1", (6 << 16) + (8 << 8)),
])
def test_kernel_version_code_of_releases(release: str, code: int) -> None:
    from ebpf import kconfig

    assert kconfig.version_code(release) == code


@pytest.mark.parametrize(("release", "code"), [
    ("6.12.117+deb12-amd64", (6 << 16) + (12 << 8) + 117),
    ("6.1.0-56-amd64", (6 << 16) + (1 << 8)),
    ("4.19.300", (4 << 16) + (19 << 8) + 255),
    ("6.8-rc1", (6 << 16) + (8 << 8)),
    ("6.8.", (6 << 16) + (8 << 8)),
    ("6.1x.3", (6 << 16) + (1 << 8)),
    ("6.18.2.7", (6 << 16) + (18 << 8) + 2),
    ("x", 0), ("6", 0), ("6-rc.1.2", 0), ("6.x", 0), ("", 0),
])
def test_program_kern_version_of_releases(release: str, code: int) -> None:
    """A kprobe's kern_version (ProgramSpec.kernel_version 0): the release's x.y.z."""
    from ebpf.programs import _release_version

    assert _release_version(release) == code


def test_kernel_version_code_bad_release() -> None:
    from ebpf import kconfig

    with pytest.raises(ebpf.errors.NotSupportedError, match="cannot parse release 'x'"):
        kconfig.version_code("x")


def test_iproute2_legacy_maps() -> None:
    spec = ebpf.load_collection_spec(compile_bpf("loader_legacy"))
    m = spec.maps["legacy_counts"]
    assert (m.type, m.key_size, m.value_size, m.max_entries) == (MapType.ARRAY, 4, 8, 4)
    with ebpf.Collection(spec) as coll:
        for _ in range(3):
            coll.programs["count_packets"].test_run(data=b"\0" * 64)
        assert coll.maps["legacy_counts"][1] == (3).to_bytes(8, "little")
        assert dict(coll.maps["legacy_hash"].items()) == {
            (64).to_bytes(4, "little"): (1).to_bytes(4, "little")}


def test_failure_closes_everything() -> None:
    spec = ebpf.load_collection_spec(compile_bpf("loader_maps"))
    # break one program: jump past the end
    bad = spec.programs["check_maps"]
    bad.instructions = [*bad.instructions[:3], ebpf.asm.exit()]
    bad.instructions[0] = ebpf.asm.mov_reg(ebpf.asm.R0, ebpf.asm.R5)  # uninitialized R5
    before = _fds()
    with pytest.raises(ebpf.VerifierError) as ei:
        ebpf.Collection(spec)
    assert "check_maps" in str(ei.value)
    assert "R5 !read_ok" in ei.value.log
    assert _fds() == before


def test_programs_option_and_unknown_names(globals_spec: ebpf.CollectionSpec) -> None:
    with ebpf.Collection(globals_spec, programs=["read_config"]) as coll:
        assert list(coll.programs) == ["read_config"]
    with pytest.raises(KeyError, match="nope"):
        ebpf.Collection(globals_spec, programs=["nope"])


def test_reload_does_not_reparse(globals_spec: ebpf.CollectionSpec,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import ebpf.btf.spec as btfspec
    import ebpf.elffile as reader

    def fail(*a: object, **k: object) -> None:
        raise AssertionError("re-parsed")

    monkeypatch.setattr(reader.ELFFile, "__init__", fail)
    monkeypatch.setattr(btfspec.Spec, "__init__", fail)
    for i in range(5):
        spec = globals_spec.copy()
        spec.variables["cfg_magic"].set(i)
        with ebpf.Collection(spec, programs=["read_config"]) as coll:
            assert _run(coll.programs["read_config"]) == i


def test_pinning_reuses_compatible_and_refuses_incompatible(pin_dir: str) -> None:
    from ebpf.maps import PinType

    spec = ebpf.load_collection_spec(compile_bpf("loader_maps"))
    spec.maps["points"].pinning = PinType.BY_NAME
    with ebpf.Collection(spec, pin_path=pin_dir, programs=[]) as coll:
        coll.maps["points"][7] = bytes(16)
    assert os.path.exists(os.path.join(pin_dir, "points"))
    with ebpf.Collection(spec, pin_path=pin_dir, programs=[]) as coll:
        assert coll.maps["points"].get(7, raw=True) == bytes(16)
    spec.maps["points"].max_entries = 999
    with pytest.raises(ebpf.InvalidArgumentError, match="max_entries"):
        ebpf.Collection(spec, pin_path=pin_dir, programs=[])


def test_map_replacement() -> None:
    spec = ebpf.load_collection_spec(compile_bpf("loader_legacy"))
    with ebpf.Map(spec.maps["legacy_counts"]) as shared:
        with ebpf.Collection(spec, map_replacements={"legacy_counts": shared}) as coll:
            coll.programs["count_packets"].test_run(data=b"\0" * 64)
        assert shared[1] == (1).to_bytes(8, "little")
