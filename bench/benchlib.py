"""What the benchmarks share: lkm byte-compiled as an installed package is,
and the Debian fixture kernels by label."""

from __future__ import annotations

import compileall
import sys

from lkm.testing.debian_kernels import KernelFixture, load_manifest


def compile_lkm() -> None:
    """Byte-compile lkm first, as an installed package is: with
    PYTHONDONTWRITEBYTECODE set, every run would otherwise compile each
    module changed since its .pyc was written, and time that."""
    import lkm

    for directory in lkm.__path__:
        compileall.compile_dir(directory, quiet=1)


def fixtures_by_label() -> dict[str, KernelFixture]:
    """The fixture kernels (``6.1``, ``6.12``, …); exits when there are none."""
    kernels = {k.label: k for k in load_manifest()}
    if not kernels:
        sys.exit("no kernel fixtures: run ./dev fixtures")
    return kernels
