"""No growth across reloads: re-parsing and reloading a CO-RE object stays flat.

A long-running process that parses, loads, attaches, reads and closes an object over and
over (the template workflow) must give everything back: memory (caches keyed by a spec
must not keep it alive), descriptors and kernel objects. bench/soak.py runs the same
cycle (tests/soakcycle.py) 10,000 times; here a few hundred after a warm-up.
"""

from __future__ import annotations

import gc
import os
import weakref
from typing import Any

import pytest
from kernelmatrix import requires
from soakcycle import Soak, open_fds, rss_bytes, settled_kernel_objects

import ebpf
from ebpf import link, ringbuf

# Leaks do not depend on the kernel's version: the soak runs on the host only.
pytestmark = pytest.mark.hostonly

WARMUP = 30
CYCLES = 250
# A parsed spec and its types refer to each other, so a dropped spec is freed by the
# garbage collector, not by reference counting; between automatic full collections
# RSS rises to a plateau that depends on the whole process's heap (bench/soak.py shows
# it). Collecting every few cycles makes the figure independent of what else this test
# process holds: what survives a collection is what a cache keeps alive.
COLLECT_EVERY = 10
# The old caches kept every parsed spec: ~550 KiB per cycle of this object. Fixed, the
# growth is 0 to a few pages; 16 KiB per cycle is 3.9 MiB over the run.
MAX_GROWTH_PER_CYCLE = 16 << 10
NONE = {"progs": 0, "maps": 0, "links": 0}


@requires("map_type:RINGBUF", min_kernel="5.8", config="CONFIG_DEBUG_INFO_BTF")
def test_reload_cycles_are_flat() -> None:
    soak = Soak()
    for _ in range(WARMUP):
        soak.cycle()
    gc.collect()
    assert settled_kernel_objects(soak.prefix) == NONE
    fds, rss = open_fds(), rss_bytes()
    for i in range(1, CYCLES + 1):
        soak.cycle()
        if i % COLLECT_EVERY == 0:
            gc.collect()
    growth = rss_bytes() - rss
    assert soak.events == WARMUP + CYCLES
    assert growth <= MAX_GROWTH_PER_CYCLE * CYCLES, (
        f"RSS grew by {growth / 1024:.0f} KiB over {CYCLES} reloads "
        f"({growth / 1024 / CYCLES:.1f} KiB per cycle)")
    assert open_fds() == fds
    assert settled_kernel_objects(soak.prefix) == NONE


@requires("map_type:RINGBUF", min_kernel="5.8", config="CONFIG_DEBUG_INFO_BTF")
def test_caches_die_with_their_spec() -> None:
    """Everything cached for a parsed object while it is loaded, relocated against a
    target BTF of its own, templated and its events decoded goes away with it."""
    soak = Soak()
    spec = ebpf.load_collection_spec(soak.obj)
    target = ebpf.btf.load_spec(soak.obj)  # a CO-RE target other than the kernel
    spec.variables["target_tgid"].set(os.getpid())  # the template variable's encoder
    assert spec.btf is not None
    for kernel_btf in (None, target):
        with ebpf.Collection(spec, kernel_btf=kernel_btf) as coll, \
                link.raw_tracepoint(coll.programs[Soak.PROGRAM], "sys_enter"), \
                ringbuf.Reader(coll.maps[Soak.RING], btf=spec.btf,
                               record_type="soak_event") as reader:
            os.getpid()
            assert reader.decode(reader.read(timeout=5.0)).tgid == os.getpid()
    assert spec.variables["target_tgid"].get() == os.getpid()  # and its decoder
    refs: list[weakref.ref[Any]] = [weakref.ref(spec.btf), weakref.ref(target),
                                    weakref.ref(spec)]
    del spec, target, coll, reader, kernel_btf
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
