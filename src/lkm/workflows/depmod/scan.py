"""depmod's first step: read every module once into plain facts.

:class:`~lkm.workflows.depmod.facts.ModuleFacts` is all depmod needs from a module file — its
``.modinfo``, exports and needed symbols — as plain tuples, so results can
cross a process boundary and be cached between runs. Scanning uses both
cores when the tree is large (:func:`scan_sharing`).
"""

from __future__ import annotations

import marshal
import os
from collections.abc import Callable, Sequence
from itertools import repeat
from sys import intern

from lkm.errors import FileFormatError, FormatError, LkmError
from lkm.formats.module_file import open_module
from lkm.workflows.depmod.facts import ModuleFacts as ModuleFacts
from lkm.workflows.depmod.facts import ScanFailure as ScanFailure

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from lkm.system.fork import Channel, Worker

# Fewer modules than this are read in-process: a fork costs more.
MIN_PARALLEL = 64


def read_facts(
    path: str, lean: bool = False, crcs_seen: dict[int, int] | None = None
) -> ModuleFacts | ScanFailure:
    """A module's facts; a file that is not a readable module is a
    ScanFailure (kmod still lists it, with no aliases or dependencies).

    ``lean``: for resolving that only looks up who provides each needed
    name (no -e, -v or -P, no cache to fill): the needed names are the
    module's import names (the same names, first seen in the same order)
    and the CRCs and weak flags are left empty, which saves matching them;
    the exports' CRCs are 0, which saves reading them.
    ``crcs_seen``: CRC objects to share between the modules of one scan.
    """
    try:
        with open_module(path, mapped=False) as module:
            modinfo = module.modinfo_text()
            exported = module.exports()
            # export CRCs are for -e's checks: lean leaves them unread
            if lean:
                exports = tuple(zip(exported.names, repeat(0)))
            else:
                exports = tuple(zip(exported.names, exported.crcs, strict=True))
            names: list[str] = []
            crcs: list[int] = []
            weak: list[bool] = []
            try:
                needed = module.needed()
                if lean:
                    names = needed.distinct_names()
                else:
                    names, crcs, weak = needed.names, needed.crcs, needed.weak
            except FormatError:
                pass  # no usable symbol table: no dependencies, as in kmod
            # Thousands of modules need the same few thousand symbols:
            # one object per distinct name and CRC keeps the facts small,
            # and marshal then sends each once.
            return ModuleFacts(
                modinfo,
                exports,
                tuple(map(intern, names)),
                tuple(crcs if crcs_seen is None else map(crcs_seen.setdefault, crcs, crcs)),
                tuple(weak),
            )
    except FileFormatError as exc:
        return ScanFailure(exc.problem)
    except LkmError as exc:
        return ScanFailure(str(exc))


def _read_all(
    paths: Sequence[str], lean: bool = False, crcs_seen: dict[int, int] | None = None
) -> list[ModuleFacts | ScanFailure]:
    seen: dict[int, int] = {} if crcs_seen is None else crcs_seen
    return [read_facts(path, lean, seen) for path in paths]


def scan(paths: Sequence[str], lean: bool = False) -> list[ModuleFacts | ScanFailure]:
    """Facts for each path, in order (``lean``: see :func:`read_facts`);
    large lists use two processes (see :func:`scan_sharing`)."""
    shared = scan_sharing(paths, lean)
    if shared is None:
        return _read_all(paths, lean)  # a few modules, or no second process
    results, helper = shared
    with helper:
        helper.finish()
    return results


# Modules per unit of work the two processes take turns at. Small enough
# that neither waits long for the other at the end (a chunk of big xz
# modules takes tens of milliseconds), large enough to cost nothing.
CHUNK = 32


