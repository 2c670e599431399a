"""The state of the ELF object parser, shared by its parts (`ebpf.elf.maps`,
`ebpf.elf.functions`, `ebpf.elf.parse`), and the ELF constants they use."""

from __future__ import annotations

import struct

from .. import asm
from .. import btf as _btf
from ..elffile import ELFFile, Section
from ..errors import ELFError
from ..spec.collection import CollectionSpec, Extern
from ..spec.maps import MapSpec

TYPE_CHECKING = False  # typing's, without importing typing (process start)
if TYPE_CHECKING:
    from typing import Any

EM_BPF = 247
ET_REL = 1
SHT_PROGBITS = 1
SHF_ALLOC, SHF_EXECINSTR = 0x2, 0x4
R_BPF_64_64 = 1
R_BPF_64_ABS64 = 2
R_BPF_64_ABS32 = 3
R_BPF_64_32 = 10
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION = 0, 1, 2, 3
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
# The largest value an array map holds (the kernel refuses value_size > INT_MAX with
# E2BIG; older kernels stop at KMALLOC_MAX_SIZE and say so when the map is created):
# a zero-filled section claiming more is malformed, and is not allocated.
MAX_NOBITS = (1 << 31) - 1


class ElfSymbol(tuple[int, str, int, int, int, int, int, int]):
    """A symbol as the parser reads it: `ebpf.elffile.Symbol`'s fields, its bind, type and
    visibility plain ints (`SymbolTable._rows`: no enum member is made, process start)."""

    __slots__ = ()

    @property
    def index(self) -> int:  # type: ignore[override]  # shadows tuple.index, as Symbol's
        """The entry's index in the table."""
        return self[0]

    @property
    def name(self) -> str:
        """``st_name`` resolved."""
        return self[1]

    @property
    def value(self) -> int:
        """``st_value``."""
        return self[2]

    @property
    def size(self) -> int:
        """``st_size``."""
        return self[3]

    @property
    def bind(self) -> int:
        """``ELF64_ST_BIND(st_info)``."""
        return self[4]

    @property
    def type(self) -> int:
        """``ELF64_ST_TYPE(st_info)``."""
        return self[5]

    @property
    def visibility(self) -> int:
        """``ELF64_ST_VISIBILITY(st_other)``."""
        return self[6]

    @property
    def section_index(self) -> int:
        """``st_shndx``, resolved through ``SHT_SYMTAB_SHNDX``."""
        return self[7]


class Function:
    """A function (program or subprogram) inside an executable section."""

    __slots__ = ("insns", "name", "offset", "section", "size")

    def __init__(self, name: str, section: Section, offset: int, size: int) -> None:
        self.name = name
        self.section = section
        self.offset = offset
        self.size = size
        self.insns: list[asm.Instruction] = []


class ObjectState:
    """What the parser has read so far; the parts add to it in `load`'s order."""

    def __init__(self, data: bytes | memoryview) -> None:
        self.elf = ELFFile(data)
        # the raw header values: the enums are for users (process start)
        if self.elf._e_machine != EM_BPF:
            raise ELFError(f"not a BPF object (e_machine {self.elf.machine}, want {EM_BPF})")
        if self.elf._e_type != ET_REL:
            raise ELFError(f"not a relocatable object (e_type {self.elf.type})")
        self.byteorder = "little" if self.elf.little_endian else "big"
        self.u32 = struct.Struct("<I" if self.elf.little_endian else ">I")
        self.symbols = list(map(ElfSymbol, self.elf.symbols()._rows()))
        self.spec = CollectionSpec(byteorder=self.byteorder)
        self.btf: _btf.Spec | None = None
        self.ext: Any = None
        self.license = ""
        self.kernel_version = 0
        self.maps: dict[str, MapSpec] = {}
        # (section index, byte offset) -> map name, for map symbols in .maps / maps
        self.map_at: dict[tuple[int, int], str] = {}
        self.data_sections: dict[int, str] = {}
        self.funcs: dict[tuple[int, int], Function] = {}
        self.externs: dict[str, Extern] = {}

    def _section_data(self, sec: Section) -> bytes:
        return bytes(sec.data())

    def _symbol(self, index: int, where: str) -> ElfSymbol:
        if not 0 <= index < len(self.symbols):
            raise ELFError(f"relocation refers to symbol {index} beyond the symbol table", where)
        return self.symbols[index]

