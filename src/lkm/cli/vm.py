"""``lkm vm run [OPTIONS] -- CMD…`` and ``lkm vm shell [OPTIONS]``

``run`` boots a real kernel under QEMU, runs CMD inside (the host's root
is visible read-only, writes stay in the VM's memory) and exits with CMD's
status; CMD reads lkm's stdin, and its stdout and stderr come back as it
writes them. ``shell`` gives an interactive root shell in the same guest
on the terminal (a real tty: job control, ^C, the window's size); its
exit (``exit N`` or ^D) ends the VM, with the shell's status. The kernel:
a path to a ``vmlinuz-VERSION`` image next to ``lib/modules/VERSION``, or
the release or series (``6.1``, ``6.12``) of an installed or cached kernel
— a Debian series or release not here yet is fetched into lkm's cache
first (``--no-fetch`` refuses); by default the host's running kernel when
its image and modules are installed, else the newest cached kernel. The
guest kernel's own module requests (a filesystem, a network family, a
link type) run the host root's ``/sbin/modprobe`` in the guest's root, as
on a real system; ``--modprobe PATH`` names another program (lkm's
``modprobe`` through a link, say). ``--device SPEC`` (repeatable) adds a
QEMU ``-device``, ``--append ARGS`` more of the kernel command line,
``--qmp PATH`` a QMP socket for the caller, ``--cpus N`` processors. On a
terminal, one line tells how far the boot is (``-q``: none, nor the
fetch's lines); ``-v`` prints QEMU's command line and the kernel's console
(at log level 7) on stderr as it comes.
"""

from __future__ import annotations

import os

from lkm.cli.options import UsageError, parse, usage_line
from lkm.errors import LkmError
from lkm.vm.boot_kernel import choose_kernel

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO

    from lkm.vm.boot_kernel import BootKernel
    from lkm.vm.qemu import VmSession
    from lkm.workflows.gdb import GdbStub

_OPTIONS = (
    "[--kernel IMAGE|VERSION] [--memory SIZE] [--cpus N] [--console LOGFILE]"
    " [--share 9p|virtiofs] [--modprobe PATH] [--device SPEC]... [--append ARGS]"
    " [--qmp SOCKET] [--gdb] [--gdb-file FILE] [--no-fetch] [--dry-run] [-q|-v]"
)
USAGE = f"""\
usage: lkm vm run {_OPTIONS} [--timeout SECONDS] -- CMD...
       lkm vm shell {_OPTIONS}
"""
HELP = (
    USAGE
    + """
Boot a real kernel under QEMU with this machine's root shared read-only (a
writable overlay in memory) and run a command in it, or a shell.

  --kernel IMAGE|VERSION  the kernel: an image, a release or a series
                          (default: the running kernel); fetched when a
                          Debian series or release is not here
  --memory SIZE           guest memory (QEMU's -m)
  --cpus N                guest CPUs
  --console LOGFILE       keep the whole serial console in LOGFILE
  --share 9p|virtiofs     how the host root is shared
  --modprobe PATH         the guest's /proc/sys/kernel/modprobe
  --device SPEC           a QEMU -device (repeatable)
  --append ARGS           more kernel command line (repeatable)
  --qmp SOCKET            QEMU's monitor (QMP) on a Unix socket
  --gdb                   QEMU's gdb stub, the kernel held at start
  --gdb-file FILE         gdb commands to load the modules' symbols
  --no-fetch              never download a kernel
  --dry-run               print the QEMU command line, run nothing
  -q, --quiet             no boot progress line, no fetch lines
  -v, --verbose           QEMU's command line and the kernel console on stderr
  --timeout SECONDS       give up on CMD after this long (run)
  -h, --help              this help
  --version               the version
"""
)


