"""modprobe's configuration as plain data: modprobe.d files and the kernel
command line, read the way kmod reads them (libkmod-config.c).

Files: every ``*.conf`` of each configuration directory (or a single file)
goes into one list sorted by basename; a name seen in an earlier directory
hides the same name in later ones. The module directory's
``modules.softdep`` and ``modules.weakdep`` are sorted in among them. Lines
join on a trailing backslash (a backslash before any other character is
dropped), ``#`` starts a comment line, and module names and aliases turn
``-`` into ``_`` outside bracket ranges. Then the kernel command line adds
``MODULE.PARAM=VALUE`` as options and ``modprobe.blacklist=a,b``.
"""

from __future__ import annotations

import os

from lkm.errors import AliasError, UnreadableFileError, one_line
from lkm.model.moddir import normalize_alias
from lkm.records import Record, field
from lkm.system.files import CONFIGURATION, read_text

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from collections.abc import Callable

    Warn = Callable[[str], None]

# kmod's defaults, in precedence order (kmod 34; Debian's kmod 30 has the same).
DEFAULT_PATHS = (
    "/etc/modprobe.d",
    "/run/modprobe.d",
    "/usr/local/lib/modprobe.d",
    "/usr/lib/modprobe.d",
    "/lib/modprobe.d",
)


class ModprobeConfig(Record, frozen=False):
    """Everything modprobe.d and the kernel command line say, in kmod's
    order; filled in while the files are read."""

    aliases: list[tuple[str, str]] = field(default_factory=list)
    blacklists: list[str] = field(default_factory=list)
    options: list[tuple[str, str]] = field(default_factory=list)
    install_commands: list[tuple[str, str]] = field(default_factory=list)
    remove_commands: list[tuple[str, str]] = field(default_factory=list)
    softdeps: list[tuple[str, list[str], list[str]]] = field(default_factory=list)
    weakdeps: list[tuple[str, list[str]]] = field(default_factory=list)

    def show(self) -> str:
        """The configuration part of ``modprobe -c`` (kmod 34: weakdep included).

        kmod loses the space between a softdep's pre and post lists
        (``pre: looppost: dummy``); lkm keeps it.
        """
        lines = [f"blacklist {name}" for name in self.blacklists]
        lines += [f"install {m} {cmd}" for m, cmd in self.install_commands]
        lines += [f"remove {m} {cmd}" for m, cmd in self.remove_commands]
        lines += [f"alias {a} {m}" for a, m in self.aliases]
        lines += [f"options {m} {opts}" for m, opts in self.options]
        lines += [f"softdep {m} {_softdep_text(pre, post)}" for m, pre, post in self.softdeps]
        lines += [f"weakdep {m} {' '.join(weak)}" for m, weak in self.weakdeps]
        return "".join(f"{line}\n" for line in lines)


def _softdep_text(pre: list[str], post: list[str]) -> str:
    parts = []
    if pre:
        parts.append("pre: " + " ".join(pre))
    if post:
        parts.append("post: " + " ".join(post))
    return " ".join(parts)


def config_files(moddir: str, paths: tuple[str, ...] | list[str] = DEFAULT_PATHS) -> list[str]:
    """The files kmod parses, in order."""
    chosen: dict[str, str] = {}  # basename -> path; the first directory wins
    for name in ("modules.softdep", "modules.weakdep"):
        chosen[name] = f"{moddir}/{name}"
    for path in paths:
        try:
            if not os.path.isdir(path):
                if os.path.exists(path):
                    chosen.setdefault(os.path.basename(path), path)
                continue
            names = os.listdir(path)
        except OSError:
            continue
        for name in names:
            if name.startswith(".") or len(name) < 6 or not name.endswith(".conf"):
                continue
            if os.path.isdir(f"{path}/{name}"):
                continue
            chosen.setdefault(name, f"{path}/{name}")
    return [chosen[name] for name in sorted(chosen, key=os.fsencode)]


