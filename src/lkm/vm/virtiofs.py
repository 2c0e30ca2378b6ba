"""The host's root over virtiofs: a virtiofsd per guest, and QEMU's side.

Used when asked for (``lkm vm run --share virtiofs``) and a virtiofsd is
installed: the Rust one (Debian package virtiofsd) or the C one QEMU 7
ships (qemu-system-common). 9p stays the default because on the machines
lkm is developed on (TCG, cache=none for both) it measured faster per
command; virtiofs needs guest memory shared with the daemon.
"""

from __future__ import annotations

import os
import time

from lkm.errors import LkmError
from lkm.system.run import NULL, PIPE, Process, start
from lkm.vm.initramfs import HOST_TAG

# (path, command-line dialect): Rust's long options or the C one's -o.
VIRTIOFSD = (("/usr/libexec/virtiofsd", "rust"), ("/usr/lib/qemu/virtiofsd", "c"))
START_SECONDS = 5.0


class VirtiofsError(LkmError):
    """virtiofsd is missing or did not start; the message says which."""


def find_virtiofsd() -> tuple[str, str] | None:
    for path, dialect in VIRTIOFSD:
        if os.access(path, os.X_OK):
            return path, dialect
    return None


def start_daemon(socket: str) -> Process:
    """A virtiofsd sharing / through ``socket``, once the socket exists."""
    found = find_virtiofsd()
    if found is None:
        raise VirtiofsError("virtiofsd not found: install the Debian package virtiofsd")
    path, dialect = found
    if dialect == "rust":
        args = ["--socket-path", socket, "--shared-dir", "/", "--cache", "never",
                "--sandbox", "chroot"]  # fmt: skip
    else:
        args = [f"--socket-path={socket}", "-o", "source=/", "-o", "cache=none",
                "-o", "sandbox=chroot", "-f"]  # fmt: skip
    daemon = start([path, *args], stdin=NULL, stdout=NULL, stderr=PIPE)
    deadline = time.monotonic() + START_SECONDS
    while not os.path.exists(socket):
        if daemon.poll() is not None or time.monotonic() > deadline:
            daemon.kill()
            stderr = daemon.error_output()
            daemon.close()
            last = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise VirtiofsError(f"{path} did not start: {last[0]}")
        time.sleep(0.01)
    return daemon


def qemu_args(socket: str, memory: str) -> list[str]:
    """The device and the shared guest memory vhost-user needs."""
    return [
        "-object", f"memory-backend-memfd,id=mem,size={memory},share=on",
        "-numa", "node,memdev=mem",
        "-chardev", f"socket,id=lkmfs,path={socket}",
        "-device", f"vhost-user-fs-pci,chardev=lkmfs,tag={HOST_TAG}",
    ]  # fmt: skip
