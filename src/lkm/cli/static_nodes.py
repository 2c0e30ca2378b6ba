"""``lkm static-nodes``: kmod's ``static-nodes`` byte for byte — the device
nodes of modules that load on first open (``modules.devname``) in a human
format, systemd-tmpfiles' or modules.devname's own.

Options as kmod 30: ``-f/--format human|tmpfiles|devname``, ``-o/--output
FILE`` (parents made), ``-h``. lkm's own: ``-b/--basedir DIR`` and
``--kernel VERSION`` (another tree than the running kernel's: an image's).
A missing modules.devname is a warning and exit 0, as with kmod; an
unreadable one, or an entry that does not scan (reported, the rest still
written), exit 1. The output file is truncated and written in place, as
kmod writes it (through a link, onto a device).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import BinaryIO

SHORTOPTS = "o:f:hb:"
LONGOPTS = ("output=", "format=", "help", "basedir=", "kernel=", "version")


def help_text(prog: str) -> str:
    from lkm.formats.devname import FORMATS

    lines = [
        "Usage:",
        f"\t{prog} static-nodes [options]",
        "",
        "kmod static-nodes outputs the static-node information of the currently running kernel.",
        "",
        "Options:",
        '\t-f, --format=FORMAT  choose format to use: see "Formats"',
        "\t-o, --output=FILE    write output to file",
        "\t-h, --help           show this help",
        "",
        "Formats:",
        *(f"\t{name:<12} {description}" for name, description in FORMATS.items()),
        "",
        "lkm's extensions:",
        "\t-b, --basedir=DIR    the tree under DIR/lib/modules",
        "\t    --kernel=VERSION the tree of VERSION, not the running kernel's",
        "\t    --version        the version",
    ]
    return "\n".join(lines) + "\n"


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = "static-nodes") -> int:
    import os

    from lkm.cli.options import UsageError, parse
    from lkm.formats.devname import FORMATS

    prog = "lkm"
    try:
        options, _ = parse(prog, args, SHORTOPTS, LONGOPTS)
    except UsageError as exc:
        err.write(f"{exc}\n".encode("utf-8", "surrogateescape"))
        return 1
    fmt, output, basedir, kernel = "human", None, "", os.uname().release
    for name, value in options:
        if name in ("-h", "--help"):
            out.write(help_text(prog).encode())
            return 0
        if name == "--version":
            from lkm.cli.options import version_text

            out.write(version_text().encode())
            return 0
        if name in ("-f", "--format"):
            if value not in FORMATS:
                err.write(f"Unknown format: '{value}'.\n".encode("utf-8", "surrogateescape"))
                out.write(help_text(prog).encode())
                return 1
            fmt = value
        elif name in ("-o", "--output"):
            output = value
        elif name in ("-b", "--basedir"):
            basedir = value
        else:
            kernel = value
    return static_nodes(f"{basedir}/lib/modules/{kernel}", kernel, fmt, output, out, err)


def static_nodes(
    moddir: str, kernel: str, fmt: str, output: str | None, out: BinaryIO, err: BinaryIO
) -> int:
    from lkm.formats.devname import lines, render, scan

    path = f"{moddir}/modules.devname"
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        err.write(f"Warning: {path} not found - ignoring\n".encode("utf-8", "surrogateescape"))
        return 0
    except IsADirectoryError:
        data = b""  # kmod opens it, and its first read ends the input
    except OSError as exc:
        err.write(
            f"Error: could not open {path} - {exc.strerror}\n".encode("utf-8", "surrogateescape")
        )
        return 1
    sink = None
    if output is not None:
        sink = _open_output(output, err)  # before the entries are read, as kmod
        if sink is None:
            return 1
    status = 0
    chunks = []
    for line in lines(data):
        if line.startswith(b"#"):
            continue
        entry = scan(line)
        if entry is None:
            err.write(b"Error: invalid devname entry: " + line.split(b"\0", 1)[0])
            status = 1
            continue
        chunks.append(render(entry, fmt))
    text = b"".join(chunks)
    if sink is None:
        out.write(text)
        return status
    with sink:
        sink.write(text)
    return status


def _open_output(output: str, err: BinaryIO) -> BinaryIO | None:
    """``output`` truncated for writing in place, as kmod's fopen(…, "w")
    opens it (through a link, onto a device or FIFO), its parents made
    first; None, reported, when it cannot be."""
    import os

    parent = os.path.dirname(output)
    try:
        if parent:
            os.makedirs(parent, mode=0o755, exist_ok=True)
    except OSError as exc:
        message = f"Error: could not create parent directory for {output} - {exc.strerror}.\n"
        err.write(message.encode("utf-8", "surrogateescape"))
        return None
    try:
        return open(output, "wb")
    except OSError as exc:
        err.write(
            f"Error: could not create {output} - {exc.strerror}\n".encode(
                "utf-8", "surrogateescape"
            )
        )
        return None
