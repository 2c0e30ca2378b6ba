"""Loading on a kernel without ``finit_module``: the syscall layer made to
answer ENOSYS, and lkm falling back to ``init_module`` with the file's
bytes, as kmod does (libkmod's kmod_module_insert_module), for
``KernelModules.insert`` (insmod) and modprobe alike.

The real kernels prove the same in ``tests/vm/test_loading_in_vm.py``.
"""

from __future__ import annotations

import errno
import struct
from pathlib import Path

import pytest

from lkm.formats.compression import Compression, compress
from lkm.formats.elf import ElfFile
from lkm.formats.module_file import open_module
from lkm.formats.module_strip import SHF_ALLOC
from lkm.system.kernel import (
    MODULE_INIT_COMPRESSED_FILE,
    KernelCallError,
    KernelModules,
    Syscalls,
)
from lkm.testing.debian_kernels import KernelFixture
from lkm.workflows.modprobe import Modprobe


class NoFinitModule(Syscalls):
    """A kernel from before Linux 3.8: finit_module is not implemented;
    what reaches init_module is recorded instead of loaded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int | bytes, bytes]] = []

    def finit_module(self, fd: int, params: bytes, flags: int, target: str) -> None:
        self.calls.append(("finit_module", flags, params))
        raise KernelCallError(errno.ENOSYS, "finit_module", target)

    def init_module(self, image: bytes, params: bytes, target: str) -> None:
        self.calls.append(("init_module", image, params))


def _kernel(tmp_path: Path, syscalls: Syscalls, compression: str = "") -> KernelModules:
    sys = tmp_path / "sys"
    (sys / "module").mkdir(parents=True, exist_ok=True)
    if compression:
        (sys / "module" / "compression").write_text(f"{compression}\n")
    return KernelModules(proc=str(tmp_path / "proc"), sys=str(sys), syscalls=syscalls)


def test_a_plain_file_goes_to_init_module_as_it_is(tmp_path: Path) -> None:
    image = b"\x7fELF" + bytes(range(256)) * 4
    module = tmp_path / "plain.ko"
    module.write_bytes(image)
    syscalls = NoFinitModule()
    _kernel(tmp_path, syscalls).insert(str(module), "x=1")
    assert syscalls.calls == [("finit_module", 0, b"x=1"), ("init_module", image, b"x=1")]


def test_parameters_reach_the_kernel_as_the_bytes_they_were(tmp_path: Path) -> None:
    """lkm's text for a byte that is not UTF-8 is a surrogate escape; the
    kernel gets the byte back, as kmod passes it (issue 14)."""
    module = tmp_path / "plain.ko"
    module.write_bytes(b"\x7fELF" + bytes(64))
    syscalls = NoFinitModule()
    _kernel(tmp_path, syscalls).insert(str(module), "n=\udcff ü")
    assert [params for _, _, params in syscalls.calls] == [b"n=\xff \xc3\xbc"] * 2


def test_a_file_the_kernel_would_decompress_is_decompressed_first(tmp_path: Path) -> None:
    image = b"\x7fELF" + bytes(range(256)) * 64
    module = tmp_path / "packed.ko.xz"
    module.write_bytes(compress(image, Compression.XZ))
    syscalls = NoFinitModule()
    _kernel(tmp_path, syscalls, compression="xz").insert(str(module))
    assert syscalls.calls == [
        ("finit_module", MODULE_INIT_COMPRESSED_FILE, b""),
        ("init_module", image, b""),
    ]


def test_other_errors_of_finit_module_are_not_retried(tmp_path: Path) -> None:
    class Refusing(NoFinitModule):
        def finit_module(self, fd: int, params: bytes, flags: int, target: str) -> None:
            raise KernelCallError(errno.EPERM, "finit_module", target)

    module = tmp_path / "m.ko"
    module.write_bytes(b"\x7fELF" + bytes(64))
    syscalls = Refusing()
    with pytest.raises(KernelCallError) as caught:
        _kernel(tmp_path, syscalls).insert(str(module))
    assert caught.value.code == errno.EPERM and syscalls.calls == []


def test_modprobe_of_a_path_falls_back_too(tmp_path: Path) -> None:
    moddir = tmp_path / "lib" / "modules" / "1.0"
    moddir.mkdir(parents=True)
    image = b"\x7fELF" + bytes(300)
    module = tmp_path / "mine.ko"
    module.write_bytes(image)
    syscalls = NoFinitModule()
    with Modprobe(str(moddir), kernel=_kernel(tmp_path, syscalls)) as modprobe:
        plan = modprobe.load(str(module), options="a=b")
    assert plan.status == 0, plan.messages
    assert syscalls.calls[-1] == ("init_module", image, b"a=b")


def _section_flags(image: bytes, name: str) -> int:
    elf = ElfFile(image)
    index = elf.section_index(name)
    assert index is not None
    word = elf.endian + elf.layout.word
    at = elf.section_header_offset(index) + elf.layout.shdr.offset("sh_flags")
    flags: int = struct.unpack_from(word, image, at)[0]
    return flags


@pytest.mark.fixtures
def test_a_forced_load_edits_the_image_as_kmod_does(
    tmp_path: Path, kernel_61: KernelFixture
) -> None:
    """init_module has no flags: symbol versions are hidden by taking
    ``__versions`` out of the loaded image and vermagic by blanking it."""
    dummy = next(kernel_61.moddir.rglob("dummy.ko"))
    original = dummy.read_bytes()
    assert _section_flags(original, "__versions") & SHF_ALLOC
    syscalls = NoFinitModule()
    _kernel(tmp_path, syscalls).insert(str(dummy), force=True)
    kinds = [call[0] for call in syscalls.calls]
    assert kinds == ["finit_module", "finit_module", "init_module"]  # file, memory file, bytes
    image = syscalls.calls[-1][1]
    assert isinstance(image, bytes) and len(image) == len(original)
    assert not _section_flags(image, "__versions") & SHF_ALLOC
    edited = tmp_path / "edited.ko"
    edited.write_bytes(image)
    with open_module(str(dummy)) as before, open_module(str(edited)) as after:
        assert "vermagic" in [k for k, _ in before.modinfo()]
        assert "vermagic" not in [k for k, _ in after.modinfo()]
        assert [v.name for v in after.versions()] == [v.name for v in before.versions()]
