#!/usr/bin/env python3
"""Conformance suite: the kernel 6.12 BPF selftests, loaded program by program with
libbpf 1.5 (built from the same kernel tree) and with `ebpf`, compared.

Steps, each cached under .cache/conformance/:

1. the source: Debian's ``linux-source-6.12`` (/usr/src/linux-source-6.12.tar.xz,
   installed with apt-get when missing); only the parts needed are unpacked
   (tools/lib/bpf, tools/include, tools/build, tools/scripts, the selftests, ...);
2. libbpf from that tree's tools/lib/bpf, static, headers installed beside it, and
   the reference loader tools/c/libbpf_conformance.c linked against it;
3. tools/testing/selftests/bpf/progs/*.c compiled with clang-19 with the selftests'
   flags (vmlinux.h dumped from the running kernel's BTF); a source that does not
   compile is recorded with clang's first error and left out. The objects the
   selftests link from several sources are linked too (libbpf's linker, as
   ``bpftool gen object`` does),
   and a few sources are also built with -mcpu=v4 (the cpuv4 flavour). Objects are
   cached by a hash of everything that goes into them;
4. every program of every object is loaded on its own (whatever its ``SEC("?...")``
   autoload default) by both loaders: libbpf_conformance (one process per object)
   and ``ebpf.Collection(spec, programs=[name])`` in worker processes (one per job,
   restarted after a per-object timeout). Both measure the process CPU time of each
   program's load (libbpf: open + load + close; ebpf: Collection + close, plus
   ``load_collection_spec`` once per object).

The result is a JSON file (.cache/conformance/results.json) and, with --markdown,
the report docs/conformance.md: counts of programs both load / only libbpf /
only ebpf / neither, the regressions grouped by cause, every difference with both
loaders' error lines, and the timing ratio.

    python3 tools/conformance.py                 # the representative subset (SUBSET)
    python3 tools/conformance.py --all --markdown docs/conformance.md   # make conformance
    python3 tools/conformance.py --subset 100    # 100 sources spread over the corpus
    python3 tools/conformance.py --objects 'iters*,rbtree*' -j2
    python3 tools/conformance.py --vm 6.12 --markdown docs/conformance.md  # make conformance-vm
    python3 tools/conformance.py --report docs/conformance.md   # the report from the JSONs

``--vm`` loads, in that kernel-matrix guest, the objects whose programs this host
refuses by policy (see tools/conformance_vm.py).

Exit status: 0 when every program libbpf loads also loads with `ebpf`, 1 otherwise,
2 when the corpus cannot be built.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import errno
import fnmatch
import hashlib
import json
import os
import pathlib
import platform
import re
import resource
import select
import shutil
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

TOOLS = pathlib.Path(__file__).resolve().parent
REPO = TOOLS.parent
# EBPF_CONFORMANCE_CACHE: another cache directory (e.g. to time a first run)
CACHE = pathlib.Path(os.environ.get("EBPF_CONFORMANCE_CACHE")
                     or REPO / ".cache" / "conformance")
C_SOURCE = TOOLS / "c" / "libbpf_conformance.c"

KERNEL = "6.12"
PACKAGE = f"linux-source-{KERNEL}"
TARBALL = pathlib.Path(f"/usr/src/{PACKAGE}.tar.xz")
CLANG = "clang-19"
SELFTESTS = "tools/testing/selftests/bpf"
# What the libbpf build and the selftests programs read from the tree.
EXTRACT = ("tools/lib/bpf", "tools/include", "tools/build", "tools/scripts",
           "tools/arch/x86/include", SELFTESTS, "scripts/bpf_doc.py", "include/uapi")

# Per-source flags of the selftests Makefile (facts, not its logic).
NO_STRICT_ALIASING = {
    "bind4_prog", "bind6_prog", "dynptr_fail", "linked_list_fail", "map_kptr_fail",
    "syscall", "test_pkt_md_access", "test_sk_lookup", "timer_crash",
    "test_global_func9", "verifier_nocsr",
}
NO_INLINE = {"test_l4lb_noinline", "test_xdp_noinline"}
# Sources whose instructions depend on -mcpu=v4 (sign extension, sdiv/smod, bswap,
# gotol, ldsx): also built as "<name>.cpuv4", as the selftests' cpuv4 flavour does.
CPUV4 = ("test_ldsx_insn", "verifier_bswap", "verifier_gotol", "verifier_ldsx",
         "verifier_movsx", "verifier_sdiv")
# Objects the selftests link from several sources (bpftool gen object), by name; linked
# here with the built libbpf's linker (libbpf_conformance --link).
LINKED = {
    "test_static_linked": ("test_static_linked1", "test_static_linked2"),
    "linked_funcs": ("linked_funcs1", "linked_funcs2"),
    "linked_vars": ("linked_vars1", "linked_vars2"),
    "linked_maps": ("linked_maps1", "linked_maps2"),
    "test_subskeleton": ("test_subskeleton_lib2", "test_subskeleton_lib",
                         "test_subskeleton"),
    "test_usdt": ("test_usdt", "test_usdt_multispec"),
}

# The representative subset the test command runs (tests/test_conformance.py):
# kfuncs and kptrs, global functions, CO-RE, maps of every kind, struct_ops,
# iterators, exceptions, global data, linked objects, tail calls, the big ones.
SUBSET = (
    # kfuncs, kptrs, graph data structures (lists, rbtrees, refcounts), dynptrs, iterators
    "task_kfunc_success", "cpumask_success", "cgrp_kfunc_success", "linked_list", "rbtree",
    "refcounted_kptr", "local_kptr_stash", "dynptr_success", "iters", "iters_num",
    "verifier_kfunc_prog_types",
    # global functions (arg tags), subprograms, callbacks, tail calls
    "test_global_func_ctx_args", "verifier_global_subprogs", "verifier_global_ptr_args",
    "test_subprogs", "tailcall_bpf2bpf4", "verifier_iterating_callbacks",
    "test_prog_array_init",
    # CO-RE, externs, global data
    "core_kern", "test_core_extern", "test_core_reloc_kernel", "test_core_reloc_type_id",
    "test_skeleton", "test_global_data",
    # maps: in maps, hash/array/LRU/percpu ops, ring buffers, queue, local storage,
    # cgroup storage, sockmap/sockhash, devmap/cpumap, spin locks, stack traces
    "test_btf_map_in_map", "access_map_in_map", "test_map_ops", "test_ringbuf_multi",
    "test_queue_map", "task_local_storage", "cg_storage_multi_shared", "test_sockmap_kern",
    "test_xdp_with_devmap_helpers", "test_xdp_with_cpumap_helpers", "test_spin_lock",
    "map_percpu_stats", "test_stacktrace_map",
    # struct_ops
    "bpf_dctcp", "bpf_cubic", "tcp_ca_update",
    # iterators
    "bpf_iter_bpf_map", "bpf_iter_tasks", "bpf_iter_udp4", "cgroup_iter",
    # exceptions
    "exceptions", "exceptions_fail",
    # linked objects, probes, tc links, cpu v4 instructions
    "linked_funcs.linked", "linked_maps.linked", "test_attach_probe",
    "kprobe_multi_session", "test_tc_link", "verifier_sdiv.cpuv4",
)

OBJECT_TIMEOUT = 300.0


def log(msg: str) -> None:
    print(f"conformance: {msg}", file=sys.stderr, flush=True)


def _run(cmd: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=False, **kw)


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()


def _write_atomic(path: pathlib.Path, data: bytes | str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}-{threading.get_ident()}")
    if isinstance(data, str):
        tmp.write_text(data)
    else:
        tmp.write_bytes(data)
    os.replace(tmp, path)


# -- 1. the kernel tree --------------------------------------------------------------------


def ensure_tarball() -> pathlib.Path:
    """/usr/src/linux-source-6.12.tar.xz, installing Debian's package when missing."""
    if not TARBALL.is_file():
        log(f"installing {PACKAGE} with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        proc = _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", PACKAGE],
                    env=env)
        if proc.returncode != 0:
            _run(["apt-get", "update", "-q"], env=env)
            proc = _run(["apt-get", "install", "-y", "-q", "--no-install-recommends",
                         PACKAGE], env=env)
        if not TARBALL.is_file():
            raise RuntimeError(f"cannot install {PACKAGE}: {proc.stderr.strip()[-500:]}")
    return TARBALL


