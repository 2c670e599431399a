#!/usr/bin/env python3
"""Load real-world BPF objects with libbpf and with `ebpf`, program by program, and compare.

The corpus is whatever other people compiled that is installed on this machine:

* libbpf-tools (Debian package ``libbpf-tools``): the CO-RE tracing tools, whose
  BPF objects are embedded in the executables as libbpf skeletons;
* xdp-tools (``xdp-tools``, ``libxdp1``, ``xdp-tests``): plain objects under
  /usr/lib/<arch>/bpf and /usr/libexec/xdp-tools, and skeletons in the tools;
* Knot DNS's XDP program embedded in ``libknot13``;
* PCP's bpf PMDA modules (``pcp``: libbpf-tools built by another project);
* cilium/ebpf's test objects (``golang-github-cilium-ebpf-dev``, little-endian only);
* bpftool's own skeletons, when the package was built with them;
* with --selftests, the kernel's BPF selftests programs (tools/selftests_corpus.py);
* any extra files or directories given on the command line.

Embedded objects are extracted with tools/extract_bpf_objects.py into the cache
directory and de-duplicated by content. The libbpf side is tools/c/libbpf_each.c
(built here with gcc -lbpf), the `ebpf` side is `ebpf load --each --json`
(in-process by default, ``--subprocess`` to run the real command). Each program is
loaded on its own with both. A *mismatch* is a program libbpf loads and `ebpf`
doesn't; the opposite ("ebpf-only") is listed but allowed.

    python3 tools/realworld.py                 # table + JSON summary on stdout
    python3 tools/realworld.py --json out.json --only execsnoop,runqlat

bpffs and tracefs are mounted if missing and unmounted again at the end.
Exit status: 0 without mismatches, 1 with, 2 when there is nothing to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

TOOLS = pathlib.Path(__file__).resolve().parent
REPO = TOOLS.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

import extract_bpf_objects  # noqa: E402

CACHE = REPO / ".cache" / "realworld"
C_SOURCE = TOOLS / "c" / "libbpf_each.c"
EM_BPF = 247

# Debian packages that ship BPF objects, and which of their files to take.
PACKAGES: dict[str, tuple[str, ...]] = {
    "libbpf-tools": ("/usr/sbin/",),
    "xdp-tools": ("/usr/sbin/", "/bpf/"),
    "libxdp1": ("/bpf/", ".so"),
    "xdp-tests": ("/usr/libexec/xdp-tools/",),
    "libknot13": ("libknot.so",),
    "pcp": ("/pmdas/bpf/modules/",),
    "bpftool": ("/sbin/bpftool",),
    "golang-github-cilium-ebpf-dev": ("-el.elf",),
}


@dataclass
class CorpusObject:
    """One BPF object of the corpus."""

    name: str           # short unique label, e.g. "libbpf-tools/execsnoop"
    path: pathlib.Path  # the object file (extracted copy for embedded ones)
    source: str         # where it came from (package file or given path)


@dataclass
class ProgramResult:
    name: str
    section: str = ""
    type: str | None = None
    libbpf_ok: bool | None = None   # None: libbpf did not list the program
    libbpf_errno: int = 0
    libbpf_log: str = ""
    ebpf_ok: bool | None = None     # None: ebpf did not list the program
    ebpf_errno: int = 0
    ebpf_error: str = ""
    ebpf_log: str = ""

    @property
    def mismatch(self) -> bool:
        """libbpf loads it, ebpf doesn't (or doesn't see it)."""
        return bool(self.libbpf_ok) and not self.ebpf_ok

    @property
    def ebpf_only(self) -> bool:
        return bool(self.ebpf_ok) and not self.libbpf_ok


@dataclass
class ObjectResult:
    obj: CorpusObject
    mode: str = "as-is"      # or "prepared" (map sizes filled in as the tool would)
    libbpf_open: bool = True
    libbpf_open_error: str = ""
    ebpf_open: bool = True
    ebpf_open_error: str = ""
    programs: list[ProgramResult] = field(default_factory=list)
    seconds_libbpf: float = 0.0
    seconds_ebpf: float = 0.0


# -- corpus -------------------------------------------------------------------------------


def _package_files(pkg: str) -> list[str]:
    if shutil.which("dpkg-query") is None:
        return []
    proc = subprocess.run(["dpkg-query", "-L", pkg], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        return []
    return [ln for ln in proc.stdout.splitlines() if ln]


def _is_bpf_elf(data: bytes) -> bool:
    return (len(data) >= 20 and data[:4] == b"\x7fELF" and data[5] == 1
            and int.from_bytes(data[18:20], "little") == EM_BPF)


def _candidates(paths: Iterable[str]) -> Iterator[pathlib.Path]:
    for p in paths:
        path = pathlib.Path(p)
        if path.is_dir():
            yield from sorted(q for q in path.rglob("*") if q.is_file())
        elif path.is_file():
            yield path


def discover(extra: Sequence[str] = (), cache: pathlib.Path = CACHE,
             packages: Sequence[str] | None = None) -> list[CorpusObject]:
    """The corpus installed on this machine (plus `extra` paths), de-duplicated."""
    objdir = cache / "objects"
    objdir.mkdir(parents=True, exist_ok=True)
    sources: list[tuple[str, list[str]]] = []
    for pkg in (PACKAGES if packages is None else packages):
        wanted = PACKAGES.get(pkg, ("",))
        files = [f for f in _package_files(pkg)
                 if any(w in f for w in wanted) and os.path.isfile(f)
                 and not os.path.islink(f)]
        sources.append((pkg, files))
    for p in extra:  # a directory's objects are named after it
        label = pathlib.Path(p).name if pathlib.Path(p).is_dir() else "extra"
        sources.append((label, [str(q) for q in _candidates([p])]))
    found: list[tuple[bool, str, str, extract_bpf_objects.Embedded, str]] = []
    for group, files in sources:
        for f in files:
            try:
                embedded = extract_bpf_objects.extract_file(f)
            except (OSError, ValueError):
                continue
            names = extract_bpf_objects.output_names(f, len(embedded))
            for emb, oname in zip(embedded, names, strict=True):
                whole = emb.offset == 0 and len(emb.data) == os.path.getsize(f)
                found.append((whole, group, f, emb, oname))
    # plain object files first, so that an object also embedded in a tool (libxdp's
    # dispatcher in every xdp-tools binary) keeps its own name
    found.sort(key=lambda row: not row[0])
    seen: set[str] = set()
    out: list[CorpusObject] = []
    for whole, group, f, emb, oname in found:
        if not _is_bpf_elf(emb.data):
            continue  # big-endian objects: neither loader can load them here
        digest = hashlib.sha256(emb.data).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        if whole:
            path = pathlib.Path(f)
        else:
            path = objdir / f"{digest[:12]}-{oname}"
            if not path.is_file():
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(emb.data)
                os.replace(tmp, path)
        out.append(CorpusObject(f"{group}/{oname.removesuffix('.bpf.o')}", path, f))
    return out


# -- loaders ------------------------------------------------------------------------------


def build_libbpf_each(cache: pathlib.Path = CACHE) -> pathlib.Path:
    """Compile tools/c/libbpf_each.c (cached by source hash); raise RuntimeError if impossible."""
    src = C_SOURCE.read_bytes()
    exe = cache / f"libbpf_each-{hashlib.sha256(src).hexdigest()[:12]}"
    if exe.is_file():
        return exe
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("no C compiler (gcc) to build tools/c/libbpf_each.c")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = exe.with_suffix(".tmp")
    proc = subprocess.run([cc, "-O2", "-o", str(tmp), str(C_SOURCE), "-lbpf"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"building libbpf_each failed (libbpf-dev installed?):\n"
                           f"{proc.stderr}")
    os.replace(tmp, exe)
    return exe


def _parse_libbpf(stdout: str, returncode: int, stderr: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(stdout)
        return data
    except ValueError:
        return {"open": {"ok": False, "errno": 0,
                         "error": f"libbpf_each crashed (status {returncode}): "
                                  f"{stderr.strip()[-500:]}"},
                "programs": []}


PREPARE_MAX_ENTRIES = 64   # same numbers as tools/c/libbpf_each.c --prepare
PREPARE_STACK_DEPTH = 127


def _sized_at_run_time(m: Any) -> tuple[bool, bool]:
    """(max_entries, value_size) of map spec `m` are left for user space to set."""
    from ebpf.maps import MapType

    zero_ok = (MapType.PERF_EVENT_ARRAY, MapType.SK_STORAGE, MapType.INODE_STORAGE,
               MapType.TASK_STORAGE, MapType.CGRP_STORAGE)
    return (m.max_entries == 0 and m.type not in zero_ok,
            m.type == MapType.STACK_TRACE and m.value_size == 0)


def prepare_spec(spec: Any) -> None:
    """Fill in the sizes a tool's user space sets before loading (as libbpf_each --prepare)."""
    for m in spec.maps.values():
        entries, value = _sized_at_run_time(m)
        if entries:
            m.max_entries = PREPARE_MAX_ENTRIES
        if value:
            m.value_size = PREPARE_STACK_DEPTH * 8


