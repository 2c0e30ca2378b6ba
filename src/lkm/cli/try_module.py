"""``lkm try [DIR] [--kernel IMAGE|VERSION|HEADERS_DIR] [-j N] [-- TEST-CMD…]``:
build the module in DIR, boot the kernel it is for in a disposable VM, load
the module (several in dependency order), run TEST-CMD inside, unload, and
report the kernel's log lines, the taint the module caused and any oops or
warning. Exit status 0 when all of it worked."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import BinaryIO


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = "try") -> int:
    from lkm.cli.options import (
        argument_parser,
        fetch_on_demand,
        kbuild_arguments,
        line_writer,
        parse_arguments,
    )
    from lkm.errors import LkmError
    from lkm.workflows.try_module import GUEST_TIMEOUT, try_module

    test: list[str] | None = None
    if "--" in args:
        split = args.index("--")
        args, test = args[:split], args[split + 1 :] or None
    parser = argument_parser("lkm try", __doc__, out, err)
    kbuild_arguments(
        parser,
        "vmlinuz path, series, release or headers directory (default: the running"
        " kernel, else the newest in lkm's cache); a Debian series or release not"
        " here is fetched",
    )
    parser.add_argument("--console", help="keep the VM's console log in this file")
    parser.add_argument(
        "--timeout", type=float, default=GUEST_TIMEOUT, help="seconds the guest may take"
    )
    options = parse_arguments(parser, args)
    if isinstance(options, int):
        return options
    line = line_writer(out)

    try:
        fetch_on_demand(options.kernel, "image", not options.no_fetch, err)
        report = try_module(
            options.directory,
            options.kernel,
            test,
            options.jobs,
            line,
            options.console,
            options.timeout,
        )
    except LkmError as exc:
        out.flush()
        err.write(f"lkm try: {exc}\n".encode("utf-8", "surrogateescape"))
        return 1
    for text in report.lines():
        line(text)
    return 0 if report.ok else 1
