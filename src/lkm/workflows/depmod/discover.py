"""depmod's module discovery: which file stands for each module name.

Walks the module directory (then each ``external`` directory) in readdir
order, skips ``build``, ``source`` and ``exclude``d names at any depth,
and keeps one file per module name following kmod's priority rules
(``override`` first, then the ``search`` list, ``updates/`` winning by
default). Then orders the modules as kmod's array: its hash table order,
re-sorted (stably) by the line each appears on in ``modules.order``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from lkm.errors import one_line
from lkm.formats.kmod_hash import hash_order
from lkm.formats.module_names import MODULE_EXTENSIONS, has_module_extension
from lkm.model.depmod_config import BUILTIN, EXTERNAL, DepmodConfig
from lkm.records import Record
from lkm.system.files import INDEX_TEXT, read_text

Report = Callable[[str, str], None]
SKIPPED_NAMES = (".", "..", "build", "source")
# kmod keeps modules in a 512-bucket hash table before sorting them.
MODULE_HASH_BUCKETS = 512


class FoundModule(Record):
    """One module file depmod indexes (kmod's struct mod)."""

    name: str
    path: str  # full path as depmod prints it in messages
    relpath: str | None  # relative to the module directory; None outside it

    @property
    def listed_path(self) -> str:
        """How modules.dep names the file."""
        return self.relpath if self.relpath is not None else self.path

    @property
    def order_key(self) -> str | None:
        """The modules.order line that names this module (kmod's uncrelpath):
        the relative directory, '/', and as many characters of the file name
        as the module name plus ``.ko``."""
        if self.relpath is None:
            return None
        slash = self.relpath.rfind("/")
        return self.relpath[: slash + 1 + len(self.name) + len(".ko")]


def module_name(filename: str) -> str:
    return filename.split(".", 1)[0].replace("-", "_")


class Discovery:
    """Collects modules for one run (kmod's modules_by_name table)."""

    def __init__(
        self, moddir: str, config: DepmodConfig, report: Report, track: bool = False
    ) -> None:
        self.moddir = moddir
        self.config = config
        self.report = report
        self.found: dict[str, FoundModule] = {}
        self.excluded = set(SKIPPED_NAMES) | set(config.excludes)
        # With ``track``, what tells a later run that the search would find
        # the same (see lkm.workflows.depmod.state): each directory walked,
        # stat'ed before it was read; each link followed to a file that is
        # not a module; the module directory's entry names.
        self.track = track
        self.walked: list[tuple[str, os.stat_result | None]] = []
        self.links: list[tuple[str, os.stat_result]] = []
        self.top_names: list[str] = []

    def search_all(self) -> None:
        """The module directory, then each external directory.

        Raises OSError when the module directory itself cannot be read.
        """
        self._walk(self.moddir, top=True)
        for external in self.config.externals:
            # kmod reports an unreadable external directory and goes on.
            self._walk(external)

    def _walk(self, directory: str, top: bool = False) -> None:
        if self.track:
            self.walked.append((directory, _stat_or_none(directory)))
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            self.report("ERROR", f"could not open directory {one_line(directory)}: {exc.strerror}")
            if top:
                raise
            return
        if top and self.track:
            self.top_names = [entry.name for entry in entries]
        for entry in entries:
            if entry.name in self.excluded:
                continue
            path = f"{directory}/{entry.name}"
            try:
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
            except OSError as exc:
                self._fstat_failed(directory, entry.name, exc)
                continue
            if is_dir:
                self._walk(path)
            elif is_file:
                if has_module_extension(entry.name):
                    self._consider(path)
                elif self.track and entry.is_symlink():
                    self.links.append((path, entry.stat()))  # stat'ed already by is_file
            else:
                try:
                    mode = os.stat(path).st_mode
                except OSError as exc:
                    self._fstat_failed(directory, entry.name, exc)
                    continue
                self.report("ERROR", f"unsupported file type {one_line(path)}: {mode & 0o170000:o}")

    def _fstat_failed(self, directory: str, name: str, exc: OSError) -> None:
        self.report("ERROR", f"fstatat({one_line(directory)}, {one_line(name)}): {exc.strerror}")

    def _relpath(self, path: str) -> str | None:
        prefix = self.moddir + "/"
        return path[len(prefix) :] if path.startswith(prefix) else None

    def _consider(self, path: str) -> None:
        name = module_name(path.rsplit("/", 1)[-1])
        old = self.found.get(name)
        if old is not None and self._old_wins(old, path, name):
            return
        self.found[name] = FoundModule(name, path, self._relpath(path))

    def add_file(self, path: str) -> None:
        """Filename mode: a module given on the command line."""
        name = module_name(path.rsplit("/", 1)[-1])
        if name in self.found:
            raise FileExistsError(f"module {name} given twice")
        self.found[name] = FoundModule(name, path, self._relpath(path))

    def _short(self, path: str, name: str) -> str:
        """Relative directory + '/' + the first len(name) characters of the
        file name: what override and search entries are compared with."""
        rel = self._relpath(path) or path
        slash = rel.rfind("/")
        return rel[: slash + 1 + len(name)]

    def _old_wins(self, old: FoundModule, new_path: str, name: str) -> bool:
        """kmod's depmod_module_is_higher_priority(old, new)."""
        rel_new = self._short(new_path, name)
        rel_old = self._short(old.path, name)
        for override in self.config.overrides:
            if rel_new == override:
                return False
            if rel_old == override:
                return True
        index, builtin_prio, old_prio, new_prio = 0, -1, -1, -1
        for search in self.config.searches:
            if search.kind == BUILTIN:
                builtin_prio = index
            elif search.kind == EXTERNAL:
                for external in self.config.externals:
                    if new_path.startswith(external + "/"):
                        new_prio = index
                    if old.path.startswith(external + "/"):
                        old_prio = index
                    index += 1
            elif _starts_with_dir(rel_new, search.path):
                new_prio = index
            elif _starts_with_dir(rel_old, search.path):
                old_prio = index
            index += 1
        if new_prio < 0:
            new_prio = builtin_prio
        if old_prio < 0:
            old_prio = builtin_prio
        return new_prio <= old_prio


def _stat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _starts_with_dir(path: str, prefix: str) -> bool:
    return len(path) > len(prefix) and path[len(prefix)] == "/" and path.startswith(prefix)


def module_array(found: dict[str, FoundModule], order_text: str | None) -> list[FoundModule]:
    """kmod's module array: hash table order, then stably by modules.order.

    ``order_text`` is modules.order (None when absent or unusable). Lines
    listed more than once count at their first appearance (kmod ≥ 34).
    """
    modules = [found[name] for name in hash_order(found, MODULE_HASH_BUCKETS)]
    if order_text is None:
        return modules
    lines = order_text.split("\n")[:-1]
    # Later lines first, so that a line's first appearance is what stays.
    position = dict(zip(reversed(lines), range(len(lines) - 1, -1, -1), strict=True))
    unlisted = len(position) + 1
    keys = [m.order_key for m in modules]
    ranks = [unlisted if key is None else position.get(key, unlisted) for key in keys]
    order = sorted(range(len(modules)), key=ranks.__getitem__)  # stable, as kmod's sort
    return [modules[i] for i in order]


def read_modules_order(moddir: str, report: Report) -> str | None:
    """modules.order's text, or None (warned about) when it cannot be used."""
    path = f"{moddir}/modules.order"
    try:
        text = read_text(path, INDEX_TEXT)
    except OSError as exc:
        report("WARNING", f"could not open modules.order at {one_line(moddir)}: {exc.strerror}")
        return None
    if text and not text.endswith("\n"):
        report(
            "ERROR",
            f"{one_line(moddir)}/modules.order:{text.count(chr(10)) + 1} "
            "corrupted line misses '\\n'",
        )
        return None
    return text


__all__ = ["MODULE_EXTENSIONS", "Discovery", "FoundModule", "module_array", "read_modules_order"]
