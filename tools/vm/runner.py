"""Run the kernel-dependent tests on the host kernel and on each matrix kernel in QEMU.

Each guest boots a Debian kernel under QEMU's software emulation (``-accel tcg``: this
machine's /dev/kvm cannot boot stock kernels) with the initramfs of tools/vm/initramfs.py.
The guest sees the host's root file system read-only over 9p (with a tmpfs overlay for
its own writes, so nothing lands in the repo) and runs, in the repo, the same pytest
command as the host: ``-m kernel`` with the kernelmatrix plugin writing JSON results to a
second, writable 9p share (``.cache/kernelmatrix/<kernel>/share``).

Outcome of one kernel (``status``):
  ok       pytest ran and nothing failed
  failed   pytest ran and some tests failed or errored
  error    pytest itself did not complete (usage/internal error, no results)
  timeout  the kernel booted but the run hit --timeout (the VM was killed)
  crashed  the kernel booted but the VM ended without finishing (panic, oops in init...)
  infra    infrastructure error: the kernel could not be fetched, or its VM never reached
           the test command, twice (each VM that fails to boot is retried once)
The console log of every attempt is kept next to the results.

Exit status of `run`: 0 all ok, 1 some kernel failed/errored/crashed/timed out,
3 an infrastructure error (and nothing worse).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import fcntl
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import threading
import time
from typing import IO, Any

from . import initramfs, kernels

REPO = kernels.REPO
OUT = REPO / ".cache" / "kernelmatrix"
BOOT_MARKER = "KMATRIX-BOOTED"
STAGE1_FAILED = "KMATRIX-STAGE1-FAILED"
# Environment variables passed through to the guest when set on the host.
PASS_ENV = ("CI", "HYPOTHESIS_PROFILE", "EBPF_TEST_VERBOSE")

PYTEST_ARGS = ["-m", "kernel"]
# The VMs have one vCPU (a second one under TCG halves Python's speed here): tests marked
# `cpus` (several CPUs producing at once) run on the host only, and so do tests marked
# `hostonly`: library behaviour that does not depend on the kernel's version (input
# validation, leaks over thousands of reloads, thread races, parallel loading, the
# examples), too slow under TCG to repeat per kernel.
VM_PYTEST_ARGS = ["-m", "kernel and not cpus and not hostonly"]
# What init.sh must have mounted for the tests; checked from the guest's /proc/mounts.
GUEST_MOUNTS = [("/sys/fs/bpf", "bpf"), ("/sys/kernel/tracing", "tracefs"),
                ("/sys/kernel/debug", "debugfs"), ("/sys/fs/cgroup/unified", "cgroup2")]
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/run/kmatrix/bin"


@dataclasses.dataclass
class KernelResult:
    name: str                         # "host", "6.1", "6.12"
    release: str = ""
    status: str = "infra"
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0              # wall time of the whole kernel (all attempts)
    boot_seconds: float | None = None  # QEMU start -> BOOT_MARKER on the console
    test_seconds: float | None = None  # pytest's own duration (in the guest)
    attempts: int = 0
    detail: str = ""
    log_dir: str = ""
    tests: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------
# pytest command


def guest_python() -> str:
    """A Python that has pytest: the one running this, or the pyenv 3.11 one."""
    cands = [sys.executable, "/root/.pyenv/versions/3.11.7/bin/python3", "/usr/bin/python3"]
    for c in cands:
        if not c or not os.path.exists(c):
            continue
        r = subprocess.run([c, "-c", "import pytest"], capture_output=True, check=False)
        if r.returncode == 0:
            return os.path.realpath(c) if os.path.basename(c).startswith("python") else c
    raise RuntimeError("no python3 with pytest found (pip install pytest hypothesis)")


def pytest_command(python: str, json_path: str, extra: list[str],
                   *, vm: bool = False) -> list[str]:
    return [python, "-m", "pytest", "-p", "kernelmatrix.plugin", "-p", "no:cacheprovider",
            f"--kmatrix-json={json_path}", "-v", "--tb=short", "-rs",
            *(VM_PYTEST_ARGS if vm else PYTEST_ARGS), *extra]


def missing_guest_mounts(mounts_text: str) -> list[str]:
    """The GUEST_MOUNTS absent from a guest's /proc/mounts text."""
    have = {tuple(ln.split()[1:3]) for ln in mounts_text.splitlines() if len(ln.split()) > 2}
    return [f"{fs} at {where}" for where, fs in GUEST_MOUNTS if (where, fs) not in have]