def unpack(tarball: pathlib.Path, cache: pathlib.Path = CACHE) -> pathlib.Path:
    """The tree root, with only the EXTRACT parts unpacked (tar's own xz, about 20 s)."""
    st = tarball.stat()
    tag = _digest(str(tarball), str(st.st_size), str(int(st.st_mtime)), *EXTRACT)[:12]
    dest = cache / f"src-{tag}"
    root = dest / tarball.name.removesuffix(".tar.xz")
    if (dest / ".unpacked").is_file():
        return root
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    log(f"unpacking {', '.join(EXTRACT)} from {tarball}")
    members = [f"{root.name}/{part}" for part in EXTRACT]
    proc = _run(["nice", "-n", "15", "tar", "-xJf", str(tarball), "-C", str(dest),
                 *members])
    if proc.returncode != 0:
        raise RuntimeError(f"tar failed: {proc.stderr.strip()[-500:]}")
    (dest / ".unpacked").write_text(str(root))
    return root


# -- 2. libbpf and the reference loader ----------------------------------------------------


@dataclass
class Libbpf:
    include: pathlib.Path   # directory holding bpf/*.h
    archive: pathlib.Path   # libbpf.a
    version: str


def build_libbpf(tree: pathlib.Path, jobs: int = 2) -> Libbpf:
    """Static libbpf from the tree's tools/lib/bpf, installed into the tree's cache dir."""
    base = tree.parent / "libbpf"
    inst = base / "inst"
    done = base / ".built"
    if not done.is_file():
        shutil.rmtree(base, ignore_errors=True)
        (base / "obj").mkdir(parents=True)
        log("building libbpf from tools/lib/bpf")
        t0 = time.monotonic()
        proc = _run(["nice", "-n", "15", "make", "-s", f"-j{jobs}", "-C",
                     str(tree / "tools/lib/bpf"), "BUILD_STATIC_ONLY=1",
                     f"OBJDIR={base / 'obj'}", f"DESTDIR={inst}", "prefix=/usr",
                     "install"])
        if proc.returncode != 0:
            raise RuntimeError("building libbpf failed (libelf-dev, zlib1g-dev, make "
                               f"installed?):\n{proc.stderr.strip()[-2000:]}")
        log(f"libbpf built in {time.monotonic() - t0:.0f} s")
        done.write_text("")
    archive = next(iter(sorted(inst.glob("usr/lib*/libbpf.a"))))
    version = ""
    pc = next(iter(sorted(inst.glob("usr/lib*/pkgconfig/libbpf.pc"))), None)
    if pc is not None:
        m = re.search(r"^Version:\s*(\S+)", pc.read_text(), re.M)
        version = m.group(1) if m else ""
    return Libbpf(inst / "usr" / "include", archive, version)


def build_loader(lib: Libbpf, cache: pathlib.Path = CACHE) -> pathlib.Path:
    """tools/c/libbpf_conformance.c linked statically against `lib` (cached by hash)."""
    key = _digest(C_SOURCE.read_bytes(), lib.archive.read_bytes())[:12]
    exe = cache / "bin" / f"libbpf_conformance-{key}"
    if exe.is_file():
        return exe
    exe.parent.mkdir(parents=True, exist_ok=True)
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError("no C compiler (gcc) for tools/c/libbpf_conformance.c")
    tmp = exe.with_name(exe.name + ".tmp")
    proc = _run([cc, "-O2", "-Wall", f"-I{lib.include}", "-o", str(tmp), str(C_SOURCE),
                 str(lib.archive), "-lelf", "-lz"])
    if proc.returncode != 0:
        raise RuntimeError(f"building libbpf_conformance failed:\n{proc.stderr}")
    os.replace(tmp, exe)
    return exe


# -- 3. the corpus --------------------------------------------------------------------------


