"""`Symbolizer`: kernel and user addresses to `Frame`s, with every table cached."""

from __future__ import annotations

import logging
import threading
import time

from .._sys import forking as _forking
from ..errors import ELFError
from .elfsyms import ElfSymbols, file_identity
from .frame import Frame
from .kernel import KernelSymbols, kernel_symbols
from .process import Mapping, ProcessSymbols, mapped_file_paths

_log = logging.getLogger("ebpf")


class Symbolizer:
    """Resolves kernel addresses (``/proc/kallsyms``) and user addresses of processes
    (their ``/proc/PID/maps`` and the ELF symbol tables of what they map).

    Kernel symbols are read on first use; each process's map is read once (and again
    for an address outside it); each ELF file is read once however many processes map
    it (keyed by device, inode, size and modification time). `forget` drops a
    process, e.g. when it exited and its pid may be reused. Thread-safe.

    A kernel address no symbol covers (a BPF program or module loaded after the table
    was read) makes it read ``/proc/kallsyms`` again, at most once per
    `kernel_refresh` seconds."""

    def __init__(self, kernel: KernelSymbols | None = None, *,
                 kernel_refresh: float = 1.0) -> None:
        """`kernel`: the kernel table to start from (default: the running kernel's,
        cached for the process); `kernel_refresh`: see the class docstring."""
        self._kernel = kernel
        self.kernel_refresh = kernel_refresh
        self._procs: dict[int, ProcessSymbols] = {}
        self._elfs: dict[tuple[int, int, int, int], ElfSymbols | None] = {}
        self._lock = _forking.new_lock(self, "_lock", threading.RLock)  # (a forked child's: free)

    @property
    def kernel_symbols(self) -> KernelSymbols:
        """The kernel's symbol table."""
        if self._kernel is None:
            self._kernel = kernel_symbols()
        return self._kernel

    def kernel(self, addr: int) -> Frame:
        """The frame of kernel address `addr`; `ebpf.PermissionError` when the kernel
        hides its addresses from this process."""
        frame = self.kernel_symbols.resolve(addr)
        if frame.name is None:
            with self._lock:
                table = self.kernel_symbols
                if time.monotonic() - table.loaded_at >= self.kernel_refresh:
                    _log.debug("kernel address %#x is not in the symbol table read %.1f s "
                               "ago: reading /proc/kallsyms again", addr,
                               time.monotonic() - table.loaded_at)
                    self._kernel = kernel_symbols(refresh=True)
                    frame = self._kernel.resolve(addr)
        return frame

    def kernel_address(self, name: str) -> int:
        """The address of kernel symbol `name` (`KeyNotFoundError` if it has none)."""
        return self.kernel_symbols.address(name)

    def user(self, pid: int, addr: int) -> Frame:
        """The frame of address `addr` in process `pid` (name None when nothing covers
        it; module None when the process is gone or the address is not mapped)."""
        with self._lock:
            proc = self._procs.get(pid)
            if proc is None:
                try:
                    proc = ProcessSymbols(pid, self._elf_of)
                except OSError as e:
                    _log.debug("cannot read the memory map of pid %d: %s", pid, e)
                    return Frame(addr)
                self._procs[pid] = proc
            return proc.resolve(addr)

    def forget(self, pid: int | None = None) -> None:
        """Drop what is cached about process `pid` (every process when None)."""
        with self._lock:
            if pid is None:
                self._procs.clear()
            else:
                self._procs.pop(pid, None)

    def _elf_of(self, pid: int, m: Mapping) -> ElfSymbols | None:
        for path in mapped_file_paths(pid, m):
            try:
                key = file_identity(path)
            except OSError:
                continue
            if key in self._elfs:
                return self._elfs[key]
            try:
                syms: ElfSymbols | None = ElfSymbols(path, module=m.path)
            except (OSError, ELFError) as e:
                _log.debug("no symbols in %s (mapped by pid %d): %s", m.path, pid, e)
                syms = None
            self._elfs[key] = syms
            return syms
        return None


__all__ = ["Symbolizer"]