def read_config(
    moddir: str,
    paths: tuple[str, ...] | list[str] = DEFAULT_PATHS,
    cmdline: str | None = None,
    warn: Warn | None = None,
) -> ModprobeConfig:
    """Parse every configuration file, then the kernel command line
    (``cmdline``: its text; None for none)."""
    config = ModprobeConfig()
    report = warn or (lambda _message: None)
    for path in config_files(moddir, paths):
        try:
            text = read_text(path, CONFIGURATION)
        except UnreadableFileError as exc:
            # kmod would hang on a FIFO and give up on a line that outgrows
            # 1 GiB: lkm says so and goes on without the file.
            report(f"{one_line(str(exc))}: ignoring the file")
            continue
        except OSError:
            continue  # kmod skips a file it cannot open, silently
        parse_config(text, path, config, report)
    if cmdline is not None:
        parse_cmdline(cmdline, config, report)
    return config


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(line number where it ends, text) per line, joined at ``\\``+newline.

    kmod drops a backslash before any other character too.
    """
    if "\\" not in text:
        # The common case, split in C: walking characters one by one costs
        # modprobe a millisecond per run over the usual modprobe.d files.
        parts = text.split("\n")
        lines = list(enumerate(parts[:-1], 1))
        if parts[-1]:
            lines.append((len(parts), parts[-1]))
        return lines
    return _logical_lines_joined(text)


def _logical_lines_joined(text: str) -> list[tuple[int, str]]:
    """:func:`logical_lines` of a text with backslashes, char by char."""
    lines: list[tuple[int, str]] = []
    current: list[str] = []
    number = 0
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\n":
            number += 1
            lines.append((number, "".join(current)))
            current = []
        elif char == "\\" and i + 1 < len(text):
            i += 1
            if text[i] == "\n":
                number += 1
            else:
                current.append(text[i])
        elif char != "\\":
            current.append(char)
        i += 1
    if current:
        lines.append((number + 1, "".join(current)))
    return lines


def _normalized(name: str | None) -> str | None:
    if name is None:
        return None
    try:
        return normalize_alias(name)
    except AliasError:
        return None


def _split(line: str) -> tuple[str | None, str | None, str | None]:
    """strtok_r: the command, the next word, and the rest after one separator."""
    words = line.lstrip(" \t")
    cmd, _, rest = _word(words)
    arg, _, tail = _word(rest.lstrip(" \t")) if rest else (None, "", "")
    return cmd, arg, (tail if tail else None)


def _word(text: str) -> tuple[str | None, str, str]:
    if not text:
        return None, "", ""
    for i, char in enumerate(text):
        if char in " \t":
            return text[:i], char, text[i + 1 :]
    return text, "", ""


def parse_config(text: str, filename: str, config: ModprobeConfig, warn: Warn) -> None:
    """One modprobe.d file into ``config``; bad lines are reported, as kmod does."""
    for number, line in logical_lines(text):
        if not line or line.startswith("#"):
            continue
        cmd, first, rest = _split(line)
        if cmd is None:
            continue
        if not _apply(config, cmd, first, rest):
            if cmd in ("include", "config"):
                warn(f"{filename}: command {cmd} is deprecated and not parsed anymore")
            else:
                warn(f"{filename} line {number}: ignoring bad line starting with '{cmd}'")


def _apply(config: ModprobeConfig, cmd: str, first: str | None, rest: str | None) -> bool:
    name = _normalized(first)
    if name is None:
        return False
    if cmd == "alias":
        module, _, _ = _word((rest or "").lstrip(" \t"))
        target = _normalized(module)
        if target is None:
            return False
        config.aliases.append((name, target))
    elif cmd == "blacklist":
        config.blacklists.append(name)
    elif rest is None:
        return False
    elif cmd == "options":
        config.options.append((name, rest))
    elif cmd == "install":
        config.install_commands.append((name, rest))
    elif cmd == "remove":
        config.remove_commands.append((name, rest))
    elif cmd == "softdep":
        config.softdeps.append((name, *_softdeps(rest)))
    elif cmd == "weakdep":
        config.weakdeps.append((name, rest.split()))
    else:
        return False
    return True


def _softdeps(text: str) -> tuple[list[str], list[str]]:
    """``pre: a b post: c`` into (pre, post); words before a marker are ignored."""
    pre: list[str] = []
    post: list[str] = []
    mode: list[str] | None = None
    for word in text.split():
        if word == "pre:":
            mode = pre
        elif word == "post:":
            mode = post
        elif mode is not None:
            mode.append(word)
    return pre, post


def parse_cmdline(cmdline: str, config: ModprobeConfig, warn: Warn) -> None:
    """``MODULE.PARAM[=VALUE]`` words of the kernel command line as options,
    ``modprobe.blacklist=a,b`` as blacklists (kmod's state machine: quotes
    may hold spaces in the value, or wrap the whole word)."""
    for modname, param, value in _cmdline_options(cmdline):
        if modname == "modprobe" and param.startswith("blacklist="):
            config.blacklists.extend((value or "").split(","))
            continue
        name = _normalized(modname)
        if name is None:
            shown = one_line(modname)  # a warning stays one line
            warn(f"Ignoring bad option on kernel command line while parsing module name: '{shown}'")
            continue
        config.options.append((name, param))


def _cmdline_options(cmdline: str) -> list[tuple[str, str, str | None]]:
    """(module, "param[=value]", value) triples, as kmod's parser finds them."""
    found: list[tuple[str, str, str | None]] = []
    for word, quoted_start in _cmdline_words(cmdline):
        modname, dot, param = word.partition(".")
        if not dot or "=" in modname or '"' in modname:
            continue
        name, eq, value = param.partition("=")
        if "." in name or '"' in name:
            continue
        if quoted_start:
            # kmod re-quotes what a bootloader turned into "mod.p=a b".
            param = f'{name}="{value}' if eq else name
        found.append((modname, param, value if eq else None))
    return found


def _cmdline_words(cmdline: str) -> list[tuple[str, bool]]:
    """Words split at unquoted whitespace; whether a word starts with a quote."""
    words: list[tuple[str, bool]] = []
    current: list[str] = []
    quoted = False
    for char in cmdline:
        if char == '"':
            quoted = not quoted
            current.append(char)
        elif char in " \n\t\v\f\r" and not quoted:
            if current:
                words.append(_unquote("".join(current)))
            current = []
        else:
            current.append(char)
    if current:
        words.append(_unquote("".join(current)))
    return words


def _unquote(word: str) -> tuple[str, bool]:
    if word.startswith('"'):
        return word[1:], True
    return word, False
