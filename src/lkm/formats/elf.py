"""A minimal, strict ELF reader for kernel modules.

Takes a buffer (``bytes``, ``mmap`` or a
:class:`~lkm.formats.file_regions.FileRegions`), never a path. Handles ELF32 and
ELF64 in both byte orders, so a tree built for another architecture reads
exactly like a native one. It reads only what module tools need: the section
table, section contents by name, and the symbol table.

Validation follows kmod's libkmod-elf.c so that lkm accepts and rejects the
same files: the section header table and the section-name table must lie in
the file, the name table must end with a NUL, and a section whose offset or
size points outside the file is skipped when searching by name. Everything
else that is out of range raises :class:`~lkm.errors.FormatError` instead of
reading garbage.
"""

from __future__ import annotations

import enum
import mmap
import sys
from array import array
from collections.abc import Callable
from itertools import compress, repeat
from operator import itemgetter

from lkm.errors import FormatError, NotElfError
from lkm.formats.elf_layout import EHDR, elf_layout
from lkm.formats.file_regions import FileRegions
from lkm.records import Record

EI_NIDENT = 16
ELFMAG = b"\x7fELF"
ELFCLASS32 = 1
ELFCLASS64 = 2
ELFDATA2LSB = 1
ELFDATA2MSB = 2

SHN_UNDEF = 0
SHN_ABS = 0xFFF1

EM_SPARC = 2
EM_SPARCV9 = 43
# sparc gcc creates undefined references for global register variables;
# they are not real imports (kmod and module-init-tools skip them).
STT_REGISTER = 13


class Bind(enum.IntEnum):
    """Symbol binding as kmod reports it (libkmod.h kmod_symbol_bind)."""

    NONE = ord("\0")
    LOCAL = ord("L")
    GLOBAL = ord("G")
    WEAK = ord("W")
    UNDEF = ord("U")


BIND_FROM_ELF = {0: Bind.LOCAL, 1: Bind.GLOBAL, 2: Bind.WEAK}


# Module bytes in memory or a read-only mapping of a file: both index to
# ints, slice to bytes, have find() and feed struct.
Buffer = bytes | mmap.mmap
# What the ELF and module readers take: a Buffer or a file read by
# position. All have a length, slice to bytes and have find(); those
# readers use nothing else.
ElfSource = bytes | mmap.mmap | FileRegions


class ElfSymbol(Record):
    """One ``.symtab`` entry (index 0, the null symbol, is never returned)."""

    index: int
    name: str | None  # None when st_name points outside .strtab
    value: int
    size: int
    info: int
    shndx: int

    @property
    def bind(self) -> int:
        return self.info >> 4

    @property
    def type(self) -> int:
        return self.info & 0xF


def _first_valid(
    sh_names: array[int], nameoff: int, bounds: Callable[[int], tuple[int, int] | None]
) -> int | None:
    """Lowest section index ≥ 1 named by ``nameoff`` with in-bounds contents."""
    start = 1
    while True:
        try:
            index = sh_names.index(nameoff, start)
        except ValueError:
            return None
        if bounds(index) is not None:
            return index
        start = index + 1


