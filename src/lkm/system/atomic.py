"""Replacing files so that readers see the old or the new one, never half.

Write to a temporary file next to the target (created exclusively, so two
writers never share one), then rename it over the target: rename is atomic
within a filesystem. A process killed in between leaves at most the
temporary file behind.
"""

from __future__ import annotations

import os


def replace_file(target: str, data: bytes | memoryview, temporary: str, mode: int = 0o644) -> None:
    """Write ``data`` to ``temporary`` then rename it to ``target``."""
    fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        os.unlink(temporary)
        raise
    os.close(fd)
    try:
        os.rename(temporary, target)
    except BaseException:  # the target is a directory, say: leave nothing behind
        os.unlink(temporary)
        raise
