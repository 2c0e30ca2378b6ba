"""depmod: module files in, kmod's index files out, byte for byte.

The package's files are the stages of one run, in order:

* :mod:`.discover` finds the module files (search order, overrides,
  ``modules.order``);
* :mod:`.scan` reads each one's facts (:mod:`.facts`), on both cores;
* :mod:`.resolve` builds kmod's symbol table, each module's dependencies
  and their order, and reports cycles;
* :mod:`.render` makes every output file, group by group (one table,
  :data:`~.render.GROUPS`, says what each group is made of);
* :mod:`.write` replaces each file through a temporary file and a rename;
* :mod:`.cache` keeps facts and rendered groups between runs, so a run
  reads only the modules that changed and renders only what they change;
* :mod:`.run` is the run itself: :func:`run_depmod` takes
  :class:`DepmodSettings` (kmod's options, as data) and returns a
  :class:`DepmodResult`.

lkm follows upstream kmod 34 where versions differ: it writes
``modules.weakdep`` and pre-order binary indexes by default
(``Layout.POST_ORDER`` gives kmod ≤ 33's files byte for byte).
"""

from lkm.workflows.depmod.run import DepmodFatal, DepmodResult, DepmodSettings, run_depmod

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from lkm.workflows.depmod.render import OUTPUT_FILES, TEXT_FILES


def __getattr__(name: str) -> object:
    # The renderers' names on first use: a run that finds its files
    # current (lkm.workflows.depmod.state) never loads them.
    if name in ("OUTPUT_FILES", "TEXT_FILES"):
        from lkm.workflows.depmod import render

        return getattr(render, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "OUTPUT_FILES",
    "TEXT_FILES",
    "DepmodFatal",
    "DepmodResult",
    "DepmodSettings",
    "run_depmod",
]
