"""Tests of the kernel-matrix machinery itself (tools/vm, tests/kernelmatrix).

The VM runner is driven with a fake QEMU (a small script that plays a guest: boots or
not, hangs, crashes, writes results), so boot failures, retries, timeouts and crashes are
checked in seconds without booting anything; one test runs the real QEMU on a kernel
image that cannot boot. The `requires` plugin is checked by running pytest on small
generated test files with a faked kernel release and config.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest
from conftest import need_tool

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.vm import initramfs, kernels, runner  # noqa: E402

# --------------------------------------------------------------------------------------
# a fake QEMU

FAKE_QEMU = r'''#!PYTHON
import json, os, sys, time
argv = sys.argv[1:]
console = share = None
for i, a in enumerate(argv):
    if a == "-serial":
        console = argv[i + 1].removeprefix("file:")
    if a == "-fsdev" and "id=kmatrix" in argv[i + 1]:
        share = [p for p in argv[i + 1].split(",") if p.startswith("path=")][0][5:]
state = os.path.join(os.path.dirname(os.path.abspath(__file__)), "calls")
with open(state, "a") as f:
    f.write("x")
calls = len(open(state).read())
modes = os.environ["FAKE_QEMU_MODES"].split(",")
mode = modes[min(calls, len(modes)) - 1]
con = open(console, "a", buffering=1)
def booted():
    con.write("kmatrix: stage1\nKMATRIX-BOOTED 9.9.9-fake 1.00s\n")
if mode == "qemu-error":
    print("qemu-system-x86_64: could not load kernel", file=sys.stderr)
    sys.exit(1)
elif mode == "stage1-fail":
    con.write("KMATRIX-STAGE1-FAILED: mount 9p hostroot\n")
elif mode == "panic-early":
    con.write("Kernel panic - not syncing: VFS: Unable to mount root fs\n")
elif mode == "hang-before-boot":
    time.sleep(60)
elif mode == "hang-after-boot":
    booted()
    time.sleep(60)
elif mode == "crash":
    booted()
    with open(os.path.join(share, "results.json.partial"), "w") as f:
        f.write(json.dumps({"event": "start", "nodeid": "t.py::ok"}) + "\n")
        f.write(json.dumps({"event": "end", "nodeid": "t.py::ok", "outcome": "passed"}) + "\n")
        f.write(json.dumps({"event": "start", "nodeid": "t.py::boom"}) + "\n")
    con.write("Kernel panic - not syncing: Fatal exception\n")
elif mode in ("ok", "fail", "no-bpffs"):
    booted()
    mounts = ["bpf /sys/fs/bpf bpf rw 0 0", "tracefs /sys/kernel/tracing tracefs rw 0 0",
              "debugfs /sys/kernel/debug debugfs rw 0 0",
              "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0"]
    with open(os.path.join(share, "mounts"), "w") as f:
        f.write("\n".join(mounts[mode == "no-bpffs":]) + "\n")
    assert os.path.exists(os.path.join(share, "cmd.sh"))
    tests = [{"nodeid": "t.py::a", "outcome": "passed", "duration": 0.1},
             {"nodeid": "t.py::b", "outcome": "skipped", "duration": 0.0, "reason": "nope"}]
    if mode == "fail":
        tests.append({"nodeid": "t.py::c", "outcome": "failed", "duration": 0.0,
                      "reason": "E   assert 1 == 2"})
    summary = {}
    for t in tests:
        summary[t["outcome"]] = summary.get(t["outcome"], 0) + 1
    res = {"kernel": {"release": "9.9.9-fake"}, "duration": 1.5, "summary": summary,
           "tests": tests, "exitstatus": 1 if mode == "fail" else 0}
    with open(os.path.join(share, "results.json"), "w") as f:
        json.dump(res, f)
    with open(os.path.join(share, "vmlinux"), "wb") as f:
        f.write(b"\x9f\xeb fake btf")
    with open(os.path.join(share, "exit_code"), "w") as f:
        f.write("1\n" if mode == "fail" else "0\n")
    con.write("KMATRIX-EXIT 0\n")
sys.exit(0)
'''


@pytest.fixture
def fake(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch):
    """(run, kernel): run(modes, **cfg) runs run_kernel against the fake QEMU."""
    qemu = tmp_path / "bin" / "fake-qemu"
    qemu.parent.mkdir()
    qemu.write_text(FAKE_QEMU.replace("PYTHON", sys.executable, 1))
    qemu.chmod(0o755)
    root = tmp_path / "kernels" / "9.9.9-fake"
    (root / "boot").mkdir(parents=True)
    (root / "boot" / "vmlinuz-9.9.9-fake").write_bytes(b"not a kernel")
    k = kernels.Kernel("fake", "linux-image-fake", "9.9.9-fake", "1", root)
    initrd = tmp_path / "initrd.cpio"
    initrd.write_bytes(b"")
    monkeypatch.setattr(runner.initramfs, "build", lambda kernel: initrd)
    out = tmp_path / "out"

    def run(modes: str, **kw: float) -> runner.KernelResult:
        monkeypatch.setenv("FAKE_QEMU_MODES", modes)
        (qemu.parent / "calls").unlink(missing_ok=True)
        cfg = runner.VMConfig(qemu=str(qemu), timeout=kw.get("timeout", 30),
                              boot_timeout=kw.get("boot_timeout", 20))
        return runner.run_kernel("fake", [], sys.executable, cfg, kernel=k, out=out)

    return run, k


def test_vm_that_cannot_start_is_an_infrastructure_error(fake) -> None:
    run, _ = fake
    r = run("qemu-error")
    assert r.status == "infra"
    assert r.attempts == 2
    assert "qemu exited 1" in r.detail and "could not load kernel" in r.detail
    d = pathlib.Path(r.log_dir)
    assert (d / "console.log").exists()
    assert (d / "console.attempt1.log").exists() and (d / "qemu.attempt1.log").exists()
    assert runner.exit_status([r]) == 3


def test_stage1_failure_is_infra_and_named(fake) -> None:
    run, _ = fake
    r = run("stage1-fail")
    assert r.status == "infra" and r.attempts == 2
    assert "mount 9p hostroot" in r.detail


def test_early_panic_is_infra(fake) -> None:
    run, _ = fake
    r = run("panic-early")
    assert r.status == "infra"
    assert "Unable to mount root fs" in r.detail
    # the guest never started the test stage, and its console is kept for the reader
    console = (pathlib.Path(r.log_dir) / "console.log").read_text()
    assert "Unable to mount root fs" in console


def test_boot_timeout_is_retried_then_infra(fake) -> None:
    run, _ = fake
    r = run("hang-before-boot", boot_timeout=1.5)
    assert r.status == "infra" and r.attempts == 2
    assert "within 2s" in r.detail or "within 1s" in r.detail
    assert r.seconds < 15


def test_failed_boot_is_retried_once(fake) -> None:
    run, k = fake
    r = run("qemu-error,ok")
    assert r.status == "ok", r.detail
    assert r.attempts == 2
    assert r.counts["passed"] == 1 and r.counts["skipped"] == 1
    assert r.boot_seconds is not None
    assert k.btf.read_bytes().startswith(b"\x9f\xeb")   # BTF collected from the guest


def test_passing_run(fake) -> None:
    run, _ = fake
    r = run("ok")
    assert (r.status, r.attempts, r.release) == ("ok", 1, "9.9.9-fake")
    share = pathlib.Path(r.log_dir) / "share"
    cmd = (share / "cmd.sh").read_text()
    assert "-m pytest" in cmd and "kernelmatrix.plugin" in cmd and "no:cacheprovider" in cmd
    assert "-m 'kernel and not cpus and not hostonly'" in cmd
    env = (share / "env.sh").read_text()
    assert "KMATRIX_EXPECT_RELEASE=9.9.9-fake" in env and "TIMEOUT=" in env


def test_guest_without_its_mounts_is_infra(fake) -> None:
    run, _ = fake
    r = run("no-bpffs")
    assert r.status == "infra"
    assert "lacks bpf at /sys/fs/bpf" in r.detail
    assert runner.exit_status([r]) == 3


def test_test_failures_are_not_infra(fake) -> None:
    run, _ = fake
    r = run("fail")
    assert r.status == "failed"
    assert r.counts["failed"] == 1
    assert runner.exit_status([r]) == 1


def test_hang_after_boot_is_a_timeout_not_retried(fake) -> None:
    run, _ = fake
    r = run("hang-after-boot", timeout=2)
    assert r.status == "timeout" and r.attempts == 1
    assert runner.exit_status([r]) == 1


def test_crash_names_the_running_test(fake) -> None:
    run, _ = fake
    r = run("crash")
    assert r.status == "crashed" and r.attempts == 1
    assert "t.py::boom" in r.detail and "Fatal exception" in r.detail
    assert r.counts["passed"] == 1


def test_real_qemu_with_an_unbootable_kernel(tmp_path: pathlib.Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    qemu = need_tool("qemu-system-x86_64")
    root = tmp_path / "k"
    (root / "boot").mkdir(parents=True)
    (root / "boot" / "vmlinuz-0.0.0-bad").write_bytes(os.urandom(4096))
    k = kernels.Kernel("bad", "linux-image-bad", "0.0.0-bad", "0", root)
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"")
    monkeypatch.setattr(runner.initramfs, "build", lambda kernel: initrd)
    cfg = runner.VMConfig(qemu=qemu, timeout=60, boot_timeout=20)
    r = runner.run_kernel("bad", [], sys.executable, cfg, kernel=k, out=tmp_path / "out")
    assert r.status == "infra", r
    assert r.attempts == 2
    assert (pathlib.Path(r.log_dir) / "qemu.log").exists()


def test_table_and_exit_status() -> None:
    rs = [
        runner.KernelResult("host", "6.18.0", "ok", {"passed": 3, "skipped": 1}, 1.0),
        runner.KernelResult("6.1", "6.1.0-56-amd64", "failed",
                            {"passed": 2, "skipped": 0, "failed": 1, "error": 0}, 50.0, 6.0,
                            40.0),
        runner.KernelResult("6.12", "6.12.1", "infra", {}, 10.0, None, None, 2,
                            "VM did not boot"),
    ]
    table = runner.format_table(rs)
    lines = table.splitlines()
    assert lines[0].split()[:7] == ["kernel", "release", "status", "passed", "skipped",
                                    "failed", "errors"]
    assert lines[2].split()[:4] == ["host", "6.18.0", "ok", "3"]
    assert lines[3].split()[:6] == ["6.1", "6.1.0-56-amd64", "FAILED", "2", "0", "1"]
    assert lines[4].split()[:4] == ["6.12", "6.12.1", "INFRA", "-"]
    assert runner.exit_status(rs) == 1
    assert runner.exit_status([rs[0], rs[2]]) == 3
    assert runner.exit_status([rs[0]]) == 0
    assert "VM did not boot" in runner.format_details(rs)


# --------------------------------------------------------------------------------------
# initramfs pieces


def test_module_load_order() -> None:
    dep = textwrap.dedent("""\
        kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz
        kernel/net/9p/9pnet.ko.xz: kernel/fs/netfs/netfs.ko.xz
        kernel/fs/netfs/netfs.ko.xz:
        kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz
        kernel/fs/overlayfs/overlay.ko.xz:
        """)
    order = initramfs.load_order(initramfs.parse_modules_dep(dep),
                                 ("virtio_pci", "9pnet_virtio", "9p", "overlay"))
    names = [p.rsplit("/", 1)[1] for p in order]
    assert names == ["netfs.ko.xz", "9pnet.ko.xz", "9pnet_virtio.ko.xz", "9p.ko.xz",
                     "overlay.ko.xz"]   # virtio_pci is built in: left out


def test_cpio_is_readable_by_cpio(tmp_path: pathlib.Path) -> None:
    bb = shutil.which("busybox") or need_tool("cpio")
    c = initramfs.Cpio()
    c.dir("bin")
    c.file("bin/hello", b"hello world\n", 0o755)
    c.symlink("bin/sh", "hello")
    c.chardev("console", 5, 1)
    data = c.finish()
    assert len(data) % 512 == 0 and data.startswith(b"070701")
    cmd = [bb, "cpio", "-t"] if bb.endswith("busybox") else [bb, "-t"]
    out = subprocess.run(cmd, input=data, capture_output=True, check=True).stdout.decode()
    assert out.split() == ["bin", "bin/hello", "bin/sh", "console"]


# --------------------------------------------------------------------------------------
# the requires() plugin


REQ_TESTS = '''
import pytest
from kernelmatrix import requires

@requires("thing", min_kernel="5.8")
def test_skips_inside():
    pytest.skip("probe said no")

@requires("thing", min_kernel="5.8")
def test_passes():
    pass

@requires("newthing", min_kernel="7.0")
def test_too_new():
    raise AssertionError("must not run")

@requires("fprobe thing", min_kernel="5.18", config="CONFIG_FPROBE")
def test_config_gated():
    pytest.skip("no fprobe")

@requires(lambda: False, min_kernel="4.0")
def test_probe_false():
    raise AssertionError("must not run")

@requires("label only")
def test_no_min_kernel_may_skip():
    pytest.skip("fine")

@pytest.fixture
def needs_env():
    pytest.skip("fixture skipped")

@requires("thing", min_kernel="5.8")
def test_fixture_skip(needs_env):
    pass

@requires("policy thing", min_kernel="5.8", refusable=True)
def test_refused_by_policy():
    pytest.skip("refused by this build's policy")

@requires("old thing", min_kernel="5.8")
@requires("new thing", min_kernel="6.4")
def test_needs_two_features_one_too_new():
    pytest.skip("new thing needs 6.4")
'''


def _run_plugin(tmp_path: pathlib.Path, release: str, config: str | None,
                *extra: str, guest: bool = False) -> tuple[dict, str]:
    (tmp_path / "test_req.py").write_text(REQ_TESTS)
    env = dict(os.environ, KMATRIX_KERNEL_RELEASE=release,
               PYTHONPATH=f"{REPO / 'tests'}:{REPO}", PYTHONDONTWRITEBYTECODE="1")
    env.pop("KMATRIX_GUEST", None)
    if guest:
        env["KMATRIX_GUEST"] = "1"
    if config is not None:
        cfg = tmp_path / "config"
        cfg.write_text(config)
        env["KMATRIX_KERNEL_CONFIG"] = str(cfg)
    else:
        env["KMATRIX_KERNEL_CONFIG"] = str(tmp_path / "no-such-config")
    jp = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "kernelmatrix.plugin", "-p",
         "no:cacheprovider", f"--kmatrix-json={jp}", "-q", "-rA", "--rootdir", str(tmp_path),
         "-c", os.devnull, str(tmp_path / "test_req.py"), *extra],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=120)
    res = json.loads(jp.read_text())
    return res, proc.stdout + proc.stderr


def _outcomes(res: dict) -> dict[str, str]:
    return {t["nodeid"].split("::")[1]: t["outcome"] for t in res["tests"]}


def test_requires_turns_unexpected_skips_into_failures(tmp_path: pathlib.Path) -> None:
    # /proc/config.gz may exist on the host; an explicit config file wins over it.
    res, out = _run_plugin(tmp_path, "6.1.0-56-amd64", "CONFIG_BPF=y\n# CONFIG_FPROBE is not set\n")
    o = _outcomes(res)
    assert o == {
        "test_skips_inside": "failed",          # 6.1 >= 5.8: must not skip
        "test_passes": "passed",
        "test_too_new": "skipped",              # 6.1 < 7.0
        "test_config_gated": "skipped",         # CONFIG_FPROBE not set: skip allowed
        "test_probe_false": "failed",           # the probe said no on a kernel >= 4.0
        "test_no_min_kernel_may_skip": "skipped",
        "test_fixture_skip": "failed",          # a skip from a fixture counts too
        "test_refused_by_policy": "skipped",    # refusable, and not in a matrix guest
        "test_needs_two_features_one_too_new": "skipped",  # 6.1 < 6.4 for one of them
    }, out
    t = {x["nodeid"].split("::")[1]: x for x in res["tests"]}
    assert "this kernel must support it" in t["test_skips_inside"]["reason"]
    assert "probe said no" in t["test_skips_inside"]["reason"]
    assert "needs kernel >= 7.0" in t["test_too_new"]["reason"]
    assert "CONFIG_FPROBE" in t["test_config_gated"]["reason"]
    assert t["test_passes"]["requires"] == ["requires('thing', min_kernel='5.8')"]
    assert res["kernel"]["release"] == "6.1.0-56-amd64"
    assert res["summary"]["failed"] == 3
    assert res["exitstatus"] == 1


def test_refusable_features_must_not_skip_in_the_matrix(tmp_path: pathlib.Path) -> None:
    res, out = _run_plugin(tmp_path, "6.1.0-56-amd64", "CONFIG_BPF=y\n", guest=True)
    assert _outcomes(res)["test_refused_by_policy"] == "failed", out


def test_requires_with_config_set_must_not_skip(tmp_path: pathlib.Path) -> None:
    res, out = _run_plugin(tmp_path, "6.12.117+deb12-amd64", "CONFIG_FPROBE=y\n")
    assert _outcomes(res)["test_config_gated"] == "failed", out


def test_requires_unknown_config_allows_the_skip(tmp_path: pathlib.Path) -> None:
    res, out = _run_plugin(tmp_path, "6.12.117+deb12-amd64", None)
    assert not res["kernel"]["config_known"]
    assert _outcomes(res)["test_config_gated"] == "skipped", out


def test_requires_on_an_old_kernel_skips(tmp_path: pathlib.Path) -> None:
    res, out = _run_plugin(tmp_path, "5.4.0-1-amd64", "CONFIG_FPROBE=y\n")
    o = _outcomes(res)
    assert o["test_skips_inside"] == "skipped" and o["test_fixture_skip"] == "skipped", out
    assert o["test_config_gated"] == "skipped"   # 5.4 < 5.18
    assert o["test_probe_false"] == "failed"     # 5.4 >= 4.0


def test_allow_skips_option(tmp_path: pathlib.Path) -> None:
    res, out = _run_plugin(tmp_path, "6.1.0-56-amd64", "", "--kmatrix-allow-skips")
    assert "failed" not in _outcomes(res).values(), out


def test_requires_marks_kernel() -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from kernelmatrix import parse_version, requires

    @requires("x", min_kernel="5.8")
    def f() -> None: ...

    marks = f.pytestmark  # type: ignore[attr-defined]
    assert [m.name for m in marks] == ["kernel"]
    assert marks[0].kwargs["min_kernel"] == "5.8" and marks[0].kwargs["feature"] == "x"
    assert parse_version("6.12.117+deb12-amd64") == (6, 12, 117)
    assert parse_version("5.8") == (5, 8, 0)
    with pytest.raises(ValueError):
        requires("x", min_kernel="five")


def test_feature_strings_resolve_to_ebpf_features() -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from kernelmatrix.plugin import resolve_probe

    import ebpf.features as features
    p = resolve_probe("map_type:RINGBUF")
    assert p is not None and p.func is features.have_map_type  # type: ignore[attr-defined]
    assert p.args[0].name == "RINGBUF"  # type: ignore[attr-defined]
    p = resolve_probe("helper:KPROBE:get_func_ip")
    assert p is not None and [a.name for a in p.args] == ["KPROBE", "get_func_ip"]  # type: ignore[attr-defined]
    assert resolve_probe("ringbuf") is features.have_ringbuf
    assert resolve_probe("ringbuf map") is None        # a label, not a probe
    assert resolve_probe("no_such_probe") is None
    with pytest.raises(ValueError, match="MapType"):
        resolve_probe("map_type:NO_SUCH_MAP")


# --------------------------------------------------------------------------------------
# prewarm: the variants tests built against a vmlinux.h are replayed for the guests


def test_prewarm_replays_recorded_variants_and_ignores_forged_lines(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bpfbuild

    record = tmp_path / "variants.txt"
    monkeypatch.setattr(bpfbuild, "VARIANTS", record)
    monkeypatch.setattr(bpfbuild, "_noted", set())
    vmdir = bpfbuild.REPO_DIR / ".cache" / "vmlinux" / "0123"
    bpfbuild._note_variant("graph_kptr", "bpf", [f"-I{vmdir}", "-DGLOBALS_ONLY"])
    bpfbuild._note_variant("graph_kptr", "bpf", [f"-I{vmdir}", "-DGLOBALS_ONLY"])  # once
    bpfbuild._note_variant("graph_kptr", "bpf", [f"-I{vmdir}"])  # the plain build: not
    bpfbuild._note_variant("elf_smoke", "bpfeb", ["-DX=1"])  # no vmlinux.h: not
    assert record.read_text().splitlines() == [
        '["graph_kptr", "bpf", ["@VMLINUX@", "-DGLOBALS_ONLY"]]']
    with record.open("a") as f:  # the file is in a cache: what reaches clang is checked
        f.write('["graph_kptr", "bpf", ["@VMLINUX@", "-fplugin=/tmp/evil.so"]]\n')
        f.write('["../../etc/x", "bpf", ["@VMLINUX@"]]\n')
        f.write('["graph_kptr", "x86_64-linux-gnu", ["@VMLINUX@"]]\n')
        f.write('not json\n')
    guest = pathlib.Path("/some/guest/vmlinux")
    assert bpfbuild.variants(guest) == [("graph_kptr", "bpf", [f"-I{guest}", "-DGLOBALS_ONLY"])]


def test_prewarm_builds_the_docs_objects_for_each_kernel() -> None:
    import test_docs

    wanted = {(page, name) for page in test_docs.PAGES for b in test_docs.python_blocks(page)
              for name in b.markers.get("needs-object", [])}
    assert wanted, "the docs name objects their blocks need"
    ok, total = test_docs.prewarm_objects(["/sys/kernel/btf/vmlinux"])
    assert (ok, total) == (len(wanted), len(wanted))
