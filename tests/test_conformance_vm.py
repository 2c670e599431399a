"""tools/conformance_vm.py: which objects of the host's conformance results go to the
6.12 guest, and the report section written from the guest's results.

The guest run itself (`make conformance-vm`, about a quarter of an hour of QEMU TCG) is
not part of the test command; these check its pure parts on small hand-made results.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Any

TOOLS = pathlib.Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))
import conformance  # noqa: E402
import conformance_vm  # noqa: E402

sys.path.remove(str(TOOLS))


def _prog(name: str, section: str, lib_ok: bool, eb_ok: bool, errno: int = 0,
          lib_log: str = "", eb_error: str = "") -> dict[str, Any]:
    return {"name": name, "section": section, "autoload": True,
            "outcome": conformance.outcome(lib_ok, eb_ok),
            "libbpf": {"ok": lib_ok, "errno": errno, "log_tail": lib_log,
                       "user_ns": 1000, "sys_ns": 1000},
            "ebpf": {"ok": eb_ok, "errno": errno, "error": eb_error, "log_tail": "",
                     "warnings": [], "user_ns": 500, "sys_ns": 500}}


def _results(objects: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    rows = [{"name": n, "path": f"/x/{n}.bpf.o", "libbpf_open": {"ok": True},
             "ebpf_open": {"ok": True}, "ebpf_parse_ns": 10, "ebpf_parse_user_ns": 5,
             "programs": ps} for n, ps in objects.items()]
    return {"kernel": "6.12.0-test", "libbpf": "1.5.0", "ebpf": "0.1.0",
            "clang": "clang 19", "date": "2026-12-06", "selection": "test",
            "compile": {"objects": len(rows), "seconds": 0, "failed": []},
            "load_seconds": 12.0, "summary": conformance.summarize(rows), "objects": rows}


def test_selection_takes_objects_the_host_refuses_by_policy() -> None:
    host = _results({
        # EPERM from both loaders (arena maps, trampolines refused here)
        "arena_list": [_prog("arena_list_add", "syscall", False, False, errno=1)],
        # a trampoline section that neither loads, whatever the errno
        "fexit_sleep": [_prog("fexit", "?fexit/do_nanosleep", False, False, errno=22)],
        "dummy_st_ops": [_prog("ops", "struct_ops/test_1", False, False, errno=3)],
        # bpf_testmod missing here (the guest inserts it)
        "kfunc_call_test": [_prog("k", "tc", False, False, errno=3, lib_log=(
            "libbpf: extern (func ksym) 'bpf_kfunc_call_test1': not found in kernel or "
            "module BTFs"))],
        # nothing the host refuses: both load, or a verifier rejection of a tc program
        "test_tc": [_prog("tc_ok", "tc", True, True),
                    _prog("tc_bad", "tc", False, False, errno=13)],
        # a trampoline both load does not need the guest
        "fentry_ok": [_prog("f", "fentry/bpf_fentry_test1", True, True)],
    })
    assert conformance_vm.select_from_host(host) == ["arena_list", "fexit_sleep",
                                                     "dummy_st_ops", "kfunc_call_test"]
    assert conformance_vm.section_kind("?fentry.s/x") == "fentry.s"
    assert conformance_vm.section_kind("struct_ops") == "struct_ops"


def test_vm_section_lists_counts_and_every_difference() -> None:
    res = _results({
        "lsm": [_prog("hook", "lsm/file_mprotect", True, True),
                _prog("bad", "lsm.s/bpf", False, False, errno=13,
                      lib_log="R1 must be referenced")],
        "kfunc_call": [_prog("call", "fentry/x", True, False, errno=22,
                             eb_error="kfunc bpf_foo not found")],
    })
    res["vm"] = {"kernel": "6.12", "release": "6.12.0-test", "seconds": 60.0,
                 "boot_seconds": 12.0}
    text = "\n".join(conformance_vm.vm_section(res))
    assert text.startswith("## In the 6.12 VM")
    assert "| in the selected objects (2) | 3 |" in text
    assert "| only libbpf loads (regressions) | 1 |" in text
    assert "| kfunc_call | call | `fentry/x` | only-libbpf | loads | kfunc bpf_foo not found |" \
        in text
    assert "EACCES 1" in text
    assert "| 1 | other: R1 must be referenced | `lsm/bad` |" in text


def test_neither_reason_names_what_the_guest_lacks() -> None:
    testmod = _prog("t", "struct_ops/test_1", False, False, errno=3,
                    lib_log="libbpf: extern (func ksym) 'bpf_kfunc_call_test_acquire': "
                            "not found in kernel or module BTFs")
    assert "bpf_testmod" in conformance_vm.neither_reason(testmod)
    ext = _prog("e", "freplace/x", False, False, errno=22,
                eb_error="program 'e': freplace program 'e' needs attach_prog")
    assert "target BPF program" in conformance_vm.neither_reason(ext)
    rejected = _prog("r", "fentry/x", False, False, errno=13, lib_log="R1 invalid mem")
    rejected["ebpf"]["log_tail"] = "R1 invalid mem access"
    assert "verifier rejects" in conformance_vm.neither_reason(rejected)
