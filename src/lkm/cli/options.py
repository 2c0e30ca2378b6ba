"""GNU getopt_long parsing with glibc's messages, as kmod's tools use.

kmod parses options with getopt_long: options and operands may be mixed,
long options may be abbreviated, ``--opt=value`` and ``--opt value`` both
work. :func:`getopt.gnu_getopt` does the same; this module only rewords its
errors the way glibc prints them, so scripts see kmod's text.
"""

from __future__ import annotations

import getopt
import re
from collections.abc import Sequence


class UsageError(Exception):
    """Bad command line; the message is what glibc's getopt would print."""


def parse(
    prog: str, args: Sequence[str], shortopts: str, longopts: Sequence[str]
) -> tuple[list[tuple[str, str]], list[str]]:
    try:
        return getopt.gnu_getopt(list(args), shortopts, list(longopts))
    except getopt.GetoptError as exc:
        raise UsageError(_glibc_message(prog, exc)) from None


def _glibc_message(prog: str, exc: getopt.GetoptError) -> str:
    msg, opt = exc.msg, exc.opt
    long_form = len(opt) > 1
    if "not recognized" in msg:
        if long_form:
            return f"{prog}: unrecognized option '--{opt}'"
        return f"{prog}: invalid option -- '{opt}'"
    if "requires argument" in msg:
        if long_form:
            return f"{prog}: option '--{opt}' requires an argument"
        return f"{prog}: option requires an argument -- '{opt}'"
    if "must not have an argument" in msg:
        return f"{prog}: option '--{opt}' doesn't allow an argument"
    if "not a unique prefix" in msg:
        return f"{prog}: option '--{opt}' is ambiguous"
    return f"{prog}: {re.sub(r'^option ', 'option ', msg)}"