class ElfFile:
    """The parts of an ELF relocatable object that module tools read."""

    __slots__ = (
        "_names",
        "_sh_names",
        "_sh_offsets",
        "_sh_sizes",
        "_shdr_size",
        "_shnum",
        "_shoff",
        "big_endian",
        "data",
        "endian",
        "is64",
        "layout",
        "machine",
        "size",
    )

    def __init__(self, data: ElfSource) -> None:
        self.data = data
        self.size = size = len(data)
        header = data[:64]  # the larger (ELF64) header; checked against size below
        ident = header[:EI_NIDENT]
        if size <= EI_NIDENT or ident[:4] != ELFMAG:
            raise NotElfError("not an ELF file (bad magic)")
        elf_class, elf_data = ident[4], ident[5]
        if elf_class not in (ELFCLASS32, ELFCLASS64):
            raise FormatError(f"unknown ELF class {elf_class}")
        if elf_data == ELFDATA2LSB:
            endian = "<"
        elif elf_data == ELFDATA2MSB:
            endian = ">"
        else:
            raise FormatError(f"unknown ELF byte order {elf_data}")
        self.is64 = elf_class == ELFCLASS64
        self.layout = layout = elf_layout(self.is64, endian)
        ehdr, shdr_size = layout.ehdr, layout.shdr.size
        if size <= ehdr.size:
            raise FormatError(f"truncated ELF header ({size} bytes)")
        self.big_endian = endian == ">"
        self.endian = endian
        # One unpack into a tuple, the fields picked by position: no dict
        # per module (modinfo reads thousands of headers).
        fields: tuple[int, ...] = _HEADER_FIELDS(ehdr.struct.unpack_from(header))
        machine, shoff, shentsize, shnum, shstrndx = fields
        self.machine = machine
        if shentsize != shdr_size:
            raise FormatError(f"section header size is {shentsize}, expected {shdr_size}")
        if shoff + shnum * shdr_size > size:
            raise FormatError(
                f"section header table ({shnum} entries at offset {shoff}) "
                f"extends beyond the end of the file ({size} bytes)"
            )
        self._read_section_table(data[shoff : shoff + shnum * shdr_size])
        self._shoff: int = shoff
        self._shdr_size = shdr_size
        self._shnum = shnum
        if shstrndx == SHN_UNDEF or shstrndx >= shnum:
            raise FormatError(f"section name table index {shstrndx} is invalid")
        names = self._bounds(shstrndx)
        if names is None:
            raise FormatError("section name table extends beyond the end of the file")
        # A copy (a few hundred bytes): every section lookup searches it.
        self._names = data[names[0] : names[0] + names[1]]
        if self._names[-1:] != b"\0":
            raise FormatError("section name table does not end with a NUL byte")

    # -- sections -----------------------------------------------------------

    def _read_section_table(self, table: bytes) -> None:
        """The three columns lookups need, as arrays: no int object per
        header field (a module has dozens of sections, a tree thousands
        of modules)."""
        name_at, offset_at, size_at, u32_step, word_step = self.layout.section_columns
        halves = array("I", table)
        words = array(self.layout.word, table) if self.is64 else halves
        self._sh_names = halves[name_at::u32_step]
        self._sh_offsets = words[offset_at::word_step]
        self._sh_sizes = words[size_at::word_step]
        if self.endian != _NATIVE:
            self._sh_names.byteswap()
            self._sh_offsets.byteswap()
            self._sh_sizes.byteswap()

    def _bounds(self, index: int) -> tuple[int, int] | None:
        offset = self._sh_offsets[index]
        size = self._sh_sizes[index]
        if offset + size > self.size:
            return None
        return offset, size

    def find_section(self, name: str) -> tuple[int, int] | None:
        """(offset, size) of the first in-bounds section called ``name``.

        Index 0 is never a real section; sections whose name offset or
        contents lie outside the file are skipped, as kmod does.
        """
        # Find where the name occurs in the name table (as a whole string or
        # the tail of a longer one), then which headers point there: both
        # searches run in C, which matters when reading thousands of modules.
        index = self.section_index(name)
        return None if index is None else self._bounds(index)

    def section_index(self, name: str) -> int | None:
        """Index of the first in-bounds section called ``name`` (see find_section)."""
        target = name.encode() + b"\0"
        names = self._names
        sh_names = self._sh_names
        best: int | None = None
        nameoff = names.find(target)
        while nameoff >= 0:
            index = _first_valid(sh_names, nameoff, self._bounds)
            if index is not None and (best is None or index < best):
                best = index
            nameoff = names.find(target, nameoff + 1)
        return best

    def section_header_offset(self, index: int) -> int:
        """Where section ``index``'s header starts in the file."""
        return self._shoff + index * self._shdr_size

    def section_data(self, name: str) -> bytes | None:
        bounds = self.find_section(name)
        if bounds is None:
            return None
        offset, size = bounds
        return self.data[offset : offset + size]

    def section_bounds_by_index(self, index: int) -> tuple[int, int] | None:
        """(offset, size) of section ``index``, None when invalid or out of bounds."""
        if index == SHN_UNDEF or index >= self._shnum:
            return None
        return self._bounds(index)

    # -- primitives -----------------------------------------------------------

    def cstring(self, offset: int, limit: int) -> str:
        """NUL-terminated string at ``offset``, never reading past ``limit``."""
        end = self.data.find(b"\0", offset, limit)
        if end < 0:
            end = limit
        return self.data[offset:end].decode("utf-8", "surrogateescape")

    # -- symbols ------------------------------------------------------------

    def symbols(self) -> list[ElfSymbol] | None:
        """``.symtab`` entries from index 1 on; None without a usable table.

        A table whose size is not a multiple of the entry size counts as
        unusable, as in kmod; a name outside ``.strtab`` is reported as None
        and each caller decides, as kmod's callers do differently.
        """
        strtab = self.find_section(".strtab")
        symtab = self.find_section(".symtab")
        if strtab is None or symtab is None:
            return None
        str_off, str_size = strtab
        sym_off, sym_size = symtab
        sym = self.layout.sym
        entsize = sym.size
        if sym_size % entsize:
            return None
        raw = self.data[sym_off + entsize : sym_off + sym_size]
        result: list[ElfSymbol] = []
        str_end = str_off + str_size
        in_order = itemgetter(*map(sym.names.index, _SYMBOL_FIELDS))
        for index, fields in enumerate(sym.struct.iter_unpack(raw), start=1):
            name_off, info, shndx, value, size = in_order(fields)
            name = self.cstring(str_off + name_off, str_end) if name_off < str_size else None
            result.append(ElfSymbol(index, name, value, size, info, shndx))
        return result

    def symbol_columns(self) -> SymbolColumns | None:
        """``.symtab`` as columns (entries 1…), for scanning thousands of
        modules: arrays copied out of the table in C, names decoded on
        demand.

        None without a usable table (see :meth:`symbols`).
        """
        strtab = self.find_section(".strtab")
        symtab = self.find_section(".symtab")
        if strtab is None or symtab is None:
            return None
        sym_off, sym_size = symtab
        entsize = self.layout.sym.size
        if sym_size % entsize:
            return None
        return SymbolColumns(self, strtab, sym_off + entsize, sym_size - entsize)


