"""Split a long argument list over two processes, keeping output order.

``modinfo`` over a whole kernel tree handles thousands of files, each an
independent job. A forked worker takes the second half; its stdout and
stderr come back through a pipe and are written after the parent's own, so
the output is byte for byte what one process would print. ``LKM_JOBS=1``
turns this off.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)


if TYPE_CHECKING:
    from typing import BinaryIO

    Runner = Callable[[list[str], BinaryIO, BinaryIO], int]

# Below this many arguments a fork costs more than it saves.
MIN_ARGS_TO_SPLIT = 256
_HEADER = struct.Struct("<QQi")


def jobs() -> int:
    env = os.environ.get("LKM_JOBS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return min(2, os.cpu_count() or 1)


def run_split(args: list[str], run: Runner, out: BinaryIO, err: BinaryIO) -> int:
    """``run(args, out, err)``, the second half in a forked process."""
    if len(args) < MIN_ARGS_TO_SPLIT or jobs() < 2 or not hasattr(os, "fork"):
        return run(args, out, err)
    # The parent also copies the worker's output: give it a little less.
    split = len(args) * 9 // 20
    out.flush()
    err.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_end)
        _child(args[split:], run, write_end)
    os.close(write_end)
    try:
        status = run(args[:split], out, err)
        payload = _read_all(read_end)
    finally:
        os.close(read_end)
        _, wait_status = os.waitpid(pid, 0)
    if len(payload) < _HEADER.size or os.waitstatus_to_exitcode(wait_status) != 0:
        err.write(b"lkm: worker process failed\n")
        return 1
    out_len, err_len, child_status = _HEADER.unpack_from(payload)
    body = memoryview(payload)[_HEADER.size :]
    out.write(body[:out_len])
    out.flush()
    err.write(body[out_len : out_len + err_len])
    err.flush()
    return status or child_status


def _child(args: list[str], run: Runner, fd: int) -> None:  # pragma: no cover
    code = 0
    child_out, child_err = io.BytesIO(), io.BytesIO()
    try:
        status = run(args, child_out, child_err)
    except BaseException:
        import traceback

        child_err.write(traceback.format_exc().encode())
        status = 1
    try:
        data = child_out.getvalue()
        errors = child_err.getvalue()
        view = memoryview(_HEADER.pack(len(data), len(errors), status) + data + errors)
        while view:
            written = os.write(fd, view)
            view = view[written:]
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
