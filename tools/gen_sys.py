#!/usr/bin/env python3
"""Generate ebpf/_sys/types.py (and its lazily imported parts) from the kernel's BTF.

One ctypes structure per member of `union bpf_attr` (one per bpf(2) command
family), the info structures returned by BPF_OBJ_GET_INFO_BY_FD, and the
uapi enums (commands, map/program/attach/link types, helper ids) plus the
flag constants the kernel declares as anonymous enums. Layouts are checked
against the BTF offsets while generating.

What loading an object does not need (helper ids, perf_event structures, link
attrs and link info, the attrs of rarer commands, the command and attach type enums)
goes to types_<part>.py modules that types.py imports on first use (module
__getattr__), which keeps ~3 ms of class creation out of `import ebpf`. The commands
are also plain int constants in types.py (BPF_MAP_CREATE, ...: INT_CONSTANTS).

    python3 tools/gen_sys.py [--btf /sys/kernel/btf/vmlinux] [--out ebpf/_sys/types.py]
    python3 tools/gen_sys.py --check   # exit 1 if the checked-in file differs
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ebpf import btf

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ebpf", "_sys", "types.py")

# Named members of union bpf_attr -> class name; anonymous ones by a member they contain.
NAMED = {
    "batch": "MapBatchAttr", "test": "ProgTestRunAttr", "info": "ObjGetInfoAttr",
    "query": "ProgQueryAttr", "raw_tracepoint": "RawTracepointOpenAttr",
    "task_fd_query": "TaskFdQueryAttr", "link_create": "LinkCreateAttr",
    "link_update": "LinkUpdateAttr", "link_detach": "LinkDetachAttr",
    "enable_stats": "EnableStatsAttr", "iter_create": "IterCreateAttr",
    "prog_bind_map": "ProgBindMapAttr", "token_create": "TokenCreateAttr",
    "prog_stream_read": "ProgStreamReadAttr",
}
ANONYMOUS = {
    "map_type": "MapCreateAttr", "map_fd": "MapElemAttr", "prog_type": "ProgLoadAttr",
    "pathname": "ObjAttr", "attach_bpf_fd": "ProgAttachAttr", "next_id": "GetIdAttr",
    "btf": "BtfLoadAttr",
}
# Named kernel structs -> class name.
STRUCTS = {
    "bpf_prog_info": "ProgInfo", "bpf_map_info": "MapInfo", "bpf_btf_info": "BtfInfo",
    "bpf_link_info": "LinkInfo", "perf_event_attr": "PerfEventAttr",
    "perf_event_mmap_page": "PerfEventMmapPage", "bpf_func_info": "FuncInfo",
    "bpf_line_info": "LineInfo",
}
# Kernel enums -> (class name, prefix to strip).
ENUMS = {
    "bpf_cmd": ("Cmd", "BPF_"), "bpf_map_type": ("MapType", "BPF_MAP_TYPE_"),
    "bpf_prog_type": ("ProgramType", "BPF_PROG_TYPE_"), "bpf_attach_type": ("AttachType", "BPF_"),
    "bpf_link_type": ("LinkType", "BPF_LINK_TYPE_"), "bpf_func_id": ("HelperFunc", "BPF_FUNC_"),
    "bpf_stats_type": ("StatsType", "BPF_STATS_"),
    "bpf_core_relo_kind": ("CoreReloKind", "BPF_CORE_"),
    "bpf_perf_event_type": ("PerfEventType", "BPF_PERF_EVENT_"),
    "perf_type_id": ("PerfTypeId", "PERF_TYPE_"), "perf_sw_ids": ("PerfSwId", "PERF_COUNT_SW_"),
    "perf_hw_id": ("PerfHwId", "PERF_COUNT_HW_"),
    "perf_event_sample_format": ("PerfSampleFormat", "PERF_SAMPLE_"),
    "perf_event_type": ("PerfRecordType", "PERF_RECORD_"),
}
# Kernel enums whose values types.py also has as plain int constants, with their kernel
# names (BPF_MAP_CREATE, ...): the load path uses them, and the enum class (in a lazy
# part) is made on first use.
INT_CONSTANTS = ("bpf_cmd",)
# Anonymous enums whose values become module constants (kept with their kernel names).
CONST_PREFIXES = ("BPF_F_", "BPF_ANY", "BPF_NOEXIST", "BPF_EXIST", "BPF_RINGBUF_",
                  "BPF_LOCAL_STORAGE_", "BPF_SK_STORAGE_", "BPF_TASK_ITER_")

# Classes moved out of types.py, by class-name prefix -> module (types_<part>.py).
LAZY_PARTS = {"HelperFunc": "helpers", "Perf": "perf", "LinkInfo": "link", "LinkType": "link",
              "LinkCreateAttr": "link", "LinkUpdateAttr": "link", "LinkDetachAttr": "link",
              # commands and info that neither loading an object nor its maps use
              **dict.fromkeys(("ProgQueryAttr", "RawTracepointOpenAttr", "TaskFdQueryAttr",
                               "IterCreateAttr", "ProgBindMapAttr", "TokenCreateAttr",
                               "ProgStreamReadAttr", "MapBatchAttr", "EnableStatsAttr",
                               "MapInfo", "ObjAttr", "ProgAttachAttr", "ProgTestRunAttr",
                               "GetIdAttr", "ProgInfo",
                               # BPF_OBJ_GET_INFO_BY_FD: neither loading nor creating
                               # issues it; BPF_ENABLE_STATS' enum
                               "ObjGetInfoAttr", "BtfInfo", "StatsType",
                               # func/line info records: a load needs their sizes only
                               "FuncInfo", "LineInfo"), "misc"),
              # enums a load uses as plain ints (INT_CONSTANTS) or not at all, unless a
              # program has an expected attach type
              "Cmd": "cmd", "AttachType": "attach"}
# Enums of the lazy parts that keep ebpf._sys.types as their __module__ (reprs, pickles,
# docs: they were made there before they moved).
KEEP_MODULE = ("Cmd", "AttachType")

CTYPES = {(1, False): "ctypes.c_uint8", (2, False): "ctypes.c_uint16",
          (4, False): "ctypes.c_uint32", (8, False): "ctypes.c_uint64",
          (1, True): "ctypes.c_int8", (2, True): "ctypes.c_int16",
          (4, True): "ctypes.c_int32", (8, True): "ctypes.c_int64"}


class Gen:
    def __init__(self) -> None:
        self.out: list[str] = []                 # class definitions, dependencies first
        self.seen: dict[int, str] = {}

    def ctype(self, t: btf.Type, hint: str) -> str:
        t = btf.skip_typedefs(t)
        if isinstance(t, btf.Int):
            return CTYPES[(t.size, t.signed)]
        if isinstance(t, btf.Enum):
            return CTYPES[(t.size, t.signed)]
        if isinstance(t, btf.Pointer):
            return "ctypes.c_uint64"
        if isinstance(t, btf.Array):
            return f"({self.ctype(t.type, hint)} * {t.nelems})"
        if isinstance(t, btf.Composite):
            return self.composite(t, hint)
        raise SystemExit(f"gen_sys: cannot map {t!r} ({hint})")

    def composite(self, t: btf.Composite, name: str) -> str:
        key = id(t)
        if key in self.seen:
            return self.seen[key]
        self.seen[key] = name
        base = "ctypes.Union" if isinstance(t, btf.Union) else "ctypes.Structure"
        fields: list[str] = []
        anon: list[str] = []
        bit_cursor = 0
        pad = 0
        for i, m in enumerate(t.members):
            mname = m.name
            if isinstance(t, btf.Struct) and not m.bitfield_size and m.offset_bits > bit_cursor:
                gap = (m.offset_bits - bit_cursor) // 8
                fields.append(f'("_pad{pad}", ctypes.c_uint8 * {gap})')
                pad += 1
            if not mname:
                mname = f"_anon{i}"
                anon.append(mname)
                inner = btf.skip_typedefs(m.type)
                assert isinstance(inner, btf.Composite)
                sub = self.ctype(inner, f"{name}_{i}")
            else:
                sub = self.ctype(m.type, f"{name}_{_camel(mname)}")
            if m.bitfield_size:
                fields.append(f'("{mname}", {sub}, {m.bitfield_size})')
                unit = 8 * btf.sizeof(m.type)  # ctypes allocates the whole storage unit
                bit_cursor = max(bit_cursor, (m.offset_bits // unit + 1) * unit)
            else:
                fields.append(f'("{mname}", {sub})')
                bit_cursor = m.offset_bits + 8 * btf.sizeof(m.type)
        if isinstance(t, btf.Struct) and t.size * 8 > bit_cursor:
            fields.append(f'("_pad{pad}", ctypes.c_uint8 * {t.size - (bit_cursor + 7) // 8})')
        lines = [f"class {name}({base}):"]
        if anon:
            lines.append(f"    _anonymous_ = ({', '.join(repr(a) for a in anon)},)")
        lines.append("    _fields_ = [")
        lines += [f"        {f}," for f in fields]
        lines.append("    ]")
        self.out.append("\n".join(lines) + "\n")
        return name


def _camel(s: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in s.split("_"))


HEAD = "# GENERATED by tools/gen_sys.py from the kernel's BTF. DO NOT EDIT.\n"


def _part(block: str) -> str | None:
    """The lazy module a class definition goes to (None: types.py itself)."""
    name = block.split("(", 1)[0].removeprefix("class ")
    return next((part for prefix, part in LAZY_PARTS.items() if name.startswith(prefix)), None)


def generate(spec: btf.Spec) -> dict[str, str]:
    """{file name: text} for types.py and its types_<part>.py modules."""
    g = Gen()
    for kname, (cname, prefix) in ENUMS.items():
        e = spec.type_by_name(kname, btf.Enum)
        lines = [f"class {cname}(IntEnum):",
                 f'    """The kernel\'s `enum {kname}`: its `{prefix}*` values, '
                 'without the prefix."""',
                 ""]
        for v in e.values:
            n = v.name.removeprefix(prefix)
            if n.startswith("__") or n in ("MAX", "MAX_BPF_ATTACH_TYPE"):
                continue
            if n[0].isdigit():
                n = "_" + n
            lines.append(f"    {n} = {v.value}")
        g.out.append("\n".join(lines) + "\n")
    consts: dict[str, int] = {}
    for t in spec:
        if isinstance(t, btf.Enum) and not t.name:
            for v in t.values:
                if v.name.startswith(CONST_PREFIXES):
                    consts.setdefault(v.name, v.value)
    const_block = "\n".join(f"{k} = {v}" for k, v in sorted(consts.items())) + "\n"
    for kname in INT_CONSTANTS:
        cname, prefix = ENUMS[kname]
        values = [v for v in spec.type_by_name(kname, btf.Enum).values
                  if not v.name.removeprefix(prefix).startswith("__")]
        const_block = (f"# enum {kname} ({cname}'s values), as plain ints\n" + "".join(
            f"{v.name} = {v.value}\n" for v in values) + "\n" + const_block)
    attr = spec.type_by_name("bpf_attr", btf.Union)
    classes: list[tuple[str, btf.Composite]] = []
    for m in attr.members:
        inner = btf.skip_typedefs(m.type)
        assert isinstance(inner, btf.Composite)
        if m.name:
            cname = NAMED.get(m.name) or _camel(m.name) + "Attr"
        else:
            names = {x.name for x in inner.members}
            found = [v for k, v in ANONYMOUS.items() if k in names]
            if len(found) != 1:
                raise SystemExit(f"gen_sys: unknown anonymous bpf_attr member with {sorted(names)}")
            cname = found[0]
        classes.append((cname, inner))
    for kname, cname in STRUCTS.items():
        classes.append((cname, spec.type_by_name(kname, btf.Struct)))
    for cname, t in classes:
        g.composite(t, cname)
    core = [b for b in g.out if _part(b) is None]
    parts: dict[str, list[str]] = {}
    for b in g.out:
        part = _part(b)
        if part is not None:
            parts.setdefault(part, []).append(b)
    enums = [b for b in core if "(IntEnum)" in b]
    core_rest = [b for b in core if "(IntEnum)" not in b]
    lazy_names = {part: [b.split("(", 1)[0].removeprefix("class ") for b in blocks]
                  for part, blocks in parts.items()}
    files: dict[str, str] = {}
    files["types.py"] = "\n".join([
        HEAD + '"""bpf(2) attr structures, info structures, uapi enums and flag constants.',
        "",
        "Helper ids, perf_event structures, link attrs/info, the attrs and info structs",
        "that loading an object does not use, and the `Cmd` and `AttachType` enums live in",
        "types_<part>.py, imported on first use (`Cmd`'s values are here as BPF_* ints, which",
        'the load path uses)."""',
        "",
        "# ruff: noqa",
        "from __future__ import annotations",
        "",
        "import ctypes",
        "",
        "import ebpf._lazyattr as _lazyattr",
        "",
        "TYPE_CHECKING = False  # typing's, without importing typing (process start)",
        "if TYPE_CHECKING:",
        "    from typing import Any",
        "    from enum import IntEnum",
        *[f"    from .types_{part} import {n} as {n}"
          for part, names in sorted(lazy_names.items()) for n in names],
        "else:",
        "    from .fastclass import IntEnum  # the same enum.IntEnum, made cheaply",
        "",
    ]) + "\n" + "\n\n".join([*enums, const_block, *core_rest]) + (
        f"\n\nATTR_SIZE = {attr.size}\n"
        "\n_LAZY = {\n" + "".join(
            f"    {n!r}: '.types_{part}',\n" for part, names in sorted(lazy_names.items())
            for n in names) + "}\n"
        "__getattr__ = _lazyattr.lazy_attributes(globals(), _LAZY)\n")
    core_names = [b.split("(", 1)[0].removeprefix("class ") for b in core_rest]
    for part, blocks in sorted(parts.items()):
        body = "\n\n".join(blocks)
        own = set(lazy_names[part])
        # the core's classes, and those of another part (through the core's __getattr__)
        used = [n for n in core_names + [n for p in sorted(lazy_names) if p != part
                                         for n in lazy_names[p]]
                if n not in own and re.search(rf"\b{n}\b", body)]
        keep = [n for n in KEEP_MODULE if n in own]
        if keep:
            body += "\n\n" + "".join(f"{n}.__module__ = \"ebpf._sys.types\"  # where it is "
                                      "public (reprs, pickles, docs)\n" for n in keep)
        files[f"types_{part}.py"] = "\n".join([
            HEAD + f'"""Part of ebpf._sys.types imported on first use: {part}."""',
            "",
            "# ruff: noqa",
            "from __future__ import annotations",
            "",
            *(["import ctypes"] if "ctypes." in body else []),
            *(["TYPE_CHECKING = False  # typing's, without importing typing (process start)",
               "if TYPE_CHECKING:",
               "    from enum import IntEnum",
               "else:",
               "    from .fastclass import IntEnum  # the same enum.IntEnum, made cheaply"]
              if "(IntEnum)" in body else []),
            "",
            *([f"from .types import {', '.join(used)}", ""] if used else []),
        ]) + "\n" + body
    _verify("\n".join(["import ctypes", "from enum import IntEnum", *enums, const_block,
                       *g.out]), classes)
    return files