def vmlinux_h(btf: str = "/sys/kernel/btf/vmlinux", cache: pathlib.Path = CACHE) -> pathlib.Path:
    """The directory holding a vmlinux.h dumped from `btf` by bpftool (and a copy of
    `btf` as vmlinux.btf)."""
    data = pathlib.Path(btf).read_bytes()
    key = _digest(data)[:12]
    d = cache / f"vmlinux-{key}"
    out = d / "vmlinux.h"
    d.mkdir(parents=True, exist_ok=True)
    if not (d / "vmlinux.btf").is_file():
        # kept so that a kernel-matrix guest can compile (cache hits) with --btf
        _write_atomic(d / "vmlinux.btf", data)
    if not out.is_file():
        proc = _run(["bpftool", "btf", "dump", "file", btf, "format", "c"])
        if proc.returncode != 0:
            raise RuntimeError(f"bpftool btf dump failed: {proc.stderr.strip()}")
        _write_atomic(out, proc.stdout)
    return d


def _clang_sys_includes() -> list[str]:
    """clang's default include directories (for the host), as -idirafter flags: the
    selftests add them so that <asm/...> and <sys/...> resolve for --target=bpf."""
    proc = _run([CLANG, "-v", "-E", "-"], input="")
    dirs, inside = [], False
    for line in proc.stderr.splitlines():
        if line.startswith("#include <...> search starts here"):
            inside = True
        elif line.startswith("End of search list"):
            inside = False
        elif inside and line.startswith(" /"):
            dirs += ["-idirafter", line.strip()]
    return dirs


@dataclass
class Source:
    name: str                   # object name: the source's stem, ".cpuv4", or a link
    sources: tuple[pathlib.Path, ...]
    flags: tuple[str, ...] = ()
    linked: tuple[str, ...] = ()  # for linked objects: the names of the parts


@dataclass
class Built:
    name: str
    path: pathlib.Path | None
    error: str = ""


class Corpus:
    """The selftests' programs of one tree, compiled into .cache/conformance/objects."""

    def __init__(self, tree: pathlib.Path, lib: Libbpf, vmlinux_dir: pathlib.Path,
                 loader: pathlib.Path, cache: pathlib.Path = CACHE) -> None:
        self.tree = tree
        self.loader = loader  # links objects too (libbpf's linker)
        self.st = tree / SELFTESTS
        self.outdir = cache / "objects"
        self.outdir.mkdir(parents=True, exist_ok=True)
        version = _run([CLANG, "--version"]).stdout.splitlines()[:1]
        self.base_flags = [
            "-g", "-Wall", "-Wno-compare-distinct-pointer-types",
            "-D__TARGET_ARCH_x86", "-mlittle-endian", "-DENABLE_ATOMICS_TESTS",
            f"-I{vmlinux_dir}", f"-I{lib.include}", f"-I{self.st}",
            f"-I{tree / 'tools/include/uapi'}", *_clang_sys_includes(),
            "-O2", "--target=bpf",
        ]
        self.salt = _digest(*version, KERNEL, (vmlinux_dir / "vmlinux.h").read_bytes(),
                            lib.archive.read_bytes())

    def sources(self) -> list[Source]:
        out = []
        progs = self.st / "progs"
        for src in sorted(progs.glob("*.c")):
            extra: list[str] = []
            if src.stem in NO_STRICT_ALIASING:
                extra.append("-fno-strict-aliasing")
            if src.stem in NO_INLINE:
                extra.append("-fno-inline")
            out.append(Source(src.stem, (src,), (*extra, "-mcpu=v3")))
            if src.stem in CPUV4:
                out.append(Source(f"{src.stem}.cpuv4", (src,), (*extra, "-mcpu=v4")))
        for name, parts in sorted(LINKED.items()):
            out.append(Source(f"{name}.linked", tuple(progs / f"{p}.c" for p in parts),
                              linked=parts))
        return out

    def _key(self, s: Source) -> str:
        linker = (self.loader.name, "3 passes") if s.linked else ()
        return _digest(self.salt, *self.base_flags, *s.flags, *linker,
                       *(p.read_bytes() for p in s.sources))[:16]

    def build(self, s: Source, parts: dict[str, Built] | None = None) -> Built:
        """Compile (or link) one object; cached, failures too."""
        key = self._key(s)
        obj = self.outdir / f"{s.name}-{key}.bpf.o"
        fail = self.outdir / f"{s.name}-{key}.fail"
        if obj.is_file():
            return Built(s.name, obj)
        if fail.is_file():
            return Built(s.name, None, fail.read_text())
        if s.linked:
            inputs = [parts[p] if parts and p in parts else None for p in s.linked]
            bad = [p for p, b in zip(s.linked, inputs, strict=True) if b is None or b.path is None]
            if bad:
                return Built(s.name, None, f"part {bad[0]} did not compile")
            # linked three times over, as the selftests do (libbpf 1.5 cannot open the
            # first pass's output of linked_maps: "map relo failed to find map")
            tmp1, tmp2 = f"{obj}.tmp1", f"{obj}.tmp2"
            cmds = [[str(self.loader), "--link", tmp1,
                     *(str(b.path) for b in inputs if b is not None and b.path is not None)],
                    [str(self.loader), "--link", tmp2, tmp1],
                    [str(self.loader), "--link", f"{obj}.tmp", tmp2]]
        else:
            cmds = [["nice", "-n", "15", CLANG, *self.base_flags, *s.flags, "-c",
                     str(s.sources[0]), "-o", f"{obj}.tmp"]]
        for cmd in cmds:
            proc = _run(cmd, cwd=self.st)
            if proc.returncode != 0:
                break
        for tmp in (f"{obj}.tmp1", f"{obj}.tmp2"):
            pathlib.Path(tmp).unlink(missing_ok=True)
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
            reason = (lines or proc.stderr.strip().splitlines() or ["failed"])[0]
            reason = reason.replace(str(self.st) + "/", "")
            _write_atomic(fail, reason)
            pathlib.Path(str(obj) + ".tmp").unlink(missing_ok=True)
            return Built(s.name, None, reason)
        os.replace(str(obj) + ".tmp", obj)
        return Built(s.name, obj)

    def build_all(self, wanted: Sequence[Source], jobs: int = 2,
                  progress: bool = True) -> list[Built]:
        """Compile `wanted` (and the parts of linked objects), `jobs` at a time."""
        by_name = {s.name: s for s in self.sources()}
        plain = [s for s in wanted if not s.linked]
        names = {s.name for s in plain}
        for s in wanted:
            for p in s.linked:
                if p not in names:
                    plain.append(by_name[p])
                    names.add(p)
        built: dict[str, Built] = {}
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as ex:
            for i, b in enumerate(ex.map(self.build, plain)):
                built[b.name] = b
                if progress and (i + 1) % 50 == 0:
                    log(f"compiled {i + 1}/{len(plain)} ({time.monotonic() - t0:.0f} s)")
        for s in wanted:
            if s.linked:
                built[s.name] = self.build(s, built)
        return [built[s.name] for s in wanted]


