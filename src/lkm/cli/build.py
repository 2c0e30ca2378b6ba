"""``lkm build [DIR] [VAR=VALUE…] [--kernel VERSION|HEADERS_DIR] [--jobs N]
[-q|-v]``: kbuild
for an out-of-tree module (``make -C KDIR M=DIR modules``), output as it
comes, and one line saying what went wrong and how to fix it when it does.
Built for another kernel than the running one, a note says whether the
running kernel would load the modules (lkm check), and why not."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import BinaryIO


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = "build") -> int:
    from lkm.cli.options import (
        argument_parser,
        discard,
        fetch_on_demand,
        kbuild_arguments,
        line_writer,
        make_variables,
        parse_arguments,
    )
    from lkm.errors import LkmError
    from lkm.workflows.build import build

    parser = argument_parser("lkm build", __doc__, out, err)
    kbuild_arguments(
        parser,
        "kernel series, release or headers directory (default: the running kernel);"
        " a Debian series or release not here is fetched",
    )
    options = parse_arguments(parser, args)
    if isinstance(options, int):
        return options
    line = line_writer(out)
    make_vars = make_variables(options)
    # -q: make's lines are still read (a failure is explained from them)
    make_line = discard if options.quiet else line

    try:
        fetch_on_demand(options.kernel, "headers", not options.no_fetch, err, options.quiet)
        result = build(options.directory, options.kernel, options.jobs, make_line, make_vars)
    except LkmError as exc:
        out.flush()
        err.write(f"lkm build: {exc}\n".encode("utf-8", "surrogateescape"))
        return 1
    if options.quiet:  # build() said them through make_line
        for note in result.notes:
            line(f"note: {note}")
    for module in result.modules:
        line(f"built {module} for {result.headers.version}")
    from lkm.workflows.check import running_kernel_notes

    for note in running_kernel_notes(list(result.modules), result.headers.version):
        line(f"note: {note}")
    return 0
