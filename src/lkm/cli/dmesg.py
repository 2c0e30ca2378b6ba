"""``lkm dmesg``: the kernel log from ``/dev/kmsg``, printed like util-linux.

Timestamps ``[%5ld.%06ld]``, ``-x`` for facility and level, ``-t`` for no
timestamps, ``-l LEVELS`` to keep some levels, ``-L/--color[=WHEN]`` for
util-linux's colours, ``-w`` to wait for new records, and ``--module NAME``
for the lines one module logged.
"""

from __future__ import annotations

import os

from lkm.cli.options import UsageError, own_version_text, parse, usage_line
from lkm.records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import BinaryIO

    from lkm.formats.kmsg import KmsgRecord

PROG = "dmesg"
USAGE = (
    "usage: lkm dmesg [-x|--decode] [-t|--notime] [-l|--level LIST] [-L|--color[=WHEN]]\n"
    "                 [-w|--follow] [--module NAME] [--json]\n"
)
HELP = (
    USAGE
    + """
The kernel log from /dev/kmsg, printed as util-linux dmesg prints it.

  -x, --decode        facility and level as text
  -t, --notime        no timestamps
  -l, --level LIST    only these levels (emerg,alert,crit,err,warn,notice,info,debug)
  -L, --color[=WHEN]  colours: auto (the default: a terminal whose terminfo entry
                      has colours), always or never; util-linux's default colours
                      (terminal-colors.d is not read; as util-linux 2.38, NO_COLOR
                      is not either)
  -w, --follow        wait for new records
      --module NAME   only the lines module NAME logged
      --json          one JSON array of records (with --follow, one object a line)
  -h, --help          this help
      --version       the version
"""
)
SHORTOPTS = "xtl:L::wh"
LONGOPTS = (
    "decode", "notime", "level=", "color==", "follow", "module=", "json", "help", "version",
)  # fmt: skip
_LONG = {
    "-x": "--decode",
    "-t": "--notime",
    "-l": "--level",
    "-L": "--color",
    "-w": "--follow",
    "-h": "--help",
}


class Shown(Record):
    """Which records ``lkm dmesg`` prints, and how."""

    decode: bool = False
    show_time: bool = True
    utf8: bool = False
    colour: bool = False
    levels: frozenset[int] | None = None  # None: every level
    module: str | None = None
    follow: bool = False
    json: bool = False


def _utf8_locale() -> bool:
    for name in ("LC_ALL", "LC_CTYPE", "LANG"):
        value = os.environ.get(name)
        if value:
            return "utf-8" in value.lower() or "utf8" in value.lower()
    return False


def run(
    args: list[str],
    out: BinaryIO,
    err: BinaryIO,
    argv0: str = PROG,
    records: Iterable[bytes] | None = None,
) -> int:
    """``lkm dmesg ARGS``; ``records`` stand for ``/dev/kmsg``'s (a test
    gives the ones util-linux dmesg reads from a file)."""
    try:
        opts, operands = parse(argv0, args, SHORTOPTS, LONGOPTS)
    except UsageError as exc:
        err.write(usage_line(str(exc)))
        return 2
    options = {_LONG.get(name, name): value for name, value in opts}
    if "--help" in options:
        out.write(HELP.encode("utf-8", "surrogateescape"))
        return 0
    if "--version" in options:
        out.write(own_version_text().encode())
        return 0
    if operands:
        err.write(usage_line(f"lkm dmesg: unexpected argument '{operands[0]}'"))
        return 2
    try:
        shown = shown_by(options, out)
    except ValueError as exc:  # util-linux exits 1 for these, not 2
        err.write(f"lkm dmesg: {exc}\n".encode("utf-8", "surrogateescape"))
        return 1

    try:
        if records is None:
            from lkm.system.kernel import KernelModules

            records = KernelModules().kmsg(follow=shown.follow)
        print_records(records, out, shown)
    except BrokenPipeError:
        raise  # stdout closed (| head): the entry point ends quietly
    except OSError as exc:
        err.write(
            f"lkm dmesg: cannot read /dev/kmsg: {exc.strerror}\n".encode("utf-8", "surrogateescape")
        )
        return 1
    return 0


def shown_by(options: dict[str, str], out: BinaryIO) -> Shown:
    """The options as a Shown; ValueError for an unknown level or colour
    mode (util-linux's messages)."""
    from lkm.cli.colour import util_linux_wanted, when_of
    from lkm.formats.kmsg import LEVELS

    levels = None
    if "--level" in options:
        names = options["--level"].split(",")
        unknown = [n for n in names if n not in LEVELS]
        if unknown:
            raise ValueError(f"unknown level '{unknown[0]}'")
        levels = frozenset(LEVELS.index(n) for n in names)
    # No --color is util-linux's "undefined" mode: terminal-colors.d's
    # choice, else auto; lkm reads no terminal-colors.d.
    when = when_of(options.get("--color", ""))
    return Shown(
        decode="--decode" in options,
        show_time="--notime" not in options,
        utf8=_utf8_locale(),
        colour=util_linux_wanted(when, out),
        levels=levels,
        module=options.get("--module"),
        follow="--follow" in options,
        json="--json" in options,
    )


def print_records(records: Iterable[bytes], out: BinaryIO, shown: Shown) -> None:
    """Print the raw ``/dev/kmsg`` records as ``shown`` says."""
    from lkm.errors import FormatError
    from lkm.formats.kmsg import NAMED_FACILITIES, format_record, from_module, parse_record

    kept: list[dict[str, object]] = []
    for raw in records:
        try:
            record = parse_record(raw)
        except FormatError:
            continue
        if shown.levels is not None and (
            record.level not in shown.levels or record.facility > NAMED_FACILITIES
        ):
            continue  # util-linux's -l drops records of a facility it cannot name
        if shown.module is not None and not from_module(record, shown.module):
            continue
        if shown.json:
            _json_record(record, out, kept, shown.follow)
            continue
        out.write(format_record(record, shown.decode, shown.show_time, shown.utf8, shown.colour))
        if shown.follow:
            out.flush()
    if shown.json and not shown.follow:
        from lkm.cli.json_output import write_array

        write_array(out, kept)


def _json_record(
    record: KmsgRecord, out: BinaryIO, kept: list[dict[str, object]], follow: bool
) -> None:
    """The record as JSON: printed at once when following, else kept for
    the array (lkm.cli.json_output's rule)."""
    from lkm.cli.json_output import write_line

    if follow:
        write_line(out, record.as_json())
    else:
        kept.append(record.as_json())
