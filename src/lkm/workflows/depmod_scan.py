"""depmod's first step: read every module once into plain facts.

:class:`~lkm.workflows.depmod_facts.ModuleFacts` is all depmod needs from a module file — its
``.modinfo``, exports and needed symbols — as plain tuples, so results can
cross a process boundary and be cached between runs. Scanning uses both
cores when the tree is large (:func:`lkm.system.fork.split_map`).
"""

from __future__ import annotations

import marshal
from collections.abc import Sequence
from sys import intern

from lkm.errors import FileFormatError, FormatError, LkmError
from lkm.formats.module_file import open_module
from lkm.workflows.depmod_facts import ModuleFacts as ModuleFacts
from lkm.workflows.depmod_facts import ScanFailure as ScanFailure

# Fewer modules than this are read in-process: a fork costs more.
MIN_PARALLEL = 64

_SHARED_CRCS: dict[int, int] = {}


def read_facts(path: str) -> ModuleFacts | ScanFailure:
    """A module's facts; a file that is not a readable module is a
    ScanFailure (kmod still lists it, with no aliases or dependencies)."""
    try:
        with open_module(path, mapped=False) as module:
            modinfo = module.modinfo_text()
            exports = tuple((name, crc) for name, crc, _ in module.export_entries())
            try:
                names, crcs, weak = module.needed_columns()
            except FormatError:
                names, crcs, weak = (
                    [],
                    [],
                    [],
                )  # no usable symbol table: no dependencies, as in kmod
            # Thousands of modules need the same few thousand symbols:
            # one object per distinct name and CRC keeps the facts small,
            # and marshal then sends each once.
            return ModuleFacts(
                modinfo,
                exports,
                tuple(map(intern, names)),
                tuple(map(_SHARED_CRCS.setdefault, crcs, crcs)),
                tuple(weak),
            )
    except FileFormatError as exc:
        return ScanFailure(exc.problem)
    except LkmError as exc:
        return ScanFailure(str(exc))


def _read_all(paths: Sequence[str]) -> list[ModuleFacts | ScanFailure]:
    return [read_facts(path) for path in paths]


def _encode(results: list[ModuleFacts | ScanFailure]) -> bytes:
    """Results as marshal data: several times faster than pickling the
    dataclasses, which matters for the half a worker sends back."""
    plain = [r.fields() if isinstance(r, ModuleFacts) else r.message for r in results]
    return marshal.dumps(plain)


def _decode(data: bytes) -> list[ModuleFacts | ScanFailure]:
    # From our own worker through a pipe, never from a file.
    return [
        ScanFailure(item) if isinstance(item, str) else ModuleFacts(*item)
        for item in marshal.loads(data)
    ]


def scan(paths: Sequence[str]) -> list[ModuleFacts | ScanFailure]:
    """Facts for each path, in order; large lists use two processes.

    The halves are every other path, not the first and second half: the
    big modules (and the xz-compressed ones) are spread through a tree by
    directory, and alternating keeps both cores busy until the end.
    """
    if len(paths) < MIN_PARALLEL:
        return _read_all(paths)  # a re-run that read a few changed modules
    from lkm.system.fork import split_map

    half = (len(paths) + 1) // 2
    shuffled = [*paths[0::2], *paths[1::2]]
    parts = split_map(
        shuffled, _read_all, min_items=MIN_PARALLEL, parent_share=0.5, codec=(_encode, _decode)
    )
    flat = [result for part in parts for result in part]
    ordered: list[ModuleFacts | ScanFailure] = flat[:]
    ordered[0::2] = flat[:half]
    ordered[1::2] = flat[half:]
    return ordered
