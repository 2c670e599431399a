"""`ebpf gen`: a typed, documented Python module for one BPF object (like bpf2go).

    source = ebpf.gen.generate("execsnoop.bpf.o")     # name "Execsnoop"
    open("execsnoop_bpf.py", "w").write(source)

The generated module needs only the standard library and `ebpf` at run time
and holds:

- the object itself (base64 of its zlib-compressed bytes, with its DWARF
  sections blanked: loading uses BTF, and zeros compress to nothing — a
  645 KB execsnoop object embeds in 20 KB instead of 330 KB), or with
  `embed=False` the name of the `.o` file to load from the module's directory
  (its SHA-256 is checked on load);
- `<Name>Spec`: wraps the `ebpf.CollectionSpec` (`.spec`); one property per
  global variable (`.rodata`, `.data`, `.bss` and custom sections): the getter
  is `VariableSpec.get()`, the setter `VariableSpec.set()`;
- `<Name>`: wraps a loaded `ebpf.Collection` (`.collection`): one property per
  program (`ebpf.Program`) and per map (`ebpf.Map`), live variables (read/write
  for writable sections, read-only for `.rodata`), `close()`, a context
  manager, `attach_all()`, and the classmethods `load_spec()` and
  `load(spec=None, **collection_kwargs)`;
- a `ctypes.Structure`/`ctypes.Union` class per struct/union the object's maps
  and variables use, laid out exactly as `ebpf.btf.to_ctypes` lays them out,
  and an `enum.IntEnum` per named enum they use.

Which types get a class: the key and value types of every map (and of inner
maps), the type of every global variable, and the type a global *pointer*
variable points to (the `const struct event *unused_event;` idiom that makes
clang keep a ring-buffer record type in the BTF), plus every struct, union and
enum those hold by value (members, array elements, typedefs; pointers are not
followed). Kernel types appear only when the object holds one by value.

Identifiers: names are made valid Python identifiers (`.rodata` ->
`rodata`, `.data.custom` -> `data_custom`, other characters -> `_`, a leading
double underscore -> one); a name that is a keyword, one of the class's own
attributes (`spec`, `copy`, `collection`, `close`, `load`, `load_spec`,
`attach_all`) or a name the module uses in annotations (`int`, `bytes`,
`ebpf`, generated class names, ...) gets a trailing underscore, as does the
second of two names that come out the same.
"""

from __future__ import annotations

import base64
import hashlib
import keyword
import os
import re
import zlib
from typing import TYPE_CHECKING

from .._sys.validate import path as _checked_path
from ..btf import values
from ..btf.types import (
    Array,
    Composite,
    Enum,
    Float,
    Int,
    IntEncoding,
    Pointer,
    Type,
    skip_typedefs,
)
from ..elf.parse import load_collection_spec
from ..errors import Error, InvalidArgumentError
from .ctypes_src import (
    BITS_HELPERS,
    TypeEmitter,
    cap_words,
    docstring,
    identifier,
    quote,
    unique,
)

if TYPE_CHECKING:
    from ..spec import CollectionSpec, MapSpec, ProgramSpec, VariableSpec

# names used in annotations and at class level of the wrapper classes
_ANNOTATION_NAMES = {"int", "bool", "bytes", "float", "str", "list", "dict", "Any",
                     "Sequence", "Mapping", "ebpf", "ctypes", "property", "classmethod",
                     "staticmethod", "builtins", "enum", "object", "type"}
_MODULE_NAMES = {"ctypes", "enum", "ebpf", "base64", "zlib", "os", "hashlib", "sys",
                 "builtins", "Any", "Sequence", "Mapping", "annotations"}
_SPEC_OWN = {"spec", "copy"}
# a docstring shows a variable's initial value (60 characters at most) only for values
# this small: decoding a large array just to find its repr too long costs seconds
_DOC_VALUE_BYTES = 64
_COLL_OWN = {"collection", "close", "load", "load_spec", "attach_all"}


