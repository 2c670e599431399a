"""Data sections as large as the kernel allows (issue 12, cause 7): a 16 MiB .bss,
which libbpf loads, loads here and its variables read back."""

from __future__ import annotations

import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bpfbuild import compile_bpf
from kernelmatrix import requires

import ebpf
from ebpf.elffile import ELFFile
from ebpf.errors import ELFError

BIG = 16 << 20


def _big_array_values() -> bool:
    """Whether the kernel creates an array map with a 16 MiB value (older kernels
    stop at KMALLOC_MAX_SIZE; 6.12's limit is INT_MAX)."""
    try:
        ebpf.Map(ebpf.MapSpec(type=ebpf.MapType.ARRAY, key_size=4, value_size=BIG,
                              max_entries=1, name="big_probe")).close()
    except ebpf.errors.SyscallError:
        return False
    return True


@requires(_big_array_values, min_kernel="6.12")
def test_16_mib_bss_loads_and_reads_back() -> None:
    spec = ebpf.load_collection_spec(compile_bpf("big_bss"))
    assert spec.maps[".bss"].value_size == BIG
    assert spec.variables["big"].size == BIG - 16
    spec.variables["first_seen"].set(7)
    with ebpf.Collection(spec) as coll:
        assert coll.maps[".bss"].info().value_size == BIG
        assert coll.variables["first_seen"].get() == 7
        assert coll.programs["touch_big"].test_run().retval == 0
        # the program wrote the last byte of the 16 MiB array and read it back
        assert coll.variables["last_written"].get() == 0x5A
        assert coll.variables["first_seen"].get() == 0
        # (char[] decodes as a C string: look at the bytes)
        off = spec.variables["big"].offset
        raw = coll.maps[".bss"].lookup(0, raw=True)[off : off + BIG - 16]
        assert raw[-1] == 0x5A and not any(raw[:-1])


def test_bss_larger_than_an_array_value_is_refused() -> None:
    # the parser refuses what no kernel accepts (value_size > INT_MAX) before
    # allocating it; everything up to that is left for the kernel to judge
    raw = bytearray(compile_bpf("big_bss").read_bytes())
    elf = ELFFile(bytes(raw))
    bss = elf.section_by_name(".bss")
    assert bss is not None
    # Elf64_Shdr: sh_size is at offset 32 of the entry
    struct.pack_into("<Q", raw, elf.shoff + bss.index * 64 + 32, 1 << 31)
    with pytest.raises(ELFError, match=r"claims 2147483648 bytes.*at most 2147483647"):
        ebpf.load_collection_spec(bytes(raw))


def test_large_integer_array_variable_decodes_fast() -> None:
    # 4 Mi integers: one unpack for the whole array, and `ebpf inspect` / `ebpf gen`
    # do not decode values they would not show (seconds of CPU each before)
    from ebpf.cli.inspect import inspect_spec
    from ebpf.gen import generate

    obj = compile_bpf("big_array")
    spec = ebpf.load_collection_spec(obj)
    var = spec.variables["counts"]
    t0 = time.process_time()
    values = var.get()
    assert len(values) == 4 << 20 and not any(values)
    var.set([0] * 7 + [5] + [0] * ((4 << 20) - 8))
    assert var.get()[7] == 5
    listed = {v["name"]: v for v in inspect_spec(spec)["variables"]}
    assert listed["counts"]["value"] == f"<{16 << 20} bytes>"
    src = generate(obj.read_bytes(), name="Big", filename="big.bpf.o")
    assert "counts" in src
    assert time.process_time() - t0 < 5.0


def test_bss_too_large_for_memory_is_a_typed_error(tmp_path: Path) -> None:
    # found by tools/fuzz.py: a .bss of ~2 GiB (under the kernel's limit) in a process
    # whose address space cannot hold it raised a raw MemoryError while parsing
    raw = bytearray(compile_bpf("big_bss").read_bytes())
    elf = ELFFile(bytes(raw))
    bss = elf.section_by_name(".bss")
    assert bss is not None
    struct.pack_into("<Q", raw, elf.shoff + bss.index * 64 + 32, (1 << 31) - 8)
    obj = tmp_path / "huge_bss.o"
    obj.write_bytes(bytes(raw))
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "import ebpf\n"
        "try:\n"
        "    ebpf.load_collection_spec(sys.argv[1])\n"
        "except ebpf.errors.ELFError as e:\n"
        "    print('ELFError:', e)\n")
    out = subprocess.run([sys.executable, "-c", script, str(obj)], capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ELFError: section .bss claims 2147483640 bytes: not enough memory" in out.stdout
