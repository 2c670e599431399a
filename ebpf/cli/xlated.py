"""`ebpf prog dump xlated`: the kernel's translated instructions of a program, printed by
`ebpf.asm`'s disassembler with bpftool's layout — function signatures from func info,
``; source`` lines from line info (``linum`` adds file, line and column) and calls to
kernel functions named from /proc/kallsyms."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from ..asm import Instruction, decode, format_instruction
from ..asm.opcodes import PSEUDO_CALL
from .proglines import ProgramLines

__all__ = ["listing", "render_text"]


@functools.cache
def _kernel_symbols() -> tuple[int, dict[int, str]]:
    """(address of __bpf_call_base, address -> name) from /proc/kallsyms; (0, {}) when
    the addresses are hidden."""
    base = 0
    names: dict[int, str] = {}
    try:
        with open("/proc/kallsyms") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                addr = int(parts[0], 16)
                if not addr:
                    continue
                names.setdefault(addr, parts[2])
                if parts[2] == "__bpf_call_base":
                    base = addr
    except (OSError, ValueError):
        return 0, {}
    return base, names


def _call_text(ins: Instruction) -> str:
    """A call the verifier rewrote to a kernel address: ``(85) call name#imm``."""
    base, names = _kernel_symbols()
    name = names.get(base + ins.imm) if base else None
    if name is None:
        return format_instruction(ins)
    return f"({ins.opcode:02x}) call {name}#{ins.imm}"


def _subprog_call_text(ins: Instruction, ksyms: Sequence[int]) -> str:
    """A bpf-to-bpf call in xlated code: the verifier keeps the relative offset in `off`
    and the callee's index among the JITed functions in `imm`."""
    text = f"({ins.opcode:02x}) call pc{ins.off:+d}"
    if 0 <= ins.imm < len(ksyms):
        _, names = _kernel_symbols()
        name = names.get(ksyms[ins.imm])
        if name is not None:
            text += f"#{name}"
    return text


def listing(xlated: bytes, lines: ProgramLines, ksyms: Sequence[int] = ()
            ) -> list[dict[str, Any]]:
    """One dict per instruction: ``slot``, ``disasm`` and, where the kernel has them,
    ``proto`` (the function starting here), ``src``, ``file``, ``line_num``, ``line_col``.
    `ksyms` are the addresses of the program's JITed functions (to name subprogram
    calls)."""
    funcs = {f.insn: f for f in lines.funcs}
    srcs: dict[int, Any] = {}
    for rec in lines.lines:
        srcs.setdefault(rec.insn, rec)
    out: list[dict[str, Any]] = []
    slot = 0
    for ins in decode(xlated):
        entry: dict[str, Any] = {"slot": slot}
        func = funcs.get(slot)
        if func is not None:
            entry["proto"] = func.signature
        src = srcs.get(slot)
        if src is not None:
            entry.update(src=src.text.lstrip(), file=src.file, line_num=src.line,
                         line_col=src.col)
        if ins.opcode == 0x85 and ins.src == 0:
            entry["disasm"] = _call_text(ins)
        elif ins.opcode == 0x85 and ins.src == PSEUDO_CALL:
            entry["disasm"] = _subprog_call_text(ins, ksyms)
        else:
            entry["disasm"] = format_instruction(ins)
        out.append(entry)
        slot += ins.size
    return out


def render_text(entries: list[dict[str, Any]], linum: bool) -> str:
    """bpftool's plain layout: ``proto:``, ``; src [file:F line_num:N line_col:C]``,
    ``{slot:4d}: disasm``."""
    text: list[str] = []
    for e in entries:
        if "proto" in e:
            text.append(f"{e['proto']}:")
        if "src" in e:
            where = (f" [file:{e['file']} line_num:{e['line_num']} line_col:{e['line_col']}]"
                     if linum else "")
            text.append(f"; {e['src']}{where}")
        text.append(f"{e['slot']:4d}: {e['disasm']}")
    return "\n".join(text)


def render_json(entries: list[dict[str, Any]], linum: bool) -> list[dict[str, Any]]:
    """bpftool's JSON layout: proto, src (and with linum file, line_num, line_col),
    disasm."""
    out = []
    for e in entries:
        d: dict[str, Any] = {}
        if "proto" in e:
            d["proto"] = e["proto"]
        if "src" in e:
            d["src"] = e["src"]
            if linum:
                d.update(file=e["file"], line_num=e["line_num"])
                if e["line_col"]:  # bpftool leaves a zero column out of its JSON
                    d["line_col"] = e["line_col"]
        d["disasm"] = e["disasm"]
        out.append(d)
    return out
