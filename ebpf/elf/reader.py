"""Deprecated location of the ELF reader: it is `ebpf.elffile` (also re-exported by
`ebpf.elf`). Kept so that ``ebpf.elf.reader.ELFFile`` still works."""

from ..elffile import *  # noqa: F403
from ..elffile import __all__ as __all__
