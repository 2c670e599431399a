#!/usr/bin/env python3
"""The conformance comparison in a kernel-matrix guest, for what the host cannot run.

This host refuses BPF trampolines (fentry/fexit/fmod_ret/LSM/freplace, struct_ops),
arena maps and some iterators by policy, so the programs of the 6.12 selftests that
need them fail with both loaders here and say nothing about conformance. This loads
them in the 6.12 guest of tools/vm instead, with both loaders:

1. on the host: the selection is read from the host's newest whole-corpus results
   (.cache/conformance/results.json or results-all.json): every object holding a
   program that neither loader loaded there and that failed for a reason the guest
   does not have (libbpf's errno EPERM, the host's policy answer; a trampoline,
   struct_ops, LSM or iterator section; bpf_testmod missing); or the objects
   ``--objects`` names. The objects are the host's (compiled against the host's
   vmlinux.h, cached); nothing is compiled in the guest. The BTF type index of the
   guest kernel is written to the host's ebpf cache (as the matrix's prewarm does), and
   the selftests' module bpf_testmod is built for the guest kernel against Debian's
   linux-headers-<release> (installed with apt-get when missing; --no-testmod: not);
2. in the guest (``--guest MANIFEST``): bpf_testmod is inserted, then the objects
   are loaded one program at a time by libbpf_conformance and by ebpf workers,
   exactly as on the host (conformance.Runner), and the results JSON goes to the
   guest's /kmatrix share;
3. back on the host: .cache/conformance/results-vm-<kernel>.json, and with
   ``--markdown`` the report is written again from the host's JSON and this one (the
   VM results are a section of their own; see conformance.markdown).

    python3 tools/conformance.py --vm 6.12 --markdown docs/conformance.md  # make conformance-vm
    python3 tools/conformance.py --vm 6.12 --objects 'arena_*' --vm-limit 5
    python3 tools/conformance.py --report docs/conformance.md  # markdown from both JSONs

Exit status: 0 when every program libbpf loads in the guest also loads with ebpf, 1
otherwise, 2 when the guest run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import conformance as cf

# Sections whose programs need what this host refuses (BPF trampolines, struct_ops,
# the LSM hooks, iterators): SEC name up to the first '/', without the '?'.
POLICY_KINDS = frozenset((
    "fentry", "fentry.s", "fexit", "fexit.s", "fmod_ret", "fmod_ret.s", "lsm", "lsm.s",
    "lsm_cgroup", "freplace", "struct_ops", "struct_ops.s", "iter", "iter.s"))
EPERM = 1
DEFAULT_KERNEL = "6.12"
VM_TIMEOUT = 1800.0


def vm_json_path(kernel: str = DEFAULT_KERNEL) -> pathlib.Path:
    """Where the results of a guest run of `kernel` are kept."""
    return cf.CACHE / f"results-vm-{kernel}.json"


def host_json_path() -> pathlib.Path:
    """The host's newest whole-corpus results (results.json of `make conformance`, or a
    copy of it as results-all.json), else results.json whatever it holds."""
    whole = []
    for p in (cf.CACHE / "results.json", cf.CACHE / "results-all.json"):
        try:
            with p.open() as f:
                head = f.read(4096)
        except OSError:
            continue
        if '"selection": "whole corpus"' in head:
            whole.append((p.stat().st_mtime, p))
    return max(whole)[1] if whole else cf.CACHE / "results.json"


def section_kind(section: str) -> str:
    """`section` up to its first '/', without a leading '?' (SEC("?fentry/x") -> fentry)."""
    return section.lstrip("?").split("/", 1)[0]


# Pieces of libbpf's log or ebpf's error saying the host lacks bpf_testmod (the
# selftests' module, which the guest loads: see build_testmod).
TESTMOD_SIGNS = ("testmod", "bpf_kfunc_", "not found in kernel or module")


def host_refused(prog: dict[str, Any]) -> bool:
    """Whether a program of the host's results failed with both loaders for what the
    host refuses by policy, or for want of bpf_testmod, rather than for itself."""
    if prog.get("outcome") != "neither":
        return False
    text = (prog["libbpf"].get("log_tail") or "") + (prog["ebpf"].get("error") or "")
    return (int(prog["libbpf"].get("errno") or 0) == EPERM
            or section_kind(prog.get("section", "")) in POLICY_KINDS
            or any(sign in text for sign in TESTMOD_SIGNS))


def select_from_host(host: dict[str, Any]) -> list[str]:
    """The objects of the host's results holding a program `host_refused`."""
    return [o["name"] for o in host["objects"]
            if any(host_refused(p) for p in o["programs"])]


