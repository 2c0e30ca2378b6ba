"""Turn a little-endian ELF module into the big-endian image of itself.

Debian ships no 32-bit big-endian kernel any more, so an ELF32 big-endian
module is made from a real armhf one: every field lkm and kmod read (ELF
header, section headers, symbol table, ``__versions`` CRCs, the
``___kcrctab*`` CRC words) is byte-swapped. Reading the result must give the
same facts as reading the original.
"""

from __future__ import annotations

import struct


def _swap(buf: bytearray, offset: int, fmt: str) -> None:
    values = struct.unpack_from("<" + fmt, buf, offset)
    struct.pack_into(">" + fmt, buf, offset, *values)


def to_big_endian(data: bytes) -> bytes:
    assert data[:4] == b"\x7fELF" and data[5] == 1, "expects a little-endian ELF"
    is64 = data[4] == 2
    buf = bytearray(data)
    word = "Q" if is64 else "I"
    header = f"HHI{word}{word}{word}IHHHHHH"
    (shoff,) = struct.unpack_from("<" + word, buf, 40 if is64 else 32)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", buf, 58 if is64 else 46)
    _swap(buf, 16, header)
    buf[5] = 2
    shdr = "IIQQQQIIQQ" if is64 else "IIIIIIIIII"
    sections = [struct.unpack_from("<" + shdr, buf, shoff + i * shentsize) for i in range(shnum)]
    for i in range(shnum):
        _swap(buf, shoff + i * shentsize, shdr)
    names_off = sections[shstrndx][4]

    def name(sec: tuple[int, ...]) -> bytes:
        start = names_off + sec[0]
        return bytes(buf[start : buf.index(b"\0", start)])

    for sec in sections:
        sec_name, offset, size = name(sec), sec[4], sec[5]
        if sec_name == b".symtab":
            entry = ("IBBHQQ", 24) if is64 else ("IIIBBH", 16)
            for pos in range(offset, offset + size, entry[1]):
                _swap(buf, pos, entry[0])
        elif sec_name == b"__versions":
            for pos in range(offset, offset + size, 64):
                _swap(buf, pos, word)
        elif sec_name.startswith((b"___kcrctab", b"__kcrctab")):
            for pos in range(offset, offset + size - 3, 4):
                _swap(buf, pos, "I")
    return bytes(buf)
