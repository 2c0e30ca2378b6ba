"""A minimal, strict ELF reader for kernel modules.

Takes a buffer (``bytes`` or ``mmap``), never a path. Handles ELF32 and
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
import struct
import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from itertools import compress, repeat
from operator import add, not_

from lkm.errors import FormatError

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

# Number of fields in a section header, used to index the flat tuple.
_SH_FIELDS = 10
_SH_NAME, _SH_TYPE, _SH_OFFSET, _SH_SIZE = 0, 1, 4, 5

# e_shoff, e_shentsize, e_shnum, e_shstrndx; e_machine separately.
_EHDR = {
    ELFCLASS32: (52, "I", 32, 46, 40),
    ELFCLASS64: (64, "Q", 40, 58, 64),
}


class Bind(enum.IntEnum):
    """Symbol binding as kmod reports it (libkmod.h kmod_symbol_bind)."""

    NONE = ord("\0")
    LOCAL = ord("L")
    GLOBAL = ord("G")
    WEAK = ord("W")
    UNDEF = ord("U")


BIND_FROM_ELF = {0: Bind.LOCAL, 1: Bind.GLOBAL, 2: Bind.WEAK}


# What the readers take: module bytes in memory or a read-only mapping of a
# file. Both index to ints, slice to bytes, have find() and feed struct.
Buffer = bytes | mmap.mmap


@dataclass(frozen=True, slots=True)
class ElfSymbol:
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
    sh_names: tuple[int, ...], nameoff: int, bounds: Callable[[int], tuple[int, int] | None]
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
        "_names_offset",
        "_names_size",
        "_shdrs",
        "_shnum",
        "big_endian",
        "data",
        "endian",
        "is64",
        "machine",
        "size",
    )

    def __init__(self, data: Buffer) -> None:
        self.data = data
        self.size = size = len(data)
        ident = data[:EI_NIDENT]
        if size <= EI_NIDENT or ident[:4] != ELFMAG:
            raise FormatError("not an ELF file (bad magic)")
        elf_class, elf_data = ident[4], ident[5]
        if elf_class not in _EHDR:
            raise FormatError(f"unknown ELF class {elf_class}")
        ehdr_size, word, shoff_at, shent_at, shdr_size = _EHDR[elf_class]
        if size <= ehdr_size:
            raise FormatError(f"truncated ELF header ({size} bytes)")
        if elf_data == ELFDATA2LSB:
            endian = "<"
        elif elf_data == ELFDATA2MSB:
            endian = ">"
        else:
            raise FormatError(f"unknown ELF byte order {elf_data}")
        self.is64 = elf_class == ELFCLASS64
        self.big_endian = endian == ">"
        self.endian = endian
        (self.machine,) = struct.unpack_from(endian + "H", data, 18)
        (shoff,) = struct.unpack_from(endian + word, data, shoff_at)
        shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", data, shent_at)
        if shentsize != shdr_size:
            raise FormatError(f"section header size is {shentsize}, expected {shdr_size}")
        if shoff + shnum * shdr_size > size:
            raise FormatError(
                f"section header table ({shnum} entries at offset {shoff}) "
                f"extends beyond the end of the file ({size} bytes)"
            )
        fmt = "IIQQQQIIQQ" if self.is64 else "IIIIIIIIII"
        self._shdrs: tuple[int, ...] = struct.unpack_from(endian + fmt * shnum, data, shoff)
        self._shnum = shnum
        if shstrndx == SHN_UNDEF or shstrndx >= shnum:
            raise FormatError(f"section name table index {shstrndx} is invalid")
        names = self._bounds(shstrndx)
        if names is None:
            raise FormatError("section name table extends beyond the end of the file")
        self._names_offset, self._names_size = names
        if (
            self._names_size == 0
            or data[
                self._names_offset + self._names_size - 1 : self._names_offset + self._names_size
            ]
            != b"\0"
        ):
            raise FormatError("section name table does not end with a NUL byte")

    # -- sections -----------------------------------------------------------

    def _bounds(self, index: int) -> tuple[int, int] | None:
        base = index * _SH_FIELDS
        offset = self._shdrs[base + _SH_OFFSET]
        size = self._shdrs[base + _SH_SIZE]
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
        target = name.encode() + b"\0"
        names_offset = self._names_offset
        names_end = names_offset + self._names_size
        data = self.data
        sh_names = self._shdrs[_SH_NAME::_SH_FIELDS]
        best: int | None = None
        pos = data.find(target, names_offset, names_end)
        while pos >= 0:
            nameoff = pos - names_offset
            index = _first_valid(sh_names, nameoff, self._bounds)
            if index is not None and (best is None or index < best):
                best = index
            pos = data.find(target, pos + 1, names_end)
        return None if best is None else self._bounds(best)

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

    def uint(self, offset: int, width: int) -> int:
        if offset + width > self.size:
            raise FormatError(
                f"read of {width} bytes at offset {offset} is beyond the end of the file"
            )
        raw = self.data[offset : offset + width]
        return int.from_bytes(raw, "big" if self.big_endian else "little")

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
        if self.is64:
            fmt, entsize = self.endian + "IBBHQQ", 24
        else:
            fmt, entsize = self.endian + "IIIBBH", 16
        if sym_size % entsize:
            return None
        raw = self.data[sym_off + entsize : sym_off + sym_size]
        result: list[ElfSymbol] = []
        str_end = str_off + str_size
        for index, fields in enumerate(struct.iter_unpack(fmt, raw), start=1):
            if self.is64:
                name_off, info, _other, shndx, value, size = fields
            else:
                name_off, value, size, info, _other, shndx = fields
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
        entsize = 24 if self.is64 else 16
        if sym_size % entsize:
            return None
        return SymbolColumns(self, strtab, sym_off + entsize, sym_size - entsize)


# Byte offsets inside one symbol entry: name, info, shndx, value (and its
# format), for ELF64 and ELF32.
_SYMBOL_LAYOUT = {True: (0, 4, 6, 8, "Q"), False: (0, 12, 14, 4, "I")}
_NATIVE = "<" if sys.byteorder == "little" else ">"
assert array("I").itemsize == 4 and array("H").itemsize == 2


class SymbolColumns:
    """Columns of a symbol table; row ``i`` is symbol index ``i + 1``.

    ``names`` (u32 offsets into .strtab) and ``shndxs`` (u16) are arrays,
    ``infos`` a bytes object: every row's fields without a Python object
    per symbol. Values are read for the few rows that need them.
    """

    __slots__ = (
        "elf",
        "entsize",
        "infos",
        "names",
        "shndxs",
        "str_end",
        "str_offset",
        "str_size",
        "table_offset",
    )

    def __init__(self, elf: ElfFile, strtab: tuple[int, int], offset: int, size: int) -> None:
        self.elf = elf
        self.str_offset, self.str_size = strtab
        self.str_end = self.str_offset + self.str_size
        self.table_offset = offset
        self.entsize = entsize = 24 if elf.is64 else 16
        name_at, info_at, shndx_at, _, _ = _SYMBOL_LAYOUT[elf.is64]
        raw = elf.data[offset : offset + size]
        words = array("I", raw)
        halves = array("H", raw)
        if elf.endian != _NATIVE:
            words.byteswap()
            halves.byteswap()
        self.names = words[name_at // 4 :: entsize // 4]
        self.shndxs = halves[shndx_at // 2 :: entsize // 2]
        self.infos = raw[info_at::entsize]

    def __len__(self) -> int:
        return len(self.names)

    def names_in_range(self) -> bool:
        """Every name offset lies inside ``.strtab``."""
        return not self.names or max(self.names) < self.str_size

    def value(self, row: int) -> int:
        _, _, _, value_at, word = _SYMBOL_LAYOUT[self.elf.is64]
        at = self.table_offset + row * self.entsize + value_at
        (value,) = struct.unpack_from(self.elf.endian + word, self.elf.data, at)
        return int(value)

    def name(self, row: int) -> str | None:
        offset = self.names[row]
        if offset >= self.str_size:
            return None
        return self.elf.cstring(self.str_offset + offset, self.str_end)

    def raw_names_of(self, rows: list[int]) -> list[bytes] | None:
        """Names of ``rows`` as bytes, found in C; None when one lies
        outside ``.strtab``."""
        offsets = list(map(self.names.__getitem__, rows))
        if offsets and max(offsets) >= self.str_size:
            return None
        data, end = self.elf.data, self.str_end
        starts = list(map(add, offsets, repeat(self.str_offset)))
        stops = list(map(data.find, repeat(b"\0"), starts, repeat(end)))
        if -1 in stops:  # the last string runs to the end of the table
            stops = [end if stop < 0 else stop for stop in stops]
        return list(map(data.__getitem__, map(slice, starts, stops)))

    def rows_named_with_prefix(self, prefix: bytes) -> list[int]:
        """Rows whose name starts with ``prefix``, in table order."""
        data = self.elf.data
        starts = set()
        pos = data.find(prefix, self.str_offset, self.str_end)
        while pos >= 0:
            starts.add(pos - self.str_offset)
            pos = data.find(prefix, pos + 1, self.str_end)
        if not starts:
            return []
        return list(compress(range(len(self.names)), map(starts.__contains__, self.names)))

    def undefined_rows(self) -> list[int]:
        """Rows with section index SHN_UNDEF, in table order."""
        return list(compress(range(len(self.shndxs)), map(not_, self.shndxs)))
