"""Run one list of independent jobs on two cores: half in a forked child.

Reading thousands of modules is CPU-bound Python (and xz decompression);
threads would share one interpreter lock, so the second half goes to a
forked process and its result comes back pickled through a pipe. Pickle is
safe here: the data comes from our own child, never from a file.

``LKM_JOBS=1`` (or one CPU, or no fork) runs everything in-process.
"""

from __future__ import annotations

import os
import pickle
import struct
from collections.abc import Callable, Sequence

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import TypeVar

    T = TypeVar("T")
    R = TypeVar("R")

_LENGTH = struct.Struct("<Q")


class WorkerError(RuntimeError):
    """The forked worker died or sent back something unreadable."""


def jobs() -> int:
    env = os.environ.get("LKM_JOBS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return min(2, os.cpu_count() or 1)


def split_map(
    items: Sequence[T],
    work: Callable[[Sequence[T]], R],
    min_items: int = 256,
    parent_share: float = 0.5,
) -> list[R]:
    """``[work(first part), work(second part)]``, the second in a child.

    With fewer than ``min_items`` items, or parallelism off, returns
    ``[work(items)]``. Exceptions in the child are re-raised in the parent
    as they were (they travel pickled), so callers see one error path.
    """
    if len(items) < min_items or jobs() < 2 or not hasattr(os, "fork"):
        return [work(items)]
    split = int(len(items) * parent_share)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_end)
        _child(work, items[split:], write_end)
    os.close(write_end)
    try:
        first = work(items[:split])
        payload = _read_all(read_end)
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or len(payload) < _LENGTH.size:
        raise WorkerError("worker process failed")
    ok, second = pickle.loads(payload[_LENGTH.size :])
    if not ok:
        raise second
    return [first, second]


def _child(
    work: Callable[[Sequence[T]], R], items: Sequence[T], fd: int
) -> None:  # pragma: no cover
    code = 0
    try:
        try:
            result: tuple[bool, object] = (True, work(items))
        except BaseException as exc:  # sent to the parent, raised there
            result = (False, exc)
        try:
            data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            data = pickle.dumps((False, WorkerError(f"worker result not picklable: {exc}")))
        view = memoryview(_LENGTH.pack(len(data)) + data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
