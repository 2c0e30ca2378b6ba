"""A module directory (``/lib/modules/VERSION``) read through kmod's indexes.

Answers the questions every tool asks: where is module NAME, which modules
does an alias name, is NAME built in, what is a built-in module's
modinfo. Indexes are opened lazily and at most once; a missing index is
"nothing there" (as in kmod), a malformed one raises
:class:`~lkm.errors.IndexFormatError` naming the file.
"""

from __future__ import annotations

import os

from lkm.errors import AliasError, FileFormatError, IndexFormatError
from lkm.formats.kmod_index import IndexFile, IndexValue, KmodIndex
from lkm.records import Record
from lkm.system.files import BUILTIN_MODINFO, read_file
from lkm.system.paths import make_absolute

DEFAULT_MODULES_ROOT = "/lib/modules"


def module_dir_path(basedir: str | None = None, kernel: str | None = None) -> str:
    """kmod's dirname: ``BASEDIR/lib/modules/VERSION`` made absolute.

    Built by plain string concatenation, as kmod does, so ``-b /x/`` gives
    ``/x//lib/modules/V`` exactly like kmod's output.
    """
    if basedir is None and kernel is None:
        return f"{DEFAULT_MODULES_ROOT}/{os.uname().release}"
    release = kernel if kernel is not None else os.uname().release
    return make_absolute(f"{basedir or ''}/lib/modules/{release}")


class ModuleRef(Record):
    """A module found by a lookup.

    ``path`` is None for a module modules.dep does not list; ``builtin`` is
    True when the lookup itself proved the module built in.
    """

    name: str
    path: str | None
    builtin: bool


def _empty(path: str) -> bool:
    return os.stat(path).st_size == 0


class ModuleDirectory:
    """Lookups in one module directory."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._indexes: dict[str, KmodIndex | None] = {}
        self._builtin_modinfo: dict[str, list[tuple[str, str]]] | None = None

    def close(self) -> None:
        for index in self._indexes.values():
            if isinstance(index, IndexFile):
                index.close()
        self._indexes.clear()

    def __enter__(self) -> ModuleDirectory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw indexes ----------------------------------------------------------

    def index(self, basename: str) -> KmodIndex | None:
        """``BASENAME.bin`` of this directory, or None when it does not exist.

        An empty file counts as absent: kmod's depmod writes one when the
        index has no source (no ``modules.builtin`` in the tree), and kmod
        reads it as no index.
        """
        if basename not in self._indexes:
            path = f"{self.path}/{basename}.bin"
            try:
                self._indexes[basename] = None if _empty(path) else IndexFile(path)
            except FileNotFoundError:
                self._indexes[basename] = None
            except OSError as exc:
                raise IndexFormatError(path, exc.strerror or str(exc)) from None
        return self._indexes[basename]

    def _exact(self, basename: str, key: str) -> str | None:
        index = self.index(basename)
        if index is None:
            return None
        return index.lookup(key)

    def _wild(self, basename: str, key: str) -> list[IndexValue]:
        index = self.index(basename)
        if index is None:
            return []
        return index.search_wild(key)

    # -- facts ----------------------------------------------------------------

    def dep_line(self, name: str) -> str | None:
        """The modules.dep value for NAME: ``path: dep dep …``."""
        return self._exact("modules.dep", name)

    def module_path(self, name: str) -> str | None:
        """Full path of module NAME from modules.dep, None if not listed."""
        line = self.dep_line(name)
        if line is None or ":" not in line:
            return None
        return self.join(line.split(":", 1)[0])

    def dependencies(self, name: str) -> list[str]:
        """Full paths of NAME's dependencies, in modules.dep order."""
        line = self.dep_line(name)
        if line is None or ":" not in line:
            return []
        return [self.join(p) for p in line.split(":", 1)[1].split()]

    def join(self, relative: str) -> str:
        if relative.startswith("/"):
            return relative
        return f"{self.path}/{relative}"

    def is_builtin(self, name: str) -> bool:
        return self._exact("modules.builtin", name) is not None

    def builtin_modinfo(self, name: str) -> list[tuple[str, str]] | None:
        """Key/value pairs of a built-in module from modules.builtin.modinfo.

        None when the file has no block for the module. Raises
        FileNotFoundError when the kernel predates the file.
        """
        if self._builtin_modinfo is None:
            # Imported here: modprobe's start-up never reads the file.
            from lkm.formats.builtin_modinfo import builtin_table

            path = f"{self.path}/modules.builtin.modinfo"
            try:
                self._builtin_modinfo = builtin_table(read_file(path, BUILTIN_MODINFO))
            except FileNotFoundError:
                raise
            except OSError as exc:
                raise FileFormatError(path, exc.strerror or str(exc)) from None
        return self._builtin_modinfo.get(name)

    # -- kmod's lookups ----------------------------------------------------------

    def lookup_name(self, name: str) -> ModuleRef | None:
        """A module by name (modinfo -m): modules.dep, then built-in indexes."""
        name = normalize_modname(name)
        if ":" not in name:
            path = self.module_path(name)
            if path is not None:
                return ModuleRef(name, path, False)
        if self.is_builtin(name):
            return ModuleRef(name, None, True)
        for value in self._wild("modules.builtin.alias", name):
            return self._ref(value.value, builtin=True)
        return None

    def lookup(self, alias: str) -> list[ModuleRef]:
        """Modules for a name or alias, in kmod's order (no configuration).

        modules.dep by name, then modules.symbols for ``symbol:`` keys, then
        modules.alias patterns, then modules.builtin, then
        modules.builtin.alias; the first source with an answer wins.
        Raises AliasError for an alias with unbalanced brackets.
        """
        key = normalize_alias(alias)
        if ":" not in key:
            path = self.module_path(key)
            if path is not None:
                return [ModuleRef(key, path, False)]
        if key.startswith("symbol:"):
            found = self._wild("modules.symbols", key)
            if found:
                return [self._ref(v.value) for v in found]
        found = self._wild("modules.alias", key)
        if found:
            return [self._ref(v.value) for v in found]
        if self.is_builtin(key):
            return [ModuleRef(key, None, True)]
        found = self._wild("modules.builtin.alias", key)
        return [self._ref(v.value, builtin=True) for v in found]

    def _ref(self, name: str, builtin: bool = False) -> ModuleRef:
        return ModuleRef(name, None if builtin else self.module_path(name), builtin)


def normalize_modname(name: str) -> str:
    """kmod's modname_normalize: stop at the first '.', '-' → '_'."""
    return name.split(".", 1)[0].replace("-", "_")


def normalize_alias(alias: str) -> str:
    """kmod's alias_normalize: '-' → '_' outside brackets.

    Raises AliasError for a ']' without '[' or an unclosed '['.
    """
    if "[" not in alias and "]" not in alias:
        return alias.replace("-", "_")  # the common case, done in C
    out: list[str] = []
    i, n = 0, len(alias)
    while i < n:
        c = alias[i]
        if c == "-":
            out.append("_")
        elif c == "]":
            raise AliasError(f"unbalanced ']' in alias {alias!r}")
        elif c == "[":
            end = alias.find("]", i)
            if end < 0:
                raise AliasError(f"unclosed '[' in alias {alias!r}")
            out.append(alias[i : end + 1])
            i = end
        else:
            out.append(c)
        i += 1
    return "".join(out)


__all__ = [
    "ModuleDirectory",
    "ModuleRef",
    "make_absolute",
    "module_dir_path",
    "normalize_alias",
    "normalize_modname",
]