def _verify(text: str, classes: list[tuple[str, btf.Composite]]) -> None:
    ns: dict[str, object] = {}
    exec(compile(text, "types.py", "exec"), ns)
    for cname, t in classes:
        cls = ns[cname]
        assert isinstance(cls, type)
        size = ctypes.sizeof(cls)  # type: ignore[arg-type]
        if size != t.size:
            raise SystemExit(f"gen_sys: {cname} is {size} bytes, BTF says {t.size}")
        for m in t.members:
            if m.name and not m.bitfield_size:
                off = getattr(cls, m.name).offset
                if off * 8 != m.offset_bits:
                    raise SystemExit(f"gen_sys: {cname}.{m.name} at {off}, BTF says "
                                     f"{m.offset_bits // 8}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--btf", default="/sys/kernel/btf/vmlinux")
    ap.add_argument("--out", default=OUT, help="types.py; its parts are written next to it")
    ap.add_argument("--check", action="store_true", help="compare with --out instead of writing")
    args = ap.parse_args()
    files = generate(btf.load_spec(args.btf))
    outdir = os.path.dirname(os.path.abspath(args.out))
    paths = {name: args.out if name == "types.py" else os.path.join(outdir, name)
             for name in files}
    if args.check:
        for name, text in files.items():
            try:
                with open(paths[name]) as f:
                    same = f.read() == text
            except FileNotFoundError:
                same = False
            if not same:
                print(f"{paths[name]} differs from what gen_sys.py generates", file=sys.stderr)
                return 1
        return 0
    for name, text in files.items():
        tmp = paths[name] + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, paths[name])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
