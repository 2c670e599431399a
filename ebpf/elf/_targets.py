"""The attach targets written in section names, as the auto-attachers read them:
`parse_kprobe_target`, `parse_uprobe_target`, `parse_usdt_target`,
`parse_tracepoint_target`. Loaded on first use (only attaching needs them: process
start); public as ``ebpf.elf.sections.parse_kprobe_target``, ... (their `__module__`)."""

from __future__ import annotations

from ebpf.errors import InvalidArgumentError

__all__ = ["parse_kprobe_target", "parse_tracepoint_target", "parse_uprobe_target",
           "parse_usdt_target"]


# Checked with string methods, not regular expressions: compiling one costs ~0.2 ms of
# process start, and these run only when attaching.
_FUNC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
_HEX = frozenset("0123456789abcdefABCDEF")
_DEC = frozenset("0123456789")
_OCT = frozenset("01234567")


def _c_int(text: str) -> int | None:
    """A whole C integer literal (decimal, 0x hex or 0 octal, optional sign), or None."""
    sign = -1 if text.startswith("-") else 1
    digits = text[1:] if text[:1] in ("+", "-") else text
    if digits[:2] in ("0x", "0X"):
        return sign * int(digits[2:], 16) if len(digits) > 2 and _HEX.issuperset(
            digits[2:]) else None
    if digits[:1] == "0":
        return sign * int(digits, 8) if _OCT.issuperset(digits) else None
    if digits and _DEC.issuperset(digits):
        return sign * int(digits, 10)
    return None


def parse_kprobe_target(target: str, *, retprobe: bool = False) -> tuple[str, int]:
    """``"func[+offset]"`` -> ``(func, offset)``, as libbpf reads ``SEC("kprobe/...")``.

    The function name is made of ``[a-zA-Z0-9_.]`` and the offset is a C
    integer literal. Stricter than libbpf, which ignores trailing garbage:
    anything else raises InvalidArgumentError. Return probes take no offset.
    """
    func, plus, rest = target.partition("+")
    if not func or not _FUNC_CHARS.issuperset(func):
        raise InvalidArgumentError(f"invalid kprobe target {target!r}, expected <func>[+<offset>]")
    off_text = rest if plus else None
    offset = 0
    if off_text is not None:
        value = _c_int(off_text)
        if value is None:
            raise InvalidArgumentError(f"invalid kprobe offset in {target!r}")
        offset = value
    if retprobe and offset:
        raise InvalidArgumentError(f"kretprobes take no offset: {target!r}")
    return func, offset


def parse_uprobe_target(target: str, *, retprobe: bool = False) -> tuple[str, str, int]:
    """``"binary:function[+offset]"`` -> ``(binary, function, offset)``, as libbpf reads it.

    A trailing ``+offset`` is taken only when it is a whole number; otherwise
    it stays part of the function name. Return probes take no offset.
    """
    binary, sep, func = target.partition(":")
    if not sep or not binary or not func or "\n" in func:
        raise InvalidArgumentError(
            f"invalid uprobe target {target!r}, expected <binary>:<function>[+<offset>]"
        )
    offset = 0
    plus = func.rfind("+")
    if plus >= 0:
        value = _c_int(func[plus + 1:])
        if value is not None:
            offset = value
            func = func[:plus]
    if retprobe and offset:
        raise InvalidArgumentError(f"uretprobes take no offset: {target!r}")
    return binary, func, offset


def parse_usdt_target(target: str) -> tuple[str, str, str]:
    """``"path:provider:name"`` -> ``(path, provider, name)``."""
    parts = target.split(":")
    if len(parts) != 3 or not all(parts):
        raise InvalidArgumentError(
            f"invalid USDT target {target!r}, expected <path>:<provider>:<name>"
        )
    return parts[0], parts[1], parts[2]


def parse_tracepoint_target(target: str) -> tuple[str, str]:
    """``"category/name"`` -> ``(category, name)``."""
    category, sep, name = target.partition("/")
    if not sep or not category or not name:
        raise InvalidArgumentError(
            f"invalid tracepoint target {target!r}, expected <category>/<name>"
        )
    return category, name


for _func in (parse_kprobe_target, parse_uprobe_target, parse_usdt_target,
              parse_tracepoint_target):
    _func.__module__ = "ebpf.elf.sections"  # where they are public (reprs, docs)
