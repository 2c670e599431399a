"""Relocatable BPF ELF object -> CollectionSpec, the way libbpf reads objects.

No kernel access happens here: maps become MapSpecs, programs ProgramSpecs
with their subprograms linked in and every reference (maps, global data,
externs, functions) recorded symbolically on the instructions, to be resolved
when the collection is loaded.
"""

from __future__ import annotations

import mmap
import os
import struct

from .. import btf as _btf
from .._sys import validate as _validate
from ..elffile import SHN_UNDEF
from ..errors import BTFError, ELFError
from ..spec.collection import CollectionSpec, Maps
from .functions import FunctionSections
from .maps import MapSections
from .state import STB_GLOBAL, STB_WEAK, STT_FUNC, STT_OBJECT, ElfSymbol

__all__ = ["load_collection_spec", "load_elf"]


class _Loader(MapSections, FunctionSections):
    """Relocatable BPF ELF -> CollectionSpec: metadata, BTF and externs here, maps in
    `MapSections`, programs in `FunctionSections`."""

    def load(self) -> CollectionSpec:
        self._read_meta()
        self._read_btf()
        self._read_externs()
        self._read_data_sections()
        self._read_btf_maps()
        self._read_legacy_maps()
        self._read_arena_globals()
        self._read_functions()
        self._relocate_functions()
        programs = self._build_programs()
        self._read_map_values()
        spec = self.spec
        spec.btf = self.btf
        spec.programs = programs
        spec.maps = Maps(self.maps)
        spec.externs = self.externs
        spec._bind_variables()
        if any(sec.name.lstrip("?") in (".struct_ops", ".struct_ops.link") and sec.size
               for sec in self.elf.sections):
            # which struct and member each struct_ops program implements (libbpf does
            # this at open); no kernel access, the ids are resolved at load
            from .struct_ops import read_struct_ops

            read_struct_ops(self.elf, spec)
        return spec

    def _read_meta(self) -> None:
        lic = self.elf.section_by_name("license")
        if lic is not None:
            self.license = self._section_data(lic).split(b"\0", 1)[0].decode(errors="replace")
        ver = self.elf.section_by_name("version")
        if ver is not None:
            data = self._section_data(ver)
            if len(data) != 4:
                raise ELFError("version section must be 4 bytes", "version", ver.offset)
            self.kernel_version = self.u32.unpack(data)[0]

    def _read_btf(self) -> None:
        sec = self.elf.section_by_name(".BTF")
        if sec is None:
            return
        try:
            # decoded as it is used (most of an object's types never are), its records
            # checked now
            self.btf = _btf.Spec(self._section_data(sec), lazy=True)
            self.btf.check_records()
        except BTFError as e:
            raise BTFError(f".BTF: {e}") from None
        ext = self.elf.section_by_name(".BTF.ext")
        if ext is not None:
            from ..btf.ext import parse_ext  # the .BTF.ext parser only for objects that have one

            self.ext = parse_ext(self._section_data(ext), self.btf)
        self._fixup_datasecs()
        self._fixup_func_linkage()

    def _fixup_func_linkage(self) -> None:
        """Hidden global functions (__hidden, STV_HIDDEN/INTERNAL) are static to the
        verifier, as libbpf marks them: otherwise their arguments are checked as if
        any caller could pass anything. Hidden global variables become static too (as
        libbpf marks them): a data section holding only static variables is not
        mmap()able, which lets it hold a bpf_spin_lock (the kernel refuses to map
        memory holding one)."""
        assert self.btf is not None
        hidden = {s.name for s in self.symbols
                  if s.type == STT_FUNC and s.bind in (STB_GLOBAL, STB_WEAK)
                  and s.visibility in (1, 2)}
        hidden_vars = {s.name for s in self.symbols
                       if s.type == STT_OBJECT and s.bind in (STB_GLOBAL, STB_WEAK)
                       and s.visibility in (1, 2) and s.section_index != SHN_UNDEF}
        if not hidden and not hidden_vars:
            return
        for t in self.btf.types_of_kind(_btf.Kind.FUNC, _btf.Kind.VAR):
            if isinstance(t, _btf.Func) and t.name in hidden:
                t.linkage = _btf.Linkage.STATIC
            elif (isinstance(t, _btf.Var) and t.name in hidden_vars
                  and t.linkage == _btf.Linkage.GLOBAL):
                t.linkage = _btf.Linkage.STATIC

    def _fixup_datasecs(self) -> None:
        """clang leaves DATASEC sizes and variable offsets zero; fill them from the ELF
        (libbpf's btf_fixup_datasec)."""
        assert self.btf is not None
        syms: dict[str, ElfSymbol] = {}
        twice: set[str] = set()
        for s in self.symbols:
            if s.type == STT_OBJECT or s.section_index == SHN_UNDEF:
                if syms.setdefault(s.name, s) is not s:
                    twice.add(s.name)
        for t in self.btf.types_of_kind(_btf.Kind.DATASEC):
            if not isinstance(t, _btf.Datasec):
                continue
            sec = self.elf.section_by_name(t.name)
            # A statically linked object's DATASECs are already laid out, and may hold
            # static variables of one name from several files: those keep their offsets.
            laid_out = t.size != 0
            if sec is not None:
                t.size = sec.size
            for vs in t.vars:
                var = vs.type
                if not isinstance(var, _btf.Var) or (laid_out and var.name in twice):
                    continue
                sym = syms.get(var.name)
                if sym is not None and sec is not None and sym.section_index == sec.index:
                    vs.offset = sym.value
                if var.linkage == _btf.Linkage.EXTERN:
                    continue
            t.vars.sort(key=lambda v: v.offset)

    def _read_externs(self) -> None:
        undef = [s for s in self.symbols
                 if s.section_index == SHN_UNDEF and s.name and s.bind in (STB_GLOBAL, STB_WEAK)]
        if not undef:
            return
        from .externs import read_externs  # most objects have none (process start)

        read_externs(self, undef)


