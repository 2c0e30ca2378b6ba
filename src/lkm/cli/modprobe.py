"""``modprobe``: so far only ``-c/--showconfig`` (issue 5 is in progress).

``modprobe -c [-C CONFIG] [-d BASEDIR] [-S VERSION]`` prints the parsed
configuration the way kmod 34 does (weakdep included; a softdep keeps the
space kmod loses between its pre and post lists), then dumps the alias
and symbol indexes of the module directory.
"""

from __future__ import annotations

from lkm.cli.options import UsageError, error_line, parse, version_text

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import BinaryIO

PROG = "modprobe"
SHORTOPTS = "cC:d:S:Vh"
LONGOPTS = ("showconfig", "config=", "dirname=", "set-version=", "version", "help")


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = PROG) -> int:
    try:
        opts, operands = parse(argv0, args, SHORTOPTS, LONGOPTS)
    except UsageError as exc:
        err.write(f"{exc}\n".encode())
        return 1
    options = dict(opts)
    if "-V" in options or "--version" in options:
        out.write(version_text().encode())
        return 0
    if not ("-c" in options or "--showconfig" in options) or operands:
        err.write(b"lkm: modprobe: only -c/--showconfig is implemented so far\n")
        return 1
    from lkm.model.moddir import module_dir_path
    from lkm.model.modprobe_config import DEFAULT_PATHS, read_config

    basedir = options.get("-d", options.get("--dirname"))
    version = options.get("-S", options.get("--set-version"))
    moddir = module_dir_path(basedir, version)
    paths = [v for k, v in opts if k in ("-C", "--config")] or list(DEFAULT_PATHS)
    cmdline = _read_cmdline()

    def warn(message: str) -> None:
        err.write(error_line(PROG, message))

    config = read_config(moddir, paths, cmdline, warn)
    out.write(config.show().encode("utf-8", "surrogateescape"))
    out.write(b"\n# End of configuration files. Dumping indexes now:\n\n")
    out.flush()
    out.write(_index_dump(moddir).encode("utf-8", "surrogateescape"))
    return 0


def _read_cmdline() -> str | None:
    try:
        with open("/proc/cmdline", encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError:
        return None


def _index_dump(moddir: str) -> str:
    """kmod's index_dump of modules.alias.bin and modules.symbols.bin."""
    from lkm.model.moddir import ModuleDirectory

    lines: list[str] = []
    with ModuleDirectory(moddir) as directory:
        for basename in ("modules.alias", "modules.symbols"):
            index = directory.index(basename)
            if index is None:
                continue
            for key, values in index.items():
                lines.extend(f"alias {key} {v.value}\n" for v in values)
    return "".join(lines)
