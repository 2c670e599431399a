"""Print BTF as a compilable C header, like `bpftool btf dump file ... format c`.

    open("vmlinux.h", "w").write(btf.dump_c(btf.load_kernel_spec()))

The algorithm is libbpf's `btf_dump`: types are ordered topologically, where a
type embedded by value (or an anonymous one, defined inline) must be defined
before its container while a named type reached through a pointer only needs a
forward declaration; struct layouts are reproduced with explicit padding
(`long: 64;`) and `__attribute__((packed))` where natural alignment would not
give the BTF offsets; names used by several different types get `___2`,
`___3`, ... suffixes so that the header compiles.

Malformed BTF (reference cycles through typedefs or qualifiers, types nested
deeper than C compilers accept, struct cycles by value) raises BTFError.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import BTFError
from .spec import Spec
from .types import (
    Array,
    Composite,
    Const,
    Datasec,
    Enum,
    Float,
    FuncProto,
    Fwd,
    Int,
    Pointer,
    Restrict,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Var,
    Void,
    Volatile,
)

HEADER = """#ifndef __VMLINUX_H__
#define __VMLINUX_H__

#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)
#endif

"""
FOOTER = """#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute pop
#endif

#endif /* __VMLINUX_H__ */
"""

_MAX_DEPTH = 256  # nesting of declarations; far beyond anything a real header has
_PTR_SIZE = 8
_MODS = (Volatile, Const, Restrict, TypeTag)
_MISSING_BASE_TYPES = {"__Poly8_t": "unsigned char", "__Poly16_t": "unsigned short",
                       "__Poly64_t": "unsigned long long", "__Poly128_t": "unsigned __int128"}

# order / emit states
_NOT, _DOING, _DONE = 0, 1, 2


def dump_c(spec: Spec, types: Iterable[Type] | None = None, *, header: bool = True) -> str:
    """A C header defining `types` (default: every type of `spec`) and everything
    they need, in an order that compiles. `header=False` leaves out the include
    guard and the `preserve_access_index` pragma."""
    d = _Dumper(list(spec))
    for t in (d.all if types is None else types):
        d.dump_type(t)
    body = "".join(d.out)
    return HEADER + body + FOOTER if header else body


class _Dumper:
    def __init__(self, all_types: list[Type]) -> None:
        self.all = all_types
        self.out: list[str] = []
        self.order_state: dict[int, int] = {}
        self.emit_state: dict[int, int] = {}
        self.fwd_emitted: set[int] = set()
        self.referenced: set[int] = set()
        self.names: dict[int, str] = {}
        self.type_names: dict[str, int] = {}
        self.ident_names: dict[str, int] = {}
        self.queue: list[Type] = []
        for t in all_types:
            self._mark_referenced(t)

    def _mark_referenced(self, t: Type) -> None:
        if isinstance(t, (Int, Enum, Fwd, Float, Void)):
            return
        try:
            for r in t.refs():
                self.referenced.add(id(r))
        except BTFError:
            pass

    def p(self, s: str) -> None:
        self.out.append(s)

    # -- ordering -------------------------------------------------------------------

    def dump_type(self, t: Type) -> None:
        self.queue = []
        self._order(t, False, 0)
        for q in self.queue:
            self._emit(q, None, 0)

    def _order(self, t: Type, through_ptr: bool, depth: int) -> int:
        """1 if `t` is part of a strong link (must be defined first), else 0."""
        if depth > _MAX_DEPTH:
            raise BTFError(f"type references nest too deeply at {t!r}")
        key = id(t)
        state = self.order_state.get(key, _NOT)
        if state == _DONE or isinstance(t, Void):
            return 1
        if state == _DOING:
            if isinstance(t, Composite) and through_ptr and t.name:
                return 0  # a loop, resolvable by a forward declaration
            raise BTFError(f"unsatisfiable type cycle at {t!r}")
        if isinstance(t, (Int, Float)):
            self.order_state[key] = _DONE
            return 0
        if isinstance(t, Pointer):
            r = self._order(t.type, True, depth + 1)
            self.order_state[key] = _DONE
            return r
        if isinstance(t, Array):
            return self._order(t.type, False, depth + 1)
        if isinstance(t, Composite):
            if through_ptr and t.name:
                return 0
            self.order_state[key] = _DOING
            for m in t.members:
                self._order(m.type, False, depth + 1)
            if t.name:
                self.queue.append(t)
            self.order_state[key] = _DONE
            return 1
        if isinstance(t, (Enum, Fwd)):
            if t.name or key not in self.referenced:
                self.queue.append(t)
            self.order_state[key] = _DONE
            return 1
        if isinstance(t, Typedef):
            strong = self._order(t.type, through_ptr, depth + 1)
            if through_ptr and not strong:
                return 0
            self.queue.append(t)
            self.order_state[key] = _DONE
            return 1
        if isinstance(t, _MODS):
            return self._order(t.type, through_ptr, depth + 1)
        if isinstance(t, FuncProto):
            strong = self._order(t.return_type, through_ptr, depth + 1) > 0
            for prm in t.params:
                if self._order(prm.type, through_ptr, depth + 1) > 0:
                    strong = True
            return int(strong)
        # Func, Var, Datasec, DeclTag: nothing to define
        self.order_state[key] = _DONE
        return 0

    # -- emitting -------------------------------------------------------------------

    def _emit(self, t: Type, cont: Type | None, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise BTFError(f"type references nest too deeply at {t!r}")
        key = id(t)
        state = self.emit_state.get(key, _NOT)
        if state == _DONE or isinstance(t, Void):
            return
        top_level = cont is None
        if state == _DOING:
            if key in self.fwd_emitted:
                return
            if isinstance(t, Composite):
                if t is cont or not t.name:
                    return  # self reference, or an anonymous loop
                self.p(self._struct_fwd(t) + ";\n\n")
                self.fwd_emitted.add(key)
            elif isinstance(t, Typedef):
                if not self._blacklisted(t):
                    self.p(self._typedef_def(t, 0) + ";\n\n")
                self.fwd_emitted.add(key)
            return
        if isinstance(t, Int):
            alias = _MISSING_BASE_TYPES.get(t.name)
            if alias is not None:
                self.p(f"typedef {alias} {t.name};\n\n")
            self.emit_state[key] = _DONE
        elif isinstance(t, Enum):
            if top_level:
                self.p(self._enum_def(t, 0) + ";\n\n")
            self.emit_state[key] = _DONE
        elif isinstance(t, (Pointer, *_MODS)):
            self._emit(t.type, cont, depth + 1)
        elif isinstance(t, Array):
            self._emit(t.type, cont, depth + 1)
        elif isinstance(t, Fwd):
            self.p(self._fwd_def(t) + ";\n\n")
            self.emit_state[key] = _DONE
        elif isinstance(t, Typedef):
            self.emit_state[key] = _DOING
            self._emit(t.type, t, depth + 1)
            if key not in self.fwd_emitted and not self._blacklisted(t):
                self.p(self._typedef_def(t, 0) + ";\n\n")
            self.emit_state[key] = _DONE
        elif isinstance(t, Composite):
            self.emit_state[key] = _DOING
            if top_level or not t.name:
                new_cont = cont if not t.name else t
                for m in t.members:
                    self._emit(m.type, new_cont, depth + 1)
            elif key not in self.fwd_emitted and t is not cont:
                self.p(self._struct_fwd(t) + ";\n\n")
                self.fwd_emitted.add(key)
            if top_level:
                self.p(self._struct_def(t, 0, 0) + ";\n\n")
                self.emit_state[key] = _DONE
            else:
                self.emit_state[key] = _NOT
        elif isinstance(t, FuncProto):
            self._emit(t.return_type, cont, depth + 1)
            for prm in t.params:
                self._emit(prm.type, cont, depth + 1)

    @staticmethod
    def _blacklisted(t: Type) -> bool:
        return t.name == "__builtin_va_list"

    # -- names --------------------------------------------------------------------

    def _resolve_name(self, t: Type, names: dict[str, int]) -> str:
        if not t.name:
            return ""
        cached = self.names.get(id(t))
        if cached is not None:
            return cached
        name = t.name
        if not (isinstance(t, Fwd) or (isinstance(t, Enum) and not t.values)):
            n = names.get(name, 0) + 1
            names[name] = n
            if n > 1:
                name = f"{name}___{n}"
        self.names[id(t)] = name
        return name

    def type_name(self, t: Type) -> str:
        return self._resolve_name(t, self.type_names)

    def ident_name(self, t: Type) -> str:
        return self._resolve_name(t, self.ident_names)

    def _dup_ident(self, name: str) -> int:
        n = self.ident_names.get(name, 0) + 1
        self.ident_names[name] = n
        return n

    # -- definitions ----------------------------------------------------------------

    def _struct_fwd(self, t: Composite) -> str:
        kw = "struct" if isinstance(t, Struct) else "union"
        name = self.type_name(t)
        return f"{kw} {name}" if name else kw

    def _fwd_def(self, t: Fwd) -> str:
        return f"{'union' if t.union else 'struct'} {self.type_name(t)}"

    def _typedef_def(self, t: Typedef, lvl: int) -> str:
        name = self.ident_name(t)
        if isinstance(t.type, Void) and name == "__gnuc_va_list":
            return "typedef __builtin_va_list __gnuc_va_list"
        return "typedef " + self._type_decl(t.type, name, lvl, 0)

    def _enum_def(self, t: Enum, lvl: int) -> str:
        name = self.type_name(t)
        s = f"enum {name}" if name else "enum"
        if not t.values:
            return s
        parts = [s, " {"]
        pad = "\t" * (lvl + 1)
        for v in t.values:
            dup = self._dup_ident(v.name)
            vname = f"{v.name}___{dup}" if dup > 1 else v.name
            if t.is64:
                val = f"{v.value}LL" if t.signed else f"{v.value & 0xFFFFFFFFFFFFFFFF}ULL"
            else:
                val = str(v.value if t.signed else v.value & 0xFFFFFFFF)
            parts.append(f"\n{pad}{vname} = {val},")
        parts.append("\n" + "\t" * lvl + "}")
        if t.size == 1:
            parts.append(" __attribute__((mode(byte)))")
        elif t.size == 8:
            word = not t.is64 or not any((v.value & 0xFFFFFFFFFFFFFFFF) >> 32 for v in t.values)
            if word:
                parts.append(" __attribute__((mode(word)))")
        return "".join(parts)

    def _struct_def(self, t: Composite, lvl: int, depth: int) -> str:
        if depth > _MAX_DEPTH:
            raise BTFError(f"anonymous types nest too deeply at {t!r}")
        is_struct = isinstance(t, Struct)
        packed = is_struct and _is_packed(t)
        parts = [self._struct_fwd(t), " {"]
        pad = "\t" * (lvl + 1)
        off = 0
        prev_bitfield = False
        for m in t.members:
            m_sz = m.bitfield_size
            m_off = m.offset_bits
            m_align = 1 if packed else _align_of(m.type)
            in_bitfield = prev_bitfield and m_sz != 0
            parts.append(_bit_padding(off, m_off, m_align, in_bitfield, lvl + 1))
            parts.append(f"\n{pad}")
            parts.append(self._type_decl(m.type, m.name, lvl + 1, depth + 1))
            if m_sz:
                parts.append(f": {m_sz}")
                off = m_off + m_sz
                prev_bitfield = True
            else:
                off = m_off + 8 * _resolve_size(m.type)
                prev_bitfield = False
            parts.append(";")
        if is_struct:
            parts.append(_bit_padding(off, 8 * t.size, _align_of(t), False, lvl + 1))
        if t.members or t.size:
            parts.append("\n" + "\t" * lvl + "}")
        else:
            parts.append("}")
        if packed:
            parts.append(" __attribute__((packed))")
        return "".join(parts)

    # -- declarations ----------------------------------------------------------------

    def _type_decl(self, t: Type, fname: str, lvl: int, depth: int) -> str:
        """`t` declared with identifier `fname` (possibly ""), in C syntax."""
        if depth > _MAX_DEPTH:
            raise BTFError(f"declarations nest too deeply at {t!r}")
        stack: list[Type] = []
        cur = t
        for _ in range(_MAX_DEPTH):
            stack.append(cur)
            if isinstance(cur, Void):
                break
            if isinstance(cur, (Pointer, *_MODS)):
                cur = cur.type
            elif isinstance(cur, FuncProto):
                cur = cur.return_type
            elif isinstance(cur, Array):
                cur = cur.type
            else:
                break
        else:
            raise BTFError(f"declaration of {fname or 'a type'} has a reference cycle")
        out: list[str] = []
        self._type_chain(stack, fname, lvl, depth, out)
        return "".join(out)

    @staticmethod
    def _mods(stack: list[Type], out: list[str]) -> None:
        while stack:
            top = stack[-1]
            if isinstance(top, Volatile):
                out.append("volatile ")
            elif isinstance(top, Const):
                out.append("const ")
            elif isinstance(top, Restrict):
                out.append("restrict ")
            else:
                return
            stack.pop()

    @staticmethod
    def _drop_mods(stack: list[Type]) -> None:
        while stack and isinstance(stack[-1], _MODS):
            stack.pop()

    @staticmethod
    def _name(fname: str, last_was_ptr: bool, out: list[str]) -> None:
        out.append((" " if fname and not last_was_ptr else "") + fname)

    def _type_chain(self, stack: list[Type], fname: str, lvl: int, depth: int,
                    out: list[str]) -> None:
        if depth > _MAX_DEPTH:
            raise BTFError("declarations nest too deeply")
        last_was_ptr = True
        while stack:
            t = stack.pop()
            if isinstance(t, Void):
                self._mods(stack, out)
                out.append("void")
                last_was_ptr = False
                continue
            if isinstance(t, (Int, Float)):
                self._mods(stack, out)
                out.append(t.name)
            elif isinstance(t, Composite):
                self._mods(stack, out)
                if not t.name:
                    out.append(self._struct_def(t, lvl, depth + 1))
                else:
                    out.append(self._struct_fwd(t))
            elif isinstance(t, Enum):
                self._mods(stack, out)
                out.append(self._enum_def(t, lvl) if not t.name else f"enum {self.type_name(t)}")
            elif isinstance(t, Fwd):
                self._mods(stack, out)
                out.append(self._fwd_def(t))
            elif isinstance(t, Typedef):
                self._mods(stack, out)
                out.append(self.ident_name(t))
            elif isinstance(t, Pointer):
                out.append("*" if last_was_ptr else " *")
            elif isinstance(t, Volatile):
                out.append(" volatile")
            elif isinstance(t, Const):
                out.append(" const")
            elif isinstance(t, Restrict):
                out.append(" restrict")
            elif isinstance(t, TypeTag):
                self._mods(stack, out)
                if t.attribute:
                    out.append(f" __attribute__(({t.name}))")
                else:
                    out.append(f' __attribute__((btf_type_tag("{t.name}")))')
            elif isinstance(t, Array):
                self._drop_mods(stack)
                if not stack:
                    self._name(fname, last_was_ptr, out)
                    out.append(f"[{t.nelems}]")
                    return
                multidim = isinstance(stack[-1], Array)
                if fname and not last_was_ptr:
                    out.append(" ")
                if not multidim:
                    out.append("(")
                self._type_chain(stack, fname, lvl, depth + 1, out)
                if not multidim:
                    out.append(")")
                out.append(f"[{t.nelems}]")
                return
            elif isinstance(t, FuncProto):
                self._drop_mods(stack)
                if stack:
                    out.append(" (")
                    self._type_chain(stack, fname, lvl, depth + 1, out)
                    out.append(")")
                else:
                    self._name(fname, last_was_ptr, out)
                out.append("(")
                params = t.params
                if not params or (len(params) == 1 and isinstance(params[0].type, Void)):
                    out.append("void)")
                    return
                for i, prm in enumerate(params):
                    if i:
                        out.append(", ")
                    if i == len(params) - 1 and isinstance(prm.type, Void):
                        out.append("...")
                        break
                    out.append(self._type_decl(prm.type, prm.name, lvl, depth + 1))
                out.append(")")
                return
            else:  # Func, Var, Datasec, DeclTag cannot appear in a declaration
                out.append(f"/* {type(t).__name__} {t.name} */ int")
            last_was_ptr = isinstance(t, Pointer)
        self._name(fname, last_was_ptr, out)


# -- layout helpers (libbpf's btf__align_of / btf__resolve_size) -------------------------


def _align_of(t: Type) -> int:
    for _ in range(_MAX_DEPTH):
        if isinstance(t, (Int, Enum, Float)):
            return max(1, min(_PTR_SIZE, t.size))
        if isinstance(t, Pointer):
            return _PTR_SIZE
        if isinstance(t, (Typedef, *_MODS)):
            t = t.type
            continue
        if isinstance(t, Array):
            t = t.type
            continue
        if isinstance(t, Composite):
            return _composite_align(t, 0)
        return 1
    raise BTFError(f"type reference cycle computing the alignment of {t!r}")


def _composite_align(t: Composite, depth: int) -> int:
    if depth > _MAX_DEPTH:
        raise BTFError(f"types nest too deeply computing the alignment of {t!r}")
    max_align = 1
    for m in t.members:
        inner = m.type
        for _ in range(_MAX_DEPTH):
            if isinstance(inner, (Typedef, *_MODS)):
                inner = inner.type
            elif isinstance(inner, Array):
                inner = inner.type
            else:
                break
        align = _composite_align(inner, depth + 1) if isinstance(inner, Composite) else \
            _align_of(inner)
        max_align = max(max_align, align)
        if not m.bitfield_size and m.offset_bits % (8 * align):
            return 1
    if t.size % max_align:
        return 1
    return max_align


def _is_packed(t: Composite) -> bool:
    max_align = 1
    for m in t.members:
        align = _align_of(m.type)
        if not m.bitfield_size and m.offset_bits % (8 * align):
            return True
        max_align = max(max_align, align)
    return t.size % max_align != 0


def _resolve_size(t: Type) -> int:
    n = 1
    for _ in range(_MAX_DEPTH):
        if isinstance(t, (Typedef, *_MODS, Var)):
            t = t.type
        elif isinstance(t, Array):
            n *= t.nelems
            t = t.type
        elif isinstance(t, Pointer):
            return n * _PTR_SIZE
        elif isinstance(t, (Int, Enum, Float, Composite, Datasec)):
            return n * t.size
        else:
            return 0
    raise BTFError(f"type reference cycle computing the size of {t!r}")


_PADS = (("long", 8 * _PTR_SIZE), ("int", 32), ("short", 16), ("char", 8))


def _roundup(x: int, y: int) -> int:
    return (x + y - 1) // y * y


_BIG_GAP = 1 << 20  # bits; bigger gaps become a char array, not 16k+ `long: 64;` lines


def _bit_padding(cur: int, nxt: int, next_align: int, in_bitfield: bool, lvl: int) -> str:
    if cur >= nxt:
        return ""
    if nxt - cur > _BIG_GAP:  # only in odd BTF: keep the output linear in the input
        start, end = _roundup(cur, 64), nxt // 64 * 64
        return (_bit_padding(cur, start, 8, in_bitfield, lvl)
                + f"\n{chr(9) * lvl}unsigned char __pad_{start // 8}[{(end - start) // 8}];"
                + _bit_padding(end, nxt, next_align, False, lvl))
    out = []
    pfx = "\t" * lvl
    pad_type, pad_bits, new_off = "char", 8, cur
    for name, bits in _PADS:
        pad_type, pad_bits = name, bits
        new_off = _roundup(cur, pad_bits)
        if new_off <= nxt:
            break
    if cur < new_off <= nxt:
        if (in_bitfield
                or (new_off == nxt and _roundup(cur, next_align * 8) != new_off)
                or (new_off != nxt and nxt - new_off <= new_off - cur)):
            out.append(f"\n{pfx}{pad_type}: {new_off - cur if in_bitfield else 0};")
        cur = new_off
    while cur != nxt:
        bits = min(nxt - cur, pad_bits)
        if bits == pad_bits:
            out.append(f"\n{pfx}{pad_type}: {pad_bits};")
            cur += bits
            continue
        for name, size in reversed(_PADS):
            if size < bits:
                continue
            out.append(f"\n{pfx}{name}: {bits};")
            cur += bits
            break
    return "".join(out)


__all__ = ["dump_c"]
