"""Reading a file lkm did not create: bounded, and never blocking on open.

Configuration, index text files, ``System.map``, keys, certificates,
kernel images: every such file is read here, under a
:class:`FilePolicy` that says how much its reader takes and which kinds
of file besides regular ones. A path may name anything: a link to
``/dev/zero`` never ends, a FIFO nobody writes to blocks ``open(2)`` for
ever, ``/proc`` files say their size is 0. So the file is opened without
blocking (:func:`lkm.formats.file_kinds.open_file`), its ``fstat`` decides
what is read, and no more than the policy's limit is: past it, one
:class:`~lkm.errors.UnreadableFileError` names the file and the problem.

Modules and kmod's binary indexes are opened by their formats (mapped,
or read by position) through the same :mod:`lkm.formats.file_kinds`.
"""

from __future__ import annotations

import errno
import os
import stat

from lkm.errors import UnreadableFileError
from lkm.formats.file_kinds import not_regular, open_file, open_regular, too_large
from lkm.records import Record

MiB = 1 << 20
# The smallest read: a few per MiB of a device or a pipe; for a regular
# file, whose size is known, one read of that size and one that sees the end.
_CHUNK = 1 << 16


class FilePolicy(Record):
    """What one reader takes.

    ``limit``: the most bytes it reads; a longer file is an error.
    ``streams``: character and block devices and pipes too, read up to the
    limit: kmod reads configuration from whatever its path names (a
    ``.conf`` linked to ``/dev/null`` masks one), and ``-C <(…)`` or
    ``--key <(…)`` name a pipe. A FIFO nobody writes to is refused.
    ``directory_reads_empty``: a directory reads as an empty file, as in
    kmod's readers that go through stdio (``fopen`` opens a directory; the
    first ``fgets`` fails with EISDIR, which ends the loop like EOF).
    """

    limit: int
    streams: bool = False
    directory_reads_empty: bool = False


# modprobe.d and depmod.d files, modules.softdep and modules.weakdep
# (read as modprobe.d files): a few KiB each; kmod gives up on a line
# only when it outgrows a 1 GiB buffer (freadline_wrapped's int size).
CONFIGURATION = FilePolicy(8 * MiB, streams=True, directory_reads_empty=True)
# Text files of a module directory as depmod reads them, through stdio
# (modules.order, modules.builtin, modules.builtin.modinfo): at most
# about 1.5 MiB for Debian's ~4,000 modules.
INDEX_TEXT = FilePolicy(64 * MiB, streams=True, directory_reads_empty=True)
# modules.builtin.modinfo as libkmod reads it for modinfo and modprobe
# (libkmod-builtin.c: open, fstat, pread): a directory fails with EISDIR.
BUILTIN_MODINFO = FilePolicy(64 * MiB, streams=True)
# depmod -F System.map / -E Module.symvers (or /proc/kallsyms): 5-20 MiB.
KERNEL_SYMBOLS = FilePolicy(64 * MiB, streams=True, directory_reads_empty=True)
# A signing key or certificate (PEM or DER): a few KiB. sign-file reads
# them through OpenSSL BIOs, so a pipe works there too.
KEY = FilePolicy(MiB, streams=True)
# Small text files of a kernel headers tree (.config, auto.conf,
# utsrelease.h, kernel.release): at most a few hundred KiB.
HEADERS_TEXT = FilePolicy(16 * MiB)
# A module to sign, a kernel image, a program to copy: regular files,
# no larger than a decompressed module may be
# (lkm.formats.compression.MAX_DECOMPRESSED).
BINARY = FilePolicy(1 << 30)


def read_file(path: str, policy: FilePolicy) -> bytes:
    """The bytes of ``path`` as ``policy`` allows; ``OSError`` when it
    cannot be opened (missing, no permission) and
    :class:`~lkm.errors.UnreadableFileError` (an ``OSError`` too) when it is
    a kind the policy does not take or longer than its limit."""
    fd, st = open_file(path)
    try:
        mode = st.st_mode
        if stat.S_ISREG(mode):
            return _read_bounded(fd, path, policy.limit, st.st_size)
        if stat.S_ISDIR(mode) and policy.directory_reads_empty:
            return b""
        if policy.streams and _is_stream(mode):
            first = _first_from_fifo(fd, path) if stat.S_ISFIFO(mode) else b""
            os.set_blocking(fd, True)  # a pipe's writer or a terminal may be slow
            return _read_bounded(fd, path, policy.limit, 0, first)
        raise not_regular(path, mode)
    finally:
        os.close(fd)


def read_text(path: str, policy: FilePolicy) -> str:
    """:func:`read_file` as text: UTF-8, any other byte kept as a surrogate
    escape (kmod treats these files as bytes)."""
    return read_file(path, policy).decode("utf-8", "surrogateescape")


def read_head(path: str, size: int) -> bytes:
    """The first ``size`` bytes (fewer if it is shorter) of a regular file."""
    fd, _ = open_regular(path)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def _is_stream(mode: int) -> bool:
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)


def _first_from_fifo(fd: int, path: str) -> bytes:
    """The first bytes of a FIFO opened without blocking. The end of the
    file at once means nobody has it open for writing (nor wrote to it and
    left): refused, where kmod's ``open`` would wait for a writer for ever.
    (A writer that has not written yet: nothing, and the reads then wait.)"""
    try:
        first = os.read(fd, _CHUNK)
    except BlockingIOError:
        return b""
    if not first:
        raise UnreadableFileError(path, "a FIFO nobody writes to", errno.ENXIO)
    return first


def _read_bounded(fd: int, path: str, limit: int, size: int, first: bytes = b"") -> bytes:
    """Everything up to the end of ``fd``, which must come within ``limit``
    bytes. ``size`` (fstat's, 0 when unknown: /proc files, devices, pipes)
    lets one read take a regular file whole."""
    if size > limit:
        raise too_large(path, limit)
    chunks = [first] if first else []
    total = len(first)
    want = max(size + 1, _CHUNK)
    while total <= limit:
        chunk = os.read(fd, min(want, limit + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
    raise too_large(path, limit)