def _ebpf_prepared(path: pathlib.Path) -> dict[str, Any]:
    """`ebpf load --each` with `prepare_spec` applied to the spec first."""
    from ebpf.cli import _failed_program, _prog_result
    from ebpf.collection import Collection, load_collection_spec
    from ebpf.errors import Error

    result: dict[str, Any] = {"object": str(path), "open": {"ok": True, "error": ""},
                              "programs": []}
    try:
        spec = load_collection_spec(str(path))
        prepare_spec(spec)
    except (Error, OSError) as e:
        result["open"] = {"ok": False, "error": str(e)}
        return result
    for name, p in spec.programs.items():
        if not getattr(p, "autoload", True):
            continue
        try:
            with Collection(spec, programs=[name]):
                pass
        except (Error, OSError) as e:
            _failed_program(e, [name])
            result["programs"].append(_prog_result(name, p, e))
            continue
        result["programs"].append(_prog_result(name, p, None))
    return result


def run_ebpf(path: pathlib.Path, subprocess_mode: bool = False, prepare: bool = False,
             timeout: float = 120.0) -> dict[str, Any]:
    """`ebpf load --each --json` for one object, as a dict."""
    if subprocess_mode and not prepare:
        proc = subprocess.run([sys.executable, "-m", "ebpf", "load", str(path), "--each",
                               "--json"], capture_output=True, text=True, timeout=timeout,
                              check=False, cwd=REPO)
        try:
            data: dict[str, Any] = json.loads(proc.stdout)
            return data
        except ValueError:
            return {"open": {"ok": False, "error": f"ebpf crashed (status "
                                                   f"{proc.returncode}): "
                                                   f"{proc.stderr.strip()[-2000:]}"},
                    "programs": []}
    from ebpf.cli import load_object

    try:
        if prepare:
            return _ebpf_prepared(path)
        return load_object(str(path), each=True)
    except Exception as e:  # a bug: anything but ebpf.Error escaping the loader
        return {"open": {"ok": False, "error": f"{type(e).__name__}: {e}\n"
                                               f"{traceback.format_exc()[-2000:]}"},
                "programs": []}


