"""Opening a file lkm did not create: never blocking, and telling its kind.

The formats that open paths themselves (modules, kmod's binary indexes)
and the system layer's bounded reader (:mod:`lkm.system.files`) open
every such file here. ``open(2)`` of a FIFO nobody writes to waits for a
writer for ever (kmod hangs there); opened with ``O_NONBLOCK`` it returns
at once, and the ``fstat`` that follows says what the file is, so each
reader can take the kinds it reads and refuse the rest in one line.
``O_NONBLOCK`` changes nothing for a regular file.
"""

from __future__ import annotations

import errno
import os
import stat

from lkm.errors import UnreadableFileError

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

_KINDS = (
    (stat.S_ISREG, "a regular file"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def open_file(path: str) -> tuple[int, os.stat_result]:
    """``path`` opened read-only without blocking (and without becoming
    the controlling terminal, if it is one), and its ``fstat``. The caller
    owns the descriptor; ``OSError`` when it cannot be opened."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        return fd, os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise


def open_regular(path: str) -> tuple[int, os.stat_result]:
    """:func:`open_file` of a file that must be regular (a module, an
    index that is mapped); anything else is :func:`not_regular`."""
    fd, st = open_file(path)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise not_regular(path, st.st_mode)
    return fd, st


def kind_name(mode: int) -> str:
    """What ``mode`` says the file is: "a FIFO", "a character device"…"""
    return next((name for test, name in _KINDS if test(mode)), "a file of unknown kind")


def not_regular(path: str, mode: int) -> UnreadableFileError:
    """The error for a file that had to be regular. A directory keeps its
    errno's words (kmod's ``read`` fails with EISDIR there); any other kind
    is EINVAL, what the kernel answers ``finit_module`` of a file that is
    not regular (``kernel_read_file``)."""
    if stat.S_ISDIR(mode):
        return UnreadableFileError(path, os.strerror(errno.EISDIR), errno.EISDIR)
    return UnreadableFileError(path, f"not a regular file ({kind_name(mode)})", errno.EINVAL)


def too_large(path: str, limit: int) -> UnreadableFileError:
    """The error for a file longer than its reader takes."""
    return UnreadableFileError(
        path, f"{os.strerror(errno.EFBIG)} (over {_size_text(limit)})", errno.EFBIG
    )


def _size_text(size: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} bytes"
