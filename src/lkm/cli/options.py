"""GNU ``getopt_long`` with glibc's messages, as kmod's tools parse options.

Options and operands may be mixed (arguments are permuted), long options
may be abbreviated to a unique prefix, ``--opt=value`` and ``--opt value``
both work, short options cluster (``-0F field``), and ``--`` ends the
options. Error messages are glibc's, word for word, so scripts see kmod's
text. Written here rather than through :mod:`getopt`, which rewords errors
and pulls in gettext and re: every lkm start pays for its imports.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any, BinaryIO, NoReturn


class UsageError(Exception):
    """Bad command line; the message is what glibc's getopt would print."""


def parse(
    prog: str, args: Sequence[str], shortopts: str, longopts: Sequence[str]
) -> tuple[list[tuple[str, str]], list[str]]:
    """(options as (name, value) pairs, operands) — names keep their dashes.

    ``shortopts`` as for getopt ("F:" takes a value, "L::" an optional one
    written in the same word, "-Lalways"); ``longopts`` names, "field="
    taking a value, "color==" an optional one (only as "--color=always").
    An optional value comes back after a "=" marker, so that a bare
    "--color" ("") and an empty "--color=" ("=") differ, as they do for
    getopt (NULL and "").
    """
    takes_value = {name.rstrip("="): _value_kind(name) for name in longopts}
    options: list[tuple[str, str]] = []
    operands: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            operands.extend(args[i:])
            break
        if arg.startswith("--"):
            i = _long(prog, arg, args, i, takes_value, options)
        elif arg.startswith("-") and arg != "-":
            i = _short(prog, arg, args, i, shortopts, options)
        else:
            operands.append(arg)
    return options, operands


_NO_VALUE, _VALUE, _OPTIONAL_VALUE = 0, 1, 2


def _value_kind(longopt: str) -> int:
    if longopt.endswith("=="):
        return _OPTIONAL_VALUE
    return _VALUE if longopt.endswith("=") else _NO_VALUE


def _long(
    prog: str,
    arg: str,
    args: Sequence[str],
    i: int,
    takes_value: dict[str, int],
    options: list[tuple[str, str]],
) -> int:
    name, has_value, value = arg[2:].partition("=")
    matches = [name] if name in takes_value else [n for n in takes_value if n.startswith(name)]
    if not matches:
        raise UsageError(f"{prog}: unrecognized option '{arg}'")
    if len(matches) > 1:
        found = " ".join(f"'--{m}'" for m in matches)
        raise UsageError(f"{prog}: option '{arg}' is ambiguous; possibilities: {found}")
    full = matches[0]
    if takes_value[full] == _OPTIONAL_VALUE:
        value = has_value + value  # "" when bare, "=" + the value when given
    elif takes_value[full]:
        if not has_value:
            if i >= len(args):
                raise UsageError(f"{prog}: option '--{full}' requires an argument")
            value = args[i]
            i += 1
    elif has_value:
        raise UsageError(f"{prog}: option '--{full}' doesn't allow an argument")
    options.append((f"--{full}", value))
    return i


def _short(
    prog: str,
    arg: str,
    args: Sequence[str],
    i: int,
    shortopts: str,
    options: list[tuple[str, str]],
) -> int:
    pos = 1
    while pos < len(arg):
        letter = arg[pos]
        spec = shortopts.find(letter)
        if spec < 0 or letter == ":":
            raise UsageError(f"{prog}: invalid option -- '{letter}'")
        if shortopts.startswith("::", spec + 1):
            # getopt takes an optional value only from the same word.
            rest = arg[pos + 1 :]
            options.append((f"-{letter}", f"={rest}" if rest else ""))
            return i
        if shortopts.startswith(":", spec + 1):
            if pos + 1 < len(arg):
                value = arg[pos + 1 :]
            elif i < len(args):
                value = args[i]
                i += 1
            else:
                raise UsageError(f"{prog}: option requires an argument -- '{letter}'")
            options.append((f"-{letter}", value))
            return i
        options.append((f"-{letter}", ""))
        pos += 1
    return i


def version_text() -> str:
    """What ``-V`` prints: kmod's two lines, lkm's name and version."""
    from lkm import __version__

    return f"lkm version {__version__}\n+ZSTD +XZ +ZLIB +LIBCRYPTO -EXPERIMENTAL\n"


def error_line(prog: str, message: str) -> bytes:
    """kmod's ``PROG: ERROR: message`` line, always one line: a line break
    inside the message (a file name read from a damaged index, say) is
    shown as ``\\n``."""
    from lkm.errors import one_line

    return f"{prog}: ERROR: {one_line(message)}\n".encode("utf-8", "surrogateescape")