def compare_object(obj: CorpusObject, libbpf_each: pathlib.Path, *, prepare: bool = False,
                   subprocess_mode: bool = False, timeout: float = 120.0) -> ObjectResult:
    """Run both loaders on `obj` (libbpf in a child process while ebpf runs here)."""
    res = ObjectResult(obj, "prepared" if prepare else "as-is")
    t0 = time.perf_counter()
    cmd = [str(libbpf_each), *(["--prepare"] if prepare else []), str(obj.path)]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t1 = time.perf_counter()
    ebpf_data = run_ebpf(obj.path, subprocess_mode, prepare, timeout)
    res.seconds_ebpf = time.perf_counter() - t1
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
        err = f"timed out after {timeout}s\n{err}"
    res.seconds_libbpf = time.perf_counter() - t0
    lib = _parse_libbpf(out, child.returncode, err)

    res.libbpf_open = bool(lib["open"]["ok"])
    res.libbpf_open_error = str(lib["open"].get("error", ""))
    res.ebpf_open = bool(ebpf_data["open"]["ok"])
    res.ebpf_open_error = str(ebpf_data["open"].get("error", ""))
    by_name: dict[str, ProgramResult] = {}
    for p in lib.get("programs", []):
        pr = by_name.setdefault(p["name"], ProgramResult(p["name"]))
        pr.section, pr.type = p.get("section", ""), p.get("type")
        pr.libbpf_ok, pr.libbpf_errno = bool(p["ok"]), int(p.get("errno", 0))
        pr.libbpf_log = str(p.get("log_tail", ""))
    for p in ebpf_data.get("programs", []):
        pr = by_name.setdefault(p["name"], ProgramResult(p["name"]))
        pr.section = pr.section or p.get("section", "")
        pr.type = pr.type or p.get("type")
        pr.ebpf_ok, pr.ebpf_errno = bool(p["ok"]), int(p.get("errno") or 0)
        pr.ebpf_error = str(p.get("error", ""))
        pr.ebpf_log = str(p.get("log_tail", ""))
    if not res.ebpf_open:
        for pr in by_name.values():
            pr.ebpf_error = pr.ebpf_error or f"open failed: {res.ebpf_open_error}"
    res.programs = list(by_name.values())
    return res


