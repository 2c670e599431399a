"""Symbols and stacks: kernel addresses from ``/proc/kallsyms``, user addresses from
the ELF symbol tables of what a process maps, stack-trace map entries as frames.

    from ebpf import symbols

    sym = symbols.Symbolizer()
    sym.kernel(addr)                 # Frame(name='do_syscall_64', offset=0x7e, ...)
    sym.kernel_address("__x64_sys_getpid")
    sym.user(pid, addr)              # Frame(name='main', offset=0x1a, module='/usr/bin/x')
    symbols.stack_frames(coll.maps["stacks"], stack_id)            # kernel stack
    symbols.stack_frames(coll.maps["stacks"], user_id, pid=pid)    # user stack

Kernel addresses are all 0 in ``/proc/kallsyms`` for a process without CAP_SYSLOG
(or with ``kernel.kptr_restrict=2``): kernel lookups then raise `ebpf.PermissionError`.
"""

from __future__ import annotations

from .elfsyms import ElfSymbols
from .frame import Frame, Symbol
from .kernel import KernelSymbols, kernel_symbols, parse_kallsyms
from .process import Mapping, ProcessSymbols, parse_maps, read_maps
from .stacks import default_symbolizer, format_stack, stack_addresses, stack_frames
from .symbolizer import Symbolizer
from .table import SymbolTable

__all__ = [
    "ElfSymbols",
    "Frame",
    "KernelSymbols",
    "Mapping",
    "ProcessSymbols",
    "Symbol",
    "SymbolTable",
    "Symbolizer",
    "default_symbolizer",
    "format_stack",
    "kernel_symbols",
    "parse_kallsyms",
    "parse_maps",
    "read_maps",
    "stack_addresses",
    "stack_frames",
]
