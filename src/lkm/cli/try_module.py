"""``lkm try [DIR] [VAR=VALUE…] [--kernel IMAGE|VERSION|HEADERS_DIR] [-j N] [-q|-v] [--gdb]
[-- TEST-CMD…]``:
build the module in DIR, boot the kernel it is for in a disposable VM, load
the module (several in dependency order), run TEST-CMD inside, unload, and
report the kernel's log lines, the taint the module caused and any oops or
warning. Exit status 0 when all of it worked. With --gdb the VM waits after
loading, for gdb to attach with the commands lkm writes (DIR/.lkm-gdb).
With --shell an interactive shell in the VM follows the loading (exit it
to go on). On a terminal, one line tells how far the VM's boot is, and the
final ok (green) or FAILED (red) is in colour (--color=WHEN: auto, always,
never; auto means a terminal, without NO_COLOR set or TERM=dumb), as are
each load's and unload's ok or FAILED. With --json the report is one JSON
record on stdout, and the build's and VM's lines go to stderr."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import BinaryIO

    from lkm.workflows.gdb import GdbRequest


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = "try") -> int:
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
    parser.add_argument(
        "--gdb",
        action="store_true",
        help="give the VM a gdb stub; after loading, write the gdb commands that attach and"
        " load the module's symbols (DIR/.lkm-gdb) and wait: gdb's lkm-go command (or the"
        " file .lkm-gdb.go, or Enter) runs TEST-CMD",
    )
    parser.add_argument(
        "--gdb-file", metavar="FILE", help="write the gdb commands here (implies --gdb)"
    )
    colour_option = parser.add_argument(
        "--color",
        metavar="WHEN",
        type=_when,
        default="auto",
        help="ok/FAILED in colour: auto (on a terminal, unless NO_COLOR is set or"
        " TERM is dumb), always or never",
    )
    # Its value is in the same word (--color=WHEN) or absent: completion
    # offers no value after it.
    setattr(colour_option, "value_in_same_word", True)  # noqa: B010 - an attribute argparse lacks
    parser.add_argument(
        "--json",
        action="store_true",
        help="the report as one JSON array of one record (lkm/schemas/try.schema.json);"
        " the build's lines go to stderr",
    )
    parser.add_argument(
        "--shell",
        action="store_true",
        help="after loading, an interactive shell in the VM on this terminal (as lkm vm"
        " shell); its exit runs TEST-CMD and unloads",
    )
    # A bare --color is --color=auto, as getopt's optional value would have it.
    args = ["--color=auto" if arg == "--color" else arg for arg in args]
    options = parse_arguments(parser, args)
    if isinstance(options, int):
        return options
    line = line_writer(err if options.json else out)
    make_vars = make_variables(options)
    from lkm.vm.terminal import BootProgress, Terminal

    progress = BootProgress("lkm try", 2)
    try:
        fetch_on_demand(options.kernel, "image", not options.no_fetch, err, options.quiet)
        report = try_module(
            options.directory,
            options.kernel,
            test,
            options.jobs,
            discard if options.quiet else line,  # -q: the report only
            options.console,
            options.timeout,
            gdb=_gdb_request(options.gdb, options.gdb_file),
            shell=Terminal(0, 1) if options.shell else None,
            progress=progress,
            make_vars=make_vars,
        )
    except LkmError as exc:
        out.flush()
        progress.clear()
        err.write(f"lkm try: {exc}\n".encode("utf-8", "surrogateescape"))
        return 1
    finally:
        progress.clear()
    if options.json:
        from lkm.cli.json_output import write_array

        write_array(out, [report.as_json()])
        return 0 if report.ok else 1
    from lkm.cli.colour import wanted

    colour = wanted(options.color, out)
    *lines, result = report.lines()
    for text in lines:
        line(_call_line(text, colour))
    line(_result_line(result, report.ok, colour))
    return 0 if report.ok else 1


def _when(value: str) -> str:
    import argparse

    from lkm.cli.colour import ColourModeError, when_of

    try:
        return when_of(f"={value}")
    except ColourModeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _result_line(text: str, ok: bool, colour: bool) -> str:
    """The report's last line ("ok (build 3.1 s, …)" or "FAILED (…)") with
    its first word green or red."""
    from lkm.cli.colour import GREEN, RED, paint

    word, space, rest = text.partition(" ")
    return paint(word, GREEN if ok else RED, colour) + space + rest


def _call_line(text: str, colour: bool) -> str:
    """A load's or unload's line ("insmod hello: ok", "rmmod hello:
    FAILED") with its state green or red; other lines as they are."""
    from lkm.cli.colour import GREEN, RED, paint

    head, sep, state = text.rpartition(": ")
    if not sep or state not in ("ok", "FAILED") or head.split(" ", 1)[0] not in CALLS:
        return text
    return f"{head}{sep}{paint(state, GREEN if state == 'ok' else RED, colour)}"


CALLS = ("insmod", "rmmod", "modprobe")


def _gdb_request(gdb: bool, script: str | None) -> GdbRequest | None:
    """What --gdb asks for; Enter on lkm's terminal says go too."""
    if not gdb and script is None:
        return None
    import os
    import sys

    from lkm.workflows.gdb import GdbRequest

    keyboard = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
    return GdbRequest(os.path.abspath(script) if script else None, keyboard)
