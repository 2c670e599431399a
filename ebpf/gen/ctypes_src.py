"""BTF types as Python source: ctypes classes and `enum.IntEnum`s for `ebpf gen`.

The layouts are those of `ebpf.btf.to_ctypes`, by construction: each struct or
union is converted with `to_ctypes` and the resulting class is written out field
by field (`_pack_`, `_fields_` with bitfields as ``(name, ctype, bits)``,
`_anonymous_`, padding fields, and the properties `to_ctypes` uses for bitfields
that ctypes cannot place). The generated source only names the classes
(CapWords of the C name) and adds docstrings and type annotations.

    em = TypeEmitter(reserved={"Execsnoop", "ExecsnoopSpec"})
    em.add(spec.type_by_name("event"))
    em.class_name(spec.type_by_name("event"))   # "Event"
    em.source()                                 # the class definitions

Naming: a named struct/union/enum `foo_bar` becomes `FooBar`; an anonymous one
reached through a typedef takes the typedef's name; other anonymous ones are
named after where they are used (`Parent_member`, `Parent_anon0`, or the hint
given to `add`). Clashes get a trailing underscore.
"""

from __future__ import annotations

import ctypes
import enum
import json
import keyword
import re
import textwrap
from typing import Any

from ..btf import values
from ..btf.ctypes_conv import to_ctypes
from ..btf.types import Array, Composite, Enum, Member, Type, Typedef, Union, skip_typedefs
from ..errors import BTFError

_SIMPLE: dict[Any, tuple[str, str]] = {}   # ctype -> (source, annotation)
for _name in ("c_int8", "c_uint8", "c_int16", "c_uint16", "c_int32", "c_uint32",
              "c_int64", "c_uint64"):
    _SIMPLE.setdefault(getattr(ctypes, _name), (f"ctypes.{_name}", "int"))
_SIMPLE[ctypes.c_bool] = ("ctypes.c_bool", "bool")
_SIMPLE[ctypes.c_char] = ("ctypes.c_char", "bytes")
_SIMPLE[ctypes.c_float] = ("ctypes.c_float", "float")
_SIMPLE[ctypes.c_double] = ("ctypes.c_double", "float")
_SIMPLE.setdefault(ctypes.c_longdouble, ("ctypes.c_longdouble", "float"))

# names a class body of a generated ctypes class must not shadow for mypy
_BUILTIN_ANNOTATIONS = ("int", "bool", "bytes", "float")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
WIDTH = 88  # generated lines stay within ruff's default line length


def cap_words(name: str) -> str:
    """`foo_bar` -> `FooBar` (a valid identifier; empty for an empty name)."""
    parts = [p for p in re.split(r"[^A-Za-z0-9]+", name) if p]
    out = "".join(p[0].upper() + p[1:] for p in parts)
    if out and out[0].isdigit():
        out = "T" + out
    return out


def identifier(name: str) -> str:
    """`name` made a plain Python identifier: leading punctuation is dropped (`.rodata`
    -> `rodata`), other characters become `_`, a leading
    digit gets a `_` before it, leading double underscores (which Python mangles
    in class bodies) become one, keywords get a trailing `_`."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", re.sub(r"^[^A-Za-z0-9_]+", "", name)) or "_"
    if out[0].isdigit():
        out = "_" + out
    if out.startswith("__"):
        out = "_" + out.lstrip("_")
    if keyword.iskeyword(out) or out == "_":
        out += "_"
    return out


def unique(name: str, taken: set[str]) -> str:
    """`name`, with trailing underscores until it is not in `taken` (then added)."""
    while name in taken:
        name += "_"
    taken.add(name)
    return name


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def _escape_line(line: str) -> str:
    """One line of docstring text as source. Names in it come from the object: escape
    backslashes, control characters, and each quote that another quote or the end of
    the line follows (so no run of quotes can close the string)."""
    line = line.replace("\\", "\\\\")
    line = _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", line)
    return re.sub(r'"(?=\s*"|\s*$)', r'\\"', line)


def docstring(text: str, indent: str) -> list[str]:
    """A triple-quoted docstring of `text` (paragraphs split on blank lines), wrapped to
    the line width, as source lines at `indent`."""
    width = WIDTH - len(indent)
    lines: list[str] = []
    for i, para in enumerate(text.strip().split("\n\n")):
        if i:
            lines.append("")
        for raw in para.splitlines():
            if raw.startswith("  "):     # preformatted (a member list): keep, wrap long ones
                lines.extend(textwrap.wrap(raw, width - 3, subsequent_indent="      ",
                                           break_long_words=True) or [""])
            else:
                lines.extend(textwrap.wrap(raw, width - 3, break_long_words=True) or [""])
    lines = [_escape_line(ln) for ln in lines]   # after wrapping: escapes stay whole
    flat = _escape_line(" ".join(text.split()))
    if "\n" not in text.strip() and len(flat) + 6 <= width:
        return [f'{indent}"""{flat}"""']
    if len(lines) == 1 and len(lines[0]) + 6 <= width:
        return [f'{indent}"""{lines[0]}"""']
    out = [f'{indent}"""{lines[0]}']
    out.extend(f"{indent}{ln}" if ln else "" for ln in lines[1:])
    out.append(f'{indent}"""')
    return out


