"""A module image edited so the kernel skips its checks without flags.

``init_module`` has no flags, so on a kernel without ``finit_module``
kmod forces a load by editing the image the kernel checks: the
``__versions`` section loses ``SHF_ALLOC`` (the kernel then finds no
symbol versions, as ``MODULE_INIT_IGNORE_MODVERSIONS`` makes it pretend)
and ``.modinfo``'s ``vermagic=`` string is blanked (as
``MODULE_INIT_IGNORE_VERMAGIC`` makes it skip the comparison). Either
way the kernel taints itself as forced. A signed module edited so no
longer matches its signature, and the kernel refuses it (EKEYREJECTED)
even when signatures are not enforced: for kmod as for lkm.
"""

from __future__ import annotations

import struct

from lkm.errors import FormatError, ModuleFormatError
from lkm.formats.elf import ElfFile

SHF_ALLOC = 0x2
VERMAGIC = b"vermagic="


def strip_for_forced_load(image: bytes, path: str, *, versions: bool, vermagic: bool) -> bytes:
    """``image`` with symbol versions and/or vermagic hidden from the kernel."""
    try:
        elf = ElfFile(image)
    except FormatError as exc:
        raise ModuleFormatError(path, str(exc)) from None
    edited = bytearray(image)
    if versions:
        _unallocate(elf, edited, "__versions")
    if vermagic:
        _blank_vermagic(elf, edited)
    return bytes(edited)


def _unallocate(elf: ElfFile, image: bytearray, section: str) -> None:
    index = elf.section_index(section)
    if index is None:
        return
    word = elf.endian + elf.layout.word
    at = elf.section_header_offset(index) + elf.layout.shdr.offset("sh_flags")
    (flags,) = struct.unpack_from(word, image, at)
    struct.pack_into(word, image, at, flags & ~SHF_ALLOC)


def _blank_vermagic(elf: ElfFile, image: bytearray) -> None:
    bounds = elf.find_section(".modinfo")
    if bounds is None:
        return
    offset, size = bounds
    end = offset + size
    entry = offset
    while entry < end:
        stop = image.find(b"\0", entry, end)
        stop = end if stop < 0 else stop
        if image.startswith(VERMAGIC, entry):
            image[entry:stop] = bytes(stop - entry)
            return
        entry = stop + 1
