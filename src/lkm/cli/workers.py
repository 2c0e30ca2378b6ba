"""Split a long argument list over two processes, keeping output order.

``modinfo`` over a whole kernel tree handles thousands of files, each an
independent job. The second half runs in a forked worker
(:func:`lkm.system.fork.split_map`); both halves' stdout and stderr are
written in argument order, so the output is byte for byte what one process
would print. ``LKM_JOBS=1`` turns this off.
"""

from __future__ import annotations

import io
import struct

from lkm.system.fork import split_map

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import BinaryIO

    Runner = Callable[[list[str], BinaryIO, BinaryIO], int]

# Below this many arguments a fork costs more than it saves.
MIN_ARGS_TO_SPLIT = 256


def run_split(args: list[str], run: Runner, out: BinaryIO, err: BinaryIO) -> int:
    """``run(args, out, err)``, the second half in a forked process."""

    def captured(part: Sequence[str]) -> tuple[bytes, bytes, int]:
        part_out, part_err = io.BytesIO(), io.BytesIO()
        status = run(list(part), part_out, part_err)
        return part_out.getvalue(), part_err.getvalue(), status

    if len(args) < MIN_ARGS_TO_SPLIT:
        return run(args, out, err)
    out.flush()
    err.flush()
    # The parent also writes the worker's output afterwards: a little less.
    status = 0
    parts = split_map(args, captured, parent_share=0.45, codec=(_encode, _decode))
    for part_out, part_err, part_status in parts:
        out.write(part_out)
        out.flush()
        err.write(part_err)
        err.flush()
        status = status or part_status
    return status


# A half's result through the pipe: both lengths and the status, then the
# bytes. Pickle would do as well, but importing it costs modinfo 6 ms.
_HEADER = struct.Struct("<QQi")


def _encode(result: tuple[bytes, bytes, int]) -> bytes:
    out, err, status = result
    return _HEADER.pack(len(out), len(err), status) + out + err


def _decode(data: bytes) -> tuple[bytes, bytes, int]:
    out_size, err_size, status = _HEADER.unpack_from(data)
    err_start = _HEADER.size + out_size
    return data[_HEADER.size : err_start], data[err_start : err_start + err_size], status