# The header fields ElfFile keeps, in this order, by their places in EHDR.
_HEADER_FIELDS = itemgetter(
    *(
        [name for name, _ in EHDR].index(field)
        for field in ("e_machine", "e_shoff", "e_shentsize", "e_shnum", "e_shstrndx")
    )
)
# The fields ElfSymbol takes, in its order (the classes' orders differ).
_SYMBOL_FIELDS = ("st_name", "st_info", "st_shndx", "st_value", "st_size")
# A byte of a section index → 1 when it is 0 (see undefined_rows).
_UNDEFINED = bytes([1]) + bytes(255)
# st_info byte → 1 when its binding (high nibble) is STB_WEAK (2).
_WEAK_BIND = bytes(1 if info >> 4 == 2 else 0 for info in range(256))
NATIVE_BYTE_ORDER = _NATIVE = "<" if sys.byteorder == "little" else ">"
assert array("I").itemsize == 4 and array("H").itemsize == 2 and array("Q").itemsize == 8


class SymbolColumns:
    """Columns of a symbol table; row ``i`` is symbol index ``i + 1``.

    ``names`` (u32 offsets into .strtab) and ``shndxs`` (u16) are arrays,
    ``infos`` a bytes object: every row's fields without a Python object
    per symbol. Values are copied out only when asked for (exports). The
    table and ``.strtab`` are copied out once (a few KiB each), so the
    searches below run on plain bytes whatever buffer the module is in.
    """

    __slots__ = (
        "_shndxs",
        "endian",
        "entsize",
        "infos",
        "is64",
        "layout",
        "names",
        "str_size",
        "strings",
        "table",
    )

    def __init__(self, elf: ElfFile, strtab: tuple[int, int], offset: int, size: int) -> None:
        self.is64 = elf.is64
        self.endian = elf.endian
        self.strings = elf.data[strtab[0] : strtab[0] + strtab[1]]
        self.str_size = len(self.strings)
        self.layout = sym = elf.layout.sym
        self.entsize = entsize = sym.size
        self.table = raw = elf.data[offset : offset + size]
        words = array("I", raw)
        if elf.endian != _NATIVE:
            words.byteswap()
        self.names = words[sym.offset("st_name") // 4 :: entsize // 4]
        self.infos = raw[sym.offset("st_info") :: entsize]
        self._shndxs: array[int] | None = None

    @property
    def shndxs(self) -> array[int]:
        """Section index of each row (made when first asked for: finding
        the undefined rows does without it)."""
        if self._shndxs is None:
            halves = array("H", self.table)
            if self.endian != _NATIVE:
                halves.byteswap()
            self._shndxs = halves[self.layout.offset("st_shndx") // 2 :: self.entsize // 2]
        return self._shndxs

    def __len__(self) -> int:
        return len(self.names)

    def names_in_range(self) -> bool:
        """Every name offset lies inside ``.strtab``."""
        return not self.names or max(self.names) < self.str_size

    def values_of(self, rows: list[int]) -> list[int]:
        """The values (``st_value``) of ``rows``, from one column copied
        out of the table in C."""
        word = "Q" if self.is64 else "I"
        width = array(word).itemsize
        at, step = self.layout.offset("st_value") // width, self.entsize // width
        column = array(word, self.table)[at::step]
        if self.endian != _NATIVE:
            column.byteswap()
        return list(map(column.__getitem__, rows))

    def raw_names_of(self, rows: list[int]) -> list[bytes] | None:
        """Names of ``rows`` as bytes, found in C; None when one lies
        outside ``.strtab``."""
        starts = list(map(self.names.__getitem__, rows))
        if starts and max(starts) >= self.str_size:
            return None
        strings = self.strings
        stops = list(map(strings.find, repeat(b"\0"), starts))
        if -1 in stops:  # the last string runs to the end of the table
            stops = [self.str_size if stop < 0 else stop for stop in stops]
        return list(map(strings.__getitem__, map(slice, starts, stops)))

    def rows_named_with_prefix(self, prefix: bytes) -> list[int]:
        """Rows whose name starts with ``prefix``, in table order."""
        strings = self.strings
        starts = set()
        pos = strings.find(prefix)
        while pos >= 0:
            starts.add(pos)
            pos = strings.find(prefix, pos + 1)
        if not starts:
            return []
        return list(compress(range(len(self.names)), map(starts.__contains__, self.names)))

    def weak_flags(self, rows: list[int]) -> list[bool]:
        """Whether each of ``rows`` binds weakly (STB_WEAK); weak rows are
        rare, so they are looked for in C first."""
        flags = [False] * len(rows)
        if self.infos.translate(_WEAK_BIND).find(1) < 0:
            return flags
        for at, row in enumerate(rows):
            flags[at] = self.infos[row] >> 4 == 2
        return flags

    def undefined_rows(self) -> list[int]:
        """Rows with section index SHN_UNDEF (0), in table order.

        Found in the table's bytes: the index's two byte columns OR-ed as
        two big integers give a byte per row that is 0 only for SHN_UNDEF,
        in either byte order; no Python object per row but the result."""
        shndx_at = self.layout.offset("st_shndx")
        count = len(self.names)
        low = int.from_bytes(self.table[shndx_at :: self.entsize], "little")
        high = int.from_bytes(self.table[shndx_at + 1 :: self.entsize], "little")
        undefined = (low | high).to_bytes(count, "little").translate(_UNDEFINED)
        return list(compress(range(count), undefined))