def _counts(res: dict[str, Any]) -> dict[str, int]:
    c = dict(res.get("summary", {}))
    return {k: c.get(k, 0) for k in ("passed", "skipped", "failed", "error", "xfailed",
                                      "xpassed")}


def _judge(r: KernelResult, res: dict[str, Any] | None, exit_code: int | None) -> None:
    if res is None:
        r.status = "error"
        r.detail = f"pytest exited {exit_code} without writing results"
        return
    r.counts = _counts(res)
    r.tests = res.get("tests", [])
    r.test_seconds = res.get("duration")
    r.release = res.get("kernel", {}).get("release", r.release)
    bad = r.counts["failed"] + r.counts["error"]
    if bad:
        r.status = "failed"
    elif exit_code in (0, 5):
        r.status = "ok"
        if exit_code == 5:
            r.detail = "no kernel tests collected"
    else:
        r.status = "error"
        r.detail = f"pytest exited {exit_code}"


# --------------------------------------------------------------------------------------
# host


def run_host(extra: list[str], python: str, timeout: float,
             out: pathlib.Path | None = None) -> KernelResult:
    r = KernelResult("host", release=os.uname().release, attempts=1)
    d = (out or OUT) / "host"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    r.log_dir = str(d)
    jp = d / "results.json"
    env = _host_env()
    t0 = time.monotonic()
    with open(d / "output.log", "w") as log:
        try:
            proc = subprocess.run(pytest_command(python, str(jp), extra), cwd=REPO, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                                  check=False, stdin=subprocess.DEVNULL)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
    r.seconds = time.monotonic() - t0
    if code is None:
        r.status, r.detail = "timeout", f"pytest did not finish in {timeout:.0f}s"
        return r
    _judge(r, _load_json(jp), code)
    return r


