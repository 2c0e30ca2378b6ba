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
import signal
import struct
from collections.abc import Callable, Sequence

from lkm.errors import LkmError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import TypeVar

    T = TypeVar("T")
    R = TypeVar("R")

_LENGTH = struct.Struct("<Q")


class WorkerError(LkmError, RuntimeError):
    """The forked worker failed: its own error message, or that it died."""


def jobs() -> int:
    """Processes to use: ``LKM_JOBS`` (1 turns parallelism off), else up to 2.

    Work is only ever split in two; larger values mean "parallel".
    """
    env = os.environ.get("LKM_JOBS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return min(2, os.cpu_count() or 1)


def split_map(
    items: Sequence[T],
    work: Callable[[Sequence[T]], R],
    min_items: int = 256,
    parent_share: float = 0.5,
    codec: tuple[Callable[[R], bytes], Callable[[bytes], R]] | None = None,
) -> list[R]:
    """``[work(first part), work(second part)]``, the second in a child.

    With fewer than ``min_items`` items, parallelism off (or fork
    impossible), returns ``[work(items)]``. An LkmError in the child comes
    back as a WorkerError with its message; anything else (a bug) as a
    RuntimeError carrying the child's traceback. ``codec`` (encode,
    decode) carries the child's result through the pipe as bytes when
    something faster than pickle fits the data.
    """
    if len(items) < min_items or jobs() < 2 or not hasattr(os, "fork"):
        return [work(items)]
    split = int(len(items) * parent_share)
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return [work(items)]  # no second process to be had: do it all here
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_end)
        encode = codec[0] if codec is not None else None
        _child(work, items[split:], write_end, encode)
    os.close(write_end)
    finished = False
    try:
        first = work(items[:split])
        payload = _read_all(read_end)
        finished = True
    finally:
        os.close(read_end)
        if not finished:
            os.kill(pid, signal.SIGKILL)  # our half failed: theirs is moot
        _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or len(payload) < _LENGTH.size:
        raise WorkerError("worker process failed")
    try:
        ok, second = pickle.loads(payload[_LENGTH.size :])
    except Exception as exc:
        raise WorkerError(f"worker result unreadable: {exc}") from None
    if not ok:
        kind, message = second
        if kind == "lkm":
            raise WorkerError(message)
        raise RuntimeError(f"worker process raised:\n{message}")  # a bug: keep its traceback
    if codec is not None:
        second = codec[1](second)
    return [first, second]


def _child(
    work: Callable[[Sequence[T]], R],
    items: Sequence[T],
    fd: int,
    encode: Callable[[R], bytes] | None,
) -> None:
    """Runs in the forked child: do the work, send the result, exit."""
    code = 0
    try:
        try:
            value = work(items)
            result: tuple[bool, object] = (True, encode(value) if encode else value)
        except LkmError as exc:
            result = (False, ("lkm", str(exc)))
        except BaseException:
            import traceback

            result = (False, ("bug", traceback.format_exc()))
        try:
            data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            data = pickle.dumps((False, ("lkm", f"worker result not picklable: {exc}")))
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