def syslog_text(text: str) -> str:
    """``text`` as Python's syslog can send it: it encodes strictly, so
    bytes that are not UTF-8 (a module name typed with one) are shown as
    ``\\xff`` escapes instead of raising."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def help_or_version(opts: list[tuple[str, str]], help_text: str) -> str | None:
    """What ``-h/--help`` or ``-V/--version`` print, whichever comes first
    (kmod's tools act on it and exit 0); None when neither is given."""
    for opt, _ in opts:
        if opt in ("-h", "--help"):
            return help_text
        if opt in ("-V", "--version"):
            return version_text()
    return None


def kbuild_arguments(parser: argparse.ArgumentParser, kernel_help: str) -> None:
    """The arguments ``lkm build`` and ``lkm try`` share: DIR, make's
    VAR=VALUE words, --kernel, --jobs, --no-fetch, -q, -v."""
    parser.add_argument("directory", nargs="?", default=".", metavar="DIR")
    parser.add_argument(
        "make_vars",
        nargs="*",
        metavar="VAR=VALUE",
        help="make variables for kbuild, as make takes them (V=1, W=1, KCFLAGS=-g, …)",
    )
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="not make's output: only problems and results"
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="make's commands too (kbuild's V=1)"
    )
    parser.add_argument("--kernel", "-k", help=kernel_help)
    parser.add_argument("--jobs", "-j", type=int, help="parallel make jobs")
    parser.add_argument(
        "--no-fetch",
        action="store_true",
        help="never download a kernel: a series or release not here is an error",
    )


def make_variables(options: argparse.Namespace) -> list[str]:
    """The make variables the command line gives (-v: V=1). A first word
    that is a VAR=VALUE and not a directory was taken for DIR by argparse:
    it is the first variable, and DIR is the current directory."""
    import os

    from lkm.workflows.build import is_make_variable

    words = list(options.make_vars)
    directory = options.directory
    if is_make_variable(directory) and not os.path.isdir(directory):
        words.insert(0, directory)
        options.directory = "."
    if options.verbose and not any(w.startswith("V=") for w in words):
        words.append("V=1")
    return words


def fetch_on_demand(
    spec: str | None, need: str, fetch: bool, err: BinaryIO, quiet: bool = False
) -> None:
    """Bring the kernel ``spec`` names into lkm's cache when it is a Debian
    series or release that is not here yet (``fetch``), telling ``err`` in
    a line (``quiet``: not); the command then finds it as usual. Raises
    KernelNotFound."""
    if not spec or not fetch:
        return
    from lkm.workflows.kernel_store import resolve_kernel

    def notice(line: str) -> None:
        if quiet:
            return
        err.write(f"{line}\n".encode("utf-8", "surrogateescape"))
        err.flush()

    resolve_kernel(spec, need, fetch=True, notice=notice)


def discard(_text: str) -> None:
    """An output that shows nothing (``-q``)."""


def line_writer(out: BinaryIO) -> Callable[[str], None]:
    """Write each line as it comes (make's output streams through it)."""

    def line(text: str) -> None:
        out.write(f"{text}\n".encode("utf-8", "surrogateescape"))
        out.flush()

    return line


def usage_line(message: str) -> bytes:
    """A usage error of lkm's own commands: one line (``--help`` has the
    rest)."""
    from lkm.errors import one_line

    return f"{one_line(message)} (see --help)\n".encode("utf-8", "surrogateescape")


def own_version_text() -> str:
    """What ``--version`` of lkm's own commands prints (as ``lkm --version``)."""
    from lkm import __version__

    return f"lkm version {__version__}\n"


def argument_parser(
    prog: str, description: str | None, out: BinaryIO, err: BinaryIO
) -> argparse.ArgumentParser:
    """An ``argparse`` parser for lkm's own commands that prints help to
    ``out`` and usage errors to ``err`` (the streams the tool was given, so
    a library caller or a test sees them), not to ``sys.stdout``/``stderr``.
    A usage error is one line (``PROG: error: …``; ``--help`` has the
    rest), exit status 2; ``--version`` is lkm's."""
    import argparse
    import sys

    class Parser(argparse.ArgumentParser):
        def _print_message(self, message: str, file: Any = None) -> None:
            if message:
                stream = err if file is sys.stderr else out
                stream.write(message.encode("utf-8", "surrogateescape"))

        def error(self, message: str) -> NoReturn:
            from lkm.errors import one_line

            self.exit(2, f"{self.prog}: error: {one_line(message)} (see --help)\n")

    parser = Parser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=own_version_text().rstrip("\n"))
    return parser


class _ParserBuilt(Exception):
    """parse_arguments met while :func:`parser_of` asks for the parser."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__("parser built")
        self.parser = parser


_showing_parsers = False  # parser_of is running a command only to see its parser


def parser_of(run: Callable[..., int]) -> argparse.ArgumentParser:
    """The argparse parser a command's ``run`` builds, as it builds it:
    ``run`` stops at its parse_arguments call, before doing anything
    (completion and help tables come from the real parser, not a copy)."""
    import io

    global _showing_parsers
    _showing_parsers = True
    try:
        run([], io.BytesIO(), io.BytesIO())
    except _ParserBuilt as built:
        return built.parser
    finally:
        _showing_parsers = False
    raise ValueError(f"{run.__module__}: run() parses no arguments with argparse")


def parse_arguments(
    parser: argparse.ArgumentParser, args: Sequence[str]
) -> argparse.Namespace | int:
    """The parsed options, or the exit status when argparse ended the
    command itself (``--help``: 0, a usage error: 2), its message already
    written to the parser's streams."""
    if _showing_parsers:
        raise _ParserBuilt(parser)
    try:
        return parser.parse_args(args)
    except SystemExit as exc:
        return int(exc.code or 0)