# -- mounts -------------------------------------------------------------------------------


def _mounted(path: str, fstype: str) -> bool:
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[1] == path and parts[2] == fstype:
                return True
    return False


@contextlib.contextmanager
def mounts() -> Iterator[None]:
    """bpffs at /sys/fs/bpf and tracefs at /sys/kernel/tracing, unmounted again if we mounted."""
    made: list[str] = []
    try:
        for path, fstype in (("/sys/fs/bpf", "bpf"), ("/sys/kernel/tracing", "tracefs")):
            if not _mounted(path, fstype):
                os.makedirs(path, exist_ok=True)
                r = subprocess.run(["mount", "-t", fstype, fstype, path],
                                   capture_output=True, check=False)
                if r.returncode == 0:
                    made.append(path)
        yield
    finally:
        for path in reversed(made):
            subprocess.run(["umount", path], capture_output=True, check=False)


# -- report -------------------------------------------------------------------------------


def needs_prepare(path: pathlib.Path) -> bool:
    """Whether the object has maps its tool sizes at run time (so --prepare changes it)."""
    from ebpf.collection import load_collection_spec
    from ebpf.errors import Error

    try:
        spec = load_collection_spec(str(path))
    except (Error, OSError):
        return False
    return any(any(_sized_at_run_time(m)) for m in spec.maps.values())


def _counts(results: Sequence[ObjectResult]) -> dict[str, Any]:
    progs = [p for r in results for p in r.programs]
    return {
        "objects": len(results),
        "programs": len(progs),
        "libbpf_ok": sum(1 for p in progs if p.libbpf_ok),
        "ebpf_ok": sum(1 for p in progs if p.ebpf_ok),
        "both_ok": sum(1 for p in progs if p.libbpf_ok and p.ebpf_ok),
        "both_fail": sum(1 for p in progs if not p.libbpf_ok and not p.ebpf_ok),
        "mismatch_count": sum(1 for p in progs if p.mismatch),
        "ebpf_only_count": sum(1 for p in progs if p.ebpf_only),
    }


def summarize(results: Sequence[ObjectResult]) -> dict[str, Any]:
    """The JSON summary: counts per mode, every mismatch and every ebpf-only program."""
    mismatches = []
    ebpf_only = []
    for r in results:
        for p in r.programs:
            row = {"object": r.obj.name, "mode": r.mode, "path": str(r.obj.path),
                   "program": p.name, "section": p.section,
                   "libbpf_errno": p.libbpf_errno, "ebpf_errno": p.ebpf_errno,
                   "ebpf_error": p.ebpf_error,
                   "log_tail": p.ebpf_log.splitlines()[-8:] if p.ebpf_log else []}
            if p.mismatch:
                mismatches.append(row)
            elif p.ebpf_only:
                row["libbpf_log_tail"] = p.libbpf_log.splitlines()[-8:]
                ebpf_only.append(row)
    modes = sorted({r.mode for r in results})
    as_is = [r for r in results if r.mode == "as-is"]
    return {
        **_counts(as_is or results),
        "modes": {m: _counts([r for r in results if r.mode == m]) for m in modes},
        "libbpf_open_failed": sorted({r.obj.name for r in results if not r.libbpf_open}),
        "ebpf_open_failed": [{"object": r.obj.name, "mode": r.mode,
                              "error": r.ebpf_open_error}
                             for r in results if not r.ebpf_open],
        "mismatches": mismatches,
        "ebpf_only": ebpf_only,
        "seconds_libbpf": round(sum(r.seconds_libbpf for r in results), 2),
        "seconds_ebpf": round(sum(r.seconds_ebpf for r in results), 2),
    }


