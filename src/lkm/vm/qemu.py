"""Boot a real kernel under QEMU, run one command in it, bring back the result.

The guest sees the host's root read-only over 9p (``multidevs=remap``, so
files from different host filesystems keep distinct inodes) and a
writable scratch directory where the command's stdout, stderr and exit
status land. The kernel console goes to a log file. A guest that panics
(``panic=-1`` reboots, ``-no-reboot`` turns that into an exit) or runs past
the time-out ends the run with an error that carries the console tail.
TCG only for now: KVM guests hang on these machines (see the issue notes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from lkm.errors import LkmError
from lkm.vm.initramfs import HOST_TAG, SCRATCH_TAG, build_initramfs

CONSOLE_TAIL = 40
# multidevs=remap: files from different host filesystems keep distinct inodes.
_SHARE = "security_model=none,multidevs=remap"


class VmError(LkmError):
    """The VM did not run the command to the end; the message says why."""


@dataclass(frozen=True)
class VmResult:
    status: int
    stdout: bytes
    stderr: bytes
    console: str


def qemu_command(
    kernel_image: str, initrd: str, scratch: str, console: str, memory: str = "1G"
) -> list[str]:
    """The QEMU command line (what ``--dry-run`` prints)."""
    return [
        "qemu-system-x86_64",
        "-accel", "tcg",
        "-m", memory,
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-serial", f"file:{console}",
        "-kernel", kernel_image,
        "-initrd", initrd,
        "-append", "console=ttyS0 panic=-1 quiet",
        "-virtfs", f"local,path=/,mount_tag={HOST_TAG},{_SHARE},readonly=on",
        "-virtfs", f"local,path={scratch},mount_tag={SCRATCH_TAG},{_SHARE}",
    ]  # fmt: skip


def run(
    kernel_image: str,
    moddir: str,
    kernel: str,
    command: list[str],
    timeout: float = 120.0,
    memory: str = "1G",
) -> VmResult:
    """Boot ``kernel_image`` (modules in ``moddir``), run ``command``."""
    if shutil.which("qemu-system-x86_64") is None:
        raise VmError("qemu-system-x86_64 not found: install the Debian package qemu-system-x86")
    with tempfile.TemporaryDirectory(prefix="lkm-vm-") as work:
        scratch = os.path.join(work, "scratch")
        os.mkdir(scratch)
        initrd = os.path.join(work, "initrd.cpio")
        with open(initrd, "wb") as f:
            f.write(build_initramfs(moddir, kernel, command, os.getcwd()))
        console = os.path.join(work, "console.log")
        cmd = qemu_command(kernel_image, initrd, scratch, console, memory)
        try:
            subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise VmError(f"the VM ran past {timeout:.0f} s\n{_tail(console)}") from None
        log = _read(console)
        status_file = os.path.join(scratch, "status")
        if not os.path.exists(status_file):
            reason = "the kernel panicked" if "Kernel panic" in log else "the VM stopped early"
            raise VmError(f"{reason} before the command finished\n{_tail(console)}")
        with open(status_file) as f:
            status = int(f.read().strip() or "1")
        return VmResult(status, _read_bytes(scratch, "stdout"), _read_bytes(scratch, "stderr"), log)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _read_bytes(directory: str, name: str) -> bytes:
    try:
        with open(os.path.join(directory, name), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def _tail(console: str) -> str:
    lines = _read(console).splitlines()[-CONSOLE_TAIL:]
    return "console (last lines):\n" + "\n".join(lines)
