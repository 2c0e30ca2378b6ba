"""A module image gdb can place section by section.

gdb's ``add-symbol-file FILE ADDR -s SECTION ADDR …`` moves each section of
a relocatable object, and the debug information that points into it, to
the address given only when every section of the file has link address
(``sh_addr``) 0: gdb's ``default_symfile_offsets`` (``symfile.c``) skips
setting the sections' addresses "if the relocatable file has a section
with an assigned VMA", and then adds ``.text``'s offset to every address in
the DWARF, so a module's variables show inside its code. kbuild's final
``ld -r`` with ``scripts/module.lds`` can leave a few sections with a
non-zero ``sh_addr`` (6.12's ``.data`` at 0x60). The kernel ignores
``sh_addr`` in a module and places each section itself
(``kernel/module/main.c``, ``layout_sections``), so the image with every
``sh_addr`` zeroed is the same module, and gdb places it as the kernel did.
"""

from __future__ import annotations

import struct

from lkm.formats.elf import ElfFile


def without_link_addresses(image: bytes) -> bytes | None:
    """``image`` with every section's ``sh_addr`` set to 0; None when all
    are 0 already. Raises :class:`~lkm.errors.FormatError` for a bad ELF."""
    elf = ElfFile(image)
    ehdr = elf.layout.ehdr
    header = dict(zip(ehdr.names, ehdr.struct.unpack_from(image), strict=True))
    word = elf.endian + elf.layout.word
    field = elf.layout.shdr.offset("sh_addr")
    edited: bytearray | None = None
    for index in range(header["e_shnum"]):
        at = elf.section_header_offset(index) + field
        (address,) = struct.unpack_from(word, image, at)
        if address:
            edited = edited if edited is not None else bytearray(image)
            struct.pack_into(word, edited, at, 0)
    return bytes(edited) if edited is not None else None


__all__ = ["without_link_addresses"]