SHORTOPTS = "hqv"
LONGOPTS = (
    "kernel=",
    "memory=",
    "timeout=",
    "console=",
    "share=",
    "modprobe=",
    "device=",
    "append=",
    "qmp=",
    "cpus=",
    "gdb",
    "gdb-file=",
    "dry-run",
    "no-fetch",
    "quiet",
    "verbose",
    "help",
    "version",
)
_LONG = {"-q": "--quiet", "-v": "--verbose"}
# Options that may be given more than once, every value kept.
_REPEATED = ("--device", "--append")


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = "vm") -> int:
    try:
        opts, rest = parse("lkm vm", args, SHORTOPTS, LONGOPTS)
    except UsageError as exc:
        err.write(usage_line(str(exc)))
        return 2
    if any(o in ("-h", "--help") for o, _ in opts):
        out.write(HELP.encode("utf-8", "surrogateescape"))
        return 0
    if any(o == "--version" for o, _ in opts):
        from lkm.cli.options import own_version_text

        out.write(own_version_text().encode())
        return 0
    action = rest[0] if rest else ""
    wrong = action not in ("run", "shell") or (len(rest) < 2) == (action == "run")
    if wrong:
        err.write(usage_line("lkm vm: give 'run [OPTIONS] -- CMD...' or 'shell [OPTIONS]'"))
        return 2
    options = {_LONG.get(name, name): value for name, value in opts}
    repeated = {name: [v for o, v in opts if o == name] for name in _REPEATED}
    from lkm.vm.qemu import VmError
    from lkm.vm.terminal import BootProgress

    progress: BootProgress | None = None
    stub: GdbStub | None = None
    try:
        from lkm.cli.options import fetch_on_demand

        timeout = _seconds(options.get("--timeout", "120"))
        quiet = "--quiet" in options
        fetch_on_demand(options.get("--kernel"), "image", "--no-fetch" not in options, err, quiet)
        kernel = choose_kernel(options.get("--kernel"))
        append = " ".join(repeated["--append"])
        if "--verbose" in options:
            append = f"{append} loglevel=7".strip()  # after quiet: the console shows all
        extra = _qemu_extra(options, repeated["--device"])
        if "--gdb" in options or "--gdb-file" in options:
            append, extra, stub = _with_gdb(kernel, options, append, extra, err)
            if "--timeout" not in options:
                timeout = float("inf")  # the VM may sit at a breakpoint for long
        if "--dry-run" in options:
            return _dry_run(kernel, options, append, extra, out)
        # On a terminal: one line while it boots, left for a shell's prompt to follow.
        if not quiet:
            progress = BootProgress(f"lkm vm: {kernel.release}", 2, keep=action == "shell")
        console = _console_writer(err) if "--verbose" in options else None
        with _session(kernel, options, append, extra, progress, console) as session:
            if console is not None:
                import shlex

                console(f"lkm vm: {shlex.join(session.command)}".encode("utf-8", "surrogateescape"))
            if action == "shell":
                return _shell(session)
            return _run(session, rest[1:], timeout, out, err)
    except (VmError, LkmError, ValueError) as exc:
        out.flush()
        if progress is not None:
            progress.clear()
        err.write(f"lkm vm: {exc}\n".encode("utf-8", "surrogateescape"))
        return 1
    finally:
        if progress is not None:
            progress.clear()
        if stub is not None:
            stub.close()


def _console_writer(err: BinaryIO) -> Callable[[bytes], None]:
    """-v: each console line on stderr as lkm sees it."""

    def write(line: bytes) -> None:
        err.write(line.rstrip(b"\r") + b"\n")
        err.flush()

    return write


def _qemu_extra(options: dict[str, str], devices: list[str]) -> list[str]:
    """The QEMU arguments --device, --qmp and --cpus ask for."""
    extra: list[str] = []
    if "--cpus" in options:
        extra += ["-smp", str(_count(options["--cpus"]))]
    for spec in devices:
        extra += ["-device", spec]
    if "--qmp" in options:
        # QEMU's option syntax doubles a comma inside a value.
        path = os.path.abspath(options["--qmp"]).replace(",", ",,")
        extra += ["-qmp", f"unix:{path},server=on,wait=off"]
    return extra


