"""lkm's command line: ``lkm SUBCOMMAND …`` and kmod's multi-call names.

Run as ``modinfo`` (or ``insmod``, ``rmmod``, … through a symlink named
after the tool) lkm behaves as that kmod tool; run as ``lkm`` the first
argument names the tool. Tool modules are imported only when chosen, so
``lkm modinfo`` never loads code another tool needs.
"""

from __future__ import annotations

import gc
import io
import os
import sys

from lkm import __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)

# Nothing here may import more than io, os and sys: every tool's start-up
# pays for it (contextlib and importlib, with the functools and collections
# they pull in, measured 4 ms of ``modprobe -D``'s start-up).

# Tool name -> module with a ``run(args, out, err) -> int`` function.
TOOLS: dict[str, str] = {
    "modinfo": "lkm.cli.modinfo",
    "depmod": "lkm.cli.depmod",
    "insmod": "lkm.cli.insmod",
    "rmmod": "lkm.cli.rmmod",
    "lsmod": "lkm.cli.lsmod",
    "dmesg": "lkm.cli.dmesg",
    "ksyms": "lkm.cli.ksyms",
    "modprobe": "lkm.cli.modprobe",
    "vm": "lkm.cli.vm",
    "new": "lkm.cli.new",
    "build": "lkm.cli.build",
    "sign": "lkm.cli.sign",
    "keygen": "lkm.cli.keygen",
    "try": "lkm.cli.try_module",
    "kernel": "lkm.cli.kernel",
    "prepare": "lkm.cli.prepare",
    "install": "lkm.cli.install",
    "uninstall": "lkm.cli.uninstall",
    "dkms": "lkm.cli.dkms",
    "static-nodes": "lkm.cli.static_nodes",
    "autoload": "lkm.cli.autoload",
    "check": "lkm.cli.check",
    "completion": "lkm.cli.completion",
}
# kmod's tools, which run in a blink. The console script (scripts/lkm)
# starts with the cyclic garbage collector off; these keep it off (their
# objects hold no cycles that outlive the run, and its passes over the
# start-up's objects cost ~1.3 ms of ``modprobe -D``) and the process ends
# as soon as their output is out (see keep_until_exit: tearing down the
# interpreter's modules and objects costs ~1.9 ms more). Every other tool
# gets the collector back and the interpreter's usual exit.
QUICK_TOOLS = frozenset(
    ("modinfo", "depmod", "insmod", "rmmod", "lsmod", "modprobe", "static-nodes")
)
# kmod's tools that lkm will provide; until then they say so plainly.
PLANNED: tuple[str, ...] = ()
# Names lkm answers to when invoked through a link: kmod's tools only (a
# link named dmesg would shadow util-linux's).
MULTICALL = frozenset(
    ("modinfo", "depmod", "insmod", "rmmod", "lsmod", "modprobe", "dkms", *PLANNED)
)


if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any, BinaryIO, Protocol

    class Tool(Protocol):
        def run(self, args: list[str], out: BinaryIO, err: BinaryIO, argv0: str) -> int: ...


USAGE = f"""\
lkm {__version__} - Linux loadable kernel module toolkit

Usage: lkm COMMAND [options] [args]

Commands:
  modinfo     show information about kernel modules (kmod-compatible)
  depmod      index a module tree: modules.dep, aliases, symbols (kmod-compatible)
  insmod      load a module file into the running kernel (kmod-compatible)
  rmmod       unload modules (kmod-compatible)
  lsmod       list loaded modules (kmod-compatible; --json, --tree)
  modprobe    load or unload modules with their dependencies (kmod-compatible)
  dmesg       the kernel log, like util-linux dmesg; --module NAME
  ksyms       kernel symbols from /proc/kallsyms, by module or pattern
  vm run      boot a real kernel under QEMU and run a command in it
  new         write a module source tree (templates: hello chardev params pair)
  build       build an out-of-tree module with kbuild against any kernel's headers
  sign        append a module signature, as the kernel's scripts/sign-file does
  keygen      make a key and certificate for signing modules
  try         build, load and unload a module in a disposable VM of a real kernel
  kernel      list, fetch or remove Debian kernels (image, modules, headers)
  prepare     make this machine able to build modules for a kernel (what m-a prepare did)
  install     place built modules in a kernel's module tree and index it
  uninstall   remove installed out-of-tree modules and index the tree again
  dkms        DKMS's commands over DKMS's dkms.conf files and state tree
  static-nodes  device nodes of modules loaded on first open (kmod-compatible)
  autoload    load the modules devices need as they appear (coldplug, uevents)
  check       say whether a kernel will load a module, and if not why
  completion  shell completion for bash, zsh or fish

Invoked through a link named modinfo (or any kmod tool name), lkm behaves
as that tool. Run 'lkm COMMAND --help' for a command's options.
"""


