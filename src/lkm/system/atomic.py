"""Replacing files so that readers see the old or the new one, never half.

One rule for every writer in lkm (depmod's indexes, signed modules, keys,
caches), decided by what the path is now:

- absent or a regular file: write a temporary file next to it (created
  exclusively, so two writers never share one), then rename it over the
  target. Rename is atomic within a filesystem; a process killed in
  between leaves at most the temporary file behind.
- a symbolic link: the rule applies to the file it points to, so the link
  stays a link (as ``cp`` and sign-file's ``fopen`` write through it).
- a character or block device (``-o /dev/null``, say): written in place,
  as sign-file does. Renaming over it would replace the machine's device
  node with a regular file.
- a FIFO: written in place when a reader has it open; otherwise refused at
  once (ENXIO) instead of waiting for a reader forever.
- a directory or a socket: refused (EISDIR, ENXIO), nothing written.
"""

from __future__ import annotations

import errno
import os
import stat


def replace_file(target: str, data: bytes | memoryview, suffix: str, mode: int = 0o644) -> str:
    """Write ``data`` to ``target`` by the rule above; ``suffix`` names the
    temporary file (``TARGET + suffix``). Returns the path written: the
    target, or the file a symbolic link there points to. Raises OSError
    (with the errno the kernel gave, or EISDIR/ENXIO for refused kinds)."""
    path = os.path.realpath(target) if os.path.islink(target) else target
    try:
        kind = stat.S_IFMT(os.stat(path).st_mode)
    except FileNotFoundError:
        kind = stat.S_IFREG
    if kind == stat.S_IFREG:
        _write_and_rename(path, data, path + suffix, mode)
    elif kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO):
        _write_in_place(path, data)
    elif kind == stat.S_IFDIR:
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    else:
        raise OSError(errno.ENXIO, "not a file that can be written", path)
    return path


def _write_and_rename(target: str, data: bytes | memoryview, temporary: str, mode: int) -> None:
    fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, mode)
    try:
        _write_all(fd, data)
    except BaseException:
        os.close(fd)
        os.unlink(temporary)
        raise
    os.close(fd)
    try:
        os.rename(temporary, target)
    except BaseException:  # raced with a directory appearing there: leave nothing behind
        os.unlink(temporary)
        raise


def _write_in_place(path: str, data: bytes | memoryview) -> None:
    # O_NONBLOCK: opening a FIFO nobody reads fails with ENXIO instead of
    # blocking; it is cleared again so the writes themselves wait normally.
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        os.set_blocking(fd, True)
        _write_all(fd, data)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
