"""A file read by position: the regions a reader asks for, nothing more.

depmod reads a few small regions (the ELF and section headers, the symbol
and string tables, ``.modinfo``, ``__versions``) of thousands of module
files. ``os.pread`` of just those regions copies a few KiB per file; an
mmap costs a mapping, an unmapping and a page fault for every page
touched, which measured several times slower per file here. Whole files
are never copied either way.
"""

from __future__ import annotations

import os

from lkm.errors import FormatError


class FileRegions:
    """Read-only, random-access view of an open file descriptor with the
    few operations the ELF readers use: ``len()``, slicing (to bytes) and
    ``find()``. The descriptor is the caller's: it must stay open while
    the view is used, and the file must not change meanwhile."""

    __slots__ = ("fd", "head", "size", "tail", "tail_start")

    def __init__(self, fd: int, size: int, head_size: int = 64, tail_size: int = 0) -> None:
        self.fd = fd
        self.size = size
        # The file's first bytes, read once: the compression magic and
        # the ELF header are both asked for there.
        self.head = os.pread(fd, min(head_size, size), 0)
        self.tail_start = size
        self.tail = b""
        if tail_size:
            self.read_tail(tail_size)

    def read_tail(self, tail_size: int) -> None:
        """Read the file's last ``tail_size`` bytes at once: a module's
        section table, section names and signature all lie there (the 6.1
        tree needs at most 7.5 KiB), one read instead of several. A reader
        calls this once it knows it wants them (not for a compressed
        module, which is read whole)."""
        size = self.size
        self.tail_start = size - min(tail_size, size)
        self.tail = os.pread(self.fd, size - self.tail_start, self.tail_start)
        if len(self.tail) != size - self.tail_start:
            raise FormatError("file changed while being read")

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: slice) -> bytes:
        if key.__class__ is not slice or key.step not in (None, 1):
            raise TypeError("FileRegions supports contiguous slices only")
        start, stop, _ = key.indices(self.size)
        if stop <= start:
            return b""
        # Tail first: a module's reader asks there most (modinfo: 4 of
        # its 6 reads of each of thousands of modules).
        tail_start = self.tail_start
        if start >= tail_start:
            return self.tail[start - tail_start : stop - tail_start]
        if stop <= len(self.head):
            return self.head[start:stop]
        data = os.pread(self.fd, stop - start, start)
        if len(data) != stop - start:
            raise FormatError("file changed while being read")
        return data

    def find(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        """Like ``bytes.find``: the lowest position of ``sub`` in
        ``[start, end)``, or -1."""
        start, end, _ = slice(start, end).indices(self.size)
        pos = self[start:end].find(sub)
        return pos + start if pos >= 0 else -1
