"""x86 ``bzImage`` kernels: the compressed payload inside, and its PVH entry.

A bzImage is real-mode setup code followed by a small decompressor and the
compressed kernel (``vmlinux`` as an ELF file, relocations appended). The
boot protocol header says where the payload is: ``setup_sects`` at 0x1f1
(0 means 4), ``payload_offset`` and ``payload_length`` at 0x248, counted
from the protected-mode code that starts after the setup sectors.

QEMU boots an uncompressed ELF ``vmlinux`` directly through the PVH entry
point when the kernel has one (a Xen ``PHYS32_ENTRY`` note, present with
``CONFIG_PVH``), which skips the decompressor: under TCG that is seconds.
"""

from __future__ import annotations

import struct

from lkm.errors import FormatError
from lkm.formats.compression import Compression, decompress, detect
from lkm.formats.elf_layout import elf_layout

_HEADER_MAGIC = b"HdrS"  # at 0x202
_PT_NOTE = 4
_XEN_ELFNOTE_PHYS32_ENTRY = 18


def is_bzimage(start: bytes) -> bool:
    """Whether ``start`` (an image's first 0x206 bytes or more) has the
    boot protocol's setup header."""
    return start[0x202:0x206] == _HEADER_MAGIC


def payload(image: bytes) -> bytes:
    """The compressed kernel inside a bzImage."""
    if len(image) < 0x250 or not is_bzimage(image):
        raise FormatError("not an x86 bzImage (no boot protocol header)")
    setup_sects = image[0x1F1] or 4
    offset, length = struct.unpack_from("<II", image, 0x248)
    start = (setup_sects + 1) * 512 + offset
    if not length or start + length > len(image):
        raise FormatError("bzImage payload lies outside the file")
    return image[start : start + length]


def vmlinux(image: bytes) -> bytes:
    """The uncompressed ELF kernel of a bzImage (gzip, xz or zstd payloads)."""
    data = payload(image)
    kind = detect(data)
    if kind is Compression.NONE:
        raise FormatError("bzImage payload in a compression lkm does not read")
    elf = decompress(data, kind, first_stream_only=True)  # then comes its size
    if not elf.startswith(b"\x7fELF"):
        raise FormatError("bzImage payload is not an ELF kernel")
    return elf


def has_pvh_entry(elf: bytes) -> bool:
    """Whether a 64-bit little-endian ELF kernel carries the PVH entry note."""
    if elf[:6] != b"\x7fELF\x02\x01":
        return False
    layout = elf_layout(True, "<")
    ehdr, phdr = layout.ehdr, layout.phdr
    if len(elf) < ehdr.size:
        return False
    header = dict(zip(ehdr.names, ehdr.struct.unpack_from(elf), strict=True))
    phoff, phentsize, phnum = header["e_phoff"], header["e_phentsize"], header["e_phnum"]
    for i in range(phnum):
        at = phoff + i * phentsize
        if phentsize < phdr.size or at + phdr.size > len(elf):
            return False  # headers past the end: not a kernel QEMU can boot
        fields = dict(zip(phdr.names, phdr.struct.unpack_from(elf, at), strict=True))
        if fields["p_type"] != _PT_NOTE:
            continue
        offset, size = fields["p_offset"], fields["p_filesz"]
        if _notes_have_pvh(elf[offset : offset + size]):
            return True
    return False


def _notes_have_pvh(notes: bytes) -> bool:
    pos = 0
    while pos + 12 <= len(notes):
        namesz, descsz, kind = struct.unpack_from("<III", notes, pos)
        name = notes[pos + 12 : pos + 12 + namesz]
        if name == b"Xen\x00" and kind == _XEN_ELFNOTE_PHYS32_ENTRY:
            return True
        pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False