def quote(s: str) -> str:
    """A double-quoted Python string literal of `s`."""
    return json.dumps(s)


def tuple_src(items: Any) -> str:
    """A tuple literal of strings, double-quoted."""
    items = list(items)
    if len(items) == 1:
        return f"({quote(items[0])},)"
    return "(" + ", ".join(quote(i) for i in items) + ")"


def _c_decl(m: Member) -> str:
    desc = values.describe(m.type)
    if not m.name:
        return f"{desc} (anonymous)"
    inner = desc.split("[", 1)
    decl = f"{inner[0]} {m.name}" + (f"[{inner[1]}" if len(inner) > 1 else "")
    return decl + (f" : {m.bitfield_size}" if m.bitfield_size else "")


class _ClassInfo:
    """A ctypes class to write out: its name and where it came from."""

    def __init__(self, cls: Any, name: str, btf_type: Composite | None, doc: str) -> None:
        self.cls = cls
        self.name = name
        self.btf_type = btf_type
        self.doc = doc
        self.annotations: dict[str, str] = {}
        self.exprs: list[tuple[str, str, int | None]] = []   # (field, ctype source, bits)


class TypeEmitter:
    """Collects BTF types (structs, unions, enums and everything they hold by value)
    and writes them as Python source."""

    def __init__(self, reserved: set[str] | None = None) -> None:
        self.taken: set[str] = set(reserved or ())
        self._pending: list[tuple[Type, str]] = []      # (composite or enum, name hint)
        self._seen: set[int] = set()
        self._names: dict[int, str] = {}                 # id(BTF type) -> class name
        self._types: dict[int, Type] = {}                # keeps ids alive
        self._by_class: dict[int, Composite] = {}        # id(ctypes class) -> BTF type
        self._classes: dict[int, _ClassInfo] = {}        # id(ctypes class) -> info
        self._order: list[_ClassInfo] = []
        self._enums: list[tuple[str, Enum]] = []
        self.needs_bits = False
        self.skipped: list[str] = []

    # -- collecting --------------------------------------------------------------------

    def add(self, t: Type, hint: str = "") -> None:
        """Add `t` (any type: what it holds by value is collected; pointers end the
        walk) with `hint` naming it when it is an anonymous struct/union."""
        self._walk(t, hint, 0)

    def _walk(self, t: Type, hint: str, depth: int) -> None:
        if depth > 64:
            return
        typedef = ""
        cur = t
        for _ in range(64):
            inner = skip_typedefs(cur)
            if inner is cur:
                break
            if isinstance(cur, Typedef) and not typedef:
                typedef = cur.name
            cur = getattr(cur, "type", inner)
        cur = skip_typedefs(cur)
        if isinstance(cur, Array):
            self._walk(cur.type, hint, depth + 1)
            return
        if not isinstance(cur, (Composite, Enum)) or id(cur) in self._seen:
            return
        if isinstance(cur, Enum) and not (cur.name or typedef):
            return
        self._seen.add(id(cur))
        self._types[id(cur)] = cur
        name = cur.name or typedef
        self._pending.append((cur, cap_words(name) if name else hint))
        if isinstance(cur, Composite):
            parent = cap_words(name) if name else hint
            nanon = 0
            for m in cur.members:
                if m.name:
                    sub = f"{parent}_{identifier(m.name)}"
                else:
                    sub = f"{parent}_anon{nanon}"
                    nanon += 1
                self._walk(m.type, sub, depth + 1)

    def _assign_names(self) -> None:
        pending, self._pending = self._pending, []
        # named types first, so that they get their own names on a clash
        for t, hint in sorted(pending, key=lambda p: not p[0].name):
            base = hint or ("Anon" if isinstance(skip_typedefs(t), Composite) else "")
            if not base:
                continue
            self._names[id(t)] = unique(base, self.taken)
            if isinstance(t, Enum):
                self._enums.append((self._names[id(t)], t))
        for t, _ in pending:
            if isinstance(t, Composite) and id(t) in self._names:
                try:
                    self._by_class[id(to_ctypes(t))] = t
                except BTFError as e:      # no ctypes layout: no class (the reason kept)
                    self.skipped.append(f"{t.type_name}: {e}")
                    del self._names[id(t)]

    def class_name(self, t: Type) -> str | None:
        """The generated class of struct/union/enum `t` (typedefs and qualifiers
        skipped), None when it has none."""
        self._assign_names()
        return self._names.get(id(skip_typedefs(t)))

    # -- writing -----------------------------------------------------------------------

    def source(self) -> str:
        """The source of every enum and ctypes class, dependencies first."""
        self._assign_names()
        out: list[str] = []
        for name, e in self._enums:
            out.extend(self._enum_source(name, e))
        for t in list(self._types.values()):
            if isinstance(t, Composite) and id(t) in self._names:
                self._class_of(to_ctypes(t), "")
        for info in self._order:
            out.extend(self._class_source(info))
        return "\n".join(out)

    def class_names(self) -> list[str]:
        """The names of every generated class (enums, then ctypes classes)."""
        self.source()
        return [n for n, _ in self._enums] + [i.name for i in self._order]

    def _enum_source(self, name: str, e: Enum) -> list[str]:
        lines = ["", "", f"class {name}(enum.IntEnum):"]
        kind = f"enum {e.name}" if e.name else f"the enum typedef'd {name}"
        lines += docstring(f"``{kind}`` ({e.size} bytes{', signed' if e.signed else ''}), "
                           "from the object's BTF. Members of that type are stored as "
                           "ints; wrap them in this class to get a name.", "    ")
        taken = set(dir(enum.IntEnum)) | set(dir(int)) | {"name", "value", "mro"}
        body = []
        for v in e.values:
            n = identifier(v.name)
            if n.startswith("_"):
                n = n.lstrip("_") or "V"
                if n[0].isdigit():
                    n = "V" + n
            body.append(f"    {unique(n, taken)} = {v.value}")
        if body:
            lines.append("")
            lines += body
        return lines

    def _expr(self, ct: Any, owner: str, field: str) -> str:
        """The source expression of ctypes type `ct` (a field of class `owner`)."""
        simple = _SIMPLE.get(ct)
        if simple is not None:
            return simple[0]
        if isinstance(ct, type) and issubclass(ct, ctypes.Array):
            elem = self._expr(ct._type_, owner, field)
            if " " in elem:
                elem = f"({elem})"
            return f"{elem} * {ct._length_}"
        if isinstance(ct, type) and issubclass(ct, (ctypes.Structure, ctypes.Union)):
            return self._class_of(ct, f"{owner}_{field.lstrip('_')}").name
        raise ValueError(f"ebpf gen: no source for ctypes type {ct!r}")

    def _annotation(self, ct: Any, owner: str, field: str, shadowed: set[str]) -> str | None:
        simple = _SIMPLE.get(ct)
        if simple is not None:
            ann = simple[1]
            return f"builtins.{ann}" if ann in shadowed else ann
        if isinstance(ct, type) and issubclass(ct, ctypes.Array):
            elem_t: Any = ct._type_
            if elem_t is ctypes.c_char:
                return "builtins.bytes" if "bytes" in shadowed else "bytes"
            if "ctypes" in shadowed:
                return None
            elem = self._elem_annotation(ct._type_, owner, field)
            return None if elem is None or elem in shadowed else f"ctypes.Array[{elem}]"
        if isinstance(ct, type) and issubclass(ct, (ctypes.Structure, ctypes.Union)):
            name = self._class_of(ct, f"{owner}_{field.lstrip('_')}").name
            return None if name in shadowed else name
        return None

    def _elem_annotation(self, ct: Any, owner: str, field: str) -> str | None:
        simple = _SIMPLE.get(ct)
        if simple is not None:
            return simple[0]
        if isinstance(ct, type) and issubclass(ct, ctypes.Array):
            elem = self._elem_annotation(ct._type_, owner, field)
            return None if elem is None else f"ctypes.Array[{elem}]"
        if isinstance(ct, type) and issubclass(ct, (ctypes.Structure, ctypes.Union)):
            return self._class_of(ct, f"{owner}_{field.lstrip('_')}").name
        return None

    def _class_of(self, cls: Any, hint: str) -> _ClassInfo:
        """The info of ctypes class `cls`, writing it (and its dependencies) first."""
        info = self._classes.get(id(cls))
        if info is not None:
            return info
        t = self._by_class.get(id(cls))
        if t is not None:
            name = self._names[id(t)]
            kind = "union" if isinstance(t, Union) else "struct"
            what = f"``{kind} {t.name}``" if t.name else f"An anonymous {kind}"
            doc = f"{what} ({t.size} bytes), from the object's BTF."
        else:  # a helper class of to_ctypes (a union member placed in a struct)
            name = unique(hint if hint.startswith("_") else "_" + hint, self.taken)
            doc = "A member of a union, laid out at its offset (part of its union's layout)."
        info = _ClassInfo(cls, name, t, doc)
        self._classes[id(cls)] = info
        member_names = {f[0] for f in cls._fields_} | set(getattr(cls, "_btf_props_", ()))
        shadowed = member_names & {*_BUILTIN_ANNOTATIONS, "ctypes", *self.taken}
        props = set(getattr(cls, "_btf_props_", ()))
        anon = set(getattr(cls, "_anonymous_", ()))
        for f in cls._fields_:
            fname, fct = f[0], f[1]
            expr = self._expr(fct, name, fname)
            info.exprs.append((fname, expr, f[2] if len(f) > 2 else None))
            if fname in anon:
                sub = self._classes.get(id(fct))
                if sub is not None:
                    for k, v in sub.annotations.items():
                        if k not in member_names and k not in props:
                            info.annotations.setdefault(k, v)
                continue
            if (fname.startswith("_") or fname in props or not _IDENT.match(fname)
                    or fname in ("l", "O", "I")     # ruff E741 (still usable, untyped)
                    or keyword.iskeyword(fname) or hasattr(ctypes.Structure, fname)):
                continue
            ann = self._annotation(fct, name, fname, shadowed)
            if ann is not None:
                info.annotations[fname] = ann
        if t is not None and isinstance(t, Composite):
            listing = "\n".join(
                f"  {m.offset_bits // 8:>5}"
                + (f".{m.offset_bits % 8}" if m.offset_bits % 8 or m.bitfield_size else "")
                + f"  {_c_decl(m)}" for m in t.members)
            if listing:
                info.doc += "\n\nMembers (byte offset, C declaration):\n" + listing
        self._order.append(info)
        return info

    def _class_source(self, info: _ClassInfo) -> list[str]:
        cls = info.cls
        base = "ctypes.Union" if issubclass(cls, ctypes.Union) else "ctypes.Structure"
        lines = ["", "", f"class {info.name}({base}):"]
        lines += docstring(info.doc, "    ")
        lines += ["", "    _pack_ = 1", '    _layout_ = "ms"']
        if info.btf_type is not None:
            lines.append(f"    _btf_type_ = {quote(info.btf_type.type_name)}")
        if getattr(cls, "_anonymous_", None):
            lines.append(f"    _anonymous_ = {tuple_src(cls._anonymous_)}")
        members = tuple(getattr(cls, "_btf_members_", ()))
        if len(tuple_src(members)) < 60:
            lines.append(f"    _btf_members_ = {tuple_src(members)}")
        else:
            lines.append("    _btf_members_ = (")
            lines.extend(f"        {quote(m)}," for m in members)
            lines.append("    )")
        fields = []
        for fname, expr, bits in info.exprs:
            extra = f", {bits}" if bits is not None else ""
            fields.append(f"        ({quote(fname)}, {expr}{extra}),")
        if fields:
            lines += ["    _fields_ = [", *fields, "    ]"]
        else:
            lines.append("    _fields_ = []")
        if info.annotations:
            lines.append("")
            lines += [f"    {k}: {v}" for k, v in info.annotations.items()]
        bitprops: dict[str, tuple[int, int, int, int, bool]] = getattr(cls, "_btf_bitprops_", {})
        forwards: dict[str, str] = getattr(cls, "_btf_forwards_", {})
        for pname in getattr(cls, "_btf_props_", ()):
            if not _IDENT.match(pname) or keyword.iskeyword(pname):
                # BTF member names are C identifiers (the kernel refuses others too)
                raise BTFError(f"ebpf gen: bitfield {pname!r} of {cls.__name__} is not an "
                               "identifier")
            if pname in bitprops:
                self.needs_bits = True
                byte_off, nbytes, bit_off, nbits, signed = bitprops[pname]
                args = f"{byte_off}, {nbytes}, {bit_off}, {nbits}, {signed}"
                doc = (f"Bitfield: {nbits} bit{'s' if nbits > 1 else ''} at bit "
                       f"{8 * byte_off + bit_off}"
                       f"{' (signed)' if signed else ''}.")
                get_body = [f"        return _get_bits(self, {args})"]
                set_body = [f"        _set_bits(self, {args}, value)"]
            elif pname in forwards:
                anon = forwards[pname]
                doc = f"``{pname}`` of the anonymous member ``{anon}``."
                get_body = [f"        value: int = self.{anon}.{pname}", "        return value"]
                set_body = [f"        self.{anon}.{pname} = value"]
            else:
                raise ValueError(f"ebpf gen: property {pname!r} of {info.name} is unknown")
            lines += ["", "    @property", f"    def {pname}(self) -> int:"]
            lines += docstring(doc, "        ")
            lines += get_body
            lines += ["", f"    @{pname}.setter", f"    def {pname}(self, value: int) -> None:"]
            lines += set_body
        return lines


