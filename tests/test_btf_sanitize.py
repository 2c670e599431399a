"""btf.sanitize, as a property of real BTF: the BTF of every test object, made fit
for each kernel release from 4.18 on, keeps its type ids, sizes and the names the
kernel looks up, holds only kinds that release knows, and is accepted by the
running kernel's BPF_BTF_LOAD."""

from __future__ import annotations

from typing import Any

import pytest
from bpfbuild import compile_bpf, standalone_sources
from kernelmatrix import requires
from vmlinux import vmlinux_include_dir

import ebpf
from ebpf import btf
from ebpf.btf.handle import BTFLoadError, Handle
from ebpf.btf.sanitize import sanitize
from ebpf.btf.spec import Spec
from ebpf.btf.types import Kind
from ebpf.programs import _kernel_ready_builder  # what the loader uploads, before sanitize


class Release:
    """What one kernel release's BTF loader accepts."""

    def __init__(self, version: str, kinds: set[Kind], global_funcs: bool,
                 qmark_datasec: bool) -> None:
        self.version = version
        self.kinds = kinds
        self.global_funcs = global_funcs
        self.qmark_datasec = qmark_datasec


def releases() -> list[Release]:
    """Each release that changed what BTF the kernel accepts, oldest first."""
    kinds = {Kind.INT, Kind.PTR, Kind.ARRAY, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.FWD,
             Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT}
    steps: list[tuple[str, set[Kind]]] = [
        ("4.18", set()), ("5.0", {Kind.FUNC, Kind.FUNC_PROTO}), ("5.2", {Kind.VAR, Kind.DATASEC}),
        ("5.6", set()), ("5.13", {Kind.FLOAT}), ("5.16", {Kind.DECL_TAG}),
        ("5.17", {Kind.TYPE_TAG}), ("5.19", set()), ("6.0", {Kind.ENUM64}),
    ]
    out = []
    for version, added in steps:
        kinds = kinds | added
        number = tuple(int(x) for x in version.split("."))
        out.append(Release(version, kinds, global_funcs=number >= (5, 6),
                           qmark_datasec=number >= (5, 19)))
    return out


# A __naked function's prototype has unnamed parameters: no kernel takes that BTF,
# whatever the kinds (the loader then loads without BTF, as libbpf does). Extern
# functions are made acceptable by the loader's kernel-ready BTF.
_REFUSED_AS_IS = {"naked_btf"}


# Objects whose C uses types of newer kernels than the oldest the matrix runs: they are
# compiled against the running kernel's vmlinux.h, which lacks them there.
_NEEDS_KERNEL = {"net_nf": ("program_type:NETFILTER", "6.4"),
                 "graph_kptr": ("bpf_rb_root and bpf_list_head in vmlinux.h", "6.3"),
                 "arena": ("BPF_MAP_TYPE_ARENA in vmlinux.h", "6.9"),
                 # 6.1 refuses this object's BTF as it is (its log is cut before the
                 # reason); the loader's own fallbacks load it there
                 # (test_struct_ops_versions passes on 6.1)
                 "struct_ops_versions": ("struct_ops links", "6.4")}


def object_names() -> list[Any]:
    out: list[Any] = []
    for name in (p.stem for p in standalone_sources()):
        if name in _NEEDS_KERNEL:
            feature, version = _NEEDS_KERNEL[name]
            out.append(pytest.param(name, marks=requires(feature, min_kernel=version)))
        else:
            out.append(name)
    return out


def object_btf(name: str) -> Spec:
    """The object's BTF as the loader prepares it (DATASEC sizes and offsets set)."""
    obj = compile_bpf(name, extra_flags=[f"-I{vmlinux_include_dir()}"])
    spec = ebpf.load_collection_spec(str(obj)).btf
    assert spec is not None, f"{name} has no BTF"
    return spec


_SIZED = (btf.Int, btf.Composite, btf.Enum, btf.Float, btf.Datasec)


def check_fit(before: Spec, after: Spec, release: Release) -> None:
    assert len(after) == len(before), "type ids must stay"
    for tid in range(1, len(before)):
        old, new = before.type_by_id(tid), after.type_by_id(tid)
        where = f"{release.version}: type {tid} {old!r} -> {new!r}"
        assert new.kind in release.kinds, where
        if isinstance(old, _SIZED):
            assert isinstance(new, _SIZED) and new.size == old.size, where
        if isinstance(old, (btf.Func, btf.Var)):
            assert new.name == old.name, where  # the kernel finds functions by name
        if isinstance(new, btf.Func) and not release.global_funcs:
            assert new.linkage == btf.Linkage.STATIC, where
        if isinstance(new, btf.Datasec) and not release.qmark_datasec:
            assert not new.name.startswith("?"), where
        if isinstance(new, btf.Enum) and Kind.ENUM64 not in release.kinds:
            assert not new.signed and not new.is64, where
        if old.kind in release.kinds and not isinstance(old, (btf.Enum, btf.DeclTag, btf.Func,
                                                              btf.Datasec)):
            assert type(new) is type(old) and new.name == old.name, where


def needs_graph_tags(spec: Spec) -> bool:
    """Whether a struct of `spec` holds a bpf_list_head or bpf_rb_root, which the
    kernel (6.2+) refuses at BPF_BTF_LOAD, without a log line, unless a "contains:"
    DECL_TAG names what the root holds. Made fit for a release without DECL_TAG
    (before 5.16, which knows no such roots either), the tag is gone: that BTF fits
    the old release but not the running kernel, so it is not loaded here."""
    return any(isinstance(t, btf.DeclTag) and t.name.startswith("contains:")
               and isinstance(t.type, btf.Composite) for t in spec)


def load(data: bytes) -> None:
    with Handle(data) as h:
        assert h.id > 0


@requires("btf_kind:ENUM64", min_kernel="6.0")
@pytest.mark.parametrize("name", object_names())
def test_object_btf_fits_every_release(name: str) -> None:
    """What the running kernel accepts as it is, it accepts made fit for any older
    release (and the result only holds what that release knows)."""
    spec = object_btf(name)
    kinds_used = {t.kind for t in spec}
    downgraded = 0
    ready = Spec(_kernel_ready_builder(spec).marshal())  # extern sections laid out
    graph_tags = needs_graph_tags(ready)
    if name in _REFUSED_AS_IS:
        with pytest.raises(BTFLoadError):
            load(ready.raw)
    else:
        load(ready.raw)
    for release in releases():
        b = sanitize(ready, release.kinds, global_funcs=release.global_funcs,
                     qmark_datasec=release.qmark_datasec)
        data = b.marshal()
        check_fit(ready, Spec(data), release)
        downgraded += data != ready.raw
        if name in _REFUSED_AS_IS or (graph_tags and Kind.DECL_TAG not in release.kinds):
            continue
        load(data)
    # every object has functions, which the oldest release lacks
    assert Kind.FUNC in kinds_used and downgraded > 0