def _with_gdb(
    kernel: BootKernel, options: dict[str, str], append: str, extra: list[str], err: BinaryIO
) -> tuple[str, list[str], GdbStub | None]:
    """--gdb: QEMU's gdb stub, ``nokaslr``, and the gdb commands that attach
    written to --gdb-file (default ``.lkm-gdb`` here) and named on stderr."""
    from lkm.workflows.gdb import (
        GDB_FILE,
        KERNEL_APPEND,
        GdbStub,
        stub_arguments,
        vm_commands,
        write_commands,
    )

    append = f"{append} {KERNEL_APPEND}".strip()
    if "--dry-run" in options:
        return append, [*extra, *stub_arguments("GDB-SOCKET")], None
    stub = GdbStub()
    try:
        script = os.path.abspath(options.get("--gdb-file", GDB_FILE))
        write_commands(script, vm_commands(stub.target, kernel.release, kernel.image))
    except BaseException:
        stub.close()
        raise
    err.write(
        f"lkm vm: gdb stub at {stub.socket}: gdb -x {script}\n".encode("utf-8", "surrogateescape")
    )
    err.flush()
    return append, [*extra, *stub.qemu_args()], stub


def _dry_run(
    kernel: BootKernel, options: dict[str, str], append: str, extra: list[str], out: BinaryIO
) -> int:
    import shlex

    from lkm.vm.kernel_image import bootable_image
    from lkm.vm.qemu import kvm_usable, qemu_command

    image = bootable_image(kernel.image)
    accel = "kvm" if kvm_usable(image) else "tcg"
    socket = "VIRTIOFS-SOCKET" if options.get("--share") == "virtiofs" else None
    memory = options.get("--memory", "1G")
    cmd = qemu_command(
        image, "INITRD", "SCRATCH", "CONSOLE", memory, accel, socket, True, append, extra, "PORTS"
    )
    out.write((shlex.join(cmd) + "\n").encode("utf-8", "surrogateescape"))
    return 0


def _session(
    kernel: BootKernel,
    options: dict[str, str],
    append: str,
    extra: list[str],
    progress: Callable[[str], None] | None,
    console: Callable[[bytes], None] | None = None,
) -> VmSession:
    from lkm.model.kernels import KernelNotFound, find_kernel
    from lkm.vm.initramfs import DEFAULT_MODPROBE
    from lkm.vm.qemu import VmSession
    from lkm.workflows.kernel_store import indexed_module_tree

    try:
        headers = find_kernel(kernel.release, need="headers").headers
    except KernelNotFound:
        headers = None  # the guest's build link stays as the tree has it
    return VmSession(
        kernel.image,
        indexed_module_tree(kernel.modules, kernel.release),
        kernel.release,
        memory=options.get("--memory", "1G"),
        console=os.path.abspath(options["--console"]) if "--console" in options else None,
        share=options.get("--share", "9p"),
        append=append,
        extra=extra,
        modprobe=options.get("--modprobe", DEFAULT_MODPROBE),
        headers=headers,
        progress=progress,
        on_console=console,
    )


def _run(
    session: VmSession, command: list[str], timeout: float, out: BinaryIO, err: BinaryIO
) -> int:
    """CMD in the guest, lkm's stdin forwarded, its output passed on as it comes."""
    streams = {1: out, 2: err}

    def output(fd: int, data: bytes) -> None:
        streams[fd].write(data)
        streams[fd].flush()

    step = session.run(command, timeout, stdin=_stdin(), output=output)
    return step.status


def _stdin() -> int | None:
    """lkm's stdin, unless it is a terminal lkm may not read (a background
    job would be stopped by SIGTTIN)."""
    try:
        if os.isatty(0) and os.tcgetpgrp(0) != os.getpgrp():
            return None
        os.fstat(0)
    except OSError:
        return None
    return 0


def _shell(session: VmSession) -> int:
    from lkm.vm.terminal import Terminal

    return session.shell(Terminal(0, 1))


def _count(value: str) -> int:
    """--cpus's value: a positive whole number, or one line why not."""
    if not value.isdigit() or int(value) < 1:
        raise LkmError(f"--cpus: not a positive number of processors: '{value}'")
    return int(value)


def _seconds(value: str) -> float:
    """--timeout's value: a positive number of seconds, or one line why not."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise LkmError(f"--timeout: not a positive number of seconds: '{value}'")
    return seconds
