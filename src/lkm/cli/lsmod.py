"""``lsmod``: the loaded modules, byte for byte as kmod prints them.

kmod 30 (tools/lsmod.c): the header, then per ``/proc/modules`` line
``"%-19s %8ld  %d"`` (name, size from ``/sys/module/NAME/coresize``, use
count from ``refcnt``) and the holders, comma separated, in the kernel's
directory order. Any argument is a usage error, except lkm's own
``--json`` (one object per module), ``--tree`` (who uses whom),
``-h``/``--help`` and ``-V``/``--version``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import BinaryIO


PROG = "lsmod"
# kmod's lsmod takes no option; these are lkm's (the help lists them)
SHORTOPTS = "hV"
LONGOPTS = ("json", "tree", "help", "version")
HELP = """Usage: lsmod [--json|--tree]

The loaded modules, as kmod's lsmod prints them.

lkm's extensions:
  --json          one JSON object per module
  --tree          who uses whom, as a tree
  -h, --help      this help
  -V, --version   the version
"""


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = PROG) -> int:
    if args in (["-h"], ["--help"]):
        out.write(HELP.encode())
        return 0
    if args in (["-V"], ["--version"]):
        from lkm.cli.options import version_text

        out.write(version_text().encode())
        return 0
    if args not in ([], ["--json"], ["--tree"]):
        err.write(f"Usage: {argv0}\n".encode("utf-8", "surrogateescape"))
        return 1
    from lkm.system.kernel import KernelModules
    from lkm.workflows.live import loaded_modules, lsmod_table, tree_lines

    try:
        modules = loaded_modules(KernelModules())
    except OSError as exc:
        err.write(
            f"Error: could not get list of modules: {exc.strerror}\n".encode(
                "utf-8", "surrogateescape"
            )
        )
        return 1
    if args == ["--json"]:
        from lkm.cli.json_output import write_array

        write_array(out, (m.as_json() for m in modules))
        return 0
    if args == ["--tree"]:
        text = "".join(f"{line}\n" for line in tree_lines(modules))
    else:
        text = lsmod_table(modules)
    out.write(text.encode("utf-8", "surrogateescape"))
    return 0
