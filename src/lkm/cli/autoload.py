"""``lkm autoload``: load the modules devices need, when they appear.

    lkm autoload [--coldplug] [--once] [--dry-run] [--json]
                 [--settle SECONDS] [--timeout SECONDS]

Listens on the kernel's uevent socket and, for every ``add`` uevent with
a MODALIAS, loads what the alias names as ``modprobe -b -q`` would (in
this process, never a process per event). ``--coldplug`` first handles
the devices already present; ``--once`` returns when uevents have
settled (``--settle`` seconds without one, default 1; at most
``--timeout`` seconds, default 120). One line per alias handled —
device path, alias, modules, result — or one JSON object per line with
``--json``; datagrams not from the kernel and malformed ones are logged
and ignored. SIGTERM or SIGINT ends it (status 0). ``--dry-run`` says
what would load.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    import argparse
    from typing import BinaryIO


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = "autoload") -> int:
    from lkm.cli.options import argument_parser, parse_arguments

    parser = argument_parser("lkm autoload", __doc__, out, err)
    parser.add_argument("--coldplug", action="store_true", help="handle devices present now")
    parser.add_argument("--once", action="store_true", help="return when uevents settle")
    parser.add_argument("--dry-run", action="store_true", help="say what would load")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--settle", type=float, default=1.0, metavar="SECONDS")
    parser.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS")
    parsed = parse_arguments(parser, args)
    if isinstance(parsed, int):
        return parsed
    if not parsed.settle > 0 or not parsed.timeout > 0:
        err.write(b"lkm autoload: --settle and --timeout take a number of seconds above 0\n")
        return 2
    return _follow(parsed.coldplug, parsed.once, parsed.dry_run, parsed.json, parsed, out, err)


def _follow(
    coldplug: bool,
    once: bool,
    dry_run: bool,
    as_json: bool,
    parsed: argparse.Namespace,
    out: BinaryIO,
    err: BinaryIO,
) -> int:
    import json
    import signal

    from lkm.system.uevent_socket import UeventSocket
    from lkm.workflows.autoload import Autoloader, Limits, LoadEvent, Notice, follow

    def log(item: LoadEvent | Notice) -> None:
        text = json.dumps(item.as_json()) if as_json else item.line()
        try:
            out.write(f"{text}\n".encode("utf-8", "surrogateescape"))
            out.flush()
        except OSError:
            pass  # the reader went away (a restarted journal): keep loading modules

    stop = []

    def request_stop(signum: int, _frame: object) -> None:
        stop.append(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
    limits = Limits(once, parsed.settle, parsed.timeout)
    try:
        sock = UeventSocket()
    except OSError as exc:
        err.write(f"lkm autoload: cannot listen for uevents: {exc.strerror}\n".encode())
        return 1
    loader = Autoloader(None, None, dry_run=dry_run, log=log)
    try:
        with sock:
            settled = follow(
                loader, sock, coldplug=coldplug, limits=limits, stopped=lambda: bool(stop)
            )
    finally:
        loader.close()
    return 0 if settled or not once else 3
