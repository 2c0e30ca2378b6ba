"""``lkm install [DIR|MODULE.ko…] [--kernel V] [--root DIR] [--dir SUBDIR]
[--key KEY --cert CERT]``: what ``make modules_install`` and depmod do for
out-of-tree modules. Each module goes to ROOT/lib/modules/V/SUBDIR (V: the
kernel it was built for; SUBDIR: what that kernel's kbuild uses), signed
when a key is given, compressed as that kernel's own modules are; then the
tree is indexed. A failure leaves the tree as it was."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import BinaryIO

    from lkm.workflows.install import IndexOptions, InstallResult


def index_arguments(parser: argparse.ArgumentParser) -> None:
    """What ``lkm install`` and ``lkm uninstall`` pass on to depmod:
    ``lkm depmod``'s options of the same names."""
    parser.add_argument(
        "--index-layout",
        choices=("pre-order", "post-order"),
        default="pre-order",
        help="binary index layout, as lkm depmod's (post-order: kmod <= 33's files)",
    )
    parser.add_argument("--cache-dir", help="where depmod keeps parsed modules")
    parser.add_argument("--no-cache", action="store_true", help="read every module again")


def index_options(options: argparse.Namespace) -> IndexOptions:
    from lkm.formats.kmod_index_writer import Layout
    from lkm.workflows.install import IndexOptions

    return IndexOptions(
        use_cache=not options.no_cache,
        cache_dir=options.cache_dir,
        layout=Layout(options.index_layout),
    )


def depmod_reporter(err: BinaryIO) -> Callable[[str, str], None]:
    """depmod's messages as ``lkm depmod`` prints them without ``-v``:
    warnings and worse."""
    from lkm.errors import one_line

    def report(level: str, message: str) -> None:
        if level in ("FATAL", "ERROR", "WARNING"):
            text = f"depmod: {level}: {one_line(message)}\n"
            err.write(text.encode("utf-8", "surrogateescape"))

    return report


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = "install") -> int:
    from lkm.cli.options import argument_parser, line_writer, parse_arguments
    from lkm.errors import one_line
    from lkm.workflows.install import DEFAULT_HASH, InstallError, InstallRequest, install

    parser = argument_parser("lkm install", __doc__, out, err)
    parser.add_argument(
        "sources",
        nargs="*",
        metavar="DIR|MODULE.ko",
        help="modules, or directories of built *.ko (default: .)",
    )
    parser.add_argument("--kernel", "-k", help="kernel release (default: the modules' vermagic)")
    parser.add_argument("--root", default="", help="install under this root (INSTALL_MOD_PATH)")
    parser.add_argument(
        "--dir", dest="directory", help="directory in the module tree (default: kbuild's)"
    )
    parser.add_argument("--key", help="sign with this PEM private key")
    parser.add_argument("--cert", help="the key's X.509 certificate")
    parser.add_argument("--hash", default=DEFAULT_HASH, help=f"digest (default {DEFAULT_HASH})")
    index_arguments(parser)
    options = parse_arguments(parser, args)
    if isinstance(options, int):
        return options
    if (options.key is None) != (options.cert is None):
        err.write(b"lkm install: --key and --cert go together\n")
        return 2
    request = InstallRequest(
        sources=tuple(options.sources) or (".",),
        kernel=options.kernel,
        root=options.root,
        directory=options.directory,
        key=options.key,
        cert=options.cert,
        hash_name=options.hash,
        index=index_options(options),
    )
    try:
        result = install(request, depmod_reporter(err))
    except InstallError as exc:
        out.flush()
        err.write(f"lkm install: {one_line(str(exc))}\n".encode("utf-8", "surrogateescape"))
        return 1
    show(result, line_writer(out))
    return 0


def show(result: InstallResult, line: Callable[[str], None]) -> None:
    """Where each module went, and what its name loads now."""
    if not result.directory.source:
        line(
            f"note: no kbuild files for {result.release} found; installing into "
            f"{result.directory.path}/ (--dir chooses)"
        )
    for placed in result.placed:
        notes = ["signed"] if placed.signed else []
        if placed.path in placed.replaced:
            notes.append("replacing the copy there")
        shown = f" ({', '.join(notes)})" if notes else ""
        line(f"{placed.source} -> {placed.path}{shown}")
        for other in placed.replaced:
            if other != placed.path:
                line(f"  removed {other}, another copy of {placed.name} in that directory")
        if placed.shadows:
            line(
                f"  {placed.name} shadows {', '.join(placed.shadows)}: "
                f"modprobe {placed.name} loads the installed module"
            )
        if placed.shadowed_by is not None:
            # depmod's default search ranks updates/ above the kernel's own.
            in_tree = placed.shadowed_by.startswith("kernel/")
            hint = " (--dir updates takes precedence)" if in_tree else ""
            line(
                f"  {placed.name} is shadowed by {placed.shadowed_by}: "
                f"modprobe {placed.name} loads that one, not the installed module{hint}"
            )
    line(f"indexed {result.moddir}")
