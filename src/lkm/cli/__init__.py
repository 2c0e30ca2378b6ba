"""lkm's command line: ``lkm SUBCOMMAND …`` and kmod's multi-call names.

Run as ``modinfo`` (or ``insmod``, ``rmmod``, … through a symlink named
after the tool) lkm behaves as that kmod tool; run as ``lkm`` the first
argument names the tool. Tool modules are imported only when chosen, so
``lkm modinfo`` never loads code another tool needs.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from lkm import __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)

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
}
# kmod's tools that lkm will provide; until then they say so plainly.
PLANNED: tuple[str, ...] = ()
# Names lkm answers to when invoked through a link: kmod's tools only (a
# link named dmesg would shadow util-linux's).
MULTICALL = frozenset(("modinfo", "depmod", "insmod", "rmmod", "lsmod", "modprobe", *PLANNED))


if TYPE_CHECKING:
    from typing import BinaryIO, Protocol

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
  dmesg       the kernel log, like util-linux dmesg; --module NAME
  ksyms       kernel symbols from /proc/kallsyms, by module or pattern
  vm run      boot a real kernel under QEMU and run a command in it
  new         write a module source tree (templates: hello chardev params pair)
  build       build an out-of-tree module with kbuild against any kernel's headers
  sign        append a module signature, as the kernel's scripts/sign-file does
  keygen      make a key and certificate for signing modules
  try         build, load and unload a module in a disposable VM of a real kernel

Invoked through a link named modinfo (or any kmod tool name), lkm behaves
as that tool. Run 'lkm COMMAND --help' for a command's options.
"""


def run_tool(
    name: str, args: list[str], out: BinaryIO, err: BinaryIO, argv0: str | None = None
) -> int:
    """Run tool ``name``; ``argv0`` is what getopt errors start with (glibc
    prints argv[0] as invoked, e.g. a full path)."""
    if name in TOOLS:
        module: Tool = importlib.import_module(TOOLS[name])
        return module.run(args, out, err, argv0 or name)
    if name in PLANNED:
        err.write(f"lkm: {name} is not implemented yet in lkm {__version__}\n".encode())
        return 1
    err.write(f"lkm: unknown command '{name}'; run 'lkm --help' for the list\n".encode())
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
        out.write(USAGE.encode())
        return 0 if len(argv) >= 2 else 1
    if argv[1] in ("-V", "--version"):
        out.write(f"lkm version {__version__}\n".encode())
        return 0
    return run_tool(argv[1], argv[2:], out, err)


# Set by entry(): what tools leave for the end of the process.
_left_for_exit: list[object] | None = None


def keep_until_exit(value: object) -> None:
    """Leave ``value`` to the end of the process when it ends right after
    the tool: as the console script, the process then ends at once
    (``os._exit``) instead of freeing it object by object, which for
    depmod's hundreds of thousands of objects costs milliseconds that
    matter. Run in-process (tests, library use), nothing is kept."""
    if _left_for_exit is not None:
        _left_for_exit.append(value)


def entry() -> None:
    """Console-script entry point: exit status, quiet on a closed pipe or ^C."""
    global _left_for_exit
    _left_for_exit = []
    try:
        status = main()
        sys.stdout.flush()
        if _left_for_exit:
            # Everything is written and flushed; the objects left are
            # only memory, which the kernel takes back at once.
            sys.stderr.flush()
            os._exit(status)
    except BrokenPipeError:
        # Like C tools piped into head: stop quietly; keep Python from
        # complaining again while flushing at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        status = 141
    except KeyboardInterrupt:
        status = 130
    sys.exit(status)