def select_sources(all_sources: Sequence[Source], *, everything: bool = False,
                   sample: int | None = None, globs: Sequence[str] = ()) -> list[Source]:
    """The fixed SUBSET (default), `sample` sources spread evenly over the corpus, or all;
    then only those matching one of `globs`."""
    chosen: list[Source]
    if everything or globs:
        chosen = list(all_sources)
    elif sample:
        step = max(1, len(all_sources) / sample)
        chosen = [all_sources[int(i * step)] for i in range(min(sample, len(all_sources)))]
    else:
        by_name = {s.name: s for s in all_sources}
        chosen = [by_name[n] for n in SUBSET]
    if globs:
        chosen = [s for s in chosen if any(fnmatch.fnmatch(s.name, g) for g in globs)]
    return chosen


# -- 4. loading -----------------------------------------------------------------------------


def _ns(ru: Any) -> tuple[int, int]:
    return int(ru.ru_utime * 1e9), int(ru.ru_stime * 1e9)


def ebpf_load_object(path: str, pin_dir: str) -> dict[str, Any]:
    """Load each program of `path` on its own with ebpf (the worker's job)."""
    import logging

    import ebpf
    from ebpf.errors import Error, VerifierError

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage().splitlines()[0][:300])

    handler = Keep(logging.WARNING)
    logger = logging.getLogger("ebpf")
    logger.addHandler(handler)
    logger.propagate = False
    result: dict[str, Any] = {"open": {"ok": True, "error": ""}, "programs": []}
    try:
        u0, s0 = _ns(resource.getrusage(resource.RUSAGE_SELF))
        try:
            spec = ebpf.load_collection_spec(path)
        except Exception as e:
            kind = "" if isinstance(e, (Error, OSError)) else f"{type(e).__name__}: "
            result["open"] = {"ok": False, "error": f"{kind}{e}"}
            return result
        u1, s1 = _ns(resource.getrusage(resource.RUSAGE_SELF))
        result["parse_user_ns"], result["parse_sys_ns"] = u1 - u0, s1 - s0
        for name, p in spec.programs.items():
            records.clear()
            row: dict[str, Any] = {"name": name, "section": p.section,
                                   "autoload": bool(getattr(p, "autoload", True)),
                                   "ok": True, "errno": 0, "error": "", "log_tail": ""}
            u0, s0 = _ns(resource.getrusage(resource.RUSAGE_SELF))
            try:
                with ebpf.Collection(spec, programs=[name], pin_path=pin_dir):
                    pass
            except Exception as e:
                row["ok"] = False
                row["errno"] = int(getattr(e, "errno", 0) or 0)
                if isinstance(e, (Error, OSError)):
                    row["error"] = str(e)
                else:  # a bug in the loader: keep where it happened
                    row["error"] = (f"{type(e).__name__}: {e}\n"
                                    + traceback.format_exc()[-1500:])
                if isinstance(e, VerifierError):
                    row["log_tail"] = "\n".join(e.log.rstrip("\0").splitlines()[-16:])
            u1, s1 = _ns(resource.getrusage(resource.RUSAGE_SELF))
            row["user_ns"], row["sys_ns"] = u1 - u0, s1 - s0
            row["warnings"] = list(dict.fromkeys(records))
            result["programs"].append(row)
        return result
    finally:
        logger.removeHandler(handler)
        _empty_dir(pin_dir)


def _empty_dir(d: str) -> None:
    for entry in os.scandir(d):
        if entry.is_dir(follow_symlinks=False):
            _empty_dir(entry.path)
            os.rmdir(entry.path)
        else:
            os.unlink(entry.path)


def worker_main() -> int:
    """`--worker`: read object paths, one a line; answer one JSON line each."""
    import tempfile

    import ebpf
    from ebpf.errors import VerifierError

    # the (lazy) modules imported before the first object: not part of its timing
    _ = (ebpf.Collection, ebpf.load_collection_spec, VerifierError)

    # the parent names the directory and removes it, also when it has to kill this worker
    pin_dir = os.environ.get("EBPF_CONFORMANCE_PIN_DIR") or \
        tempfile.mkdtemp(prefix="ebpf-conformance-", dir="/sys/fs/bpf")
    try:
        out = sys.stdout
        sys.stdout = sys.stderr  # nothing but the answers on the pipe
        for line in sys.stdin:
            path = line.rstrip("\n")
            try:
                res = ebpf_load_object(path, pin_dir)
            except BaseException as e:
                res = {"open": {"ok": False, "error": f"worker: {type(e).__name__}: {e}"},
                       "programs": []}
            out.write(json.dumps(res) + "\n")
            out.flush()
    finally:
        if os.path.isdir(pin_dir):
            _empty_dir(pin_dir)
            os.rmdir(pin_dir)
    return 0


class EbpfWorker:
    """A `--worker` subprocess, restarted when an object times out or kills it."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.pin_dir: str | None = None

    def _start(self) -> subprocess.Popen[str]:
        if self.proc is None or self.proc.poll() is not None:
            self.close()
            import tempfile

            self.pin_dir = tempfile.mkdtemp(prefix="ebpf-conformance-", dir="/sys/fs/bpf")
            self.proc = subprocess.Popen(
                [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO),
                                          "EBPF_CONFORMANCE_PIN_DIR": self.pin_dir})
        return self.proc

    def load(self, path: pathlib.Path, timeout: float) -> dict[str, Any]:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(f"{path}\n")
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            line = proc.stdout.readline() if ready else ""
        except (BrokenPipeError, OSError) as e:
            line, ready = "", [str(e)]
        if line:
            data: dict[str, Any] = json.loads(line)
            return data
        self.close()
        why = f"timed out after {timeout:.0f} s" if not ready else "worker died"
        return {"open": {"ok": False, "error": f"ebpf: {why}"}, "programs": []}

    def close(self) -> None:
        """End the worker (killed if it does not exit) and remove its pin directory."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None
        if self.pin_dir is not None:
            if os.path.isdir(self.pin_dir):
                _empty_dir(self.pin_dir)
                os.rmdir(self.pin_dir)
            self.pin_dir = None


