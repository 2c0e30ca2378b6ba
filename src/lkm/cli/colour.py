"""Whether a command colours its output, and the sequences lkm's own use.

``--color[=WHEN]`` takes util-linux's words (lib/colors.c,
colormode_from_string): ``auto`` (the default, also a bare ``--color``),
``always``, ``never``, in any case. Two rules decide ``auto``:

- lkm's own commands (check, try) colour a terminal unless ``NO_COLOR``
  is set and not empty (https://no-color.org) or ``TERM`` is ``dumb`` or
  unset (systemd's rule, getenv_terminal_is_dumb); ``always`` wins over
  both, as no-color.org asks of an explicit option.
- ``lkm dmesg`` follows util-linux 2.38's dmesg (Debian bookworm): a
  terminal whose terminfo entry has colours (colors_terminal_is_ready), so
  ``TERM=dumb``, ``vt100`` or an unset ``TERM`` mean none; 2.38 does not
  read ``NO_COLOR`` (2.42 does), so neither does lkm dmesg. util-linux's
  terminal-colors.d files are not read: its default colours always.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import BinaryIO

WHENS = ("auto", "never", "always")
# util-linux's include/color-names.h
RESET = "\033[0m"
GREEN = "\033[32m"
YELLOW = "\033[33m"  # util-linux's UL_COLOR_BROWN
RED = "\033[31m"


class ColourModeError(ValueError):
    """A WHEN that is not auto, always or never."""

    def __init__(self, word: str) -> None:
        super().__init__(f"unsupported color mode: '{word}'")  # util-linux's words


def when_of(value: str) -> str:
    """The WHEN of ``--color[=WHEN]`` or ``-L[WHEN]`` as
    :func:`lkm.cli.options.parse` gives it ("" when bare, else "=" and the
    value). util-linux's colormode_or_err drops one more "=" (``-L=always``)
    and compares without case. Raises ColourModeError."""
    if not value:
        return "auto"
    word = value[1:]
    word = word[1:] if word.startswith("=") else word
    if word.lower() not in WHENS:
        raise ColourModeError(word)
    return word.lower()


def wanted(when: str, stream: BinaryIO) -> bool:
    """Whether one of lkm's own commands colours what it writes to ``stream``."""
    if when != "auto":
        return when == "always"
    if os.environ.get("NO_COLOR") or os.environ.get("TERM", "dumb") in ("", "dumb"):
        return False
    return _isatty(stream)


def util_linux_wanted(when: str, stream: BinaryIO) -> bool:
    """Whether util-linux 2.38's dmesg would colour ``stream``
    (colors_init: ``always``, or a terminal that terminfo says has
    colours)."""
    if when != "auto":
        return when == "always"
    return _isatty(stream) and _terminfo_colours(stream.fileno()) > 1


def paint(text: str, sequence: str, on: bool) -> str:
    """``text`` in ``sequence``'s colour, reset after it, when ``on``."""
    return f"{sequence}{text}{RESET}" if on else text


def _isatty(stream: BinaryIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError):  # closed or detached
        return False


def _terminfo_colours(fd: int) -> int:
    """terminfo's ``colors`` for ``$TERM`` (util-linux asks ncurses'
    setupterm and tigetnum); -1 when there is no entry. Without Python's
    curses module, any ``TERM`` but dumb counts as a colour terminal."""
    try:
        import curses
    except ImportError:
        return -1 if os.environ.get("TERM", "dumb") in ("", "dumb") else 8
    try:
        curses.setupterm(None, fd)
        return curses.tigetnum("colors")
    except curses.error:  # no TERM, or no terminfo entry for it
        return -1
