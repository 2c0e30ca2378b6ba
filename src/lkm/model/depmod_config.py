"""depmod.d configuration as plain data, read the way kmod's depmod reads it.

Directories (never under ``-b``): ``/etc/depmod.d``, ``/run/depmod.d``,
``/usr/local/lib/depmod.d``, ``/usr/lib/depmod.d`` (kmod ≥ 32),
``/lib/depmod.d``; ``-C`` replaces the list. All ``*.conf`` files are read
in one order sorted by file name; a name seen in an earlier directory hides
later ones. Directives: ``search`` (``built-in``, ``external`` or a
subdirectory; the first listed has the highest priority), ``override
MODULE KVER SUBDIR``, ``external KVER DIR``, ``exclude NAME``. With no
``search`` at all, ``updates`` is searched first.

Every diagnostic is collected as (level, message) so that only the CLI
prints; the wording is kmod's.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Sequence

from lkm.records import Record, field
from lkm.system.files import CONFIGURATION, read_text

DEFAULT_CONFIG_PATHS = (
    "/etc/depmod.d",
    "/run/depmod.d",
    "/usr/local/lib/depmod.d",
    "/usr/lib/depmod.d",
    "/lib/depmod.d",
)

BUILTIN = "built-in"
EXTERNAL = "external"


class Search(Record):
    """A ``search`` entry: a subdirectory, or the built-in or external place."""

    kind: str  # "path", BUILTIN or EXTERNAL
    path: str = ""


class DepmodConfig(Record, frozen=False):
    """Directives in kmod's list order (reverse of appearance: kmod prepends);
    filled in while the files are read."""

    searches: list[Search] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)  # "SUBDIR/MODULE"
    externals: list[str] = field(default_factory=list)
    excludes: list[str] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)  # (level, text)

    def note(self, level: str, text: str) -> None:
        self.messages.append((level, text))


def kernel_matches(pattern: str, kernel: str) -> bool:
    """``*`` or a POSIX extended regex found anywhere in the version.

    Python's regex agrees with glibc's ERE for the patterns configuration
    files use (dots, stars, anchors, classes); one that does not compile
    matches nothing, as in kmod.
    """
    if pattern == "*":
        return True
    try:
        return re.search(pattern, kernel) is not None
    except re.error:
        return False


def config_files(paths: Sequence[str], config: DepmodConfig) -> list[str]:
    """``*.conf`` files to read, in kmod's order (by name; first dir wins)."""
    by_name: dict[str, str] = {}
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            by_name.setdefault(path.rpartition("/")[2], path)
            continue
        try:
            names = os.listdir(path)
        except OSError as exc:
            config.note("ERROR", f"files list {path}: {exc.strerror}")
            continue
        for name in names:
            if name.startswith("."):
                continue
            full = f"{path}/{name}"
            if len(name) < 6 or not name.endswith(".conf"):
                config.note("INFO", f"All cfg files need .conf: {full}")
                continue
            if os.path.isdir(full):
                config.note("ERROR", f"Directories inside directories are not supported: {full}")
                continue
            by_name.setdefault(name, full)
    return [by_name[name] for name in sorted(by_name, key=lambda n: n.encode())]


def logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """(number of the last physical line, line) with ``\\`` continuations joined.

    A backslash before a newline joins lines; before any other character it
    is dropped and the character kept (kmod's freadline_wrapped).
    """
    number = 0
    current: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            if text[i + 1] == "\n":
                number += 1
            else:
                current.append(text[i + 1])
            i += 2
            continue
        if c == "\\":  # at the very end of the file
            i += 1
            continue
        if c == "\n":
            number += 1
            yield number, "".join(current)
            current = []
        else:
            current.append(c)
        i += 1
    if current:
        yield number + 1, "".join(current)


def parse_file(path: str, kernel: str, config: DepmodConfig) -> None:
    try:
        text = read_text(path, CONFIGURATION)
    except OSError as exc:
        config.note("ERROR", f"file parse {path}: {exc.strerror}")  # kmod's cfg_file_parse
        return
    for number, line in logical_lines(text):
        if not line or line.startswith("#"):
            continue
        words = re.split(r"[ \t]+", line.strip(" \t"))
        if not words or not words[0]:
            continue
        _directive(path, number, words, kernel, config)


def _directive(path: str, number: int, words: list[str], kernel: str, config: DepmodConfig) -> None:
    command, args = words[0], words[1:]
    where = f"{path}:{number}"
    if command == "search":
        for word in args:
            kind = word if word in (BUILTIN, EXTERNAL) else "path"
            config.searches.insert(0, Search(kind, word if kind == "path" else ""))
    elif command == "override" and len(args) >= 3:
        module, pattern, subdir = args[:3]
        if kernel_matches(pattern, kernel):
            config.overrides.insert(0, f"{subdir}/{module}")
        else:
            config.note("INFO", f"{where}: override kernel did not match {pattern}")
    elif command == "external" and len(args) >= 2:
        pattern, directory = args[:2]
        if kernel_matches(pattern, kernel):
            config.externals.insert(0, directory)
        else:
            config.note("INFO", f"{where}: external directory did not match {pattern}")
    elif command == "exclude":
        for word in args:
            config.excludes.insert(0, word)
    elif command in ("include", "make_map_files"):
        config.note("INFO", f"{where}: command {command} not implemented yet")
    else:
        config.note("ERROR", f"{where}: ignoring bad line starting with '{command}'")


def load_config(kernel: str, paths: Sequence[str] | None = None) -> DepmodConfig:
    """Read every configuration file; ``paths`` replaces the defaults (``-C``)."""
    config = DepmodConfig()
    for path in config_files(paths if paths else DEFAULT_CONFIG_PATHS, config):
        parse_file(path, kernel, config)
    if not config.searches:
        config.searches.append(Search("path", "updates"))
    return config
