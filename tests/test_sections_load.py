"""Programs in the section names libbpf 1.5/1.6 added load with the program and
expected attach types those names give, and auto-attach (issue 12, cause 7)."""

from __future__ import annotations

import os

from bpfbuild import compile_bpf
from kernelmatrix import requires

import ebpf
from ebpf import AttachType, ProgramType


@requires("BPF_SK_SKB_VERDICT", min_kernel="5.13")
def test_sk_skb_verdict_loads() -> None:
    spec = ebpf.load_collection_spec(compile_bpf("sections_new"))
    ps = spec.programs["skb_verdict"]
    assert (ps.type, ps.attach_type) == (ProgramType.SK_SKB, AttachType.SK_SKB_VERDICT)
    with ebpf.Collection(spec, programs=["skb_verdict"]) as coll:
        assert coll.programs["skb_verdict"].info().type == ProgramType.SK_SKB


@requires("uprobe session links (bpf_session_is_return)", min_kernel="6.13",
          config="CONFIG_UPROBES")
def test_uprobe_session_runs_on_entry_and_return() -> None:
    spec = ebpf.load_collection_spec(compile_bpf("sections_new"))
    ps = spec.programs["getpid_session"]
    assert (ps.type, ps.attach_type) == (ProgramType.KPROBE, AttachType.TRACE_UPROBE_SESSION)
    assert ps.attach_to == "libc.so.6:getpid"
    spec.variables["target_tgid"].set(os.getpid())
    with ebpf.Collection(spec, programs=["getpid_session"]) as coll:
        # bpf_session_is_return() is a kfunc the verifier allows only in programs
        # loaded with the session attach type: loading proves the name gave it
        with coll.programs["getpid_session"].attach() as link:
            assert link is not None
            for _ in range(5):
                os.getpid()
        assert coll.variables["entries"].get() == 5
        assert coll.variables["returns"].get() == 5
