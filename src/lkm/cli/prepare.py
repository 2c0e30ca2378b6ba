"""``lkm prepare [--kernel VERSION] [--dry-run]``: make this machine able to
build modules for a kernel (default: the running one): its headers, the
compiler it was built with, make, pahole where the headers generate BTF,
the libraries kbuild's programs need. As root it installs the Debian
packages that are missing (apt-get install -y); otherwise, or with
--dry-run, it prints the apt-get command and changes nothing. It ends by
building a hello module against the kernel, and prints what it checked.
Exit status 0 when everything is there and the hello module built."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import BinaryIO


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = "prepare") -> int:
    from lkm.cli.options import argument_parser, line_writer, parse_arguments
    from lkm.errors import LkmError
    from lkm.workflows.prepare import prepare

    parser = argument_parser("lkm prepare", __doc__, out, err)
    parser.add_argument(
        "--kernel", "-k", help="kernel release, label or headers directory (default: uname -r)"
    )
    parser.add_argument(
        "--dry-run", "-n", action="store_true", help="install nothing; print the apt-get command"
    )
    options = parse_arguments(parser, args)
    if isinstance(options, int):
        return options
    line = line_writer(out)

    try:
        report = prepare(options.kernel, dry_run=options.dry_run, output=line)
    except LkmError as exc:
        out.flush()
        err.write(f"lkm prepare: {exc}\n".encode("utf-8", "surrogateescape"))
        return 1
    rows = [("check", "status", "detail")]
    rows += [(f.check, f.status, f.detail) for f in report.findings]
    widths = [max(len(row[column]) for row in rows) for column in (0, 1)]
    line(f"kernel {report.release}:")
    for check, status, detail in rows:
        line(f"  {check:<{widths[0]}}  {status:<{widths[1]}}  {detail}")
    return 0 if report.ok else 1
