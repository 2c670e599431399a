"""Kernel modules' BTF (issue 12, cause 5): kfuncs, fentry targets and CO-RE
relocations that live in a module's split BTF, and that split BTF parsed.

Debian's kernels (the kernel matrix's 6.1 and 6.12) build nf_conntrack as a module:
there its kfuncs (``bpf_xdp_ct_lookup``, ``bpf_ct_release``), the function
``nf_conntrack_find_get`` and ``struct bpf_ct_opts`` are in
/sys/kernel/btf/nf_conntrack, so the loader must find the module's BTF object (by id
and name), pass it to BPF_PROG_LOAD in ``fd_array`` (kfunc calls) or as
``attach_btf_obj_fd`` (fentry), and relocate against the module's types. A kernel
with nf_conntrack built in (the 6.18 development host) has all of them in vmlinux:
the same tests then check that path.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator

import pytest
import trampolines
from bpfbuild import REPO_DIR, compile_bpf
from kernelmatrix import kernel_config, requires

import ebpf
from ebpf import btf
from ebpf.btf.kernel import (
    VMLINUX,
    find_kernel_type,
    kernel_module_names,
    load_kernel_module_spec,
    open_module_btf,
)
from ebpf.btf.raw import raw_lines
from ebpf.cli import main as cli_main
from ebpf.errors import KeyNotFoundError, NotSupportedError

sys.path.insert(0, str(REPO_DIR / "tools"))
import realworld

sys.path.remove(str(REPO_DIR / "tools"))

MODULE = "nf_conntrack"
# nf_conntrack's kfuncs came with 5.18; Debian builds the module with BTF
CT_KFUNCS = requires("nf_conntrack kfuncs (bpf_xdp_ct_lookup)", min_kernel="5.18",
                     config=("CONFIG_NF_CONNTRACK", "CONFIG_DEBUG_INFO_BTF"))
# an fentry on one of its functions: the development host refuses trampolines by policy
CT_FENTRY = requires("fentry on nf_conntrack functions", min_kernel="5.18",
                     config=("CONFIG_NF_CONNTRACK", "CONFIG_DEBUG_INFO_BTF"), refusable=True)
# the same in a module's split BTF: kernels that build nf_conntrack as a module
MODULE_BTF = requires("kernel module BTF (/sys/kernel/btf/nf_conntrack)", min_kernel="5.18",
                      config=("CONFIG_NF_CONNTRACK", "CONFIG_DEBUG_INFO_BTF_MODULES"))


def _modprobe() -> str:
    """The modprobe the kernel itself runs to load modules (the kernel matrix's guests
    set busybox's, which reads their modules.dep; the host's kmod would not)."""
    try:
        with open("/proc/sys/kernel/modprobe") as f:
            helper = f.read().strip()
    except OSError:
        helper = ""
    return helper if helper and os.access(helper, os.X_OK) else "modprobe"


@contextlib.contextmanager
def module_present(name: str, config: str) -> Iterator[str]:
    """Kernel module `name` present while in the block: loaded with the kernel's
    modprobe when `config` says it is a module and it is not loaded (unloaded again
    afterwards, best effort: another user keeps it); yields `name`, or "" when the
    kernel has it built in. Skips when it cannot be loaded or has no BTF."""
    cfg = kernel_config()
    if cfg is None or cfg.get(config) != "m":
        yield ""
        return
    modprobe = _modprobe()
    loaded_here = False
    if not os.path.isdir(f"/sys/module/{name}"):
        proc = subprocess.run([modprobe, name], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            pytest.skip(f"modprobe {name} failed: {proc.stderr.strip()}")
        loaded_here = True
    try:
        if not os.path.exists(os.path.join(os.path.dirname(VMLINUX), name)):
            pytest.skip(f"module {name} has no BTF")
        yield name
    finally:
        if loaded_here:
            subprocess.run([modprobe, "-r", name], capture_output=True, check=False)


@pytest.fixture(scope="module")
def conntrack() -> Iterator[str]:
    """nf_conntrack present: "nf_conntrack", or "" when it is built in."""
    with module_present(MODULE, "CONFIG_NF_CONNTRACK") as name:
        yield name


@pytest.fixture(scope="module")
def ext4() -> Iterator[str]:
    """ext4 present: "ext4", or "" when it is built in."""
    with module_present("ext4", "CONFIG_EXT4_FS") as name:
        yield name


@pytest.fixture(scope="module")
def ct_obj() -> pathlib.Path:
    return compile_bpf("kmod_conntrack")


def _where(name: str, kind: type[btf.Type]) -> str:
    found = find_kernel_type(name, (kind,))
    assert found is not None, name
    return found.module


@CT_KFUNCS
def test_module_kfuncs_load_and_run(conntrack: str, ct_obj: pathlib.Path,
                                    no_fd_leaks: None) -> None:
    # where the kfuncs are: the module's BTF when nf_conntrack is a module (whose BTF
    # object the load opens and closes again: no_fd_leaks)
    assert _where("bpf_xdp_ct_lookup", btf.Func) == conntrack
    assert _where("bpf_ct_release", btf.Func) == conntrack
    spec = ebpf.load_collection_spec(ct_obj)
    with ebpf.Collection(spec, programs=["ct_lookup"]) as coll:
        prog = coll.programs["ct_lookup"]
        for _ in range(2):
            assert prog.test_run(data=bytes(64)).retval == 2  # XDP_PASS
        v = coll.variables
        assert v["lookups"].get() == 2
        # no such connection: the kfunc returned NULL and said ENOENT in its options
        assert v["found"].get() == 0
        assert v["lookup_error"].get() == -2


@CT_KFUNCS
def test_module_kfunc_missing_module_is_a_clear_error(conntrack: str,
                                                      ct_obj: pathlib.Path) -> None:
    spec = ebpf.load_collection_spec(ct_obj)
    ps = spec.programs["ct_lookup"].copy()
    for ins in ps.instructions:
        if ins.is_kfunc_call and ins.reference == "bpf_ct_release":
            ins.reference = "ebpf_no_such_kfunc"
    spec.programs["ct_lookup"] = ps
    with pytest.raises(KeyNotFoundError, match=r"'ebpf_no_such_kfunc'.*loaded module"):
        ebpf.Collection(spec, programs=["ct_lookup"])


@CT_KFUNCS
def test_core_relocation_against_a_module_type(conntrack: str, ct_obj: pathlib.Path) -> None:
    found = find_kernel_type("bpf_ct_opts", (btf.Struct,))
    assert found is not None and found.module == conntrack
    opts = found.type
    assert isinstance(opts, btf.Struct)
    reserved = next(m for m in opts.members if m.name == "reserved")
    spec = ebpf.load_collection_spec(ct_obj)
    with ebpf.Collection(spec, programs=["ct_lookup"]) as coll:
        coll.programs["ct_lookup"].test_run(data=bytes(64))
        # 6.1: reserved at 10 of 12 bytes (as the program declares it); 6.10+: 13 of 16
        assert coll.variables["reserved_offset"].get() == reserved.offset
        assert coll.variables["opts_size"].get() == opts.size


@CT_FENTRY
def test_fentry_on_a_module_function(conntrack: str, ct_obj: pathlib.Path) -> None:
    assert _where("nf_conntrack_find_get", btf.Func) == conntrack
    spec = ebpf.load_collection_spec(ct_obj)
    with trampolines.load(spec, ["ct_lookup", "on_find_get"]) as coll:
        info = coll.programs["on_find_get"].info()
        if conntrack:  # attached by the module's BTF object: the kernel says which
            with open_module_btf(conntrack) as h:
                assert info.attach_btf_obj_id == h.id
        with coll.programs["on_find_get"].attach() as link:
            assert link is not None
            before = coll.variables["find_get_hits"].get()
            coll.programs["ct_lookup"].test_run(data=bytes(64), repeat=3)
            # bpf_xdp_ct_lookup looks the tuple up with nf_conntrack_find_get
            assert coll.variables["find_get_hits"].get() - before >= 3


@CT_FENTRY
def test_fentry_target_named_with_its_module(conntrack: str, ct_obj: pathlib.Path) -> None:
    """SEC("fentry/nf_conntrack:nf_conntrack_find_get"): the function is looked up in
    that module's BTF only, as libbpf does (the 6.12 selftests' test_module_attach
    names bpf_testmod's functions so)."""
    spec = ebpf.load_collection_spec(compile_bpf("kmod_fentry_explicit"))
    if not conntrack:  # built in: no module of that name has BTF
        with pytest.raises(ebpf.KeyNotFoundError, match="BTF of module 'nf_conntrack'"):
            trampolines.load(spec)
        return
    with trampolines.load(spec) as coll, \
            ebpf.Collection(ebpf.load_collection_spec(ct_obj), programs=["ct_lookup"]) as ct:
        prog = coll.programs["on_find_get_explicit"]
        with open_module_btf(conntrack) as h:
            assert prog.info().attach_btf_obj_id == h.id
        with prog.attach():
            before = coll.variables["explicit_hits"].get()
            ct.programs["ct_lookup"].test_run(data=bytes(64), repeat=3)
            assert coll.variables["explicit_hits"].get() - before >= 3


