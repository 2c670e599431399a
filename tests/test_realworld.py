"""Real-world objects other people compiled, loaded program by program with libbpf
(tools/c/libbpf_each.c) and with `ebpf load --each`: every program libbpf loads on
this kernel must load with `ebpf` too (tools/realworld.py runs the whole corpus).

The corpus comes from Debian packages (tools/setup.sh installs them): libbpf-tools
(CO-RE tracing tools, skeletons embedded in the executables), xdp-tools / libxdp1 /
xdp-tests, libknot13 (Knot DNS's XDP program) and golang-github-cilium-ebpf-dev
(cilium/ebpf's test objects). The suite compares a representative subset to stay
fast; set EBPF_REALWORLD=all to compare everything (plus the kernel's BPF selftests
objects if tools/selftests_corpus.py built them). Below that, regression tests for
constructs found in the corpus, each with a small program in tests/bpf/.
"""

from __future__ import annotations

import mmap
import os
import pathlib
import sys
from collections.abc import Iterator

import pytest
from bpfbuild import compile_bpf
from conftest import need_tool

import ebpf
from ebpf import ProgramType

pytestmark = pytest.mark.kernel

TOOLS = pathlib.Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))
import realworld  # noqa: E402

sys.path.remove(str(TOOLS))

# One or two objects per construct: CO-RE task_struct/sock readers with perf buffers
# and ring buffers, uprobes, tp_btf/raw_tp/fentry alternatives, kprobe + kretprobe
# pairs, stack maps sized at run time, XDP with freplace dispatchers and multi-prog
# objects, a skeleton in a shared library, and another loader's test objects.
SUBSET = (
    "libbpf-tools/execsnoop", "libbpf-tools/runqslower", "libbpf-tools/tcpconnect",
    "libbpf-tools/biosnoop", "libbpf-tools/mountsnoop", "libbpf-tools/offcputime",
    "libbpf-tools/bindsnoop", "libbpf-tools/ksnoop", "libbpf-tools/sigsnoop",
    "libbpf-tools/cpudist", "libbpf-tools/bashreadline", "libbpf-tools/tcptracer",
    "libbpf-tools/fsdist", "libbpf-tools/runqlat", "libbpf-tools/tcplife",
    "libbpf-tools/solisten", "libbpf-tools/biolatency", "libbpf-tools/opensnoop",
    "libxdp1/xdp-dispatcher", "libxdp1/xdpfilt_alw_tcp", "libxdp1/xsk_def_xdp_prog",
    "xdp-tools/xdp-bench.2", "xdp-tools/xdp-monitor.1", "xdp-tests/test_long_func_name",
    "libknot13/libknot.so.13.0.0",
    "golang-github-cilium-ebpf-dev/loader-clang-14-el",
    "golang-github-cilium-ebpf-dev/relocs-el",
    "golang-github-cilium-ebpf-dev/btf_map_init-el",
    "golang-github-cilium-ebpf-dev/freplace-el",
)


@pytest.fixture(scope="module")
def corpus() -> list[realworld.CorpusObject]:
    everything = os.environ.get("EBPF_REALWORLD") == "all"
    # with everything, also the kernel selftests objects tools/selftests_corpus.py built
    extra = sorted(str(p) for p in realworld.CACHE.glob("selftests-*") if p.is_dir()
                   ) if everything else []
    objects = realworld.discover(extra)
    need_tool("the real-world BPF objects (libbpf-tools, xdp-tools, ...)", present=bool(objects))
    if not everything:
        wanted = set(SUBSET)
        objects = [o for o in objects if o.name in wanted]
    need_tool("the representative real-world objects (SUBSET above)", present=bool(objects))
    return objects


@pytest.fixture(scope="module")
def libbpf_each() -> pathlib.Path:
    # gcc and libbpf-dev are installed by tools/setup.sh: a failed build is a failure
    return realworld.build_libbpf_each()


@pytest.fixture(scope="module")
def mounted() -> Iterator[None]:
    with realworld.mounts():
        yield


def test_everything_libbpf_loads_ebpf_loads(corpus: list[realworld.CorpusObject],
                                            libbpf_each: pathlib.Path,
                                            mounted: None) -> None:
    results = []
    for obj in corpus:
        results.append(realworld.compare_object(obj, libbpf_each))
        if realworld.needs_prepare(obj.path):
            results.append(realworld.compare_object(obj, libbpf_each, prepare=True))
    summary = realworld.summarize(results)
    assert summary["libbpf_ok"] > 0, realworld.table(results)
    crashed = [e for e in summary["ebpf_open_failed"]
               if "Traceback" in e["error"] or "crashed" in e["error"]]
    assert not crashed, crashed
    problems = [f"{m['object']} [{m['mode']}] {m['program']} ({m['section']}): "
                f"{m['ebpf_error']}\n    " + "\n    ".join(m["log_tail"])
                for m in summary["mismatches"]]
    assert not problems, "libbpf loads these, ebpf does not:\n" + "\n".join(problems)


# -- regression tests for constructs found in the corpus ----------------------------------


def test_unknown_section_names_leave_the_type_unset() -> None:
    """libbpf opens objects with programs in sections it does not know (cilium/ebpf's
    "socket_filter/..."), loads the others and fails only those programs."""
    spec = ebpf.load_collection_spec(compile_bpf("realworld_sections"))
    assert spec.programs["known"].type == ProgramType.SOCKET_FILTER
    custom = spec.programs["custom"]
    assert custom.type == ProgramType.UNSPEC and custom.section == "socket_filter/custom"
    assert custom.autoload
    assert not spec.programs["custom_off"].autoload
    with ebpf.Collection(spec, programs=["known"]) as coll:
        assert coll.programs["known"].test_run(data=b"\0" * 64).retval == 7
    with pytest.raises(ebpf.Error, match=r"socket_filter/custom.*not a libbpf SEC"):
        ebpf.Collection(spec)
    fixed = spec.copy()
    fixed.programs["custom"].type = ProgramType.SOCKET_FILTER
    with ebpf.Collection(fixed) as coll:
        assert coll.programs["custom"].test_run(data=b"\0" * 64).retval == 11
        assert "custom_off" not in coll.programs


