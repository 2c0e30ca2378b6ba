"""Module images for gdb: every section's link address zeroed, nothing else
changed, checked against binutils' readelf on the real Debian trees (6.12's
modules carry non-zero ``sh_addr``; 6.1's do not)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import command

from lkm.errors import FormatError
from lkm.formats.module_file import open_module
from lkm.formats.module_for_gdb import without_link_addresses
from lkm.testing.debian_kernels import KernelFixture

SAMPLE = 25  # modules per tree: readelf runs once for each image
# readelf -SW: "  [Nr] Name Type Address Off Size ES Flg Lk Inf Al"
_SECTION = re.compile(r"^\s*\[\s*(\d+)\]\s+(\S*)\s+(\S+)\s+([0-9a-f]{16})\s+(.*)$")


def sections(path: Path) -> list[tuple[str, str, str, str, str]]:
    """readelf's section table: (index, name, type, address, the other columns)."""
    done = command(["readelf", "-SW", path], text=True, check=True)
    return [m.groups() for m in map(_SECTION.match, done.stdout.splitlines()) if m]


def image_of(path: Path) -> bytes:
    with open_module(str(path)) as module:
        return module.data[:]


def test_612_modules_lose_only_their_link_addresses(
    kernel_612: KernelFixture, tmp_path: Path, report: object
) -> None:
    modules = kernel_612.modules()[::200][:SAMPLE]
    edited_count = 0
    for path in modules:
        image = image_of(path)
        edited = without_link_addresses(image)
        before = sections(_written(tmp_path / "before.ko", image))
        assert any(int(address, 16) for *_, address, _ in before) == (edited is not None), path
        if edited is None:
            continue
        edited_count += 1
        after = sections(_written(tmp_path / "after.ko", edited))
        assert [address for *_, address, _ in after] == ["0" * 16] * len(after), path
        assert [(i, n, t, rest) for i, n, t, _, rest in after] == [
            (i, n, t, rest) for i, n, t, _, rest in before
        ], path
        assert len(edited) == len(image)
    assert edited_count == len(modules)  # kbuild's 6.12 link leaves .data at a non-zero VMA
    report(f"module_for_gdb: {len(modules)} 6.12 modules edited, checked with readelf")  # type: ignore[operator]


def test_61_modules_need_no_copy(kernel_61: KernelFixture) -> None:
    for path in kernel_61.modules()[::400][:SAMPLE]:
        assert without_link_addresses(image_of(path)) is None, path


def test_not_elf_is_a_format_error() -> None:
    with pytest.raises(FormatError):
        without_link_addresses(b"not an ELF file at all, just bytes" * 4)


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
