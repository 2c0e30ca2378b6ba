"""lkm's manual pages, made from the commands themselves: ``lkm(8)`` lists
the commands; ``lkm-COMMAND(1|8)`` has the one-line summary ``lkm
--help`` gives, the command's own description (its module's text), every
option as ``COMMAND --help`` prints it (so the page names every option the
parser has), and for kmod's tools where kmod's page is the reference.

``python -m lkm.cli.manpages DIR`` writes them (``DIR/man1``,
``DIR/man8``); the repository keeps the pages under ``man/`` and the
package installs them under the prefix's ``share/man``, so ``man lkm-try``
works after a system-wide ``pip install``. A test fails when the kept pages
differ from what this makes.
"""

from __future__ import annotations

import io
import os
import re
import sys

from lkm import __version__

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    import argparse

# kmod's tools and the administrator's commands are section 8, as kmod's
# pages are; the module developer's tools section 1.
SECTION_8 = frozenset(
    (
        "modinfo",
        "depmod",
        "insmod",
        "rmmod",
        "lsmod",
        "modprobe",
        "static-nodes",
        "dkms",
        "install",
        "uninstall",
        "prepare",
        "autoload",
    )
)
# Where the behaviour an lkm command follows is defined.
REFERENCES = {
    "modinfo": "kmod's modinfo(8)",
    "depmod": "kmod's depmod(8), depmod.d(5)",
    "insmod": "kmod's insmod(8)",
    "rmmod": "kmod's rmmod(8)",
    "lsmod": "kmod's lsmod(8)",
    "modprobe": "kmod's modprobe(8), modprobe.d(5)",
    "static-nodes": "kmod(8)'s static-nodes",
    "dkms": "dkms(8) (DKMS 3.0.10, Debian bookworm's)",
    "dmesg": "util-linux's dmesg(1)",
}


def summaries() -> dict[str, str]:
    """Each command's one-line summary, from ``lkm --help``'s list."""
    from lkm.cli import USAGE

    found = {}
    for line in USAGE.splitlines():
        match = re.match(r"  ([a-z-]+)(?: run)?\s{2,}(.+)", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def page_name(command: str) -> tuple[str, str]:
    """(file name, section) of a command's page."""
    section = "8" if command in SECTION_8 else "1"
    return f"lkm-{command}.{section}", section


def _roff(text: str) -> str:
    """Plain text as roff lines: backslashes escaped, a leading dot or
    quote protected, ``literal`` in bold."""
    text = text.replace("\\ ", "")  # reST's escaped space (``x``\ s)
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)  # Sphinx roles: their target
    text = text.replace("\\", "\\e").replace("-", "\\-")
    text = re.sub(r"``(.+?)``", r"\\fB\1\\fR", text)
    return "\n".join(
        "\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n")
    )


def _help_of(command: str) -> str:
    from lkm.cli import main

    out, err = io.BytesIO(), io.BytesIO()
    main(["lkm", command, "--help"], out, err)
    return out.getvalue().decode("utf-8", "replace").replace("\t", "    ")


def _options(command: str) -> list[str]:
    """The OPTIONS section: an argparse command's options from its parser,
    each with its help; a getopt tool's help text as it prints it."""
    from lkm.cli import TOOLS

    module = sys.modules[TOOLS[command]]
    if hasattr(module, "SHORTOPTS") or command == "dkms":
        return [".nf", _roff(_help_of(command).rstrip("\n")), ".fi"]
    from lkm.cli.options import parser_of

    return _parser_options(parser_of(module.run), f"lkm {command}")


def _parser_options(parser: argparse.ArgumentParser, prog: str) -> list[str]:
    lines: list[str] = []
    subcommands = []
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if not action.option_strings and isinstance(choices, dict):
            subcommands = list(choices.items())
            continue
        metavar = action.metavar if isinstance(action.metavar, str) else None
        names = ", ".join(action.option_strings) or metavar or action.dest
        if action.option_strings and action.nargs != 0:
            names += f" {metavar or action.dest.upper()}"
        text = (action.help or "").replace("%(default)s", str(action.default))
        lines += [".TP", f".B {_roff(str(names))}", _roff(text) or r"\&"]
    for name, subparser in subcommands:
        lines += [f".SS {_roff(prog)} {_roff(name)}", *_parser_options(subparser, f"{prog} {name}")]
    return lines


def _description(command: str) -> str:
    from lkm.cli import TOOLS

    __import__(TOOLS[command])
    doc = sys.modules[TOOLS[command]].__doc__ or ""
    paragraphs = [p.strip() for p in doc.strip().split("\n\n") if p.strip()]
    return "\n.PP\n".join(_roff(" ".join(p.split())) for p in paragraphs)


def command_page(command: str) -> str:
    """The page of ``lkm COMMAND``."""
    name, section = page_name(command)
    title = name.rsplit(".", 1)[0].upper()
    lines = [
        f'.TH {title} {section} "" "lkm {__version__}" "lkm"',
        ".SH NAME",
        f"lkm\\-{_roff(command)} \\- {_roff(summaries().get(command, command))}",
        ".SH SYNOPSIS",
        f".B lkm {_roff(command)}",
        "[\\fIOPTIONS\\fR] ...",
        ".SH DESCRIPTION",
        _description(command),
    ]
    if command in REFERENCES:
        lines += [
            ".PP",
            f"The behaviour follows {_roff(REFERENCES[command])}; lkm's own options are listed "
            "as extensions below. Invoked through a link named after the tool, lkm behaves "
            "as that tool.",
        ]
    lines += [".SH OPTIONS", *_options(command)]
    lines += [".SH SEE ALSO", f".BR lkm (8){_see_also(command)}"]
    return "\n".join(lines) + "\n"


def _see_also(command: str) -> str:
    reference = REFERENCES.get(command, "")
    pages = re.findall(r"([a-z.]+)\((\d)\)", reference)
    return "".join(f",\n.BR {_roff(page)} ({section})" for page, section in pages)


def overview_page() -> str:
    """``lkm(8)``: the commands."""
    lines = [
        f'.TH LKM 8 "" "lkm {__version__}" "lkm"',
        ".SH NAME",
        "lkm \\- the Linux loadable kernel module toolkit",
        ".SH SYNOPSIS",
        ".B lkm",
        "\\fICOMMAND\\fR [\\fIOPTIONS\\fR] ...",
        ".SH DESCRIPTION",
        "kmod's tools (modinfo, depmod, insmod, rmmod, lsmod, modprobe, static\\-nodes), "
        "DKMS's dkms, and a module developer's tools in one program. Invoked through a link "
        "named modinfo, depmod, insmod, rmmod, lsmod, modprobe or dkms, lkm behaves as that "
        "tool.",
        ".SH COMMANDS",
    ]
    for command, summary in summaries().items():
        name, section = page_name(command)
        lines += [".TP", f".BR {name.rsplit('.', 1)[0]} ({section})", _roff(summary)]
    lines += [".SH OPTIONS", ".TP", ".B \\-h, \\-\\-help", "the commands", ".TP"]
    lines += [".B \\-V, \\-\\-version", "lkm's version"]
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    """Every page by its path under a man directory (``man8/lkm.8``, …)."""
    found = {"man8/lkm.8": overview_page()}
    for command in summaries():
        name, section = page_name(command)
        found[f"man{section}/{name}"] = command_page(command)
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -m lkm.cli.manpages DIR\n")
        return 2
    for path, text in pages().items():
        target = os.path.join(argv[0], path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
