"""ELF's binary layouts, declared once: the C structs of ``<elf.h>`` as
field lists, made concrete for each class (ELF32, ELF64) and byte order.

Every offset, size and :mod:`struct` format the readers use is derived
from these declarations, so no reader carries a number of its own.
"""

from __future__ import annotations

import struct

# A field whose width is the class's word: Elf32_Addr/Off (4 bytes) or
# Elf64_Addr/Off/Xword (8 bytes).
WORD = "word"

EHDR = (
    ("e_ident", "16s"), ("e_type", "H"), ("e_machine", "H"), ("e_version", "I"),
    ("e_entry", WORD), ("e_phoff", WORD), ("e_shoff", WORD), ("e_flags", "I"),
    ("e_ehsize", "H"), ("e_phentsize", "H"), ("e_phnum", "H"), ("e_shentsize", "H"),
    ("e_shnum", "H"), ("e_shstrndx", "H"),
)  # fmt: skip
SHDR = (
    ("sh_name", "I"), ("sh_type", "I"), ("sh_flags", WORD), ("sh_addr", WORD),
    ("sh_offset", WORD), ("sh_size", WORD), ("sh_link", "I"), ("sh_info", "I"),
    ("sh_addralign", WORD), ("sh_entsize", WORD),
)  # fmt: skip
# The two classes order a program header's and a symbol's fields differently.
PHDR = {
    False: (
        ("p_type", "I"), ("p_offset", "I"), ("p_vaddr", "I"), ("p_paddr", "I"),
        ("p_filesz", "I"), ("p_memsz", "I"), ("p_flags", "I"), ("p_align", "I"),
    ),
    True: (
        ("p_type", "I"), ("p_flags", "I"), ("p_offset", "Q"), ("p_vaddr", "Q"),
        ("p_paddr", "Q"), ("p_filesz", "Q"), ("p_memsz", "Q"), ("p_align", "Q"),
    ),
}  # fmt: skip
SYM = {
    False: (
        ("st_name", "I"), ("st_value", "I"), ("st_size", "I"),
        ("st_info", "B"), ("st_other", "B"), ("st_shndx", "H"),
    ),
    True: (
        ("st_name", "I"), ("st_info", "B"), ("st_other", "B"), ("st_shndx", "H"),
        ("st_value", "Q"), ("st_size", "Q"),
    ),
}  # fmt: skip
# One __versions entry (the kernel's struct modversion_info): a CRC the
# width of a word, then the name filling the entry to 64 bytes.
MODVERSION_SIZE = 64


class StructLayout:
    """One C struct in one class and byte order: its :mod:`struct`
    format, size and each field's offset (no padding: ELF's structs are
    laid out so that none is needed)."""

    __slots__ = ("names", "offsets", "size", "struct")

    def __init__(self, fields: tuple[tuple[str, str], ...], word: str, byte_order: str) -> None:
        formats = [word if kind == WORD else kind for _, kind in fields]
        self.names = tuple(name for name, _ in fields)
        self.struct = struct.Struct(byte_order + "".join(formats))
        self.size = self.struct.size
        self.offsets: dict[str, int] = {}
        at = 0
        for name, kind in zip(self.names, formats, strict=True):
            self.offsets[name] = at
            at += struct.calcsize("<" + kind)

    def offset(self, name: str) -> int:
        return self.offsets[name]


class ElfLayout:
    """The layouts of one ELF class and byte order."""

    __slots__ = (
        "byte_order",
        "ehdr",
        "is64",
        "modversion",
        "modversion_name",
        "phdr",
        "section_columns",
        "shdr",
        "sym",
        "word",
        "word_size",
    )

    def __init__(self, is64: bool, byte_order: str) -> None:
        self.is64 = is64
        self.byte_order = byte_order
        self.word = "Q" if is64 else "I"
        self.word_size = struct.calcsize("<" + self.word)
        self.ehdr = StructLayout(EHDR, self.word, byte_order)
        self.shdr = StructLayout(SHDR, self.word, byte_order)
        self.phdr = StructLayout(PHDR[is64], self.word, byte_order)
        self.sym = StructLayout(SYM[is64], self.word, byte_order)
        name_size = MODVERSION_SIZE - self.word_size
        self.modversion = StructLayout(
            (("crc", WORD), ("name", f"{name_size}s")), self.word, byte_order
        )
        # an entry's name alone: what reading names without CRCs unpacks
        self.modversion_name = struct.Struct(f"{self.modversion.offset('name')}x{name_size}s")
        # The section table read as columns (sh_name in u32 units, then
        # sh_offset and sh_size in words, then each step): worked out
        # here once, not for each of thousands of modules read.
        shdr, width = self.shdr, self.word_size
        self.section_columns = (
            shdr.offset("sh_name") // 4,
            shdr.offset("sh_offset") // width,
            shdr.offset("sh_size") // width,
            shdr.size // 4,
            shdr.size // width,
        )


_LAYOUTS: dict[tuple[bool, str], ElfLayout] = {}


def elf_layout(is64: bool, byte_order: str) -> ElfLayout:
    """The layouts for ELF64 (``is64``) or ELF32 in ``"<"`` or ``">"``,
    made once each."""
    found = _LAYOUTS.get((is64, byte_order))
    if found is None:
        found = _LAYOUTS[is64, byte_order] = ElfLayout(is64, byte_order)
    return found
