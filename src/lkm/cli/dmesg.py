"""``lkm dmesg``: the kernel log from ``/dev/kmsg``, printed like util-linux.

Timestamps ``[%5ld.%06ld]``, ``-x`` for facility and level, ``-t`` for no
timestamps, ``-l LEVELS`` to keep some levels, ``-w`` to wait for new
records, and ``--module NAME`` for the lines one module logged.
"""

from __future__ import annotations

import os

from lkm.cli.options import UsageError, own_version_text, parse, usage_line

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import BinaryIO

PROG = "dmesg"
USAGE = (
    "usage: lkm dmesg [-x|--decode] [-t|--notime] [-l|--level LIST] [-w|--follow] [--module NAME]\n"
)
HELP = (
    USAGE
    + """
The kernel log from /dev/kmsg, printed as util-linux dmesg prints it.

  -x, --decode        facility and level as text
  -t, --notime        no timestamps
  -l, --level LIST    only these levels (emerg,alert,crit,err,warn,notice,info,debug)
  -w, --follow        wait for new records
      --module NAME   only the lines module NAME logged
  -h, --help          this help
      --version       the version
"""
)
SHORTOPTS = "xtl:wh"
LONGOPTS = ("decode", "notime", "level=", "follow", "module=", "help", "version")
_LONG = {"-x": "--decode", "-t": "--notime", "-l": "--level", "-w": "--follow", "-h": "--help"}


def _utf8_locale() -> bool:
    for name in ("LC_ALL", "LC_CTYPE", "LANG"):
        value = os.environ.get(name)
        if value:
            return "utf-8" in value.lower() or "utf8" in value.lower()
    return False


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = PROG) -> int:
    from lkm.formats.kmsg import LEVELS, format_record, from_module, parse_record

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
    decode = "--decode" in options
    show_time = "--notime" not in options
    follow = "--follow" in options
    module = options.get("--module")
    levels_text = options.get("--level")
    levels = None
    if levels_text is not None:
        names = levels_text.split(",")
        unknown = [n for n in names if n not in LEVELS]
        if unknown:
            err.write(
                f"lkm dmesg: unknown level '{unknown[0]}'\n".encode("utf-8", "surrogateescape")
            )
            return 1
        levels = {LEVELS.index(n) for n in names}

    from lkm.errors import FormatError
    from lkm.system.kernel import KernelModules

    utf8 = _utf8_locale()
    try:
        for raw in KernelModules().kmsg(follow=follow):
            try:
                record = parse_record(raw)
            except FormatError:
                continue
            if levels is not None and record.level not in levels:
                continue
            if module is not None and not from_module(record, module):
                continue
            out.write(format_record(record, decode, show_time, utf8))
            if follow:
                out.flush()
    except BrokenPipeError:
        raise  # stdout closed (| head): the entry point ends quietly
    except OSError as exc:
        err.write(
            f"lkm dmesg: cannot read /dev/kmsg: {exc.strerror}\n".encode("utf-8", "surrogateescape")
        )
        return 1
    return 0
