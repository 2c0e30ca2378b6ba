"""``lkm new NAME [--template hello|chardev|params|pair]``: a module tree
to start from; it builds with ``lkm build NAME`` or plain ``make``."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import BinaryIO


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = "new") -> int:
    from lkm.cli.options import argument_parser, parse_arguments
    from lkm.workflows.scaffold import TEMPLATES, ScaffoldError, create

    parser = argument_parser("lkm new", __doc__, out, err)
    parser.add_argument("directory", help="where to write it; its name is the module's")
    parser.add_argument("--template", "-t", choices=TEMPLATES, default="hello")
    parser.add_argument("--author", help="MODULE_AUTHOR (default: $USER)")
    options = parse_arguments(parser, args)
    if isinstance(options, int):
        return options
    try:
        scaffold = create(options.directory, options.template, options.author)
    except ScaffoldError as exc:
        err.write(f"lkm new: {exc}\n".encode("utf-8", "surrogateescape"))
        return 1
    out.write(
        "".join(f"created {path}\n" for path in scaffold.files).encode("utf-8", "surrogateescape")
    )
    out.write(f"next: lkm build {options.directory}\n".encode("utf-8", "surrogateescape"))
    return 0
