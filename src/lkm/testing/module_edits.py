"""Module files edited the way the kernel's load checks notice: for the
tests that compare ``lkm check`` with real kernels (a vermagic word, a
symbol's CRC, a licence, a modinfo key changed in place; the signature
cut off)."""

from __future__ import annotations

import struct
from pathlib import Path

from lkm.formats.elf import ElfFile
from lkm.formats.module_file import open_module

MODVERSION_ENTRY = 64  # a __versions entry on 64-bit kernels: CRC word, 56-byte name


def unsigned(path: Path | str) -> bytes:
    """The module's image (decompressed) without its signature."""
    with open_module(str(path)) as module:
        data = bytes(module.data[:])
        signature = module.signature
    return data[: signature.module_size] if signature is not None else data


def modinfo_replaced(data: bytes, old: bytes, new: bytes) -> bytes:
    """``old`` in ``.modinfo`` replaced by ``new`` of the same length."""
    if len(old) != len(new):
        raise ValueError("a replacement must keep the length")
    offset, size = ElfFile(data).find_section(".modinfo") or (0, 0)
    at = data.find(old, offset, offset + size)
    if at < 0:
        raise ValueError(f"{old!r} is not in .modinfo")
    return data[:at] + new + data[at + len(old) :]


def crc_changed(data: bytes, symbol: str) -> bytes:
    """``symbol``'s CRC in ``__versions`` changed (one bit flipped)."""
    elf = ElfFile(data)
    offset, size = elf.find_section("__versions") or (0, 0)
    word = elf.endian + "Q"
    for entry in range(offset, offset + size, MODVERSION_ENTRY):
        if data[entry + 8 : entry + MODVERSION_ENTRY].split(b"\0", 1)[0] == symbol.encode():
            crc = struct.unpack_from(word, data, entry)[0] ^ 1
            return data[:entry] + struct.pack(word, crc) + data[entry + 8 :]
    raise ValueError(f"no __versions entry for {symbol}")
