"""``lkm kernel list | fetch [SPEC…] | rm SPEC…``: the kernels lkm can
build against, boot and index.

SPEC is a series (``6.1``: the newest Debian build of it), an exact release
(``uname -r`` style) or a Debian package name; ``fetch`` without SPEC
takes Debian's default kernel. ``fetch`` downloads the image, headers and
their ``-common`` and kbuild packages with apt, unpacks them into lkm's
cache and indexes the modules; ``rm`` removes a fetched kernel (never one
installed on this machine); ``list`` shows the machine's kernels, the
fetched ones and what Debian offers, with which parts each has.
``fetch -q`` prints only each kernel's last line, ``fetch -v`` each part's
path too; ``rm -q`` prints nothing.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    import argparse
    from typing import BinaryIO

    from lkm.workflows.kernel_store import Listed


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = "kernel") -> int:
    from lkm.cli.options import argument_parser, parse_arguments
    from lkm.errors import LkmError

    parser = _parser(argument_parser("lkm kernel", __doc__, out, err))
    options = parse_arguments(parser, args)
    if isinstance(options, int):
        return options
    try:
        if options.action == "list":
            return _list(options, out)
        if options.action == "fetch":
            return _fetch(options, out)
        return _remove(options, out)
    except LkmError as exc:
        out.flush()
        err.write(f"lkm kernel {options.action}: {exc}\n".encode("utf-8", "surrogateescape"))
        return 1


def _parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    actions = parser.add_subparsers(dest="action", required=True, metavar="list|fetch|rm")
    listing = actions.add_parser("list", help="installed, fetched and offered kernels")
    listing.add_argument(
        "--json", action="store_true", help="one JSON array, one object per kernel"
    )
    listing.add_argument("--arch", help="a Debian architecture (default: this machine's)")
    listing.add_argument(
        "--no-archive", action="store_true", help="leave out what Debian offers (no apt query)"
    )
    fetch = actions.add_parser("fetch", help="download and unpack Debian kernels")
    fetch.add_argument("specs", nargs="*", metavar="SPEC", help="series, release or package")
    _verbosity(fetch, "only each kernel's last line", "each part's path too")
    fetch.add_argument(
        "--arch", help="a Debian architecture (default: the spec's, else this machine's)"
    )
    remove = actions.add_parser("rm", help="remove fetched kernels")
    remove.add_argument("specs", nargs="+", metavar="SPEC", help="series, release or package")
    _verbosity(remove, "print nothing", "name the directories removed too")
    return parser


def _verbosity(parser: argparse.ArgumentParser, quiet: str, verbose: str) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help=quiet)
    group.add_argument("-v", "--verbose", action="store_true", help=verbose)


def _list(options: argparse.Namespace, out: BinaryIO) -> int:
    from lkm.workflows.kernel_store import list_kernels

    rows = list_kernels(options.arch, archive=not options.no_archive)
    if options.json:
        from lkm.cli.json_output import write_array

        write_array(out, (row.as_json() for row in rows))
        return 0
    out.write(_table(rows).encode("utf-8", "surrogateescape"))
    return 0


def _table(rows: list[Listed]) -> str:
    from lkm.workflows.kernel_store import megabytes

    header = ("RELEASE", "ARCH", "WHERE", "IMAGE", "MODULES", "HEADERS", "")
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        parts = [row.image, row.modules, row.headers]
        marks = ["yes" if part else "-" for part in parts]
        if row.source == "archive":
            series = ".".join(row.release.split(".")[:2])
            note = f"lkm kernel fetch {series}  ({megabytes(row.download)})"
            marks = ["offered"] * 3
        else:
            note = ""
        lines.append((row.release, row.arch or "?", row.source, *marks, note))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    text = ""
    for line in lines:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        text += ("  ".join(cells) + "  " + line[-1]).rstrip() + "\n"
    return text


def _fetch(options: argparse.Namespace, out: BinaryIO) -> int:
    import os

    from lkm.workflows.kernel_store import Progress, fetch_kernel

    def write(text: str) -> None:
        out.write(text.encode("utf-8", "surrogateescape"))
        out.flush()

    def nothing(_text: str) -> None:
        pass

    progress = Progress(nothing if options.quiet else write, terminal=_is_terminal(out))
    for spec in options.specs or [None]:
        kernel = fetch_kernel(spec, options.arch, progress=progress)
        parts = [name for name in ("image", "modules", "headers") if getattr(kernel, name)]
        root = os.path.dirname(os.path.dirname(os.path.dirname(kernel.modules or "")))
        write(f"{kernel.release} ({kernel.arch}): {', '.join(parts)} in {root}\n")
        if options.verbose:
            write("".join(f"  {name}: {getattr(kernel, name)}\n" for name in parts))
    return 0


def _is_terminal(out: BinaryIO) -> bool:
    import os

    try:
        return os.isatty(out.fileno())
    except (OSError, ValueError, AttributeError):
        return False


def _remove(options: argparse.Namespace, out: BinaryIO) -> int:
    from lkm.workflows.kernel_store import remove_kernel

    def directory(path: str) -> None:
        out.write(f"  {path}\n".encode("utf-8", "surrogateescape"))

    for spec in options.specs:
        for release in remove_kernel(spec, removed=directory if options.verbose else None):
            if not options.quiet:
                out.write(f"removed {release}\n".encode("utf-8", "surrogateescape"))
    return 0
