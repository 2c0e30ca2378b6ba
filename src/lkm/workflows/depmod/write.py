"""depmod's write stage: every file through a temporary file and a rename."""

from __future__ import annotations

import os
import time

from lkm.system.atomic import replace_file
from lkm.workflows.depmod.render import OUTPUT_FILES, Outputs


def write_outputs(outputs: Outputs, outdir: str) -> None:
    """Each file through ``NAME.PID.USEC.SEC`` and a rename, in kmod's order.

    A killed run leaves every index either complete-old or complete-new;
    at worst a stray temporary file. A failure raises OSError naming the
    index that could not be written.
    """
    os.makedirs(outdir, mode=0o755, exist_ok=True)
    now = time.time()
    suffix = f"{os.getpid()}.{int(now * 1_000_000) % 1_000_000}.{int(now)}"
    for name in OUTPUT_FILES:
        data = outputs.files.get(name)
        if data is None:
            continue
        target = f"{outdir}/{name}"
        try:
            replace_file(target, data, f".{suffix}")
        except OSError as exc:
            # Name the index, not the temporary file or the directory
            # (kmod names both in its renameat message).
            raise OSError(exc.errno, exc.strerror, target) from None
