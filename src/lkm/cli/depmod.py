"""``depmod``: kmod-compatible module indexing, plus lkm's cache.

Options, messages and exit statuses are kmod's (tools/depmod.c); where
kmod versions differ lkm follows kmod 34: ``-m/--moduledir``,
``-o/--outdir``, ``modules.weakdep``, pre-order binary indexes
(``--index-layout=post-order`` writes kmod ≤ 33's layout). lkm additions:
``--no-cache`` (re-read every module), ``--cache-dir DIR``.
"""

from __future__ import annotations

import gc
import os
import re

from lkm import __version__
from lkm.cli import keep_until_exit
from lkm.cli.options import UsageError, parse
from lkm.errors import LkmError, one_line
from lkm.formats.kmod_index_layout import Layout
from lkm.system.paths import make_absolute
from lkm.workflows.depmod import DepmodSettings, run_depmod

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import BinaryIO

PROG = "depmod"
SHORTOPTS = "aAb:m:o:C:E:F:evnP:wVh"
LONGOPTS = (
    "all", "quick", "basedir=", "moduledir=", "outdir=", "config=", "symvers=",
    "filesyms=", "errsyms", "verbose", "show", "dry-run", "symbol-prefix=", "warn",
    "version", "help", "no-cache", "cache-dir=", "index-layout=", "json",
)  # fmt: skip
LEVELS = {"FATAL": 2, "ERROR": 3, "WARNING": 4, "NOTICE": 5, "INFO": 6, "DEBUG": 7}
# sscanf("%u.%u") succeeds: how kmod tells a version from a file name.
_VERSION = re.compile(r"[ \t\n\v\f\r]*[+-]?\d+\.[ \t\n\v\f\r]*[+-]?\d+")

HELP = """\
Usage:
\t{prog} -[aA] [options] [forced_version]

If no arguments (except options) are given, "depmod -a" is assumed

depmod will output a dependency list suitable for the modprobe utility.

Options:
\t-a, --all            Probe all modules
\t-A, --quick          Only does the work if there's a new module
\t-e, --errsyms        Report not supplied symbols
\t-n, --show           Write the dependency file on stdout only
\t-P, --symbol-prefix  Architecture symbol prefix
\t-C, --config=PATH    Read configuration from PATH
\t-v, --verbose        Enable verbose mode
\t-w, --warn           Warn on duplicates
\t-V, --version        show version
\t-h, --help           show this help

The following options are useful for people managing distributions:
\t-b, --basedir=DIR    Root path (default: /).
\t-m, --moduledir=DIR  Module directory (default: /lib/modules).
\t-o, --outdir=DIR     Output root path (default: same as <basedir>).
\t-F, --filesyms=FILE  Use the file instead of the
\t                     current kernel symbols.
\t-E, --symvers=FILE   Use Module.symvers file to check
\t                     symbol versions.

lkm's extensions:
\t    --dry-run        Same as -n (kmod takes it too)
\t    --no-cache       Read every module again
\t    --cache-dir=DIR  Where lkm keeps parsed modules
\t    --index-layout=pre-order|post-order  Binary index layout (kmod <= 33 wrote post-order)
\t    --json           As -n, the database as JSON: one object per module
"""


class Fatal(Exception):
    """A FATAL message: printed, then exit status 1."""


class Logger:
    """``depmod: LEVEL: message`` on stderr, filtered by verbosity like kmod."""

    def __init__(self, err: BinaryIO, verbose: int = 0) -> None:
        self.err = err
        self.priority = LEVELS["WARNING"] + verbose

    def __call__(self, level: str, message: str) -> None:
        if LEVELS[level] <= self.priority:
            text = f"{PROG}: {level}: {message}\n"
            self.err.write(text.encode("utf-8", "surrogateescape"))


