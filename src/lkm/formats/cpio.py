"""The cpio "newc" format, which the kernel unpacks as an initramfs.

Each member: the 6-byte magic ``070701``, thirteen 8-digit hex fields
(inode, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
rdevmajor, rdevminor, namesize, check), the NUL-terminated name padded to
a multiple of 4, then the data padded likewise; a member named
``TRAILER!!!`` ends the archive (kernel ``init/initramfs.c``). lkm builds
the initramfs of its test VMs with this; the reader exists for tests and
for looking inside an initramfs.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable

from lkm.errors import FormatError
from lkm.records import Record

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
_FIELDS = 13
_HEADER = len(MAGIC) + 8 * _FIELDS


class Member(Record):
    name: str  # relative, no leading '/'
    mode: int  # file type and permission bits (stat.S_IFREG | 0o755, …)
    data: bytes = b""  # file contents, or the target of a symlink

    @classmethod
    def directory(cls, name: str, perm: int = 0o755) -> Member:
        return cls(name, stat.S_IFDIR | perm)

    @classmethod
    def file(cls, name: str, data: bytes, perm: int = 0o644) -> Member:
        return cls(name, stat.S_IFREG | perm, data)

    @classmethod
    def symlink(cls, name: str, target: str) -> Member:
        return cls(name, stat.S_IFLNK | 0o777, target.encode())


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def write(members: Iterable[Member]) -> bytes:
    """An archive holding ``members`` in order, then the trailer."""
    out = bytearray()
    for inode, member in enumerate([*members, Member(TRAILER, 0)], start=1):
        name = member.name.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(member.mode) else 1
        fields = (inode, member.mode, 0, 0, nlink, 0, len(member.data), 0, 0, 0, 0, len(name), 0)
        out += MAGIC + "".join(f"{value:08x}" for value in fields).encode()
        out += name + _pad(len(out) + len(name))
        out += member.data + _pad(len(member.data))
    return bytes(out)


def read(data: bytes) -> list[Member]:
    """Members up to the trailer; malformed archives raise FormatError."""
    members: list[Member] = []
    pos = 0
    while True:
        if pos + _HEADER > len(data) or data[pos : pos + 6] != MAGIC:
            raise FormatError(f"no cpio newc header at offset {pos}")
        try:
            fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(_FIELDS)]
        except ValueError:
            raise FormatError(f"bad hex field in the cpio header at offset {pos}") from None
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_start = pos + _HEADER
        name_end = name_start + namesize
        data_start = name_end + len(_pad(name_end))
        if namesize == 0 or data_start + size > len(data):
            raise FormatError(f"cpio member at offset {pos} extends beyond the archive")
        name = data[name_start : name_end - 1].decode("utf-8", "surrogateescape")
        if name == TRAILER:
            return members
        members.append(Member(name, mode, data[data_start : data_start + size]))
        pos = data_start + size + len(_pad(size))
