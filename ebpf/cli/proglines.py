"""A loaded program's debug records as the kernel keeps them: func info (where each
function starts, its BTF FUNC) and line info (source file, line text, line and column of
an instruction), read with BPF_OBJ_GET_INFO_BY_FD and resolved through the program's
BTF."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._sys import ops
from .._sys.types import FuncInfo, LineInfo, ProgInfo

if TYPE_CHECKING:
    from ..btf import Type

__all__ = ["FuncStart", "ProgramLines", "SourceLine", "func_signature", "read_lines"]


@dataclass(frozen=True)
class SourceLine:
    """The source position of the instruction at slot `insn`."""

    insn: int
    file: str
    text: str
    line: int
    col: int


@dataclass(frozen=True)
class FuncStart:
    """A function of the program starting at slot `insn`, with its C signature."""

    insn: int
    name: str
    signature: str


@dataclass(frozen=True)
class ProgramLines:
    """Func and line info of one program (empty without BTF)."""

    funcs: tuple[FuncStart, ...]
    lines: tuple[SourceLine, ...]


def read_lines(fd: int, btf_id: int) -> ProgramLines:
    """The func and line info of the program behind `fd` whose BTF has id `btf_id`."""
    first = ProgInfo()
    ops.obj_get_info(fd, first)
    n_func, n_line = int(first.nr_func_info), int(first.nr_line_info)
    if not btf_id or not (n_func or n_line):
        return ProgramLines((), ())
    from ..btf import load_spec  # on use: a subcommand loads only what it needs

    funcs = (FuncInfo * max(n_func, 1))()
    lines = (LineInfo * max(n_line, 1))()
    info = ProgInfo()
    info.nr_func_info, info.func_info_rec_size = n_func, ctypes.sizeof(FuncInfo)
    info.func_info = ctypes.addressof(funcs)
    info.nr_line_info, info.line_info_rec_size = n_line, ctypes.sizeof(LineInfo)
    info.line_info = ctypes.addressof(lines)
    ops.obj_get_info(fd, info)
    spec = load_spec(ops.btf_get_data(btf_id))
    starts = []
    for f in funcs[:min(n_func, int(info.nr_func_info))]:
        func = spec.type_by_id(int(f.type_id))
        starts.append(FuncStart(int(f.insn_off), func.name, func_signature(func)))
    out = []
    for rec in lines[:min(n_line, int(info.nr_line_info))]:
        lc = int(rec.line_col)
        out.append(SourceLine(int(rec.insn_off), spec.string(int(rec.file_name_off)),
                              spec.string(int(rec.line_off)), lc >> 10, lc & 0x3FF))
    return ProgramLines(tuple(starts), tuple(out))


def func_signature(func: Type) -> str:
    """A BTF FUNC as bpftool prints it above a function: ``int f(struct xdp_md * ctx)``."""
    from ..btf import FuncProto, Void  # on use: a subcommand loads only what it needs

    proto = getattr(func, "type", None)
    if not isinstance(proto, FuncProto):
        return func.name
    params = []
    for p in proto.params:
        if isinstance(p.type, Void) and not p.name:
            params.append("...")
        else:
            params.append(f"{_type_only(p.type)} {p.name}".rstrip())
    return f"{_type_only(proto.return_type)} {func.name}({', '.join(params)})"


def _type_only(t: Type, depth: int = 0) -> str:
    """A type's name in C, without a declarator (pointers as ``T *``)."""
    # on use: a subcommand loads only what it needs
    from ..btf import (
        Array,
        Const,
        Enum,
        FuncProto,
        Fwd,
        Pointer,
        Restrict,
        Struct,
        TypeTag,
        Union,
        Void,
        Volatile,
    )

    if depth > 32:
        return "..."
    if isinstance(t, Void):
        return "void"
    if isinstance(t, Pointer):
        return f"{_type_only(t.type, depth + 1)} *"
    if isinstance(t, Const):
        return f"const {_type_only(t.type, depth + 1)}"
    if isinstance(t, Volatile):
        return f"volatile {_type_only(t.type, depth + 1)}"
    if isinstance(t, Restrict):
        return f"{_type_only(t.type, depth + 1)} restrict"
    if isinstance(t, TypeTag):
        return _type_only(t.type, depth + 1)
    if isinstance(t, Array):
        return f"{_type_only(t.type, depth + 1)}[{t.nelems}]"
    if isinstance(t, Struct):
        return f"struct {t.name}" if t.name else "struct"
    if isinstance(t, Union):
        return f"union {t.name}" if t.name else "union"
    if isinstance(t, Enum):
        return f"enum {t.name}" if t.name else "enum"
    if isinstance(t, Fwd):
        return f"{'union' if t.union else 'struct'} {t.name}"
    if isinstance(t, FuncProto):
        return "fn"
    return t.name