def scan_sharing(
    paths: Sequence[str],
    lean: bool,
    follow_up: Callable[[list[str | None]], bytes] | None = None,
) -> tuple[list[ModuleFacts | ScanFailure], Worker] | None:
    """Read ``paths`` with a helper process, and let it keep going.

    Both processes take chunks of paths from one queue (a pipe of chunk
    numbers) until it is empty, so each ends when the other does whatever
    the modules cost (xz ones vary a lot); the helper sends its facts.
    With ``follow_up``, it is then sent the ``.modinfo`` texts of the
    chunks this process read, runs ``follow_up`` on all texts (module
    order; None for an unreadable module) and sends its bytes, which
    :meth:`Worker.receive` returns: the same helper, so no second fork
    (and none of the copy-on-write faults of forking a process that holds
    all facts).

    Returns the facts and the helper (close it when done), or None for a
    short list or when there is no second process to be had.
    """
    if len(paths) < MIN_PARALLEL:
        return None
    from lkm.system.fork import WorkerError, start_worker

    chunks = [range(start, min(start + CHUNK, len(paths))) for start in range(0, len(paths), CHUNK)]
    queue_out, queue_in = os.pipe()
    try:
        # A few hundred bytes: the pipe holds them all, nobody waits.
        os.write(queue_in, b"".join(k.to_bytes(4, "little") for k in range(len(chunks))))
        os.close(queue_in)

        def read_chunks() -> dict[int, list[ModuleFacts | ScanFailure]]:
            done = {}
            crcs_seen: dict[int, int] = {}
            while number := os.read(queue_out, 4):  # 4-byte reads from a pipe are atomic
                k = int.from_bytes(number, "little")
                done[k] = _read_all([paths[i] for i in chunks[k]], lean, crcs_seen)
            return done

        def helper(channel: Channel) -> None:
            mine = read_chunks()
            channel.send(_encode_chunks(mine))
            if follow_up is None:
                return
            texts: list[str | None] = [None] * len(paths)
            for chunk, chunk_texts in marshal.loads(channel.receive()):
                texts[chunks[chunk].start : chunks[chunk].stop] = chunk_texts
            for chunk, results in mine.items():
                texts[chunks[chunk].start : chunks[chunk].stop] = _modinfo_texts(results)
            channel.send(follow_up(texts))

        worker = start_worker(helper)
        if worker is None:
            return None
        try:
            mine = read_chunks()
            # The helper waits for our texts before its follow-up: they
            # are made while it sends its facts, and sent before those
            # are decoded (40 ms on the 6.1 tree), which then overlaps
            # its work instead of delaying it.
            texts = None
            if follow_up is not None:
                texts = marshal.dumps([(k, _modinfo_texts(r)) for k, r in mine.items()])
            facts = worker.receive()
            if texts is not None:
                worker.send(texts)
            theirs = _decode_chunks(facts)
        except BaseException:
            worker.close()
            raise
    finally:
        os.close(queue_out)
    if len(mine) + len(theirs) != len(chunks):
        worker.close()
        raise WorkerError("worker process lost part of the work")
    ordered: list[ModuleFacts | ScanFailure] = []
    for k in range(len(chunks)):
        ordered += mine[k] if k in mine else theirs[k]
    return ordered, worker


def _encode_chunks(done: dict[int, list[ModuleFacts | ScanFailure]]) -> bytes:
    """Chunks of results as marshal data: several times faster than
    pickling them, which matters for the half a helper sends back."""
    return marshal.dumps(
        [
            (k, [r.fields() if isinstance(r, ModuleFacts) else r.message for r in results])
            for k, results in done.items()
        ]
    )


def _decode_chunks(data: bytes) -> dict[int, list[ModuleFacts | ScanFailure]]:
    # From our own helper through a pipe, never from a file.
    return {
        k: [ScanFailure(item) if isinstance(item, str) else ModuleFacts(*item) for item in plain]
        for k, plain in marshal.loads(data)
    }


def _modinfo_texts(results: list[ModuleFacts | ScanFailure]) -> list[str | None]:
    return [r.modinfo if isinstance(r, ModuleFacts) else None for r in results]