@MODULE_BTF
def test_module_split_btf_is_what_bpftool_reads(conntrack: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    if not conntrack:
        pytest.skip("nf_conntrack is built into this kernel: no module BTF")
    assert conntrack in kernel_module_names()
    spec = load_kernel_module_spec(conntrack)
    vmlinux = btf.load_kernel_spec()
    assert spec.base is vmlinux
    assert len(spec) > len(vmlinux)  # its ids follow vmlinux's
    # the same types, ids and text as bpftool, which reads it on top of vmlinux
    path = os.path.join(os.path.dirname(VMLINUX), conntrack)
    bpftool = shutil.which("bpftool")
    assert bpftool is not None, "bpftool is needed (tools/setup.sh installs it)"
    theirs = subprocess.run([bpftool, "-B", VMLINUX, "btf", "dump", "file", path,
                             "format", "raw"], capture_output=True, text=True,
                            check=True).stdout.splitlines()
    ours = list(raw_lines(spec))
    assert ours[:1] == theirs[:1] and len(ours) == len(theirs)
    assert ours == theirs
    # `ebpf btf dump` reads a module's sysfs file on top of vmlinux as bpftool does
    assert cli_main(["btf", "dump", "file", path, "format", "raw"]) == 0
    assert capsys.readouterr().out.splitlines() == theirs
    # and the kernel's copy read through the BTF object found by name
    with open_module_btf(conntrack) as h:
        info = h.info()
        assert info.kernel_btf and info.name == conntrack
        assert h.raw() == pathlib.Path(path).read_bytes()


@requires("kernel BTF objects named after their module", min_kernel="5.11")
def test_unknown_module_btf_is_not_supported() -> None:
    with pytest.raises(NotSupportedError, match="ebpf_no_such_module"):
        open_module_btf("ebpf_no_such_module")


@contextlib.contextmanager
def ext4_mounted(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A fresh 8 MiB ext4 file system on a loop device, mounted (all undone after)."""
    with module_present("loop", "CONFIG_BLK_DEV_LOOP"):
        image, mnt = tmp_path / "ext4.img", tmp_path / "mnt"
        with open(image, "wb") as f:
            f.truncate(8 << 20)
        mnt.mkdir()
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
        device = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                                capture_output=True, text=True).stdout.strip()
        try:
            subprocess.run(["mount", "-t", "ext4", device, str(mnt)], check=True,
                           capture_output=True)
            try:
                yield mnt
            finally:
                subprocess.run(["umount", str(mnt)], check=False, capture_output=True)
        finally:
            subprocess.run(["losetup", "--detach", device], check=False, capture_output=True)


@requires("BTF raw tracepoints of modules (tp_btf/ext4_request_inode)", min_kernel="5.11",
          config=("CONFIG_EXT4_FS", "CONFIG_DEBUG_INFO_BTF"))
def test_tp_btf_on_a_module_tracepoint(ext4: str, tmp_path: pathlib.Path,
                                       no_fd_leaks: None) -> None:
    # (the fixture loaded ext4 first: the target must be in the kernel's BTF at load)
    assert _where("btf_trace_ext4_request_inode", btf.Typedef) == ext4
    spec = ebpf.load_collection_spec(compile_bpf("kmod_ext4"))
    spec.variables["target_pid"].set(os.getpid())
    with ebpf.Collection(spec, programs=["on_request_inode"]) as coll:
        prog = coll.programs["on_request_inode"]
        if ext4:  # attached by the module's BTF object: the kernel says which
            with open_module_btf(ext4) as h:
                assert prog.info().attach_btf_obj_id == h.id
        with ext4_mounted(tmp_path) as mnt, prog.attach():
            for i in range(3):
                (mnt / f"f{i}").write_bytes(b"x")
            os.mkdir(mnt / "d", 0o700)
        # one inode per file and directory this process made
        assert coll.variables["requests"].get() == 4
        assert coll.variables["last_mode"].get() == stat.S_IFDIR | 0o700


@requires("typed __ksym variables of modules (ext4's discard_pa_seq)", min_kernel="5.11",
          config=("CONFIG_EXT4_FS", "CONFIG_DEBUG_INFO_BTF", "CONFIG_KALLSYMS_ALL"))
def test_typed_ksym_of_a_module(ext4: str, no_fd_leaks: None) -> None:
    # ext4's one per-CPU variable: the load's ld_imm64 names the module's BTF object
    assert _where("discard_pa_seq", btf.Var) == ext4
    spec = ebpf.load_collection_spec(compile_bpf("kmod_ext4"))
    with ebpf.Collection(spec, programs=["read_pa_seq"]) as coll:
        assert coll.programs["read_pa_seq"].test_run(ctx=bytes(8)).retval == 0
        assert coll.variables["percpu_read"].get() == 1


@requires("module kfuncs, ksyms and attach targets as libbpf loads them", min_kernel="5.18",
          config=("CONFIG_NF_CONNTRACK", "CONFIG_EXT4_FS", "CONFIG_DEBUG_INFO_BTF"))
@pytest.mark.parametrize("name", ["kmod_conntrack", "kmod_ext4"])
def test_same_programs_load_as_with_libbpf(name: str, conntrack: str, ext4: str) -> None:
    """libbpf (tools/c/libbpf_each.c) and this library load each program of the object
    one at a time: the same ones load (in the matrix's guests, all of them; on the
    development host both are refused the fentry and the __ksym without kallsyms)."""
    obj = realworld.CorpusObject(name, compile_bpf(name), "tests/bpf")
    res = realworld.compare_object(obj, realworld.build_libbpf_each())
    assert res.libbpf_open and res.ebpf_open, (res.libbpf_open_error, res.ebpf_open_error)
    outcomes = {p.name: (bool(p.libbpf_ok), bool(p.ebpf_ok)) for p in res.programs}
    assert len(outcomes) >= 2
    assert all(lib == ours for lib, ours in outcomes.values()), res.programs
    if trampolines.IN_GUEST:
        assert all(ours for _, ours in outcomes.values()), res.programs
