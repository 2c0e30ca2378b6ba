"""depmod's first step: read every module once into plain facts.

:class:`~lkm.workflows.depmod_facts.ModuleFacts` is all depmod needs from a module file — its
``.modinfo``, exports and needed symbols — as plain tuples, so results can
cross a process boundary and be cached between runs. Scanning uses both
cores when the tree is large (:func:`lkm.system.fork.split_map`).
"""

from __future__ import annotations

import marshal
from collections.abc import Callable, Sequence
from sys import intern

from lkm.errors import FileFormatError, FormatError, LkmError
from lkm.formats.module_file import open_module
from lkm.workflows.depmod_facts import ModuleFacts as ModuleFacts
from lkm.workflows.depmod_facts import ScanFailure as ScanFailure

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from lkm.system.fork import Channel, Worker

# Fewer modules than this are read in-process: a fork costs more.
MIN_PARALLEL = 64

_SHARED_CRCS: dict[int, int] = {}


def read_facts(path: str, lean: bool = False) -> ModuleFacts | ScanFailure:
    """A module's facts; a file that is not a readable module is a
    ScanFailure (kmod still lists it, with no aliases or dependencies).

    ``lean``: for resolving that only looks up who provides each needed
    name (no -e, -v or -P, no cache to fill): the needed names are the
    module's import names (the same names, first seen in the same order)
    and the CRCs and weak flags are left empty, which saves matching them.
    """
    try:
        with open_module(path, mapped=False) as module:
            modinfo = module.modinfo_text()
            exports = tuple((name, crc) for name, crc, _ in module.export_entries())
            names: list[str] = []
            crcs: list[int] = []
            weak: list[bool] = []
            try:
                if lean:
                    names = module.import_names()
                else:
                    names, crcs, weak = module.needed_columns()
            except FormatError:
                pass  # no usable symbol table: no dependencies, as in kmod
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


def _read_all(paths: Sequence[str], lean: bool = False) -> list[ModuleFacts | ScanFailure]:
    return [read_facts(path, lean) for path in paths]


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


def scan(paths: Sequence[str], lean: bool = False) -> list[ModuleFacts | ScanFailure]:
    """Facts for each path, in order (``lean``: see :func:`read_facts`);
    large lists use two processes.

    The halves are every other path, not the first and second half: the
    big modules (and the xz-compressed ones) are spread through a tree by
    directory, and alternating keeps both cores busy until the end.
    """
    if len(paths) < MIN_PARALLEL:
        return _read_all(paths, lean)  # a re-run that read a few changed modules
    from lkm.system.fork import split_map

    def work(part: Sequence[str]) -> list[ModuleFacts | ScanFailure]:
        return _read_all(part, lean)

    half = (len(paths) + 1) // 2
    shuffled = [*paths[0::2], *paths[1::2]]
    parts = split_map(
        shuffled, work, min_items=MIN_PARALLEL, parent_share=0.5, codec=(_encode, _decode)
    )
    flat = [result for part in parts for result in part]
    ordered: list[ModuleFacts | ScanFailure] = flat[:]
    ordered[0::2] = flat[:half]
    ordered[1::2] = flat[half:]
    return ordered


def scan_sharing(
    paths: Sequence[str], lean: bool, follow_up: Callable[[list[str | None]], bytes]
) -> tuple[list[ModuleFacts | ScanFailure], Worker] | None:
    """:func:`scan` with a helper process that keeps going: it reads every
    other path, sends its facts, is sent the ``.modinfo`` texts of the
    rest, runs ``follow_up`` on all texts (module order; None for an
    unreadable module) and sends its bytes, which :meth:`Worker.receive`
    returns. The same helper, so no second fork (and none of the
    copy-on-write faults of forking a process that holds all facts).

    Returns the facts and the worker (close it when done), or None when
    there is no second process to be had: then call :func:`scan`.
    """
    if len(paths) < MIN_PARALLEL:
        return None
    from lkm.system.fork import start_worker

    def helper(channel: Channel) -> None:
        mine = _read_all(paths[1::2], lean)
        channel.send(_encode(mine))
        texts: list[str | None] = [None] * len(paths)
        texts[0::2] = marshal.loads(channel.receive())
        texts[1::2] = _modinfo_texts(mine)
        channel.send(follow_up(texts))

    worker = start_worker(helper)
    if worker is None:
        return None
    try:
        mine = _read_all(paths[0::2], lean)
        theirs = _decode(worker.receive())
        worker.send(marshal.dumps(_modinfo_texts(mine)))
    except BaseException:
        worker.close()
        raise
    ordered: list[ModuleFacts | ScanFailure] = [*mine, *theirs]
    ordered[0::2] = mine
    ordered[1::2] = theirs
    return ordered, worker


def _modinfo_texts(results: list[ModuleFacts | ScanFailure]) -> list[str | None]:
    return [r.modinfo if isinstance(r, ModuleFacts) else None for r in results]
