"""lkm's error types.

One root (:class:`LkmError`); each subclass also inherits the builtin that
fits, so callers may catch either (``except FileNotFoundError`` works on a
missing module). Messages are one line: what went wrong and where. Only the
CLI decides how to print them and with which exit status.
"""

from __future__ import annotations

# What str.splitlines (and many terminals and log readers) take as a line
# break; a message shows each as an escape so it stays one line.
_LINE_BREAKS = {
    ord(c): f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"
    for c in "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
} | {ord("\n"): "\\n"}


def one_line(text: str) -> str:
    """``text`` with every line break inside shown as an escape (``\\n``,
    ``\\x0c``…), so a name read from a damaged file cannot split a message."""
    return text.translate(_LINE_BREAKS)


class LkmError(Exception):
    """Root of every error lkm raises on purpose."""


class FormatError(LkmError, ValueError):
    """Bytes that do not parse. Raised by the pure parsers without a path;
    :class:`FileFormatError` adds the file name."""


class NotElfError(FormatError):
    """Bytes that are not an ELF file at all (bad magic): kmod tells this
    apart from a damaged ELF file (ENOEXEC rather than EINVAL)."""


class FileFormatError(FormatError):
    """A file whose content is malformed: names the file and the problem."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class ModuleFormatError(FileFormatError):
    """A kernel module (``.ko``, maybe compressed) that cannot be read."""


class NotElfModuleError(ModuleFormatError):
    """A module file (after decompression) that is not ELF at all."""


class IndexFormatError(FileFormatError):
    """A kmod binary index (``modules.*.bin``) that cannot be read."""


class ModuleFileNotFoundError(LkmError, FileNotFoundError):
    """A module file named on the command line or in an index is missing."""

    def __init__(self, path: str, reason: str = "No such file or directory") -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path


class UnreadableFileError(LkmError, OSError):
    """A file lkm will not read: a kind its reader does not take (a FIFO
    nobody writes to, a device where a module belongs, a directory), or
    more bytes than a file of its kind can hold. An ``OSError`` with
    ``errno``, ``strerror`` (the problem) and ``filename``, so a caller that
    prints ``strerror`` after the file's name, as kmod prints ``%m``, says
    what is wrong."""

    def __init__(self, path: str, problem: str, errno: int) -> None:
        super().__init__(errno, problem, path)
        self.path = path
        self.problem = problem
        self.code = errno  # OSError.errno, typed as always present

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"

    def __reduce__(self) -> tuple[type[UnreadableFileError], tuple[str, str, int]]:
        return type(self), (self.path, self.problem, self.code)


class AliasError(LkmError, ValueError):
    """A module alias that is not well formed (unbalanced brackets)."""


class ModuleNotFound(LkmError, LookupError):
    """No module matches a name or alias in a module directory."""

    def __init__(self, name: str, moddir: str) -> None:
        super().__init__(f"module {name} not found in directory {moddir}")
        self.name = name
        self.moddir = moddir


class MissingDependencyError(LkmError, ImportError):
    """An optional Python package needed for this input is not installed."""

    def __init__(self, package: str, needed_for: str) -> None:
        super().__init__(
            f"the Python package '{package}' is needed for {needed_for}; "
            f"install it with: pip install {package}"
        )
        self.package = package