def table(results: Sequence[ObjectResult]) -> str:
    """One line per object and mode."""
    lines = [f"{'object':<46} {'mode':<8} {'progs':>5} {'libbpf':>6} {'ebpf':>5}  status"]
    for r in results:
        n = len(r.programs)
        lok = sum(1 for p in r.programs if p.libbpf_ok)
        eok = sum(1 for p in r.programs if p.ebpf_ok)
        bad = [p.name for p in r.programs if p.mismatch]
        extra = [p.name for p in r.programs if p.ebpf_only]
        status = "MISMATCH " + ",".join(bad) if bad else "ok"
        if extra:
            status += "  (ebpf-only: " + ",".join(extra) + ")"
        if not r.libbpf_open:
            status += "  (libbpf cannot open)"
        if not r.ebpf_open:
            first = (r.ebpf_open_error.splitlines() or [""])[0]
            status += f"  (ebpf cannot open: {first[:60]})"
        lines.append(f"{r.obj.name:<46} {r.mode:<8} {n:>5} {lok:>6} {eok:>5}  {status}")
    return "\n".join(lines)


def run(objects: Sequence[CorpusObject], *, prepare: bool = True,
        subprocess_mode: bool = False, progress: bool = False,
        cache: pathlib.Path = CACHE) -> list[ObjectResult]:
    """Compare every object as it is, and (with `prepare`) again with its run-time map
    sizes filled in when it has any."""
    exe = build_libbpf_each(cache)
    results = []
    with mounts():
        for i, obj in enumerate(objects):
            if progress:
                print(f"[{i + 1}/{len(objects)}] {obj.name}", file=sys.stderr, flush=True)
            results.append(compare_object(obj, exe, subprocess_mode=subprocess_mode))
            if prepare and needs_prepare(obj.path):
                results.append(compare_object(obj, exe, prepare=True,
                                              subprocess_mode=subprocess_mode))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*", help="extra objects, binaries or directories")
    ap.add_argument("--only", help="comma-separated substrings of object names to keep")
    ap.add_argument("--no-packages", action="store_true",
                    help="only the given paths, not the installed packages")
    ap.add_argument("--no-prepare", action="store_true",
                    help="skip the second pass with run-time map sizes filled in")
    ap.add_argument("--json", metavar="FILE", help="write the JSON summary here too")
    ap.add_argument("--subprocess", action="store_true",
                    help="run `python3 -m ebpf load` per object instead of in-process")
    ap.add_argument("--selftests", action="store_true",
                    help="also build and compare the kernel's BPF selftests programs "
                         "(tools/selftests_corpus.py; needs linux-source-6.1)")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    args = ap.parse_args(argv)
    paths = list(args.paths)
    if args.selftests:
        import selftests_corpus

        source = selftests_corpus.find_source()
        if source is None:
            print("--selftests: no /usr/src/linux-source-*.tar.xz "
                  "(apt-get install linux-source-6.1)", file=sys.stderr)
            return 2
        paths.append(str(selftests_corpus.build(source)))
    objects = discover(paths, packages=[] if args.no_packages else None)
    if args.only:
        keys = [k for k in args.only.split(",") if k]
        objects = [o for o in objects if any(k in o.name for k in keys)]
    if not objects:
        print("no BPF objects found (install libbpf-tools, xdp-tools, ...)", file=sys.stderr)
        return 2
    results = run(objects, prepare=not args.no_prepare, subprocess_mode=args.subprocess,
                  progress=not args.quiet)
    summary = summarize(results)
    print(table(results))
    print()
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        pathlib.Path(args.json).write_text(text + "\n")
    return 1 if summary["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
