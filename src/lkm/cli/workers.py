"""Split a long argument list over two processes, keeping output order.

``modinfo`` over a whole kernel tree handles thousands of files, each an
independent job. The second half runs in a forked worker
(:func:`lkm.system.fork.split_map`); both halves' stdout and stderr are
written in argument order, so the output is byte for byte what one process
would print. ``LKM_JOBS=1`` turns this off.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

from lkm.system.fork import split_map

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
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
    for part_out, part_err, part_status in split_map(args, captured, parent_share=0.45):
        out.write(part_out)
        out.flush()
        err.write(part_err)
        err.flush()
        status = status or part_status
    return status