def load_elf(data: bytes) -> CollectionSpec:
    """Parse a BPF ELF object into a CollectionSpec (see `ebpf.load_collection_spec`)."""
    return _load_buffer(data)


def _load_buffer(data: bytes | memoryview) -> CollectionSpec:
    try:
        return _Loader(data).load()
    except (ELFError, BTFError):
        raise
    except (struct.error, IndexError, KeyError, UnicodeDecodeError, ValueError) as e:
        raise ELFError(f"malformed object: {type(e).__name__}: {e}") from None


def load_collection_spec(source: str | os.PathLike[str] | bytes) -> CollectionSpec:
    """Parse a clang-compiled BPF ELF object (a path or its bytes) into a CollectionSpec.

    No kernel access. Malformed input raises ELFError/BTFError naming section and
    offset.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return load_elf(bytes(source))
    with open(_validate.path(source, "object file path"), "rb") as f:
        data = _read_without_debug_info(f.fileno())
        return _load_buffer(f.read() if data is None else data)


# Objects smaller than this are read whole; bigger ones without their DWARF sections.
_SPARSE_FROM = 128 * 1024
_DEBUG_PREFIXES = (b".debug", b".rel.debug", b".rela.debug")


def _read_without_debug_info(fd: int) -> memoryview | None:
    """The object file open as `fd`, read into fresh anonymous memory except for its
    DWARF sections (.debug_*, their relocations), which the parser never reads and
    which are most of a `-g` object (execsnoop: 0.5 of 0.65 MB): their pages stay
    untouched zeros, never faulted in. None (read the file as it is) for a small
    file, anything that is not a plain ELF64 file whose sections all lie inside it,
    or a short read: the parser then reports what is wrong with it, as always."""
    try:
        size = os.fstat(fd).st_size
        if size < _SPARSE_FROM or os.lseek(fd, 0, os.SEEK_CUR) != 0:
            return None
        head = os.pread(fd, 64, 0)
        if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] not in (1, 2):
            return None
        end = "<" if head[5] == 1 else ">"
        shoff, = struct.unpack_from(end + "Q", head, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", head, 0x3A)
        if shentsize != 64 or not 0 < shnum <= 0xFF00 or not shstrndx < shnum \
                or shoff + 64 * shnum > size:
            return None
        table = os.pread(fd, 64 * shnum, shoff)
        if len(table) != 64 * shnum:
            return None
        headers = [struct.unpack_from(end + "IIQQQQ", table, 64 * k) for k in range(shnum)]
        _, _, _, _, names_off, names_size = headers[shstrndx]
        if names_off + names_size > size:
            return None
        names = os.pread(fd, names_size, names_off)
        wanted = [(0, 64), (shoff, shoff + 64 * shnum)]
        for name, sh_type, _, _, off, sec_size in headers:
            if sh_type == 8 or not sec_size:  # SHT_NOBITS: nothing in the file
                continue
            if off + sec_size > size:
                return None
            if names.startswith(_DEBUG_PREFIXES, name):
                continue
            wanted.append((off, off + sec_size))
        wanted.sort()
        buf = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        view = memoryview(buf)
        start, stop = wanted[0]
        for a, b in [*wanted[1:], (size + 1, size + 1)]:
            if a > stop:  # a gap: read the run so far
                if os.preadv(fd, [view[start:stop]], start) != stop - start:
                    return None
                start, stop = a, b
            else:
                stop = max(stop, b)
        return view
    except (OSError, ValueError, OverflowError, struct.error):
        return None