def libbpf_load_object(exe: pathlib.Path, path: pathlib.Path, timeout: float) -> dict[str, Any]:
    # the loader pins under a directory this process names and removes, also when the
    # loader is killed on a timeout (its own clean-up then never runs)
    import tempfile

    pin_dir = (tempfile.mkdtemp(prefix="libbpf-conformance-", dir="/sys/fs/bpf")
               if os.path.isdir("/sys/fs/bpf") else "")
    try:
        proc = _run([str(exe), str(path)], timeout=timeout,
                    env={**os.environ, "LIBBPF_CONFORMANCE_PIN_DIR": pin_dir})
    except subprocess.TimeoutExpired:
        return {"open": {"ok": False, "errno": 0,
                         "error": f"libbpf: timed out after {timeout:.0f} s"},
                "programs": []}
    finally:
        if pin_dir and os.path.isdir(pin_dir):
            _empty_dir(pin_dir)
            os.rmdir(pin_dir)
    try:
        data: dict[str, Any] = json.loads(proc.stdout)
        return data
    except ValueError:
        return {"open": {"ok": False, "errno": 0,
                         "error": f"libbpf_conformance crashed (status {proc.returncode}): "
                                  f"{proc.stderr.strip()[-500:]}"},
                "programs": []}


def outcome(libbpf_ok: bool, ebpf_ok: bool) -> str:
    return {(True, True): "both", (True, False): "only-libbpf",
            (False, True): "only-ebpf", (False, False): "neither"}[(libbpf_ok, ebpf_ok)]


def merge(name: str, path: pathlib.Path, lib: dict[str, Any], eb: dict[str, Any]
          ) -> dict[str, Any]:
    """One object's row of the results: both loaders' answers, program by program."""
    progs: dict[str, dict[str, Any]] = {}
    for p in lib.get("programs", []):
        progs.setdefault(p["name"], {"name": p["name"]})["libbpf"] = {
            k: p.get(k) for k in ("ok", "errno", "log_tail", "user_ns", "sys_ns")}
        progs[p["name"]].update(section=p.get("section", ""), type=p.get("type", ""),
                                autoload=p.get("autoload", True))
    for p in eb.get("programs", []):
        row = progs.setdefault(p["name"], {"name": p["name"], "section": p["section"],
                                           "autoload": p["autoload"]})
        row["ebpf"] = {k: p.get(k) for k in ("ok", "errno", "error", "log_tail",
                                              "warnings", "user_ns", "sys_ns")}
    for row in progs.values():
        row.setdefault("libbpf", {"ok": False, "errno": 0, "user_ns": 0, "sys_ns": 0,
                                  "log_tail": "libbpf: " + (lib["open"].get("error") or
                                                            "program not listed")})
        row.setdefault("ebpf", {"ok": False, "errno": 0, "user_ns": 0, "sys_ns": 0,
                                "error": "ebpf: " + (eb["open"].get("error") or
                                                     "program not in the spec"),
                                "log_tail": "", "warnings": []})
        row["outcome"] = outcome(bool(row["libbpf"]["ok"]), bool(row["ebpf"]["ok"]))
    return {"name": name, "path": str(path),
            "libbpf_open": lib["open"], "ebpf_open": eb["open"],
            "ebpf_parse_ns": int(eb.get("parse_user_ns", 0)) + int(eb.get("parse_sys_ns", 0)),
            "ebpf_parse_user_ns": int(eb.get("parse_user_ns", 0)),
            "programs": list(progs.values())}