BITS_HELPERS = '''

def _get_bits(obj: ctypes.Structure | ctypes.Union, byte_off: int, nbytes: int,
              bit_off: int, bits: int, signed: bool) -> int:
    """A bitfield that ctypes cannot place, read from the bytes holding it."""
    raw = ctypes.string_at(ctypes.addressof(obj) + byte_off, nbytes)
    whole = int.from_bytes(raw, sys.byteorder)
    shift = bit_off if sys.byteorder == "little" else 8 * nbytes - bit_off - bits
    value = (whole >> shift) & ((1 << bits) - 1)
    if signed and value >> (bits - 1):
        value -= 1 << bits
    return value


def _set_bits(obj: ctypes.Structure | ctypes.Union, byte_off: int, nbytes: int,
              bit_off: int, bits: int, signed: bool, value: int) -> None:
    """Write a bitfield that ctypes cannot place (`signed` as for `_get_bits`)."""
    addr = ctypes.addressof(obj) + byte_off
    whole = int.from_bytes(ctypes.string_at(addr, nbytes), sys.byteorder)
    shift = bit_off if sys.byteorder == "little" else 8 * nbytes - bit_off - bits
    mask = (1 << bits) - 1
    whole = (whole & ~(mask << shift)) | ((int(value) & mask) << shift)
    ctypes.memmove(addr, whole.to_bytes(nbytes, sys.byteorder), nbytes)
'''

__all__ = ["BITS_HELPERS", "TypeEmitter", "cap_words", "docstring", "identifier", "quote",
           "tuple_src", "unique"]