def run_tool(
    name: str, args: list[str], out: BinaryIO, err: BinaryIO, argv0: str | None = None
) -> int:
    """Run tool ``name``; ``argv0`` is what getopt errors start with (glibc
    prints argv[0] as invoked, e.g. a full path)."""
    if name in TOOLS:
        __import__(TOOLS[name])  # importlib.import_module without importing importlib
        module: Tool = sys.modules[TOOLS[name]]
        if name in QUICK_TOOLS:
            keep_until_exit(module)  # all it makes: nothing needs tearing down
        else:
            gc.enable()
        return module.run(args, out, err, argv0 or name)
    if name in PLANNED:
        err.write(
            f"lkm: {name} is not implemented yet in lkm {__version__}\n".encode(
                "utf-8", "surrogateescape"
            )
        )
        return 1
    err.write(
        f"lkm: unknown command '{name}'; run 'lkm --help' for the list\n".encode(
            "utf-8", "surrogateescape"
        )
    )
    return 1


def main(
    argv: Sequence[str] | None = None, out: BinaryIO | None = None, err: BinaryIO | None = None
) -> int:
    argv = list(sys.argv if argv is None else argv)
    out = out if out is not None else sys.stdout.buffer
    err = err if err is not None else sys.stderr.buffer
    prog = os.path.basename(argv[0]) if argv else "lkm"
    if prog in MULTICALL:
        return run_tool(prog, argv[1:], out, err, argv[0])
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        out.write(USAGE.encode("utf-8", "surrogateescape"))
        return 0 if len(argv) >= 2 else 1
    if argv[1] in ("-V", "--version"):
        out.write(f"lkm version {__version__}\n".encode("utf-8", "surrogateescape"))
        return 0
    return run_tool(argv[1], argv[2:], out, err)


# Set by entry(): what tools leave for the end of the process.
_left_for_exit: list[object] | None = None


def keep_until_exit(value: object) -> None:
    """Leave ``value`` to the end of the process when it ends right after
    the tool: as the console script, the process then ends at once
    (``os._exit``) instead of freeing it object by object, which for
    depmod's hundreds of thousands of objects costs milliseconds that
    matter (every one of :data:`QUICK_TOOLS` leaves its module, so all it
    made). A tool that leaves something must have closed its files: only
    the standard streams are flushed. Run in-process (tests, library use),
    nothing is kept."""
    if _left_for_exit is not None:
        _left_for_exit.append(value)


def entry() -> None:
    """Console-script entry point: exit status, quiet on a closed pipe or ^C.

    Output errors end no tool: as with kmod (C stdio, unchecked), a full or
    closed stdout costs the output, not the exit status. A pipe closed by
    its reader (``| head``) ends the tool quietly with 141, as SIGPIPE
    would. Any other exception is a bug in lkm: one line asking for a
    report, the traceback only with ``LKM_DEBUG=1``.
    """
    global _left_for_exit
    _left_for_exit = []
    _keep_standard_fds_open()
    out, err = _output_stream(1), _output_stream(2)
    try:
        status = main(sys.argv, out, err)
        out.flush()
        err.flush()
        if _left_for_exit:
            # Everything is written and flushed; the objects left are
            # only memory, which the kernel takes back at once.
            _flush_text_streams()
            os._exit(status)
    except BrokenPipeError:
        status = 141
    except KeyboardInterrupt:
        status = 130
    except Exception as exc:  # the one place that catches everything
        status = _report_bug(exc, err)
    _discard(out)
    sys.exit(status)


def _flush_text_streams() -> None:
    """What reached ``sys.stdout`` or ``sys.stderr`` (a warning, say) goes
    out before an exit that skips the interpreter's own flushing."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def _keep_standard_fds_open() -> None:
    """Open /dev/null on a closed stdin, stdout or stderr (``>&-``): else the
    next file lkm opens gets that number, and output — ours or a compiler's
    — would land in it."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


class _RawOutput(io.RawIOBase):
    """A file descriptor whose write errors, other than a reader closing its
    pipe, are swallowed: output to ``/dev/full`` is lost, as C's is. After
    a broken pipe (raised once, to end the tool) everything is dropped."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd
        self.broken = False

    def writable(self) -> bool:
        return True

    # The descriptor, so that tools can tell a terminal (--color=auto, the
    # progress line of lkm kernel fetch); RawIOBase's say "not a terminal".
    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return os.isatty(self.fd)

    def write(self, data: Any) -> int:
        if self.broken:
            return len(data)
        try:
            return os.write(self.fd, data)
        except BrokenPipeError:
            self.broken = True
            raise
        except OSError:
            return len(data)


def _output_stream(fd: int) -> BinaryIO:
    return io.BufferedWriter(_RawOutput(fd))


def _discard(stream: BinaryIO) -> None:
    """Drop what is still buffered (after a broken pipe): flushing it again
    at exit would only fail again."""
    try:  # noqa: SIM105 - contextlib.suppress would import contextlib
        stream.flush()
    except OSError:
        pass


def _report_bug(exc: BaseException, err: BinaryIO) -> int:
    try:
        if os.environ.get("LKM_DEBUG") == "1":
            import traceback

            err.write("".join(traceback.format_exception(exc)).encode("utf-8", "surrogateescape"))
        name = type(exc).__name__
        err.write(
            f"lkm {__version__}: internal error: {name}: {exc}; please report it, with the "
            "output of the same command run with LKM_DEBUG=1\n".encode("utf-8", "surrogateescape")
        )
        err.flush()
    except OSError:
        pass
    return 1
