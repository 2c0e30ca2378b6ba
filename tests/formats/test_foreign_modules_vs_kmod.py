"""Modules built for other architectures read exactly like native ones.

s390x (ELF64 big-endian) and armhf (ELF32 little-endian) Debian kernels,
compared with kmod's modinfo on every module; ELF32 big-endian, which
Debian no longer builds, is made by byte-swapping armhf modules
(tests/elfswap.py) and compared with kmod and with the original.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import chunks, kmod, lkm
from elfswap import to_big_endian

from lkm.formats.module_file import open_module
from lkm.testing.debian_kernels import KernelFixture


def _foreign(kernels: list[KernelFixture], arch: str) -> KernelFixture:
    return next(k for k in kernels if k.arch == arch)


@pytest.mark.parametrize("arch", ["s390x", "armhf"])
@pytest.mark.parametrize("options", [[], ["-0"], ["-F", "alias"]], ids=["plain", "-0", "-F alias"])
def test_every_foreign_module(
    kernels: list[KernelFixture], arch: str, options: list[str], report
) -> None:  # type: ignore[no-untyped-def]
    kernel = _foreign(kernels, arch)
    files = [str(p) for p in kernel.modules()]
    assert len(files) > 1000
    for batch in chunks(files, 400):
        want, got = kmod("modinfo", [*options, *batch]), lkm("modinfo", [*options, *batch])
        assert got == want, batch
    report(f"modinfo {' '.join(options) or '(plain)'} on {arch}: {len(files)} modules")


def test_elf_classes_and_byte_orders(kernels: list[KernelFixture]) -> None:
    seen = set()
    for arch in ("s390x", "armhf"):
        with open_module(str(_foreign(kernels, arch).modules()[0])) as module:
            seen.add((module.elf.is64, module.elf.big_endian))
    assert seen == {(True, True), (False, False)}


def test_elf32_big_endian(kernels: list[KernelFixture], tmp_path: Path, report) -> None:  # type: ignore[no-untyped-def]
    kernel = _foreign(kernels, "armhf")
    originals = kernel.modules()[::20]
    swapped = []
    for path in originals:
        target = tmp_path / path.name
        target.write_bytes(to_big_endian(path.read_bytes()))
        swapped.append(target)
        with open_module(str(path)) as le, open_module(str(target)) as be:
            assert be.elf.big_endian and not be.elf.is64
            assert be.modinfo() == le.modinfo()
            assert be.exports() == le.exports()
            assert be.needed() == le.needed()
            assert be.versions() == le.versions()
            assert be.signature == le.signature
    args = [str(p) for p in swapped]
    assert lkm("modinfo", args) == kmod("modinfo", args)
    report(f"modinfo on ELF32 big-endian (byte-swapped armhf): {len(swapped)} modules")