@dataclass
class Runner:
    loader: pathlib.Path
    jobs: int = 1
    timeout: float = OBJECT_TIMEOUT
    progress: bool = True
    _local: threading.local = field(default_factory=threading.local)
    _workers: list[EbpfWorker] = field(default_factory=list)

    def _worker(self) -> EbpfWorker:
        w: EbpfWorker | None = getattr(self._local, "worker", None)
        if w is None:
            w = self._local.worker = EbpfWorker()
            self._workers.append(w)
        return w

    def one(self, built: Built) -> dict[str, Any]:
        assert built.path is not None
        lib = libbpf_load_object(self.loader, built.path, self.timeout)
        eb = self._worker().load(built.path, self.timeout)
        return merge(built.name, built.path, lib, eb)

    def run(self, objects: Sequence[Built]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        t0 = time.monotonic()
        try:
            with mounts(), concurrent.futures.ThreadPoolExecutor(max(1, self.jobs)) as ex:
                for i, row in enumerate(ex.map(self.one, objects)):
                    out.append(row)
                    if self.progress and ((i + 1) % 25 == 0 or i + 1 == len(objects)):
                        log(f"loaded {i + 1}/{len(objects)} objects "
                            f"({time.monotonic() - t0:.0f} s)")
        finally:
            for w in self._workers:
                w.close()
        return out


def _mounted(path: str, fstype: str) -> bool:
    with open("/proc/self/mounts") as f:
        return any(len(p) > 2 and p[1] == path and p[2] == fstype
                   for p in (line.split() for line in f))


class mounts:
    """bpffs at /sys/fs/bpf and tracefs at /sys/kernel/tracing while loading;
    unmounted again if this mounted them."""

    def __enter__(self) -> None:
        self.made: list[str] = []
        for path, fstype in (("/sys/fs/bpf", "bpf"), ("/sys/kernel/tracing", "tracefs")):
            if not _mounted(path, fstype):
                os.makedirs(path, exist_ok=True)
                if _run(["mount", "-t", fstype, fstype, path]).returncode == 0:
                    self.made.append(path)

    def __exit__(self, *exc: object) -> None:
        for path in reversed(self.made):
            _run(["umount", path])


# -- 5. the report --------------------------------------------------------------------------

_VERIFIER_HEAD = re.compile(r"^program '[^']*' rejected by the verifier:?$")


def _first_line(text: str) -> str:
    for ln in text.splitlines():
        ln = ln.strip()
        if ln and not _VERIFIER_HEAD.match(ln):
            return ln
    return text.strip().splitlines()[0] if text.strip() else ""


def cause_of(ebpf: dict[str, Any]) -> str:
    """The first line of ebpf's error that says why (for verifier rejections the
    reason line of the log), with numbers and quoted names blanked, to group by."""
    text = ebpf.get("error") or ""
    if _VERIFIER_HEAD.match(text.splitlines()[0] if text else ""):
        body = [ln for ln in (ebpf.get("log_tail") or text).splitlines()
                if ln.strip() and not ln.startswith(("processed ", "verification time",
                                                     "stack depth"))]
        line = body[-1] if body else text
    else:
        line = _first_line(text)
    line = re.sub(r"'[^']*'", "'…'", line)
    line = re.sub(r"\b(0x[0-9a-f]+|\d+)\b", "N", line)
    return line[:160]


def libbpf_line(lib: dict[str, Any]) -> str:
    """libbpf's most telling line: the verifier's reason, or libbpf's own error."""
    lines = [ln for ln in (lib.get("log_tail") or "").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(("processed ", "verification time", "stack depth", "-- END",
                          "libbpf: failed to load object")) or "failed to load: -" in ln:
            continue
        return ln.strip()[:200]
    return lines[-1][:200] if lines else ""


# Why libbpf fails where ebpf loads: (a piece of libbpf's error line, the reason).
ONLY_EBPF_REASONS = (
    ("failed to initialize slot",
     "libbpf fills a program array's initial slots (`.values = {...}`) when loading and "
     "fails when a program listed there is not loaded (here every program but one is "
     "left out); ebpf leaves the slots of programs it does not load empty"),
    ("not found in kernel or module BTFs",
     "libbpf resolves every extern of the object, also those only programs left out use "
     "(here kfuncs of bpf_testmod, a module this host does not have); ebpf resolves the "
     "externs of the programs it loads"),
    ("not resolved",
     "as above: a strong extern (a bpf_testmod function) that only other programs use"),
    ("legacy map definitions",
     "libbpf 1.0 dropped the legacy `maps` section (struct bpf_map_def); ebpf still "
     "reads it"),
    ("struct_ops init_kern: struct",
     "libbpf prepares every struct_ops map of the object against the kernel's BTF, also "
     "when none of its programs is loaded (here `bpf_testmod_ops`, a type of "
     "bpf_testmod, which the kernel does not have); ebpf creates no struct_ops map "
     "whose programs it leaves out"),
    ("unrecognized extern section",
     "an object meant to be linked into another one: libbpf refuses its extern "
     "declarations on their own, ebpf loads the programs that do not use them"),
)


def only_ebpf_reason(lib: dict[str, Any]) -> str:
    line = libbpf_line(lib)
    for piece, why in ONLY_EBPF_REASONS:
        if piece in line:
            return why
    return "not analysed: " + line


def _errno_name(n: int) -> str:
    if n == 0:
        return "no errno (libbpf cannot open the object)"
    return errno.errorcode.get(n) or {524: "ENOTSUPP"}.get(n, str(n))


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    progs = [(r, p) for r in rows for p in r["programs"]]
    counts = Counter(p["outcome"] for _, p in progs)
    regress: dict[str, list[str]] = defaultdict(list)
    extra: dict[str, list[str]] = defaultdict(list)
    for r, p in progs:
        if p["outcome"] == "only-libbpf":
            regress[cause_of(p["ebpf"])].append(f"{r['name']}/{p['name']}")
        elif p["outcome"] == "only-ebpf":
            extra[only_ebpf_reason(p["libbpf"])].append(f"{r['name']}/{p['name']}")

    def cpu(p: dict[str, Any], who: str) -> int:
        return int(p[who].get("user_ns") or 0) + int(p[who].get("sys_ns") or 0)

    def user(p: dict[str, Any], who: str) -> int:
        return int(p[who].get("user_ns") or 0)

    both = [p for _, p in progs if p["outcome"] == "both"]
    parse = sum(r["ebpf_parse_ns"] for r in rows)
    timing: dict[str, Any] = {
        "libbpf_cpu_s": sum(cpu(p, "libbpf") for _, p in progs) / 1e9,
        "ebpf_cpu_s": (sum(cpu(p, "ebpf") for _, p in progs) + parse) / 1e9,
        "libbpf_user_s": sum(user(p, "libbpf") for _, p in progs) / 1e9,
        "ebpf_user_s": (sum(user(p, "ebpf") for _, p in progs)
                        + sum(r.get("ebpf_parse_user_ns", 0) for r in rows)) / 1e9,
        "ebpf_parse_s": parse / 1e9,
        "both_libbpf_cpu_s": sum(cpu(p, "libbpf") for p in both) / 1e9,
        "both_ebpf_cpu_s": sum(cpu(p, "ebpf") for p in both) / 1e9,
    }
    if both:
        timing["median_ms"] = {
            "libbpf": statistics.median(cpu(p, "libbpf") for p in both) / 1e6,
            "ebpf": statistics.median(cpu(p, "ebpf") for p in both) / 1e6}
    for a, b, key in (("ebpf_cpu_s", "libbpf_cpu_s", "ratio"),
                      ("ebpf_user_s", "libbpf_user_s", "ratio_user"),
                      ("both_ebpf_cpu_s", "both_libbpf_cpu_s", "ratio_both")):
        timing[key] = round(timing[a] / timing[b], 3) if timing[b] else None
    return {
        "objects": len(rows),
        "programs": len(progs),
        "libbpf_ok": counts["both"] + counts["only-libbpf"],
        "ebpf_ok": counts["both"] + counts["only-ebpf"],
        "both": counts["both"], "only_libbpf": counts["only-libbpf"],
        "only_ebpf": counts["only-ebpf"], "neither": counts["neither"],
        "regressions_by_cause": dict(sorted(regress.items(), key=lambda kv: -len(kv[1]))),
        "only_ebpf_by_reason": dict(sorted(extra.items(), key=lambda kv: -len(kv[1]))),
        "neither_by_errno": dict(Counter(
            _errno_name(int(p["libbpf"].get("errno") or 0))
            for _, p in progs if p["outcome"] == "neither").most_common()),
        "timing": {k: round(v, 3) if isinstance(v, float) else v for k, v in timing.items()},
    }


def _md_cell(text: str, limit: int = 220) -> str:
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return text.replace("|", "\\|").replace("<", "&lt;").replace("`", "'") or "—"


def summary_table(s: dict[str, Any], first_row: str) -> list[str]:
    """The markdown table of a summary's program counts (`first_row`: what the total is)."""
    return [
        "| | programs |",
        "|---|---:|",
        f"| {first_row} | {s['programs']} |",
        f"| libbpf loads | {s['libbpf_ok']} |",
        f"| ebpf loads | {s['ebpf_ok']} |",
        f"| both load | {s['both']} |",
        f"| only libbpf loads (regressions) | {s['only_libbpf']} |",
        f"| only ebpf loads | {s['only_ebpf']} |",
        f"| neither loads | {s['neither']} |",
    ]


def markdown(results: dict[str, Any]) -> str:
    s = results["summary"]
    t = s["timing"]
    comp = results["compile"]
    out = [
        "# Conformance against libbpf",
        "",
        "The kernel's own BPF selftests, loaded program by program with libbpf and with "
        "this library, on the same kernel, and compared. Generated by "
        "`tools/conformance.py` (`make conformance`); do not edit by hand.",
        "",
        f"- Corpus: `{SELFTESTS}/progs/*.c` of Debian's `{PACKAGE}`, compiled with "
        f"{results['clang']} and the selftests' flags against a `vmlinux.h` of the running "
        f"kernel: {comp['objects']} objects built, {len(comp['failed'])} sources did not "
        "compile (listed at the end).",
        f"- Reference loader: libbpf {results['libbpf']} built from the same tree "
        "(`tools/c/libbpf_conformance.c`), this library at "
        f"{results['ebpf']}.",
        f"- Kernel: `{results['kernel']}`; run {results['date']} "
        f"({results['selection']}).",
        "- Each program is loaded on its own, whatever its `SEC(\"?...\")` autoload "
        "default: every other program of the object is left out, maps and BTF are "
        "created each time.",
        "",
        "## Summary",
        "",
        *summary_table(s, "in the corpus"),
        "",
        "Most programs neither loads are the selftests' negative tests (programs the "
        "verifier must reject) and, on this host, programs it refuses by policy "
        "(fentry/fexit/LSM trampolines: EPERM; arena maps). By libbpf's errno: "
        + ", ".join(f"{k} {v}" for k, v in s["neither_by_errno"].items()) + ".",
        "",
        "## Load time",
        "",
        "Process CPU time (user + system, which includes the verifier) of loading, "
        "summed over every program: libbpf opens, loads and closes the object for each "
        "program; ebpf parses the object once (`load_collection_spec`) and creates and "
        "closes a `Collection` of the one program.",
        "",
        "| | libbpf | ebpf | ratio |",
        "|---|---:|---:|---:|",
        f"| all programs, CPU s | {t['libbpf_cpu_s']:.2f} | {t['ebpf_cpu_s']:.2f} "
        f"| {t['ratio']}x |",
        f"| all programs, user CPU s | {t['libbpf_user_s']:.2f} | {t['ebpf_user_s']:.2f} "
        f"| {t['ratio_user']}x |",
        f"| programs both load, CPU s | {t['both_libbpf_cpu_s']:.2f} "
        f"| {t['both_ebpf_cpu_s']:.2f} | {t['ratio_both']}x |",
    ]
    if "median_ms" in t:
        out.append(f"| median per program both load, ms | {t['median_ms']['libbpf']:.1f} "
                   f"| {t['median_ms']['ebpf']:.1f} | |")
    out += ["", f"ebpf's share for parsing objects: {t['ebpf_parse_s']:.2f} s.", ""]
    out += ["## Regressions by cause", "",
            "Programs libbpf loads and ebpf does not, grouped by the first line of "
            "ebpf's error (numbers and quoted names blanked).", ""]
    if not s["regressions_by_cause"]:
        out.append("None.")
    else:
        out += ["| programs | ebpf's error | examples |", "|---:|---|---|"]
        for cause, names in s["regressions_by_cause"].items():
            ex = ", ".join(f"`{n}`" for n in names[:4])
            out.append(f"| {len(names)} | {_md_cell(cause)} | {ex} |")
    out += ["", "## Where ebpf loads more", "",
            "Programs ebpf loads and libbpf does not, grouped by why libbpf fails.", ""]
    if not s["only_ebpf_by_reason"]:
        out.append("None.")
    else:
        out += ["| programs | why | examples |", "|---:|---|---|"]
        for why, names in s["only_ebpf_by_reason"].items():
            ex = ", ".join(f"`{n}`" for n in names[:3])
            out.append(f"| {len(names)} | {_md_cell(why, 400)} | {ex} |")
    out += ["", "## Every difference", "",
            "| object | program | section | loads | libbpf | ebpf |",
            "|---|---|---|---|---|---|"]
    for r in results["objects"]:
        for p in r["programs"]:
            if p["outcome"] not in ("only-libbpf", "only-ebpf"):
                continue
            lib = "loads" if p["libbpf"]["ok"] else libbpf_line(p["libbpf"])
            eb = "loads" if p["ebpf"]["ok"] else _first_line(p["ebpf"].get("error") or "")
            if not p["ebpf"]["ok"] and p["ebpf"].get("log_tail"):
                eb += " / " + cause_of(p["ebpf"])
            warn = p["ebpf"].get("warnings") or []
            if warn:
                eb += f" (warning: {warn[0]})"
            out.append(f"| {r['name']} | {p['name']} | `{_md_cell(p['section'], 60)}` "
                       f"| {p['outcome']} | {_md_cell(lib)} | {_md_cell(eb)} |")
    out += ["", "## Running it", "",
            "```sh",
            "make conformance                              # the whole corpus, this page",
            "python3 tools/conformance.py                  # the subset of the test command",
            "python3 tools/conformance.py --objects 'rbtree*,iters*' -j1",
            "python3 tools/conformance.py --subset 100     # 100 sources spread over the corpus",
            "```",
            "",
            "Everything is cached in `.cache/conformance/` (the unpacked tree, libbpf, the "
            "objects by content hash); `results.json` there has every program with both "
            "loaders' error lines and CPU times. In a kernel-matrix guest (what this host "
            "refuses: trampolines, modules, arena), the host's objects are reused when "
            "compiling against the host's BTF: `python3 -m tools.vm shell 6.12 'cd "
            "/work/main && python3 tools/conformance.py --all -j1 --btf "
            ".cache/conformance/vmlinux-*/vmlinux.btf --json /kmatrix/conformance.json'`. "
            "`make conformance-vm` (`python3 tools/conformance.py --vm 6.12`) loads the "
            "objects holding what this host refuses in the 6.12 guest without compiling "
            "there (next section).",
            ""]
    vm_mod = _vm_module()
    vm = vm_mod.vm_results()
    if vm is not None:  # the VM section, from the kept guest results
        out += vm_mod.vm_section(vm)
    out += ["## Sources that did not compile", ""]
    if comp["failed"]:
        out += ["| source | clang's first error |", "|---|---|"]
        out += [f"| {f['name']} | {_md_cell(f['error'])} |" for f in comp["failed"]]
    else:
        out.append("None.")
    return "\n".join(out) + "\n"


# -- main -----------------------------------------------------------------------------------


def _vm_module() -> Any:
    """tools/conformance_vm.py: runs in a kernel-matrix guest what this host refuses, and
    writes its section of the report (imported on use: it imports this module)."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    import conformance_vm  # on use: it imports this module

    return conformance_vm


def prepare(jobs: int = 2, btf: str = "/sys/kernel/btf/vmlinux"
            ) -> tuple[Corpus, pathlib.Path, Libbpf]:
    """Source, libbpf, the reference loader and the compiler flags (all cached); the
    objects are compiled against a vmlinux.h of `btf`."""
    tree = unpack(ensure_tarball())
    lib = build_libbpf(tree, jobs)
    exe = build_loader(lib)
    corpus = Corpus(tree, lib, vmlinux_h(btf), exe)
    return corpus, exe, lib


def conformance(selected: Sequence[Source] | None = None, *, jobs: int = 2,
                timeout: float = OBJECT_TIMEOUT, progress: bool = True,
                prepared: tuple[Corpus, pathlib.Path, Libbpf] | None = None,
                selection: str = "") -> dict[str, Any]:
    """Build and compare; the whole result as one dict (see results.json)."""
    corpus, exe, lib = prepared or prepare(jobs)
    sources = list(selected) if selected is not None else select_sources(corpus.sources())
    t0 = time.monotonic()
    built = corpus.build_all(sources, jobs, progress)
    compile_s = time.monotonic() - t0
    ok = [b for b in built if b.path is not None]
    if progress:
        log(f"{len(ok)} of {len(built)} objects built ({compile_s:.0f} s)")
    t0 = time.monotonic()
    rows = Runner(exe, jobs, timeout, progress).run(ok)
    import ebpf

    return {
        "kernel": platform.release(),
        "libbpf": lib.version,
        "ebpf": ebpf.__version__ + _git_rev(),
        "clang": (_run([CLANG, "--version"]).stdout.splitlines() or [CLANG])[0],
        "date": time.strftime("%Y-%m-%d"),
        "selection": selection or f"{len(sources)} objects",
        "compile": {"objects": len(ok), "seconds": round(compile_s, 1),
                    "failed": [{"name": b.name, "error": b.error}
                               for b in built if b.path is None]},
        "load_seconds": round(time.monotonic() - t0, 1),
        "summary": summarize(rows),
        "objects": rows,
    }


def _git_rev() -> str:
    proc = _run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    return f" (git {proc.stdout.strip()})" if proc.returncode == 0 else ""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a.split("=")[0] in ("--vm", "--report") for a in argv):
        code: int = _vm_module().main(argv)
        return code
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="the whole corpus")
    which.add_argument("--subset", type=int, metavar="N",
                       help="N sources spread evenly over the corpus (default: the fixed "
                            "representative subset)")
    ap.add_argument("--objects", metavar="GLOB",
                    help="only objects whose name matches one of these comma-separated "
                         "globs (of the whole corpus)")
    ap.add_argument("-j", "--jobs", type=int, default=2,
                    help="compile and load this many objects at a time (default 2)")
    ap.add_argument("--timeout", type=float, default=OBJECT_TIMEOUT,
                    help="seconds per object and loader")
    ap.add_argument("--json", metavar="PATH", default=str(CACHE / "results.json"),
                    help="where the results go (default .cache/conformance/results.json)")
    ap.add_argument("--markdown", metavar="PATH",
                    help="write the report (docs/conformance.md for the whole corpus)")
    ap.add_argument("--btf", default="/sys/kernel/btf/vmlinux",
                    help="compile against a vmlinux.h of this BTF (default: the running "
                         "kernel's; in a kernel-matrix guest, the host's copy "
                         ".cache/conformance/vmlinux-*/vmlinux.btf reuses its objects)")
    ap.add_argument("--list", action="store_true", help="print the selected objects")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main()
    try:
        prepared = prepare(args.jobs, args.btf)
    except (RuntimeError, OSError) as e:
        print(f"conformance: {e}", file=sys.stderr)
        return 2
    globs = [g for g in (args.objects or "").split(",") if g]
    selected = select_sources(prepared[0].sources(), everything=args.all,
                              sample=args.subset, globs=globs)
    selection = ("whole corpus" if args.all else f"{args.subset} sampled sources"
                 if args.subset else f"objects {args.objects}" if globs
                 else "representative subset")
    if args.list:
        print("\n".join(s.name for s in selected))
        return 0
    results = conformance(selected, jobs=args.jobs, timeout=args.timeout,
                          progress=not args.quiet, prepared=prepared, selection=selection)
    path = pathlib.Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, json.dumps(results, indent=1) + "\n")
    if args.markdown:
        _write_atomic(pathlib.Path(args.markdown), markdown(results))
    s = results["summary"]
    print(json.dumps({k: v for k, v in s.items()
                      if k not in ("regressions_by_cause", "only_ebpf_by_reason")}, indent=1))
    for cause, names in s["regressions_by_cause"].items():
        print(f"{len(names):4}  {cause}\n      {', '.join(names[:5])}")
    return 1 if s["only_libbpf"] else 0


if __name__ == "__main__":
    sys.exit(main())
