"""The Debian kernels' bzImages: payload, vmlinux, PVH entry note."""

from __future__ import annotations

import pytest

from lkm.errors import FormatError
from lkm.formats.bzimage import has_pvh_entry, payload, vmlinux
from lkm.testing.debian_kernels import KernelFixture


@pytest.mark.parametrize("label", ["6.1", "6.12"])
def test_debian_kernels_boot_through_pvh(kernels: list[KernelFixture], label: str) -> None:
    kernel = next(k for k in kernels if k.label == label)
    image = kernel.vmlinuz.read_bytes()
    assert payload(image)[:6] in (b"\xfd7zXZ\x00", b"(\xb5/\xfd\x04\x88")
    elf = vmlinux(image)
    assert elf.startswith(b"\x7fELF\x02\x01") and has_pvh_entry(elf)
    assert not has_pvh_entry(elf[:64] + b"\0" * 4096)


@pytest.mark.parametrize(
    "image", [b"", b"MZ" + b"\0" * 1000, b"\0" * 0x202 + b"HdrS" + b"\0" * 100]
)
def test_not_a_bzimage(image: bytes) -> None:
    with pytest.raises(FormatError):
        vmlinux(image)