def default_name(path: str) -> str:
    """The class name for an object file: `execsnoop.bpf.o` -> `Execsnoop`."""
    base = os.path.basename(path)
    for suffix in (".o", ".bpf", ".bpfel", ".bpfeb"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return cap_words(base) or "Bpf"


def generate(source: str | bytes | os.PathLike[str], *, name: str | None = None,
             embed: bool = True, filename: str | None = None) -> str:
    """The source of a Python module with typed bindings for a BPF object.

    `source` is the object's path or bytes. `name` is the class name (by default
    from the file name: `execsnoop.bpf.o` -> `Execsnoop`; required for bytes).
    With `embed=False` the module loads the object from `filename` (default: the
    source's file name) in its own directory instead of carrying it.

    Raises ELFError/BTFError for what is not a valid BPF object and
    InvalidArgumentError (a ValueError) for a bad `name` or path, or a missing
    `name`/`filename`. The source is always valid UTF-8: names that are not UTF-8 in
    the object appear as ``\\udcXX`` escapes.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        shown = filename or "<bytes>"
    else:
        path = _checked_path(source, "object file path")
        with open(path, "rb") as f:
            data = f.read()
        filename = filename or os.path.basename(path)
        shown = filename
        if name is None:
            name = default_name(path)
    if name is None:
        raise InvalidArgumentError("generate() needs a name for an object given as bytes")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) \
            or keyword.iskeyword(name):
        raise InvalidArgumentError(f"{name!r} is not a valid Python class name")
    if not embed and not filename:
        raise InvalidArgumentError("generate(embed=False) needs the object's file name")
    shown = re.sub(r"[^\x20-\x7e]", "?", shown)
    spec = load_collection_spec(data)
    source = _Generator(spec, data, name, shown, filename if not embed else None).module()
    # Names from the ELF object are decoded with surrogateescape: a name that is not UTF-8
    # holds lone surrogates, which no UTF-8 file can hold. String literals are already
    # ASCII escapes (`quote`); in docstrings and comments the escape reads the same.
    return source.encode("utf-8", "backslashreplace").decode("utf-8")


class _Generator:
    def __init__(self, spec: CollectionSpec, data: bytes, name: str, shown: str,
                 filename: str | None) -> None:
        self.spec = spec
        self.data = data
        self.name = name
        self.spec_name = name + "Spec"
        self.shown = shown
        self.filename = filename
        self.imports: set[str] = set()
        reserved = {*_MODULE_NAMES, name, self.spec_name}
        self.types = TypeEmitter(reserved)
        self._collect_types()

    # -- types -------------------------------------------------------------------------

    def _collect_types(self) -> None:
        for mname, m in self.spec.maps.items():
            if m.value is not None and mname in self._data_maps():
                continue  # a data section: its variables are added below
            for ms, what in ((m, ""), (m.inner_map, "Inner")):
                if ms is None:
                    continue
                base = cap_words(mname) + what
                if ms.key is not None:
                    self.types.add(ms.key, base + "Key")
                if ms.value is not None:
                    self.types.add(ms.value, base + "Value")
        for vname, v in self.spec.variables.items():
            if v.type is None:
                continue
            self.types.add(v.type, cap_words(vname) or "Var")
            target = skip_typedefs(v.type)
            if isinstance(target, Pointer):
                pointee = skip_typedefs(target.type)
                if isinstance(pointee, (Composite, Enum)) and pointee.name:
                    self.types.add(pointee)

    def _data_maps(self) -> set[str]:
        return {v.section for v in self.spec.variables.values()}

    def _class_for(self, t: Type | None) -> str | None:
        if t is None:
            return None
        inner = skip_typedefs(t)
        if isinstance(inner, Composite):
            return self.types.class_name(inner)
        return None

    # -- Python types of values --------------------------------------------------------

    def _get_type(self, t: Type | None) -> str:
        """The annotation of what `values.decode` returns for `t`."""
        if t is None:
            return "bytes"
        inner = skip_typedefs(t)
        if isinstance(inner, Int):
            return "bool" if inner.encoding & IntEncoding.BOOL else "int"
        if isinstance(inner, (Enum, Pointer)):
            return "int"
        if isinstance(inner, Float):
            return "float" if inner.size in (4, 8) else "bytes"
        if isinstance(inner, Array):
            if _is_char(inner.type):
                return "str | bytes"
            return f"list[{self._get_type(inner.type)}]"
        if isinstance(inner, Composite):
            self.imports.add("Any")
            return "dict[str, Any]"
        return "bytes"

    def _set_type(self, t: Type | None) -> str:
        """The annotation of what `values.encode` accepts for `t`."""
        if t is None:
            return "bytes"
        inner = skip_typedefs(t)
        if isinstance(inner, Int):
            return "bool" if inner.encoding & IntEncoding.BOOL else "int"
        if isinstance(inner, Enum):
            return "int | str"
        if isinstance(inner, Pointer):
            return "int"
        if isinstance(inner, Float):
            return "float" if inner.size in (4, 8) else "bytes"
        if isinstance(inner, Array):
            if _is_char(inner.type):
                return "str | bytes"
            self.imports.update(("Any", "Sequence"))
            return "Sequence[Any] | bytes"
        if isinstance(inner, Composite):
            self.imports.update(("Any", "Mapping"))
            cls = self.types.class_name(inner)
            return f"Mapping[str, Any] | {cls} | bytes" if cls else "Mapping[str, Any] | bytes"
        return "bytes"

    # -- the module --------------------------------------------------------------------

    def module(self) -> str:
        sha = hashlib.sha256(self.data).hexdigest()
        type_src = self.types.source()   # first: it fixes the class names
        class_names = self.types.class_names()
        taken = set(_ANNOTATION_NAMES) | set(class_names) | {self.name, self.spec_name}
        spec_cls = self._spec_class(set(taken) | _SPEC_OWN)
        coll_cls = self._coll_class(set(taken) | _COLL_OWN)
        obj = self._object_source(sha)

        head = [f"# Generated by `ebpf gen` from {_comment(self.shown)} (sha256 {sha}); "
                "do not edit."
                "  # noqa: E501",
                # class names come from file and object names, which may be long
                "# ruff: noqa: E501"]
        doc = (f"Typed bindings for the BPF object {self.shown}, generated by `ebpf gen`.\n\n"
               f"Programs: {', '.join(self.spec.programs) or 'none'}.\n"
               f"Maps: {', '.join(self.spec.maps) or 'none'}.\n"
               f"Variables: {', '.join(self.spec.variables) or 'none'}.\n\n"
               f"Usage::\n\n"
               f"  spec = {self.name}.load_spec()\n"
               f"  with {self.name}.load(spec) as objs:\n"
               f"      ...")
        head += docstring(doc, "")
        head += ["", "from __future__ import annotations", ""]
        std = ["ctypes"] if "ctypes." in type_src else []
        if "builtins." in type_src:
            std.append("builtins")
        if "enum.IntEnum" in type_src:
            std.append("enum")
        if self.filename is None:
            std += ["base64", "zlib"]
        else:
            std += ["hashlib", "os"]
        if self.types.needs_bits:
            std.append("sys")
        head += [f"import {m}" for m in sorted(std)]
        abc = sorted(n for n in ("Mapping", "Sequence") if n in self.imports)
        if abc:
            head.append(f"from collections.abc import {', '.join(abc)}")
        if "Any" in self.imports:
            head.append("from typing import Any")
        head += ["", "import ebpf", ""]
        exports = [self.name, self.spec_name, *class_names]
        head.append("__all__ = [")
        head += [f"    {quote(n)}," for n in exports]
        head.append("]")
        parts = ["\n".join(head), obj]
        if self.types.needs_bits:
            parts.append(BITS_HELPERS.rstrip("\n"))
        if self.types.skipped:
            parts.append("\n# No class for these types (no ctypes layout):\n" + "\n".join(
                f"#   {_comment(s)}" for s in self.types.skipped))
        parts += [type_src, spec_cls, coll_cls]
        return "\n".join(p for p in parts if p) + "\n"

    def _object_source(self, sha: str) -> str:
        lines = ["", ""]
        if self.filename is None:
            blob = base64.b64encode(zlib.compress(blank_debug_sections(self.data), 9)).decode()
            lines.append("# the object, zlib-compressed and base64-encoded")
            lines.append("_OBJECT = (")
            lines += [f'    "{blob[i:i + 76]}"' for i in range(0, len(blob), 76)]
            lines += [")", "", "", "def _object_bytes() -> bytes:",
                      '    """The bytes of the BPF object (embedded in this module)."""',
                      "    return zlib.decompress(base64.b64decode(_OBJECT))"]
        else:
            lines += [f"_OBJECT_FILE = {quote(self.filename)}",
                      f"_OBJECT_SHA256 = {quote(sha)}",
                      "", "", "def _object_bytes() -> bytes:",
                      '    """The bytes of the BPF object, from the module\'s directory."""',
                      "    path = os.path.join(os.path.dirname(os.path.abspath(__file__)),",
                      "                        _OBJECT_FILE)",
                      '    with open(path, "rb") as f:',
                      "        data = f.read()",
                      "    if hashlib.sha256(data).hexdigest() != _OBJECT_SHA256:",
                      "        raise ebpf.Error(",
                      '            f"{path} is not the object these bindings were generated "',
                      '            "from (its sha256 differs); regenerate them with `ebpf gen`")',
                      "    return data"]
        lines += ["", "", "_SPEC: ebpf.CollectionSpec | None = None", "", "",
                  "def _parsed_spec() -> ebpf.CollectionSpec:",
                  '    """A fresh copy of the parsed object (parsed once per process)."""',
                  "    global _SPEC",
                  "    if _SPEC is None:",
                  "        _SPEC = ebpf.load_collection_spec(_object_bytes())",
                  "    return _SPEC.copy()"]
        return "\n".join(lines)

    # -- <Name>Spec ----------------------------------------------------------------------

    def _var_doc(self, v: VariableSpec, live: bool) -> str:
        ctype = values.describe(v.type) if v.type is not None else f"{v.size} bytes"
        text = (f"``{ctype} {v.name}`` in {v.section} (offset {v.offset}, "
                f"{v.size} bytes).")
        cls = self._class_for(v.type)
        if cls:
            text += f" Its layout as ctypes: `{cls}`."
        if not live and v.size <= _DOC_VALUE_BYTES:
            try:
                init = v.get()
            except Error:
                init = None
            if init is not None and len(repr(init)) <= 60:
                text += f" Initial value: {init!r}."
        if live and v.constant:
            text += " Read-only: frozen at load (set it on the spec before loading)."
        return text

    def _spec_class(self, taken: set[str]) -> str:
        n, sn = self.name, self.spec_name
        lines = ["", "", f"class {sn}:"]
        lines += docstring(
            f"The object's `ebpf.CollectionSpec` (`.spec`) with a typed property per "
            f"global variable; edit it, then pass it to `{n}.load()`.\n\n"
            "Setting a variable rewrites its bytes in the spec (`VariableSpec.set`): "
            ".rodata values are constants the verifier sees.", "    ")
        lines += ["", '    __slots__ = ("spec",)', "",
                  "    def __init__(self, spec: ebpf.CollectionSpec | None = None) -> None:",
                  "        self.spec: ebpf.CollectionSpec = (",
                  "            spec if spec is not None else _parsed_spec())",
                  '        """The wrapped `ebpf.CollectionSpec`."""', "",
                  f"    def copy(self) -> {sn}:",
                  '        """An independent copy (editing it leaves this one alone)."""',
                  f"        return {sn}(self.spec.copy())"]
        for vname, v in self.spec.variables.items():
            attr = unique(identifier(vname), taken)
            get_t, set_t = self._get_type(v.type), self._set_type(v.type)
            lines += ["", "    @property", f"    def {attr}(self) -> {get_t}:"]
            lines += docstring(self._var_doc(v, False), "        ")
            lines += [f"        value: {get_t} = self.spec.variables[{quote(vname)}].get()",
                      "        return value", "", f"    @{attr}.setter",
                      f"    def {attr}(self, value: {set_t}) -> None:",
                      f"        self.spec.variables[{quote(vname)}].set(value)"]
        return "\n".join(lines)

    # -- <Name> --------------------------------------------------------------------------

    def _prog_doc(self, p: ProgramSpec) -> str:
        kind = getattr(p.type, "name", str(p.type))
        text = f'Program ``{p.name}``: SEC("{p.section}"), type {kind}'
        if p.attach_type is not None:
            text += f", attach type {getattr(p.attach_type, 'name', p.attach_type)}"
        if p.attach_to:
            text += f", attaches to {p.attach_to}"
        return text + "."

    def _map_doc(self, mname: str, m: MapSpec) -> str:
        kind = getattr(m.type, "name", str(m.type))
        data_vars = [v.name for v in self.spec.variables.values() if v.section == mname]
        if data_vars:
            return (f"Map ``{mname}``: {kind}, the {mname} section holding the variables "
                    f"{', '.join(data_vars)} (value {m.value_size} bytes).")
        text = f"Map ``{mname}``: {kind}"
        for what, t, size in (("key", m.key, m.key_size), ("value", m.value, m.value_size)):
            if t is not None:
                text += f", {what} ``{values.describe(t)}`` ({size} bytes"
                cls = self._class_for(t)
                text += f", `{cls}`)" if cls else ")"
            elif size:
                text += f", {what} {size} bytes"
        text += f", max_entries {m.max_entries}"
        if m.flags:
            text += f", flags {m.flags:#x}"
        if m.inner_map is not None:
            text += f", holding {getattr(m.inner_map.type, 'name', m.inner_map.type)} maps"
        return text + "."

    def _coll_class(self, taken: set[str]) -> str:
        n, sn = self.name, self.spec_name
        lines = ["", "", f"class {n}:"]
        lines += docstring(
            f"The loaded object: its programs, maps and global variables, typed.\n\n"
            f"  with {n}.load() as objs:    # or .load(spec), spec = .load_spec()\n"
            "      ...\n\n"
            "Closing it closes every program and map (pinned ones stay pinned).", "    ")
        lines += ["", '    __slots__ = ("collection",)', "",
                  "    def __init__(self, collection: ebpf.Collection) -> None:",
                  "        self.collection = collection",
                  '        """The wrapped `ebpf.Collection`."""', "",
                  "    @classmethod",
                  f"    def load_spec(cls) -> {sn}:",
                  '        """A fresh, editable spec of the object."""',
                  f"        return {sn}()", "",
                  "    @classmethod",
                  "    def load(",
                  f"        cls, spec: {sn} | ebpf.CollectionSpec | None = None,",
                  "        **collection_kwargs: Any,", f"    ) -> {n}:"]
        self.imports.add("Any")
        lines += docstring(
            "Load the object into the kernel (maps, then programs); `spec` defaults to "
            "`load_spec()`. Keyword arguments go to `ebpf.Collection` (pin_path, "
            "map_replacements, programs, kernel_btf, log_level).", "        ")
        lines += ["        if spec is None:",
                  "            spec = cls.load_spec()",
                  "        raw = spec if isinstance(spec, ebpf.CollectionSpec) else spec.spec",
                  "        return cls(ebpf.Collection(raw, **collection_kwargs))", "",
                  "    def attach_all(self) -> list[ebpf.link.Link]:",
                  '        """Attach every program whose section names its target."""',
                  "        return self.collection.attach_all()", "",
                  "    def close(self) -> None:",
                  '        """Close every program and map of the object."""',
                  "        self.collection.close()", "",
                  f"    def __enter__(self) -> {n}:",
                  "        return self", "",
                  "    def __exit__(self, *exc: object) -> None:",
                  "        self.close()"]
        for pname, p in self.spec.programs.items():
            attr = unique(identifier(pname), taken)
            lines += ["", "    @property", f"    def {attr}(self) -> ebpf.Program:"]
            lines += docstring(self._prog_doc(p), "        ")
            lines += [f"        prog: ebpf.Program = self.collection.programs[{quote(pname)}]",
                      "        return prog"]
        for mname, m in self.spec.maps.items():
            attr = unique(identifier(mname), taken)
            lines += ["", "    @property", f"    def {attr}(self) -> ebpf.Map:"]
            lines += docstring(self._map_doc(mname, m), "        ")
            lines += [f"        m: ebpf.Map = self.collection.maps[{quote(mname)}]",
                      "        return m"]
        for vname, v in self.spec.variables.items():
            attr = unique(identifier(vname), taken)
            get_t, set_t = self._get_type(v.type), self._set_type(v.type)
            lines += ["", "    @property", f"    def {attr}(self) -> {get_t}:"]
            lines += docstring(self._var_doc(v, True), "        ")
            lines += [f"        value: {get_t} = self.collection.variables[{quote(vname)}].get()",
                      "        return value"]
            if not v.constant:
                lines += ["", f"    @{attr}.setter",
                          f"    def {attr}(self, value: {set_t}) -> None:",
                          f"        self.collection.variables[{quote(vname)}].set(value)"]
        return "\n".join(lines)


def _is_char(t: Type) -> bool:
    inner = skip_typedefs(t)
    return isinstance(inner, Int) and inner.size == 1 and (
        bool(inner.encoding & IntEncoding.CHAR) or inner.name == "char")


__all__ = ["default_name", "generate"]


def blank_debug_sections(data: bytes) -> bytes:
    """`data` (an ELF object) with the contents of its DWARF sections (``.debug_*``
    and their relocations) zeroed, sizes and layout unchanged. Loading reads BTF,
    never DWARF; the zeros compress away."""
    from ..elffile import ELFFile  # the ELF reader only to blank DWARF

    out = bytearray(data)
    elf = ELFFile(data)
    try:
        for sec in elf.sections:
            if sec.name.startswith((".debug", ".rel.debug", ".rela.debug")) \
                    and not sec.is_nobits and sec.size:
                size = len(sec.data())   # ELFError for a section outside the file
                out[sec.offset:sec.offset + size] = bytes(size)
    finally:
        elf.close()
    return bytes(out)


def _comment(text: str) -> str:
    """`text` safe inside a `#` comment: a name with a line break must not end it."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)