def parse_args(args: list[str], argv0: str, log: Logger, out: BinaryIO) -> DepmodSettings | int:
    """Settings, or an exit status when there is nothing more to do."""
    opts = DepmodSettings(version="", all=False)
    parsed, operands = parse(argv0, args, SHORTOPTS, LONGOPTS)
    for opt, value in parsed:
        if opt in ("-a", "--all"):
            opts = opts.replace(all=True)
        elif opt in ("-A", "--quick"):
            opts = opts.replace(quick=True)
        elif opt in ("-b", "--basedir"):
            opts = opts.replace(basedir=make_absolute(value))
        elif opt in ("-m", "--moduledir"):
            opts = opts.replace(moduledir=value)
        elif opt in ("-o", "--outdir"):
            opts = opts.replace(outdir=make_absolute(value))
        elif opt in ("-C", "--config"):
            opts = opts.replace(config=(*opts.config, value))
        elif opt in ("-E", "--symvers"):
            opts = opts.replace(symvers=value)
        elif opt in ("-F", "--filesyms"):
            opts = opts.replace(system_map=value)
        elif opt in ("-e", "--errsyms"):
            opts = opts.replace(print_unknown=True)
        elif opt in ("-v", "--verbose"):
            opts = opts.replace(verbose=opts.verbose + 1)
        elif opt in ("-n", "--show", "--dry-run"):
            opts = opts.replace(dry_run=True)
        elif opt == "--json":
            opts = opts.replace(dry_run=True, json=True)
        elif opt in ("-P", "--symbol-prefix"):
            if len(value) != 1:
                raise Fatal("-P only takes a single char")
            opts = opts.replace(prefix=value)
        elif opt in ("-w", "--warn"):
            opts = opts.replace(warn_dups=True)
        elif opt == "--no-cache":
            opts = opts.replace(use_cache=False)
        elif opt == "--cache-dir":
            opts = opts.replace(cache_dir=value)
        elif opt == "--index-layout":
            layouts = {layout.value: layout for layout in Layout}
            if value not in layouts:
                raise Fatal(f"--index-layout takes {' or '.join(layouts)}, not {value}")
            opts = opts.replace(layout=layouts[value])
        elif opt in ("-h", "--help"):
            out.write(HELP.format(prog=PROG).encode("utf-8", "surrogateescape"))
            return 0
        elif opt in ("-V", "--version"):
            out.write(
                f"lkm version {__version__}\n+ZSTD +XZ +ZLIB +LIBCRYPTO -EXPERIMENTAL\n".encode(
                    "utf-8", "surrogateescape"
                )
            )
            return 0
    if operands:
        if not _VERSION.match(operands[0]):
            log("ERROR", f"Bad version passed {operands[0]}")
            return 1
        opts = opts.replace(version=operands[0])
        opts = opts.replace(files=tuple(operands[1:]))
    else:
        opts = opts.replace(version=os.uname().release)
    opts = opts.replace(all=opts.all or not opts.files)
    return opts


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = PROG) -> int:
    log = Logger(err)
    try:
        parsed = parse_args(args, argv0, log, out)
        if isinstance(parsed, int):
            return parsed
        log.priority = LEVELS["WARNING"] + parsed.verbose

        def show(line: str) -> None:
            out.write(line.encode("utf-8", "surrogateescape"))
            out.flush()

        def print_files(data: bytes) -> None:
            out.write(data)

        # depmod builds millions of objects that hold no cycles (strings,
        # tuples, lists) and frees them by reference counting; the cyclic
        # collector's passes over them only cost time (about 7% of a run).
        enabled = gc.isenabled()
        gc.disable()
        try:
            result = run_depmod(parsed, log, show, None if parsed.json else print_files)
            keep_until_exit(result)
            if parsed.json and result.status == 0:
                from lkm.cli.json_output import write_array
                from lkm.workflows.depmod.summary import database_records

                files = result.outputs.files if result.outputs is not None else {}
                write_array(out, database_records(files))
            return result.status
        finally:
            if enabled:
                gc.enable()
    except UsageError as exc:
        err.write(f"{exc}\n".encode("utf-8", "surrogateescape"))
        return 1
    except (Fatal, LkmError) as exc:
        # A FATAL message is one line, whatever a path in it holds.
        log("FATAL", one_line(str(exc)))
        return 1