def test_unknown_section_names_with_load_each() -> None:
    from ebpf.cli import load_object

    res = load_object(str(compile_bpf("realworld_sections")), each=True)
    assert res["open"]["ok"], res
    by_name = {p["name"]: p for p in res["programs"]}
    # --each is every program, the SEC("?...") one included
    assert set(by_name) == {"known", "custom", "custom_off"}
    assert by_name["known"]["ok"]
    assert not by_name["custom"]["ok"]
    assert "socket_filter/custom" in by_name["custom"]["error"]
    assert not by_name["custom_off"]["ok"]
    assert "socket/2" in by_name["custom_off"]["error"]


def test_ringbuf_sizes_round_up_like_libbpf() -> None:
    """max_entries 1000 (test_ringbuf_multi) or 3 pages: libbpf rounds a ring buffer up to
    a power-of-2 number of pages, for inner maps too; the spec keeps what the object says."""
    spec = ebpf.load_collection_spec(compile_bpf("realworld_maps"))
    assert spec.maps["ring_odd"].max_entries == 1000
    page = mmap.PAGESIZE
    with ebpf.Collection(spec) as coll:
        assert coll.maps["ring_odd"].info().max_entries == page
        assert coll.maps["ring_3pages"].info().max_entries == 4 * page
        assert coll.maps["ring_inner"].info().max_entries == page
        assert coll.programs["use_maps"].test_run().retval == 0
    assert spec.maps["ring_odd"].max_entries == 1000
    exact = spec.copy()
    exact.maps["ring_odd"].max_entries = 2 * page
    with ebpf.Collection(exact, programs=[]) as coll:
        assert coll.maps["ring_odd"].info().max_entries == 2 * page


def test_weak_unknown_virtual_kconfig_extern_is_zero() -> None:
    """A __weak LINUX_* extern libbpf does not know defaults to zero (test_core_extern);
    the program asserts it and returns 0."""
    spec = ebpf.load_collection_spec(compile_bpf("realworld_maps"))
    assert "LINUX_UNKNOWN_VIRTUAL_EXTERN" in spec.externs
    with ebpf.Collection(spec) as coll:
        assert coll.programs["use_maps"].test_run().retval == 0


def _struct_ops_obj() -> pathlib.Path:
    from vmlinux import vmlinux_include_dir

    return compile_bpf("realworld_struct_ops", extra_flags=[f"-I{vmlinux_include_dir()}"])


def test_struct_ops_programs_load_on_their_own() -> None:
    """bpf_dctcp/bpf_cubic: struct_ops programs get their target (struct id, member index)
    from the .struct_ops variable at open, so each loads without the link step."""
    spec = ebpf.load_collection_spec(_struct_ops_obj())
    members = {"rw_init": "init", "rw_ssthresh": "ssthresh",
               "rw_undo_cwnd": "undo_cwnd", "rw_cong_avoid": "cong_avoid"}
    for prog, member in members.items():
        ps = spec.programs[prog]
        assert ps.type == ProgramType.STRUCT_OPS
        assert ps.attach_to == f"tcp_congestion_ops:{member}"
        assert ps.attach_btf_id == 0, "resolved at load, the spec has no kernel ids"
    kernel = ebpf.btf.load_kernel_spec()
    try:
        kt = kernel.type_by_name("tcp_congestion_ops", ebpf.btf.Struct)
    except ebpf.errors.KeyNotFoundError:
        pytest.skip("no struct tcp_congestion_ops in this kernel's BTF")
    assert isinstance(kt, ebpf.btf.Struct)
    for prog, member in members.items():
        try:
            with ebpf.Collection(spec, programs=[prog]) as coll:
                info = coll.programs[prog].info()
        except ebpf.NotSupportedError as e:  # kernels that refuse struct_ops programs
            pytest.skip(str(e))
        assert info.type == ProgramType.STRUCT_OPS
        assert info.attach_btf_id == kernel.type_id(kt), member
    from ebpf.cli import load_object

    res = load_object(str(_struct_ops_obj()), each=True)
    assert [p["ok"] for p in res["programs"]] == [True] * 4, res


def test_typeless_ksym_at_address_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """test_ksyms on 6.1: __per_cpu_start is listed in /proc/kallsyms at address 0, which
    is its real address, not a hidden one (those are all zero)."""
    from ebpf import instantiate as loader

    spec = ebpf.load_collection_spec(compile_bpf("realworld_ksym"))
    listed = {"ebpf_test_zero_ksym": 0, "_stext": 0xFFFFFFFF81000000}
    monkeypatch.setattr(loader, "_kallsyms", lambda: listed)
    monkeypatch.setattr(loader, "_kallsyms_hidden", lambda: False)
    with ebpf.Collection(spec) as coll:
        assert coll.programs["zero_ksym"].test_run().retval == 0
        assert coll.variables["seen_addr"].get() == 0
    monkeypatch.setattr(loader, "_kallsyms_hidden", lambda: True)
    with pytest.raises(ebpf.NotSupportedError, match="ebpf_test_zero_ksym"):
        ebpf.Collection(spec)
