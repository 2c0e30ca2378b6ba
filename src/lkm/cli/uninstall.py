"""``lkm uninstall NAME… [--kernel V] [--root DIR]``: remove the installed
out-of-tree copies of modules (every directory of ROOT/lib/modules/V but
kernel/, every compression; NAME spelt with '-' or '_', or as a file name)
and index the tree again. The kernel's own modules are never removed. V
defaults to the running kernel. A failure leaves the tree as it was."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import BinaryIO


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = "uninstall") -> int:
    from lkm.cli.install import depmod_reporter, index_arguments, index_options
    from lkm.cli.options import argument_parser, line_writer, parse_arguments
    from lkm.errors import one_line
    from lkm.workflows.install import InstallError, UninstallRequest, uninstall

    parser = argument_parser("lkm uninstall", __doc__, out, err)
    parser.add_argument("names", nargs="+", metavar="NAME", help="module names")
    parser.add_argument("--kernel", "-k", help="kernel release (default: the running kernel)")
    parser.add_argument("--root", default="", help="the tree under this root (INSTALL_MOD_PATH)")
    index_arguments(parser)
    options = parse_arguments(parser, args)
    if isinstance(options, int):
        return options
    request = UninstallRequest(
        tuple(options.names), options.kernel, options.root, index_options(options)
    )
    try:
        result = uninstall(request, depmod_reporter(err))
    except InstallError as exc:
        out.flush()
        err.write(f"lkm uninstall: {one_line(str(exc))}\n".encode("utf-8", "surrogateescape"))
        return 1
    line = line_writer(out)
    for removed in result.removed:
        for path in removed.paths:
            line(f"removed {path}")
        if removed.now is not None:
            line(f"  {removed.name} now loads {removed.now}")
    line(f"indexed {result.moddir}")
    return 0
