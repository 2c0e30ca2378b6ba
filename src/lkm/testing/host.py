"""Test plumbing that touches the host briefly: mount points for private
mount namespaces, and QEMU's monitor.

Tests run real tools (kmod, dkms, initramfs-tools, udev) that read fixed
paths such as ``/lib/modules``; they run in a mount namespace
(``unshare -m``) where a test's directory is bound over that path, so the
host's tree is never read or written. A bind mount needs the mount point
to exist: :func:`mountpoints` makes the missing ones and removes them
afterwards, so the host is left as it was.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def mountpoints(*paths: str) -> Iterator[None]:
    """``paths`` exist inside the block (made, and removed after, where
    the host has none)."""
    made: list[str] = []
    try:
        for path in paths:
            if not os.path.lexists(path):
                os.makedirs(path)
                made.append(path)
        yield
    finally:
        for path in reversed(made):
            os.rmdir(path)


def device_add(socket: str, **arguments: str) -> None:
    """QMP ``device_add`` on a running QEMU's monitor socket."""
    from qemu.qmp.legacy import QEMUMonitorProtocol

    qmp = QEMUMonitorProtocol(socket)
    qmp.connect()
    try:
        qmp.cmd("device_add", **arguments)
    finally:
        qmp.close()


__all__ = ["device_add", "mountpoints"]
