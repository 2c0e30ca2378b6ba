"""``lkm vm run [--kernel K] [--memory M] [--timeout S] [--console LOG] [--dry-run] -- CMD…``

Boots a real kernel under QEMU, runs CMD inside (the host's root is
visible read-only, writes stay in the VM's memory) and exits with CMD's
status, printing its stdout and stderr. The kernel: a path to a
``vmlinuz-VERSION`` image next to ``lib/modules/VERSION``, or the release
or series (``6.1``, ``6.12``) of an installed or cached kernel — a Debian
series or release not here yet is fetched into lkm's cache first
(``--no-fetch`` refuses); by default the host's running kernel when its
image and modules are installed, else the newest cached kernel. The guest
kernel's own module requests (a filesystem, a network family, a link
type) run the host root's ``/sbin/modprobe`` in the guest's root, as on a
real system; ``--modprobe PATH`` names another program (lkm's ``modprobe``
through a link, say).
"""

from __future__ import annotations

import os

from lkm.cli.options import UsageError, parse
from lkm.errors import LkmError
from lkm.vm.boot_kernel import choose_kernel

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import BinaryIO

USAGE = (
    "usage: lkm vm run [--kernel IMAGE|VERSION] [--memory SIZE] [--timeout SECONDS]"
    " [--console LOGFILE] [--share 9p|virtiofs] [--modprobe PATH] [--no-fetch] [--dry-run]"
    " -- CMD...\n"
)


LONGOPTS = (
    "kernel=",
    "memory=",
    "timeout=",
    "console=",
    "share=",
    "modprobe=",
    "dry-run",
    "no-fetch",
    "help",
)


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = "vm") -> int:
    try:
        opts, rest = parse("lkm vm", args, "", LONGOPTS)
    except UsageError as exc:
        err.write(f"{exc}\n{USAGE}".encode("utf-8", "surrogateescape"))
        return 2
    if any(o == "--help" for o, _ in opts) or not rest or rest[0] != "run" or len(rest) < 2:
        err.write(USAGE.encode("utf-8", "surrogateescape"))
        return 2
    options = dict(opts)
    command = rest[1:]
    from lkm.vm.initramfs import DEFAULT_MODPROBE
    from lkm.vm.kernel_image import bootable_image
    from lkm.vm.qemu import VmError, kvm_usable, qemu_command
    from lkm.vm.qemu import run as run_vm

    try:
        from lkm.cli.options import fetch_on_demand

        fetch_on_demand(options.get("--kernel"), "image", "--no-fetch" not in options, err)
        kernel = choose_kernel(options.get("--kernel"))
        if "--dry-run" in options:
            image = bootable_image(kernel.image)
            accel = "kvm" if kvm_usable(image) else "tcg"
            socket = "VIRTIOFS-SOCKET" if options.get("--share") == "virtiofs" else None
            memory = options.get("--memory", "1G")
            cmd = qemu_command(image, "INITRD", "SCRATCH", "CONSOLE", memory, accel, socket)
            import shlex

            out.write((shlex.join(cmd) + "\n").encode("utf-8", "surrogateescape"))
            return 0
        from lkm.workflows.kernel_store import indexed_module_tree

        result = run_vm(
            kernel.image,
            indexed_module_tree(kernel.modules, kernel.release),
            kernel.release,
            command,
            timeout=_seconds(options.get("--timeout", "120")),
            memory=options.get("--memory", "1G"),
            console=os.path.abspath(options["--console"]) if "--console" in options else None,
            share=options.get("--share", "9p"),
            modprobe=options.get("--modprobe", DEFAULT_MODPROBE),
        )
    except (VmError, LkmError, ValueError) as exc:
        err.write(f"lkm vm: {exc}\n".encode("utf-8", "surrogateescape"))
        return 1
    out.write(result.stdout)
    err.write(result.stderr)
    return result.status


def _seconds(value: str) -> float:
    """--timeout's value: a positive number of seconds, or one line why not."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise LkmError(f"--timeout: not a positive number of seconds: '{value}'")
    return seconds