def _host_env() -> dict[str, str]:
    """The environment of pytest runs on the host. They may write bytecode (pytest's
    rewritten test modules included) even where PYTHONDONTWRITEBYTECODE is set: the
    guests read it from the shared tree instead of compiling every module under TCG."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = _pythonpath()
    return env


def _pythonpath() -> str:
    parts = [str(REPO / "tests"), str(REPO)]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return ":".join(parts)


def _load_json(p: pathlib.Path) -> dict[str, Any] | None:
    try:
        return json.loads(p.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------
# one VM


@dataclasses.dataclass
class VMConfig:
    qemu: str = "qemu-system-x86_64"
    smp: int = 1
    memory_mb: int = 2048
    timeout: float = 1800.0       # whole VM run (boot + tests)
    boot_timeout: float = 120.0   # QEMU start -> BOOT_MARKER
    cache: str = "none"           # 9p cache mode of the read-only host root
    extra_cmdline: str = ""


@dataclasses.dataclass
class Attempt:
    booted: bool
    boot_seconds: float | None
    exit_code: int | None         # of the guest command, None if it did not finish
    qemu_rc: int | None           # None if we killed it
    timed_out: bool
    seconds: float
    reason: str = ""


def qemu_argv(cfg: VMConfig, image: pathlib.Path, initrd: pathlib.Path, kdir: pathlib.Path,
              share: pathlib.Path, console: pathlib.Path) -> list[str]:
    accel = "tcg,thread=multi" if cfg.smp > 1 else "tcg"
    cmdline = (f"console=ttyS0 panic=-1 loglevel=4 mitigations=off nokaslr "
               f"kmatrix.kdir={kdir} kmatrix.repo={REPO} kmatrix.cache={cfg.cache} "
               f"{cfg.extra_cmdline}").strip()
    return [
        cfg.qemu, "-accel", accel, "-cpu", "max", "-smp", str(cfg.smp),
        "-m", str(cfg.memory_mb), "-nodefaults", "-no-user-config", "-display", "none",
        "-vga", "none", "-no-reboot", "-monitor", "none",
        "-serial", f"file:{console}",
        "-kernel", str(image), "-initrd", str(initrd), "-append", cmdline,
        "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
        "-fsdev", f"local,id=kmatrix,path={share},security_model=none,multidevs=remap",
        "-device", "virtio-9p-pci,fsdev=kmatrix,mount_tag=kmatrix",
        "-device", "virtio-rng-pci",
    ]


def _read_text(p: pathlib.Path) -> str:
    try:
        return p.read_text(errors="replace")
    except OSError:
        return ""


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def boot_once(argv: list[str], share: pathlib.Path, console: pathlib.Path,
              qemu_log: pathlib.Path, cfg: VMConfig,
              stop: threading.Event | None = None) -> Attempt:
    """Start QEMU, wait for the boot marker and the end; never exceeds cfg.timeout."""
    for f in ("booted", "exit_code", "exit_code.tmp", "results.json", "results.json.partial",
              "output.log", "vmlinux"):
        (share / f).unlink(missing_ok=True)
    console.write_bytes(b"")
    t0 = time.monotonic()
    try:
        log = open(qemu_log, "wb")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as e:
        return Attempt(False, None, None, None, False, 0.0, f"cannot start {argv[0]}: {e}")
    booted_at: float | None = None
    timed_out = False
    reason = ""
    try:
        while True:
            rc = proc.poll()
            now = time.monotonic() - t0
            if booted_at is None and BOOT_MARKER in _read_text(console):
                booted_at = now
            if rc is not None:
                break
            if stop is not None and stop.is_set():
                reason = "interrupted"
                _kill(proc)
                break
            if booted_at is None and now > cfg.boot_timeout:
                reason = f"no {BOOT_MARKER} on the console within {cfg.boot_timeout:.0f}s"
                _kill(proc)
                break
            if now > cfg.timeout:
                timed_out = True
                reason = f"timed out after {cfg.timeout:.0f}s"
                _kill(proc)
                break
            time.sleep(0.2)
    finally:
        _kill(proc)
        log.close()
    seconds = time.monotonic() - t0
    text = _read_text(console)
    if booted_at is None and BOOT_MARKER in text:
        booted_at = seconds
    ec_text = _read_text(share / "exit_code").strip()
    exit_code = int(ec_text) if ec_text.lstrip("-").isdigit() else None
    qemu_rc = proc.returncode if not reason else None
    if not reason:
        if booted_at is None:
            if STAGE1_FAILED in text:
                line = text[text.index(STAGE1_FAILED):].splitlines()[0]
                reason = f"stage 1 failed: {line}"
            elif qemu_rc:
                tail = _read_text(qemu_log).strip().splitlines()[-3:]
                reason = f"qemu exited {qemu_rc}: {' | '.join(tail)}"
            else:
                reason = "the VM stopped before reaching the test command"
                if "Kernel panic" in text:
                    reason += ": " + _panic_line(text)
        elif exit_code is None:
            reason = f"the VM stopped while running the tests (qemu exit {qemu_rc})"
            if "Kernel panic" in text:
                reason += ": " + _panic_line(text)
    return Attempt(booted_at is not None, booted_at, exit_code, qemu_rc, timed_out, seconds,
                   reason)


def _panic_line(text: str) -> str:
    i = text.index("Kernel panic")
    return text[i:].splitlines()[0][:200]


def _last_started(share: pathlib.Path) -> str:
    last = ""
    for line in _read_text(share / "results.json.partial").splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") == "start":
            last = ev.get("nodeid", "")
        elif ev.get("event") == "end" and ev.get("nodeid") == last:
            last = ""
    return last


def write_guest_files(share: pathlib.Path, command: list[str], env: dict[str, str],
                      guest_timeout: float) -> None:
    share.mkdir(parents=True, exist_ok=True)
    lines = [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
    lines.append(f"TIMEOUT={int(guest_timeout)}")
    (share / "env.sh").write_text("\n".join(lines) + "\n")
    (share / "cmd.sh").write_text("exec " + shlex.join(command) + "\n")


def run_kernel(name: str, extra: list[str], python: str, cfg: VMConfig, *,
               offline: bool = False, command: list[str] | None = None,
               kernel: kernels.Kernel | None = None, retries: int = 1,
               stop: threading.Event | None = None,
               out: pathlib.Path | None = None) -> KernelResult:
    """Boot kernel `name` (a matrix name) and run the tests (or `command`) in it.

    A VM that does not reach the test command is retried `retries` times; results and
    logs go to `out`/<name> (default .cache/kernelmatrix/<name>).
    """
    r = KernelResult(name)
    d = (out or OUT) / name
    r.log_dir = str(d)
    t0 = time.monotonic()
    try:
        k = kernel or kernels.fetch(name, offline=offline)
        r.release = k.release
        initrd = initramfs.build(k)
    except Exception as e:  # any failure here is an infrastructure error
        r.status, r.detail = "infra", f"cannot prepare kernel: {e}"
        r.seconds = time.monotonic() - t0
        return r
    shutil.rmtree(d, ignore_errors=True)
    share = d / "share"
    share.mkdir(parents=True)
    env = {"KMATRIX_REPO": str(REPO), "KMATRIX_KERNEL_NAME": name,
           "KMATRIX_EXPECT_RELEASE": k.release, "PYTHONPATH": _pythonpath(),
           **{v: os.environ[v] for v in PASS_ENV if v in os.environ}}
    if python:
        # `python3` in the guest is the one with pytest (the host's is a pyenv shim).
        env["PATH"] = f"{os.path.dirname(python)}:{GUEST_PATH}"
    cmd = command or pytest_command(python, "/kmatrix/results.json", extra, vm=True)
    write_guest_files(share, cmd, env, max(30.0, cfg.timeout - 30))
    console = d / "console.log"
    qlog = d / "qemu.log"
    argv = qemu_argv(cfg, k.image, initrd, k.root, share, console)
    (d / "qemu.argv").write_text(shlex.join(argv) + "\n")
    att: Attempt | None = None
    for i in range(1 + retries):
        r.attempts = i + 1
        att = boot_once(argv, share, console, qlog, cfg, stop)
        if att.booted or att.reason == "interrupted":
            break
        # Keep the failed attempt's logs, then retry once.
        for p in (console, qlog):
            if p.exists():
                shutil.copy2(p, p.with_name(f"{p.stem}.attempt{i + 1}{p.suffix}"))
    assert att is not None
    r.seconds = time.monotonic() - t0
    r.boot_seconds = att.boot_seconds
    if not att.booted:
        r.status = "infra"
        r.detail = (f"VM did not boot ({r.attempts} attempts): {att.reason}; "
                    f"console log: {console}")
        return r
    btf = share / "vmlinux"
    if btf.is_file() and (not k.btf.is_file() or k.btf.read_bytes() != btf.read_bytes()):
        tmp = k.btf.with_name(f".vmlinux.{os.getpid()}.tmp")
        shutil.copyfile(btf, tmp)
        os.replace(tmp, k.btf)
    # The guest's own timeout (busybox timeout -s KILL) ends the command with 137.
    guest_timed_out = att.exit_code == 137 and not (share / "results.json").exists()
    if att.exit_code is None or guest_timed_out:
        if guest_timed_out:
            att.timed_out, att.reason = True, f"timed out after {cfg.timeout - 30:.0f}s " \
                "(in the guest)"
        r.status = "timeout" if att.timed_out else "crashed"
        running = _last_started(share)
        r.detail = att.reason + (f" (in {running})" if running else "") + \
            f"; console log: {console}"
        partial = _partial_results(share)
        if partial:
            r.counts = _counts({"summary": partial})
        return r
    missing = missing_guest_mounts(_read_text(share / "mounts"))
    if missing:
        r.status = "infra"
        r.detail = f"the guest lacks {', '.join(missing)}; console log: {console}"
        return r
    if command is not None:
        r.status = "ok" if att.exit_code == 0 else "failed"
        r.detail = f"exit code {att.exit_code}"
        return r
    _judge(r, _load_json(share / "results.json"), att.exit_code)
    return r


def _partial_results(share: pathlib.Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in _read_text(share / "results.json.partial").splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") == "end" and ev.get("outcome"):
            counts[ev["outcome"]] = counts.get(ev["outcome"], 0) + 1
    return counts


# --------------------------------------------------------------------------------------
# table


def _fmt_s(s: float | None) -> str:
    return "-" if s is None else f"{s:.1f}s"


def format_table(results: list[KernelResult]) -> str:
    rows = [("kernel", "release", "status", "passed", "skipped", "failed", "errors",
             "boot", "tests", "total")]
    for r in results:
        c = r.counts
        have = bool(c) or r.status in ("ok", "failed")
        rows.append((
            r.name, r.release or "?", r.status.upper() if r.status != "ok" else "ok",
            str(c.get("passed", 0)) if have else "-",
            str(c.get("skipped", 0)) if have else "-",
            str(c.get("failed", 0)) if have else "-",
            str(c.get("error", 0)) if have else "-",
            _fmt_s(r.boot_seconds), _fmt_s(r.test_seconds), _fmt_s(r.seconds)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for j, row in enumerate(rows):
        cells = [c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in
                 enumerate(zip(row, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def format_details(results: list[KernelResult], show_skips: bool = True) -> str:
    out = []
    for r in results:
        notes = []
        if r.detail:
            notes.append(f"  {r.detail}")
        for t in r.tests:
            if t["outcome"] in ("failed", "error"):
                reason = (t.get("reason") or "").strip().splitlines()
                notes.append(f"  {t['outcome'].upper()} {t['nodeid']}")
                notes.extend(f"      {ln}" for ln in reason[-6:])
        if show_skips:
            for t in r.tests:
                if t["outcome"] == "skipped":
                    notes.append(f"  skipped {t['nodeid']}: {t.get('reason', '')}")
        if notes:
            out.append(f"[{r.name} {r.release}] logs: {r.log_dir}")
            out.extend(notes)
    return "\n".join(out)


def exit_status(results: list[KernelResult]) -> int:
    if any(r.status not in ("ok", "infra") for r in results):
        return 1
    if any(r.status == "infra" for r in results):
        return 3
    return 0


# --------------------------------------------------------------------------------------
# CLI


def _kernel_test_files(host: KernelResult | None, python: str) -> list[str]:
    """The test files holding `-m kernel` tests: from the host run, else by collecting."""
    ids: list[str] = []
    if host is not None and host.tests:
        ids = [t["nodeid"] for t in host.tests]
    else:
        try:
            proc = subprocess.run(
                [python, "-m", "pytest", "-p", "kernelmatrix.plugin", "-p", "no:cacheprovider",
                 "--collect-only", "-q", *PYTEST_ARGS], cwd=REPO, capture_output=True,
                text=True, timeout=300, check=False, env=_host_env())
        except subprocess.TimeoutExpired:
            return []
        if proc.returncode != 0:
            return []
        ids = [ln.strip() for ln in proc.stdout.splitlines() if "::" in ln]
    files = sorted({i.split("::", 1)[0] for i in ids if i and not i.startswith("<")})
    return [f for f in files if (REPO / f).is_file()]


def _prewarm(python: str, btfs: list[str]) -> None:
    """Compile the test BPF objects on the host for every kernel (see prewarm.py)."""
    try:
        subprocess.run([python, "-m", "tools.vm.prewarm", *btfs], cwd=REPO, check=False,
                       timeout=900, env=dict(os.environ, PYTHONPATH=_pythonpath()))
    except subprocess.TimeoutExpired:
        print("kmatrix: prewarm timed out", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python3 -m tools.vm run",
        description="run the kernel-dependent tests (-m kernel) on the host and on each "
                    "matrix kernel in QEMU; extra arguments after -- go to pytest")
    ap.add_argument("--kernels", default=",".join(e.name for e in kernels.MATRIX),
                    help="comma-separated matrix names (default: %(default)s); '' for none")
    ap.add_argument("--no-host", action="store_true", help="skip the native host run")
    ap.add_argument("--jobs", "-j", type=int, default=2, help="VMs run at once (default 2)")
    ap.add_argument("--smp", type=int, default=1,
                    help="vCPUs per VM (default 1: under TCG a second vCPU costs more "
                         "than it gives; run VMs side by side with --jobs instead)")
    ap.add_argument("--memory", type=int, default=2048, help="MiB per VM (default 2048)")
    ap.add_argument("--timeout", type=float, default=1800,
                    help="seconds per VM, boot + tests (default %(default)s)")
    ap.add_argument("--boot-timeout", type=float, default=120,
                    help="seconds for a VM to reach the test command (then retried once)")
    ap.add_argument("--offline", action="store_true", help="use only cached kernels")
    ap.add_argument("--cache", default="none", choices=("loose", "none", "mmap", "fscache"),
                    help="9p cache mode of the guest's read-only view of the host "
                         "(default %(default)s)")
    ap.add_argument("--qemu", default=os.environ.get("KMATRIX_QEMU", "qemu-system-x86_64"))
    ap.add_argument("--out", default=str(OUT),
                    help="results directory (default %(default)s; one run at a time each)")
    ap.add_argument("--json", default=None, help="summary JSON path (default OUT/summary.json)")
    ap.add_argument("--quiet-skips", action="store_true", help="do not list skip reasons")
    ap.add_argument("pytest_args", nargs="*", help="after --: paths/options for pytest")
    args = ap.parse_args(argv)

    out = pathlib.Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock(out / ".lock")
    names = [n for n in args.kernels.split(",") if n.strip()]
    cfg = VMConfig(qemu=args.qemu, smp=args.smp, memory_mb=args.memory,
                   timeout=args.timeout, boot_timeout=args.boot_timeout, cache=args.cache)
    try:
        python = guest_python()
    except RuntimeError as e:
        print(f"kmatrix: {e}", file=sys.stderr)
        return 3
    t0 = time.monotonic()
    results: list[KernelResult] = []
    vm_results: dict[str, KernelResult] = {}
    prepared: dict[str, kernels.Kernel] = {}
    have_qemu = shutil.which(cfg.qemu) is not None or os.path.exists(cfg.qemu)
    for n in names:
        if not have_qemu:
            vm_results[n] = KernelResult(
                n, status="infra", detail=f"{cfg.qemu} not found (apt-get install "
                                          f"qemu-system-x86 busybox-static)")
            continue
        try:
            prepared[n] = kernels.fetch(n, offline=args.offline)
        except Exception as e:  # any failure here is an infrastructure error
            vm_results[n] = KernelResult(n, status="infra", detail=f"cannot fetch kernel: {e}")
    btfs = ["/sys/kernel/btf/vmlinux"] if not args.no_host else []
    btfs += [str(k.btf) for k in prepared.values() if k.btf.is_file()]
    _prewarm(python, btfs)
    if not args.no_host:
        print("kmatrix: host kernel (native)...", flush=True)
        results.append(run_host(args.pytest_args, python, args.timeout, out=out))
        _progress(results[-1])
    vm_args = list(args.pytest_args)
    if not vm_args and prepared:
        # Collection under TCG is slow: hand the guests only the files with kernel tests.
        files = _kernel_test_files(results[0] if results else None, python)
        if files:
            vm_args = files
    stop = threading.Event()
    todo = [n for n in names if n in prepared]
    if todo:
        print(f"kmatrix: booting {', '.join(todo)} (TCG, {cfg.smp} vCPU, "
              f"{args.jobs} at a time)...", flush=True)
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            futs = {pool.submit(run_kernel, n, vm_args, python, cfg,
                                kernel=prepared[n], stop=stop, out=out): n for n in todo}
            try:
                for f in concurrent.futures.as_completed(futs):
                    vm_results[futs[f]] = f.result()
                    _progress(vm_results[futs[f]])
            except KeyboardInterrupt:
                stop.set()
                raise
    results.extend(vm_results[n] for n in names)
    total = time.monotonic() - t0
    print()
    print(format_table(results))
    details = format_details(results, show_skips=not args.quiet_skips)
    if details:
        print()
        print(details)
    print(f"\nkmatrix: {len(results)} kernels in {total:.0f}s; results in {out}")
    summary = {"seconds": round(total, 1), "results": [r.to_json() for r in results]}
    pathlib.Path(args.json or out / "summary.json").write_text(
        json.dumps(summary, indent=1) + "\n")
    # A plain closing line with the totals (read by CI as a test count).
    tot = {k: sum(r.counts.get(k, 0) for r in results) for k in ("passed", "failed",
                                                                  "skipped")}
    tot["failed"] += sum(r.counts.get("error", 0) for r in results)
    tot["failed"] += sum(1 for r in results if r.status not in ("ok", "failed"))
    print(f"kernel-matrix: {tot['passed']} passed, {tot['failed']} failed, "
          f"{tot['skipped']} skipped")
    lock.close()
    return exit_status(results)


def _lock(path: pathlib.Path) -> IO[str]:
    """Serialize `run`s sharing .cache/kernelmatrix (they would clobber each other)."""
    f = open(path, "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"kmatrix: another run holds {path}; waiting for it...", flush=True)
        fcntl.flock(f, fcntl.LOCK_EX)
    return f


def _progress(r: KernelResult) -> None:
    c = r.counts
    print(f"kmatrix: {r.name} ({r.release or '?'}): {r.status} "
          f"passed={c.get('passed', 0)} skipped={c.get('skipped', 0)} "
          f"failed={c.get('failed', 0) + c.get('error', 0)} in {r.seconds:.0f}s"
          + (f" (boot {r.boot_seconds:.1f}s)" if r.boot_seconds else "")
          + (f" - {r.detail}" if r.detail and r.status != "ok" else ""), flush=True)


def shell_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m tools.vm shell",
                                 description="boot one kernel and run a command in it")
    ap.add_argument("kernel")
    ap.add_argument("command", nargs="+",
                    help="a shell script (one argument) or a command line (after --)")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--smp", type=int, default=1)
    ap.add_argument("--offline", action="store_true")
    ap.add_argument("--cache", default="none", help="9p cache mode of the host root")
    ap.add_argument("--keep", action="store_true", help="keep the logs even on success")
    args = ap.parse_args(argv)
    cfg = VMConfig(smp=args.smp, timeout=args.timeout, cache=args.cache)
    try:
        python = guest_python()
    except RuntimeError:
        python = ""
    # One argument is a shell script ('cd x && y'); several are a command line.
    script = args.command[0] if len(args.command) == 1 else shlex.join(args.command)
    # Each shell gets its own directory, so shells and `run`s can go on side by side.
    out = OUT / "shell" / f"{os.getpid()}"
    r = run_kernel(args.kernel, [], python, cfg, offline=args.offline,
                   command=["/bin/sh", "-c", script], retries=0, out=out)
    print(_read_text(pathlib.Path(r.log_dir) / "share" / "output.log"), end="", flush=True)
    ok = r.status == "ok"
    print(f"kmatrix: {r.name} {r.release}: {r.status} {r.detail} "
          f"(boot {_fmt_s(r.boot_seconds)}, total {_fmt_s(r.seconds)})"
          + ("" if ok and not args.keep else f"; logs in {r.log_dir}"), file=sys.stderr)
    if ok and not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return 0 if ok else 1