# -- bpf_testmod -------------------------------------------------------------------------


def build_testmod(tree: pathlib.Path, release: str) -> pathlib.Path:
    """The selftests' bpf_testmod (from `tree`) built for kernel `release` against
    Debian's linux-headers-<release> (installed with apt-get when missing; its
    `vmlinux` gives the module its split BTF), cached in .cache/conformance."""
    headers = pathlib.Path(f"/usr/src/linux-headers-{release}")
    if not (headers / "Makefile").is_file():
        cf.log(f"installing linux-headers-{release} with apt-get (for bpf_testmod)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        proc = cf._run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                        f"linux-headers-{release}", "dwarves"], env=env)
        if not (headers / "Makefile").is_file():
            raise RuntimeError(f"cannot install linux-headers-{release}: "
                               f"{proc.stderr.strip()[-300:]}")
    src = tree / cf.SELFTESTS / "bpf_testmod"
    key = cf._digest(release, *(p.read_bytes() for p in sorted(src.iterdir())
                                if p.is_file()))[:12]
    dest = cf.CACHE / f"bpf_testmod-{release}-{key}"
    ko = dest / "bpf_testmod.ko"
    if ko.is_file():
        return ko
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    proc = cf._run(["nice", "-n", "15", "make", "-s", "-C", str(headers), f"M={tmp}",
                    "modules"])
    if proc.returncode != 0 or not (tmp / "bpf_testmod.ko").is_file():
        raise RuntimeError(f"building bpf_testmod failed: {proc.stderr.strip()[-500:]}")
    if "Skipping BTF" in proc.stderr:
        raise RuntimeError("bpf_testmod built without BTF (no vmlinux in the headers)")
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return ko


# -- the guest side ---------------------------------------------------------------------


def guest_main(manifest_path: str, json_path: str, timeout: float) -> int:
    """Load the manifest's objects with both loaders (in the guest); write the results."""
    m = json.loads(pathlib.Path(manifest_path).read_text())
    built = [cf.Built(name, pathlib.Path(path)) for name, path in m["objects"]]
    testmod = m.get("testmod") or ""
    if testmod:
        proc = subprocess.run(["insmod", testmod], capture_output=True, text=True,
                              check=False)
        ok = proc.returncode == 0 and os.path.exists("/sys/kernel/btf/bpf_testmod")
        testmod = "loaded" if ok else f"insmod failed: {proc.stderr.strip()[-300:]}"
        cf.log(f"bpf_testmod: {testmod}")
    t0 = time.monotonic()
    try:
        rows = cf.Runner(pathlib.Path(m["loader"]), 1, timeout, True).run(built)
    finally:
        if testmod == "loaded":
            subprocess.run(["rmmod", "bpf_testmod"], capture_output=True, check=False)
    import ebpf  # (the library is only needed once the objects are loaded)

    results = {
        "kernel": os.uname().release,
        "libbpf": m["libbpf"],
        "ebpf": ebpf.__version__ + m.get("git", ""),
        "clang": m["clang"],
        "date": time.strftime("%Y-%m-%d"),
        "selection": m["selection"],
        "compile": m["compile"],
        "testmod": testmod or m.get("testmod_error", "not built"),
        "load_seconds": round(time.monotonic() - t0, 1),
        "summary": cf.summarize(rows),
        "objects": rows,
    }
    tmp = pathlib.Path(json_path + ".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, json_path)
    return 0


# -- the host side ----------------------------------------------------------------------


def _prewarm_guest(kernel: Any) -> None:
    """Bytecode and the guest BTF's type index in the host's caches (tools/vm/prewarm),
    so that no guest process compiles Python or indexes 100k+ types under TCG."""
    sys.path.insert(0, str(cf.REPO))
    from tools.vm import prewarm  # (tools.vm needs the repository on sys.path)

    prewarm.compile_python()
    if kernel.btf.is_file():
        prewarm.prewarm_btf_index([str(kernel.btf)])


def vm_main(kernel: str, *, globs: Sequence[str], limit: int | None, jobs: int,
            timeout: float, vm_timeout: float, json_out: str | None,
            markdown_out: str | None, host_json: str | None,
            list_only: bool = False, testmod: bool = True) -> int:
    """Select and build on the host, load in the guest of `kernel`, keep the results."""
    sys.path.insert(0, str(cf.REPO))
    from tools.vm import kernels, runner  # (see _prewarm_guest)

    try:
        prepared = cf.prepare(jobs)
    except (RuntimeError, OSError) as e:
        cf.log(str(e))
        return 2
    corpus, exe, lib = prepared
    all_sources = corpus.sources()
    host_path = pathlib.Path(host_json) if host_json else host_json_path()
    if globs:
        chosen = cf.select_sources(all_sources, globs=globs)
        selection = f"objects {','.join(globs)}"
    else:
        try:
            host = json.loads(host_path.read_text())
        except (OSError, ValueError) as e:
            cf.log(f"no host results to select from ({e}); run `make conformance` first "
                   "or name objects with --objects")
            return 2
        names = set(select_from_host(host))
        chosen = [s for s in all_sources if s.name in names]
        selection = ("objects with programs the host refuses by policy (EPERM, or "
                     "trampoline/struct_ops/LSM/iterator sections, or bpf_testmod missing) in its "
                     "results")
    if limit:
        step = max(1.0, len(chosen) / limit)
        chosen = [chosen[int(i * step)] for i in range(min(limit, len(chosen)))]
        selection += f", {len(chosen)} of them spread evenly"
    if list_only:
        print("\n".join(s.name for s in chosen))
        return 0
    t0 = time.monotonic()
    built = corpus.build_all(chosen, jobs, progress=True)
    compile_s = time.monotonic() - t0
    ok = [b for b in built if b.path is not None]
    cf.log(f"{len(ok)} objects for the {kernel} guest ({selection})")
    manifest = {
        "loader": str(exe), "libbpf": lib.version,
        "clang": (cf._run([cf.CLANG, "--version"]).stdout.splitlines() or [cf.CLANG])[0],
        "git": cf._git_rev(), "selection": selection,
        "compile": {"objects": len(ok), "seconds": round(compile_s, 1),
                    "failed": [{"name": b.name, "error": b.error}
                               for b in built if b.path is None]},
        "objects": [[b.name, str(b.path)] for b in ok],
    }
    try:
        k = kernels.fetch(kernel)
        _prewarm_guest(k)
        python = runner.guest_python()
    except Exception as e:  # kernel fetch, prewarm: the infrastructure
        cf.log(f"cannot prepare the {kernel} guest: {e}")
        return 2
    if testmod:
        try:
            manifest["testmod"] = str(build_testmod(corpus.tree, k.release))
        except (RuntimeError, OSError) as e:
            cf.log(f"no bpf_testmod in the guest: {e}")
            manifest["testmod_error"] = str(e)
    mpath = cf.CACHE / f"vm-manifest-{kernel}.json"
    cf._write_atomic(mpath, json.dumps(manifest, indent=1) + "\n")
    out = cf.CACHE / "vm"
    cmd = [python, str(pathlib.Path(__file__).resolve()), "--guest", str(mpath),
           "--json", "/kmatrix/results.json", "--timeout", str(timeout)]
    cf.log(f"loading in the {kernel} guest (logs in {out / kernel})")
    r = runner.run_kernel(kernel, [], python, runner.VMConfig(timeout=vm_timeout),
                          command=cmd, kernel=k, out=out)
    share = pathlib.Path(r.log_dir) / "share"
    res_file = share / "results.json"
    if r.status != "ok" or not res_file.is_file():
        cf.log(f"guest run {r.status}: {r.detail}; logs in {r.log_dir}")
        return 2
    results = json.loads(res_file.read_text())
    results["vm"] = {"kernel": kernel, "release": r.release,
                     "seconds": round(r.seconds, 1),
                     "boot_seconds": round(r.boot_seconds or 0.0, 1)}
    dest = pathlib.Path(json_out) if json_out else vm_json_path(kernel)
    cf._write_atomic(dest, json.dumps(results, indent=1) + "\n")
    if markdown_out:
        write_report(markdown_out, host_path)
    s = results["summary"]
    print(json.dumps({k: v for k, v in s.items()
                      if k not in ("regressions_by_cause", "only_ebpf_by_reason")}, indent=1))
    for cause, names in s["regressions_by_cause"].items():
        print(f"{len(names):4}  {cause}\n      {', '.join(names[:5])}")
    return 1 if s["only_libbpf"] else 0


def write_report(markdown_out: str, host_path: pathlib.Path | None = None) -> None:
    """docs/conformance.md again from the host's results JSON (and the VM's, found by
    conformance.markdown)."""
    host = json.loads((host_path or host_json_path()).read_text())
    cf._write_atomic(pathlib.Path(markdown_out), cf.markdown(host))


# -- the report section -----------------------------------------------------------------


def vm_results(kernel: str = DEFAULT_KERNEL) -> dict[str, Any] | None:
    """The kept results of the last guest run of `kernel`, if any."""
    try:
        data: dict[str, Any] = json.loads(vm_json_path(kernel).read_text())
        return data
    except (OSError, ValueError):
        return None


def _guest_reason(prog: dict[str, Any]) -> str:
    return cf.libbpf_line(prog["libbpf"]) if not prog["libbpf"]["ok"] else ""


# Why neither loader loads a program in the guest: (a piece of libbpf's log or of
# ebpf's error, the reason), first match wins; the verifier's rejections come last.
NEITHER_REASONS = (
    (("testmod", "bpf_kfunc_", "not found in kernel or module",
      "failed to prepare load attributes: -3"),
     "a kernel or module type or symbol the guest does not have (bpf_testmod's, "
     "when the module is not loaded; a few bpf_testmod of 6.12 lacks)"),
    (("needs attach_prog", "must provide btf_id"),
     "needs a target BPF program (freplace, fentry/fexit on a program): the "
     "selftests load one first; one program at a time there is none"),
    (("is not sleepable",), "a sleepable program on a function this kernel does not "
                            "allow sleepable programs on"),
    (("failed to create",), "a map the selftests size at run time (max_entries 0)"),
)


def neither_reason(prog: dict[str, Any]) -> str:
    """Why neither loader loaded `prog` in the guest, in a few words."""
    text = (prog["libbpf"].get("log_tail") or "") + "\n" + (prog["ebpf"].get("error") or "")
    for pieces, why in NEITHER_REASONS:
        if any(piece in text for piece in pieces):
            return why
    if prog["ebpf"].get("log_tail"):
        return "the verifier rejects it with both loaders (mostly the selftests' " \
               "negative tests)"
    return "other: " + cf.libbpf_line(prog["libbpf"])


def vm_section(results: dict[str, Any]) -> list[str]:
    """The markdown lines of the VM section of docs/conformance.md."""
    s = cf.summarize(results["objects"])  # again: the reason tables may have grown
    t = s["timing"]
    vm = results.get("vm", {})
    release = vm.get("release") or results["kernel"]
    name = vm.get("kernel", DEFAULT_KERNEL)
    out = [
        f"## In the {name} VM (what this host refuses)",
        "",
        "This host refuses BPF trampolines (fentry/fexit/fmod_ret/LSM/freplace, "
        "struct_ops), arena maps and some iterators by policy. The objects holding such "
        f"programs are loaded again, with both loaders, in the {name} guest of the "
        f"kernel matrix (`{release}`, QEMU TCG, one vCPU): the same objects (compiled on "
        "the host against its `vmlinux.h`, CO-RE relocated against the guest's BTF by "
        "each loader), one program at a time, every program of each selected object. "
        f"Run {results['date']} ({results['selection']}); generated by "
        f"`python3 tools/conformance.py --vm {name}` (`make conformance-vm`).",
        "",
        f"bpf_testmod (the selftests' kernel module, built from the same tree against "
        f"Debian's `linux-headers-{release}`, with its BTF) in the guest: "
        f"{results.get('testmod', 'not built')}.",
        "",
        *cf.summary_table(s, f"in the selected objects ({s['objects']})"),
        "",
        "Neither loads, by libbpf's errno: "
        + ", ".join(f"{k} {v}" for k, v in s["neither_by_errno"].items()) + "; by why:",
        "",
        "| programs | why neither loads in the guest | examples |",
        "|---:|---|---|",
    ]
    why: dict[str, list[str]] = {}
    for r in results["objects"]:
        for p in r["programs"]:
            if p["outcome"] == "neither":
                why.setdefault(neither_reason(p), []).append(f"{r['name']}/{p['name']}")
    for reason, names in sorted(why.items(), key=lambda kv: -len(kv[1])):
        ex = ", ".join(f"`{n}`" for n in names[:3])
        out.append(f"| {len(names)} | {cf._md_cell(reason, 300)} | {ex} |")
    out += [
        "",
        f"Load CPU time in the guest (under TCG; {results['load_seconds']:.0f} s of "
        f"loading, {vm.get('seconds', 0):.0f} s with the boot): libbpf "
        f"{t['libbpf_cpu_s']:.1f} s, ebpf {t['ebpf_cpu_s']:.1f} s ({t['ratio']}x); "
        f"programs both load: {t['both_libbpf_cpu_s']:.1f} s and "
        f"{t['both_ebpf_cpu_s']:.1f} s ({t['ratio_both']}x). Not comparable with the "
        "host's ratio: under TCG libbpf's parse of the kernel's BTF in every process "
        "(one per program here) dominates, while ebpf's workers read the type index "
        "of the guest's BTF that the host wrote beforehand (tools/vm/prewarm.py).",
        "",
    ]
    unopened = [r for r in results["objects"] if not r["ebpf_open"].get("ok", True)]
    if unopened:
        out += ["Objects ebpf refuses to open (none of their programs loads with libbpf "
                "either, or they would count as regressions above):", ""]
        out += [f"- `{r['name']}`: {cf._md_cell(r['ebpf_open'].get('error') or '', 300)}"
                for r in unopened]
        out.append("")
    if s["regressions_by_cause"]:
        out += ["Regressions by cause:", "", "| programs | ebpf's error | examples |",
                "|---:|---|---|"]
        for cause, names in s["regressions_by_cause"].items():
            ex = ", ".join(f"`{n}`" for n in names[:4])
            out.append(f"| {len(names)} | {cf._md_cell(cause)} | {ex} |")
        out.append("")
    if s["only_ebpf_by_reason"]:
        out += ["Where ebpf loads more (why libbpf fails):", "",
                "| programs | why | examples |", "|---:|---|---|"]
        for why, names in s["only_ebpf_by_reason"].items():
            ex = ", ".join(f"`{n}`" for n in names[:3])
            out.append(f"| {len(names)} | {cf._md_cell(why, 400)} | {ex} |")
        out.append("")
    diffs = [(r, p) for r in results["objects"] for p in r["programs"]
             if p["outcome"] in ("only-libbpf", "only-ebpf")]
    if diffs:
        out += [f"Every difference in the {name} guest:", "",
                "| object | program | section | loads | libbpf | ebpf |",
                "|---|---|---|---|---|---|"]
        for r, p in diffs:
            lib = "loads" if p["libbpf"]["ok"] else _guest_reason(p)
            eb = ("loads" if p["ebpf"]["ok"]
                  else cf._first_line(p["ebpf"].get("error") or ""))
            out.append(f"| {r['name']} | {p['name']} | `{cf._md_cell(p['section'], 60)}` "
                       f"| {p['outcome']} | {cf._md_cell(lib)} | {cf._md_cell(eb)} |")
        out.append("")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vm", metavar="KERNEL", default=DEFAULT_KERNEL,
                    help="the kernel-matrix entry to run in (default 6.12)")
    ap.add_argument("--objects", metavar="GLOB",
                    help="these objects (comma-separated globs) instead of the host's "
                         "refused ones")
    ap.add_argument("--vm-limit", type=int, metavar="N",
                    help="only N of the selected objects, spread evenly (a sample)")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="compile jobs (host)")
    ap.add_argument("--timeout", type=float, default=cf.OBJECT_TIMEOUT,
                    help="seconds per object and loader (in the guest)")
    ap.add_argument("--vm-timeout", type=float, default=VM_TIMEOUT,
                    help="seconds for the whole guest run")
    ap.add_argument("--json", metavar="PATH",
                    help="results (default .cache/conformance/results-vm-KERNEL.json; in "
                         "the guest: where to write them)")
    ap.add_argument("--host-json", metavar="PATH",
                    help="the host results to select from and to report (default: the "
                         "newest whole-corpus results.json or results-all.json)")
    ap.add_argument("--markdown", metavar="PATH",
                    help="write the report again (host results + this VM section)")
    ap.add_argument("--no-testmod", action="store_true",
                    help="do not build and load the selftests' bpf_testmod in the guest")
    ap.add_argument("--list", action="store_true",
                    help="print the selected objects, boot nothing")
    ap.add_argument("--report", metavar="PATH",
                    help="only write the report at PATH from the kept JSON files")
    ap.add_argument("--guest", metavar="MANIFEST", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.report:
        write_report(args.report, pathlib.Path(args.host_json) if args.host_json else None)
        return 0
    if args.guest:
        return guest_main(args.guest, args.json or "/kmatrix/results.json", args.timeout)
    if not re.fullmatch(r"[0-9.]+", args.vm):
        ap.error(f"--vm: not a kernel-matrix entry: {args.vm!r}")
    globs = [g for g in (args.objects or "").split(",") if g]
    return vm_main(args.vm, globs=globs, limit=args.vm_limit, jobs=args.jobs,
                   timeout=args.timeout, vm_timeout=args.vm_timeout, json_out=args.json,
                   markdown_out=args.markdown, host_json=args.host_json,
                   list_only=args.list, testmod=not args.no_testmod)


if __name__ == "__main__":
    sys.exit(main())
