"""The second core, and isolation: work in forked children.

Reading thousands of modules is CPU-bound Python (and xz decompression);
threads would share one interpreter lock, so half the work goes to a
forked :class:`Worker` whose results come back through pipes
(:func:`split_map` for one list of independent jobs), pickled unless the
caller has something faster. Pickle is safe here: the data comes from
our own child, never from a file. :func:`in_child` runs one call where
its crash cannot take this process with it.

``LKM_JOBS=1`` (or one CPU, or no fork) runs everything in-process.
"""

from __future__ import annotations

import os
import struct

from lkm.errors import LkmError
from lkm.records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TypeVar

    T = TypeVar("T")
    R = TypeVar("R")


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
    """``[work(first part), work(second part)]``, the second in a
    :class:`Worker`.

    With fewer than ``min_items`` items, parallelism off (or fork
    impossible), returns ``[work(items)]``. An LkmError in the child comes
    back as a WorkerError with its message; anything else (a bug) as a
    RuntimeError carrying the child's traceback. ``codec`` (encode,
    decode) carries the child's result through the pipe as bytes when
    something faster than pickle fits the data.
    """
    if len(items) < min_items:
        return [work(items)]
    split = int(len(items) * parent_share)
    if codec is not None:
        encode, decode = codec
    else:
        import pickle  # 6 ms to import (it pulls in re): only for callers without a codec

        encode, decode = _pickled, pickle.loads

    def second_half(channel: Channel) -> None:
        channel.send(encode(work(items[split:])))

    worker = start_worker(second_half)
    if worker is None:
        return [work(items)]  # no second process to be had: do it all here
    with worker:  # our half failing kills theirs: it is moot
        first = work(items[:split])
        second = decode(worker.receive())
        worker.finish()
    return [first, second]


def _pickled(value: object) -> bytes:
    import pickle

    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


class ChildEnd(Record):
    """How a call made in an isolated child ended: its exit code, the
    signal that killed it, or the error it could not make the call for."""

    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None


_CHILD_FAILED = 255  # the child could not make the call; its pipe says why


def in_child(work: Callable[[], int]) -> ChildEnd:
    """Run ``work()`` (returning an exit code) in a forked child, so that
    whatever kills the child (a kernel oops in a module's init function
    kills the task that loaded it) leaves this process standing."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_end)
        code = _CHILD_FAILED
        try:
            code = work()
        except (LkmError, OSError) as exc:
            os.write(write_end, str(exc).encode(errors="replace"))
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        problem = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return ChildEnd(signal=os.WTERMSIG(status))
    code = os.WEXITSTATUS(status)
    if code == _CHILD_FAILED:
        return ChildEnd(error=problem)
    return ChildEnd(exit_code=code)


# -- a worker that talks back --------------------------------------------------
#
# One mechanism for the second core: a worker exchanges messages (frames:
# length, kind, bytes) with its parent. split_map sends one job's answer;
# depmod's scan goes on with a second job once the parent has told it
# what it needs (the child renders the alias index after the parent sent
# the .modinfo of its half).

_FRAME = struct.Struct("<QB")
_DATA, _LKM_ERROR, _BUG = 0, 1, 2


class Channel:
    """One end of a worker's two pipes: frames of bytes out and in."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd

    def send(self, data: bytes, kind: int = _DATA) -> None:
        view = memoryview(_FRAME.pack(len(data), kind) + data)
        while view:
            view = view[os.write(self.write_fd, view) :]

    def receive(self) -> bytes:
        """The next frame's bytes. An error frame raises what the other
        side raised (WorkerError for an LkmError, RuntimeError with the
        traceback for a bug); the other end closed raises WorkerError."""
        header = self._read(_FRAME.size)
        length, kind = _FRAME.unpack(header)
        data = self._read(length)
        if kind == _LKM_ERROR:
            raise WorkerError(data.decode("utf-8", "surrogateescape"))
        if kind == _BUG:
            raise RuntimeError(f"worker process raised:\n{data.decode('utf-8', 'replace')}")
        return data

    def _read(self, size: int) -> bytes:
        chunks: list[bytes] = []
        left = size
        while left:
            chunk = os.read(self.read_fd, min(left, 1 << 20))
            if not chunk:
                raise WorkerError("worker process failed")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """Close both ends (once)."""
        for fd in (self.read_fd, self.write_fd):
            if fd >= 0:
                os.close(fd)
        self.read_fd = self.write_fd = -1


class Worker:
    """A forked child running ``body(channel)``, seen from the parent.

    Use as a context manager: leaving it early (an error in the parent)
    kills the child; :meth:`finish` waits for a child that is done.
    """

    def __init__(self, pid: int, channel: Channel) -> None:
        self.pid = pid
        self.channel = channel
        self._reaped = False

    def send(self, data: bytes) -> None:
        self.channel.send(data)

    def receive(self) -> bytes:
        return self.channel.receive()

    def finish(self) -> None:
        """Wait for the child; WorkerError if it failed."""
        self.channel.close()
        _, status = os.waitpid(self.pid, 0)
        self._reaped = True
        if os.waitstatus_to_exitcode(status) != 0:
            raise WorkerError("worker process failed")

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill the child unless :meth:`finish` already waited for it."""
        if not self._reaped:
            import signal  # here: it imports enum, 0.1 s in lkm try's TCG guest

            self.channel.close()
            os.kill(self.pid, signal.SIGKILL)  # not reaped: it exists, if only as a zombie
            os.waitpid(self.pid, 0)
            self._reaped = True


def start_worker(body: Callable[[Channel], None]) -> Worker | None:
    """Fork a child that runs ``body`` with its end of the channel, then
    exits. None when parallelism is off (:func:`jobs`) or fork fails: the
    caller then does the work itself."""
    if jobs() < 2 or not hasattr(os, "fork"):
        return None
    to_child = os.pipe()
    to_parent = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        for fd in (*to_child, *to_parent):
            os.close(fd)
        return None
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(to_child[1])
        os.close(to_parent[0])
        _run_worker(body, Channel(to_child[0], to_parent[1]))
    os.close(to_child[0])
    os.close(to_parent[1])
    return Worker(pid, Channel(to_parent[0], to_child[1]))


def _run_worker(body: Callable[[Channel], None], channel: Channel) -> None:
    """Runs in the forked child: the body, its error as a frame, exit."""
    code = 0
    try:
        try:
            body(channel)
        except LkmError as exc:
            code = 1
            channel.send(str(exc).encode("utf-8", "surrogateescape"), _LKM_ERROR)
        except BaseException:
            import traceback

            code = 1
            channel.send(traceback.format_exc().encode("utf-8", "replace"), _BUG)
    except BaseException:
        code = 1
    finally:
        os._exit(code)
