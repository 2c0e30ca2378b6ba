"""``lkm ksyms``: kernel symbols from ``/proc/kallsyms`` and who owns them.

``lkm ksyms [--module NAME] [--exported] [PATTERN…]`` prints the lines of
``/proc/kallsyms`` (address, type, name and ``[module]``) whose symbol
matches one of the shell patterns, if any are given (fnmatch(3) patterns,
as kmod matches aliases); ``--module`` keeps one module's symbols
(``vmlinux`` for the kernel's own). ``--exported`` keeps the symbols loaded
modules export (from their ``.ko`` files, found through the running
kernel's module index).
"""

from __future__ import annotations

from lkm.cli.options import UsageError, own_version_text, parse, usage_line

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import BinaryIO

PROG = "ksyms"
USAGE = "usage: lkm ksyms [--module NAME] [--exported] [--json] [PATTERN...]\n"
SHORTOPTS = "h"
LONGOPTS = ("module=", "exported", "json", "help", "version")
HELP = (
    USAGE
    + """
Kernel symbols from /proc/kallsyms, by module or shell pattern.

  --module NAME   only this module's symbols (repeatable)
  --exported      only the symbols the kernel or the module exports
  --json          one JSON array, one object per symbol
  -h, --help      this help
  --version       the version
"""
)


def owner(line: str) -> str:
    """The module a kallsyms line belongs to; ``vmlinux`` for the kernel."""
    if line.endswith("]") and "\t[" in line:
        return line[line.rindex("\t[") + 2 : -1]
    return "vmlinux"


def symbol(line: str) -> str:
    return line.split("\t", 1)[0].split(" ", 2)[2]


def exported_names(modules: set[str] | None) -> set[tuple[str, str]]:
    """(module, symbol) pairs exported by loaded modules (``modules``: only these)."""
    from lkm.formats.module_file import open_module
    from lkm.model.moddir import ModuleDirectory, module_dir_path
    from lkm.system.kernel import KernelModules

    pairs: set[tuple[str, str]] = set()
    with ModuleDirectory(module_dir_path()) as moddir:
        for name in KernelModules().loaded_names():
            path = moddir.module_path(name) if modules is None or name in modules else None
            if path is None:
                continue
            with open_module(path) as module:
                pairs.update((name, s.name) for s in module.exports())
    return pairs


def select(
    lines: Iterable[str],
    patterns: list[str],
    modules: set[str] | None = None,
    exported: set[tuple[str, str]] | None = None,
) -> list[str]:
    """The kallsyms lines (with their line break) to print: of ``modules``
    (all when None), exported (when given), and matching one of
    ``patterns`` (all when none). /proc/kallsyms has ~10^5 lines, so the
    patterns are compiled together once (a set for literal names, a few
    regexes for the rest), not tried one by one per line."""
    from lkm.formats.fnmatch import match_any

    matches = match_any(patterns) if patterns else None
    out: list[str] = []
    for line in lines:
        module = owner(line)
        if modules is not None and module not in modules:
            continue
        name = symbol(line)
        if exported is not None and (module, name) not in exported:
            continue
        if matches is not None and not matches(name):
            continue
        out.append(line + "\n")
    return out


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = PROG) -> int:
    try:
        opts, patterns = parse(argv0, args, SHORTOPTS, LONGOPTS)
    except UsageError as exc:
        err.write(usage_line(str(exc)))
        return 2
    if any(name in ("-h", "--help") for name, _ in opts):
        out.write(HELP.encode())
        return 0
    if any(name == "--version" for name, _ in opts):
        out.write(own_version_text().encode())
        return 0
    from lkm.errors import LkmError
    from lkm.model.moddir import normalize_modname
    from lkm.system.kernel import KernelModules

    modules = {normalize_modname(v) for n, v in opts if n == "--module"} or None
    try:
        exported = exported_names(modules) if ("--exported", "") in opts else None
        lines = select(KernelModules().kallsyms(), patterns, modules, exported)
    except (OSError, LkmError) as exc:
        err.write(f"lkm ksyms: {exc}\n".encode())
        return 1
    if ("--json", "") in opts:
        from lkm.cli.json_output import write_array

        write_array(out, (as_json(line) for line in lines))
        return 0
    out.write("".join(lines).encode())
    return 0


def as_json(line: str) -> dict[str, object]:
    """A kallsyms line (with its line break) as lkm ksyms --json's record."""
    line = line.rstrip("\n")
    address, kind, rest = line.split(" ", 2)
    return {
        "address": address,
        "type": kind,
        "symbol": rest.split("\t", 1)[0],
        "module": owner(line),
    }
