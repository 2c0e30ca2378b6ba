"""A tree's state when depmod last wrote its files: a re-run that finds
every input and output as it was writes nothing.

kmod's depmod rewrites every index on every run. When nothing a run
reads has changed since lkm last wrote the files, writing them again
writes the same bytes, so a re-run (``depmod`` after a package that
changed no module, ``depmod -a`` at every boot) can stop as soon as it
knows that. It knows it from one file per tree next to the cache's
(:func:`state_path`), which holds:

- the *key*: the module and output directories, the options that change
  an output, and the configuration's directives (the configuration files
  are read on every run anyway, for their messages);
- every directory the module search walked, with its identity taken
  before it was read (an entry added, removed or renamed changes its
  directory's modification and change times); the output directory is
  rewritten by the run itself, so its entries' names are kept instead;
- every module file, every link the search followed to something that is
  not a module, ``modules.order`` and the built-in lists, with their
  identities (device, inode, size, modification and change times: a
  change time cannot be set from user space);
- every file the run wrote, with its identity after the writing: one
  changed or removed since is written again.

A run with the same key that finds every identity as stored has nothing
to do: about 5,000 ``stat`` calls on a tree of 4,000 modules, no module,
cache store or rendered output read, and no import of the readers or the
renderers. A state is only saved after a run that wrote every file and
said nothing (a run with a warning or an error keeps doing its work, so
that its messages are always made afresh). Like every cache file it has
a header and a CRC and is checked before use.
"""

from __future__ import annotations

import os
import stat
import time

from lkm.workflows.depmod.cache import (
    Identity,
    cache_path,
    identity,
    load_framed,
    save_framed,
    stat_identity,
)

Key = tuple[object, ...]
_KIND = "state"
# A file whose change time is this close to the run's start (or later)
# may have changed while the run read it, unseen: file times come from the
# kernel's coarse clock, which lags the one read at the start by up to a
# tick (10 ms at HZ=100). Twice that; git's "racy" files are the same idea.
RACY_NS = 20_000_000


def state_path(cache_dir: str, moddir: str) -> str:
    """The state file of ``moddir`` (pruned with the tree's other cache files)."""
    return f"{cache_path(cache_dir, moddir)}.{_KIND}"


class TreeState:
    """What one run read and wrote, collected while it runs, then saved."""

    def __init__(self, key: Key, outdir: str, lists: list[str]) -> None:
        self.started = time.time_ns()
        self.key = key
        self.outdir = outdir
        self.paths: list[str] = []
        self.identities: list[Identity | None] = []
        self.outdir_names: list[str] | None = None  # the output directory's, when walked
        self.modules = 0
        # The lists (modules.order, the built-in lists) before anything read them.
        self._add_all(lists, [identity(path) for path in lists])

    def _add_all(self, paths: list[str], identities: list[Identity | None]) -> None:
        self.paths += paths
        self.identities += identities

    def add_search(
        self,
        walked: list[tuple[str, os.stat_result | None]],
        links: list[tuple[str, os.stat_result]],
        top_names: list[str],
    ) -> bool:
        """The search's directories (the first is the module directory)
        and links. False when the state cannot tell what the search would
        find: the output directory is one it walked below the top."""
        for index, (directory, st) in enumerate(walked):
            if directory == self.outdir:
                if index:
                    return False
                continue  # rewritten by this run: its names are kept instead
            self._add_all([directory], [None if st is None else stat_identity(st)])
        if walked and walked[0][0] == self.outdir:
            self.outdir_names = top_names
        for path, st in links:
            self._add_all([path], [stat_identity(st)])
        return True

    def add_modules(self, paths: list[str], identities: list[Identity | None]) -> bool:
        """The module files, by the identities their facts were read with
        (False when one has none: it was not cached)."""
        if None in identities:
            return False
        self._add_all(paths, identities)
        self.modules = len(paths)
        return True

    def add_written(self, outdir: str, names: list[str]) -> bool:
        """The files this run wrote, as they are now, after what it read.
        False when something it read may have changed while it read it
        (unseen: see :data:`RACY_NS`), or a file written is not a regular
        file (a device or FIFO is written every time)."""
        racy = self.started - RACY_NS
        if any(i is not None and max(i[3], i[4]) >= racy for i in self.identities):
            return False
        paths = [f"{outdir}/{name}" for name in names]
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                return False
            if not stat.S_ISREG(st.st_mode):
                return False
            self._add_all([path], [stat_identity(st)])
        if self.outdir_names is not None:
            self.outdir_names = sorted({*self.outdir_names, *names})
        return True

    def save(self, path: str, moddir: str) -> None:
        """Write the state (raises OSError)."""
        value = (
            self.key,
            self.outdir if self.outdir_names is not None else "",
            self.outdir_names or [],
            self.paths,
            self.identities,
            self.modules,
        )
        save_framed(path, _KIND, moddir, value)


def current_modules(path: str, moddir: str, key: Key) -> int | None:
    """The number of modules when the stored state has ``key`` and every
    file is as stored (nothing to do), else None."""
    value = load_framed(path, _KIND, moddir)
    if not (isinstance(value, tuple) and len(value) == 6) or value[0] != key:
        return None
    _, listed, names, paths, identities, modules = value
    if not (
        isinstance(listed, str)
        and isinstance(paths, list)
        and set(map(type, paths)) <= {str}
        and type(modules) is int
    ):
        return None
    if listed:
        try:
            if sorted(os.listdir(listed)) != names:
                return None
        except (OSError, ValueError):
            return None
    if not isinstance(identities, list) or len(identities) != len(paths):
        return None
    return modules if _unchanged(paths, identities) else None


def _unchanged(paths: list[str], identities: list[object]) -> bool:
    """Whether each path has its stored identity; stops at the first that
    has not (a run after a change stats only up to it before its work)."""
    stat_of = os.stat  # one lookup for thousands of calls
    for path, stored in zip(paths, identities, strict=True):
        try:
            st = stat_of(path)
        except (OSError, ValueError):
            if stored is not None:
                return False
            continue
        if stored != stat_identity(st):
            return False
    return True
