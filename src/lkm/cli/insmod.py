"""``insmod [-f] FILE [PARAM=VALUE…]``: load one module file, as kmod does.

Messages, options and exit codes are kmod 30's (tools/insmod.c): ``-p`` and
``-s`` are accepted and ignored, ``-f`` makes the kernel ignore symbol
versions and vermagic, the parameters are joined with spaces. A compressed
module goes to the kernel as it is when the kernel decompresses that format
itself (``/sys/module/compression``), else lkm decompresses it; the lkm
option ``--decompress=user|kernel|auto`` chooses explicitly; with the lkm
option ``-v``/``--verbose`` a refused load is followed by the kernel's
reason and what to do (``lkm check --running``).
"""

from __future__ import annotations

import os

from lkm.cli.options import UsageError, error_line, help_or_version, parse

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import BinaryIO

PROG = "insmod"
HELP = """\
Usage:
\t{prog} [options] filename [args]
Options:
\t-V, --version     show version
\t-h, --help        show this help

lkm's extensions:
\t-v, --verbose     after a refused load, the kernel's reason (lkm check)
\t--decompress=auto|user|kernel  who decompresses a .ko.xz/.gz/.zst
\t                  (auto: the kernel when it can)
"""


SHORTOPTS = "psfvVh"
LONGOPTS = ("version", "help", "decompress=", "verbose")


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = PROG) -> int:
    def error(message: str) -> int:
        err.write(error_line(PROG, message))
        return 1

    try:
        opts, operands = parse(argv0, args, SHORTOPTS, LONGOPTS)
    except UsageError as exc:
        err.write(f"{exc}\n".encode("utf-8", "surrogateescape"))
        return 1
    shown = help_or_version(opts, HELP.format(prog=PROG))
    if shown is not None:
        out.write(shown.encode("utf-8", "surrogateescape"))
        return 0
    force = False
    verbose = False  # lkm: after a refusal, say why (lkm check --running)
    decompress = "auto"
    for opt, value in opts:
        if opt == "-f":
            force = True
        elif opt in ("-v", "--verbose"):
            verbose = True
        elif opt == "--decompress":
            decompress = value
    if decompress not in ("auto", "user", "kernel"):
        return error(f"--decompress must be auto, user or kernel, not '{decompress}'")
    if not operands:
        return error("missing filename.")
    filename, params = operands[0], " ".join(operands[1:])
    if filename == "-":
        return error("this tool does not support loading from stdin!")
    try:
        os.stat(filename)
    except OSError as exc:
        return error(f"could not load module {filename}: {os.strerror(exc.errno or 0)}")

    from lkm.errors import FileFormatError, LkmError
    from lkm.system.kernel import KernelCallError, KernelModules, insert_error_text

    try:
        KernelModules().insert(filename, params, force=force, decompress=decompress)
    except KernelCallError as exc:
        status = error(f"could not insert module {filename}: {insert_error_text(exc.code)}")
        if verbose:
            from lkm.workflows.check import explain

            err.write("".join(f"{PROG}: {line}\n" for line in explain(filename, params)).encode())
        return status
    except OSError as exc:
        return error(f"could not insert module {filename}: {os.strerror(exc.errno or 0)}")
    except FileFormatError as exc:
        return error(f"could not insert module {filename}: {exc.problem}")
    except LkmError as exc:
        return error(f"could not insert module {filename}: {exc}")
    return 0
