"""What the benchmarks share: lkm byte-compiled as an installed package is,
the cached Debian kernels by label, and timing a command."""

from __future__ import annotations

import argparse
import compileall
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from lkm.model.kernels import Kernel, cached_kernels
from lkm.system.run import NULL, failure, run, start


def add_also_option(parser: argparse.ArgumentParser) -> None:
    """--also NAME=LKM: time another lkm (another checkout's, say) in the
    same rounds, so a before/after comparison shares one machine state."""
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="NAME=LKM",
        help="time another lkm too, in the same rounds (e.g. base=/other/checkout/.venv/bin/lkm)",
    )


def lkms_to_time(args: argparse.Namespace) -> dict[str, str]:
    """This venv's lkm under the name "lkm", then each --also in order."""
    lkms = {"lkm": str(Path(sys.executable).with_name("lkm"))}
    lkms.update(item.split("=", 1) for item in args.also)
    return lkms


def compile_lkm() -> None:
    """Byte-compile lkm first, as an installed package is: with
    PYTHONDONTWRITEBYTECODE set, every run would otherwise compile each
    module changed since its .pyc was written, and time that."""
    import lkm

    for directory in lkm.__path__:
        compileall.compile_dir(directory, quiet=1)


def kernels_by_label() -> dict[str, Kernel]:
    """The cached kernels with a module tree (``6.1``, ``6.12``, …); exits
    when there are none."""
    kernels = {k.label: k for k in cached_kernels() if k.modules is not None}
    if not kernels:
        sys.exit("no cached Debian kernels: run ./dev fixtures")
    return kernels


def module_tree(kernel: Kernel) -> str:
    """The kernel's module tree (``ROOT/lib/modules/RELEASE``)."""
    if kernel.modules is None:
        sys.exit(f"kernel {kernel.release} has no module tree")
    return kernel.modules


def tree_root(kernel: Kernel) -> str:
    """The directory holding ``lib/modules/RELEASE`` (what ``-b``/``-d`` take)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(module_tree(kernel))))


def module_files(kernel: Kernel) -> list[str]:
    """Every module file of the kernel's tree, sorted."""
    found = []
    for directory, _, names in os.walk(module_tree(kernel)):
        found += [
            f"{directory}/{n}" for n in names if n.endswith((".ko", ".ko.xz", ".ko.gz", ".ko.zst"))
        ]
    return sorted(found)


def timed(cmd: Sequence[str], env: Mapping[str, str] | None = None) -> float:
    """Wall seconds of one run of ``cmd``, its output thrown away."""
    started = time.perf_counter()
    run(cmd, check=False, stdout=NULL, stderr=NULL, env=env)
    return time.perf_counter() - started


def measured(cmd: Sequence[str], env: Mapping[str, str] | None = None) -> tuple[float, int, float]:
    """Wall seconds, peak memory (KiB) and CPU seconds (user + system, its
    waited-for helpers included) of one run; exits if it fails. The clock
    around the process, the rest from its rusage; its errors go to a file
    (a pipe nobody reads while it runs could fill)."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = start(cmd, stdout=NULL, stderr=errors.fileno(), env=env)
        status, usage = process.wait_with_usage()
        wall = time.perf_counter() - started
        process.close()
        if status != 0:
            errors.seek(0)
            sys.exit(str(failure(cmd, status, errors.read())))
    return wall, usage.ru_maxrss, usage.ru_utime + usage.ru_stime
