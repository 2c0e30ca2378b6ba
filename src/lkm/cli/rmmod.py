"""``rmmod [-f] [-s] [-v] MODULE…``: unload modules, as kmod does.

kmod 30's rules (tools/rmmod.c): an argument that names an existing file
is taken as a module path (its name is the file's), anything else as a
module name; unless ``-f``, a built-in, unloaded, held or used module is
refused with kmod's message; ``delete_module`` never waits (O_NONBLOCK),
``-f`` adds O_TRUNC. Exit status 1 if any module failed. ``-s`` sends the
messages to syslog.
"""

from __future__ import annotations

import os

from lkm.cli.options import UsageError, error_line, parse, syslog_text, version_text

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO

PROG = "rmmod"
HELP = """\
Usage:
\t{prog} [options] modulename ...
Options:
\t-f, --force       forces a module unload and may crash your
\t                  machine. This requires Forced Module Removal
\t                  option in your kernel. DANGEROUS
\t-s, --syslog      print to syslog, not stderr
\t-v, --verbose     enables more messages
\t-V, --version     show version
\t-h, --help        show this help
"""
SHORTOPTS = "fsvVh"
# kmod's getopt string also has w, which it then rejects: parsed, so the
# message is kmod's, but not offered (help, completion, man page)
_PARSED_SHORTOPTS = SHORTOPTS + "w"
LONGOPTS = ("force", "syslog", "verbose", "version", "help")


def _error_writer(err: BinaryIO, use_syslog: bool) -> Callable[[str], None]:
    if use_syslog:
        import syslog

        syslog.openlog(PROG, syslog.LOG_CONS, syslog.LOG_DAEMON)
        return lambda message: syslog.syslog(syslog.LOG_ERR, syslog_text(f"ERROR: {message}"))

    def write(message: str) -> None:
        err.write(error_line(PROG, message))

    return write


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = PROG) -> int:
    try:
        opts, names = parse(argv0, args, _PARSED_SHORTOPTS, LONGOPTS)
    except UsageError as exc:
        err.write(f"{exc}\n".encode("utf-8", "surrogateescape"))
        return 1
    force = use_syslog = False
    for opt, _ in opts:
        if opt in ("-h", "--help"):
            out.write(HELP.format(prog=PROG).encode("utf-8", "surrogateescape"))
            return 0
        if opt in ("-V", "--version"):
            out.write(version_text().encode("utf-8", "surrogateescape"))
            return 0
        if opt == "-w":
            # In kmod's option string but handled nowhere: it says so.
            err.write(
                f"{PROG}: ERROR: unexpected getopt_long() value 'w'.\n".encode(
                    "utf-8", "surrogateescape"
                )
            )
            return 1
        force = force or opt in ("-f", "--force")
        use_syslog = use_syslog or opt in ("-s", "--syslog")
    error = _error_writer(err, use_syslog)
    if not names:
        error("missing module name.")
        return 1
    failures = sum(not _remove_one(arg, force, error) for arg in names)
    return 1 if failures else 0


def _remove_one(arg: str, force: bool, error: Callable[[str], None]) -> bool:
    from lkm.formats.module_file import module_name_from_path
    from lkm.model.moddir import normalize_modname
    from lkm.system.kernel import KernelCallError, KernelModules
    from lkm.workflows.live import RemovalRefused, check_removable

    name = module_name_from_path(arg) if os.path.exists(arg) else normalize_modname(arg)
    kernel = KernelModules()
    if not force:
        try:
            for line in check_removable(kernel, name, _is_builtin(name)):
                error(line)
        except RemovalRefused as refused:
            for line in refused.lines:
                error(line)
            return False
    try:
        kernel.remove(name, force=force)
    except KernelCallError as exc:
        error(f"could not remove '{name}': {os.strerror(exc.code)}")
        error(f"could not remove module {arg}: {os.strerror(exc.code)}")
        return False
    return True


def _is_builtin(name: str) -> bool:
    """Built into the running kernel, per its modules.builtin index."""
    from lkm.errors import LkmError
    from lkm.model.moddir import ModuleDirectory, module_dir_path

    try:
        with ModuleDirectory(module_dir_path()) as moddir:
            return moddir.is_builtin(name)
    except (LkmError, OSError):
        return False
