"""Bad inputs found in review: each must give one clean error, fast."""

from __future__ import annotations

import shutil
import struct
import time
from pathlib import Path

import pytest
from conftest import lkm

from lkm.errors import IndexFormatError
from lkm.formats.kmod_index import INDEX_MAGIC, KmodIndex
from lkm.formats.signature import SIG_MAGIC
from lkm.model.database import ModuleDatabase
from lkm.system.fork import WorkerError, split_map
from lkm.testing.debian_kernels import KernelFixture


def test_cyclic_index_fails_fast() -> None:
    # Root with prefix "*" whose child 'a' points back at the root, padded.
    root = 12 | 0x80000000 | 0x20000000
    node = b"*\0" + b"aa" + struct.pack(">I", root)
    data = struct.pack(">III", INDEX_MAGIC, 0x00020001, root) + node + b"\0" * (1 << 20)
    start = time.monotonic()
    with pytest.raises(IndexFormatError, match="cycle"):
        KmodIndex(data).search_wild("pci:v1")
    with pytest.raises(IndexFormatError, match="cycle"):
        list(KmodIndex(data).items())
    assert time.monotonic() - start < 2


def test_truncated_der_length_in_signature(kernel_61: KernelFixture, tmp_path: Path) -> None:
    module = next(p for p in kernel_61.modules() if p.name == "dummy.ko").read_bytes()
    blob = b"\x30\x82\x00"
    info = struct.pack(">BBBBB3xI", 0, 0, 2, 0, 0, len(blob))
    path = tmp_path / "badsig.ko"
    path.write_bytes(module + blob + info + SIG_MAGIC)
    result = lkm("modinfo", [str(path)])
    assert result.status == 0 and b"sig_id" not in result.stdout  # like kmod: no signature


def test_damaged_index_is_reported_not_not_found(kernel_61: KernelFixture, tmp_path: Path) -> None:
    moddir = tmp_path / "lib" / "modules" / kernel_61.version
    moddir.mkdir(parents=True)
    (moddir / "modules.dep.bin").write_bytes(
        (kernel_61.indexed_moddir / "modules.dep.bin").read_bytes()[:20]
    )
    result = lkm("modinfo", ["-b", str(tmp_path), "-k", kernel_61.version, "snd_hda_intel"])
    assert result.status == 1 and b"modules.dep.bin" in result.stderr
    with ModuleDatabase(str(moddir)) as db, pytest.raises(IndexFormatError):
        db.closure(["snd_hda_intel"])


def test_builtin_modinfo_unreadable(kernel_61: KernelFixture, tmp_path: Path) -> None:
    root = tmp_path / "root"
    moddir = root / "lib" / "modules" / kernel_61.version
    moddir.mkdir(parents=True)
    for name in ("modules.builtin.bin", "modules.dep.bin"):
        shutil.copy(kernel_61.indexed_moddir / name, moddir / name)
    (moddir / "modules.builtin.modinfo").mkdir()
    result = lkm("modinfo", ["-b", str(root), "-k", kernel_61.version, "-m", "zbud"])
    assert result.status == 1 and result.stderr.count(b"\n") == 1
    assert b"modules.builtin.modinfo" in result.stderr


def test_depmod_bad_inputs_are_fatal_lines(kernel_61: KernelFixture, tmp_path: Path) -> None:
    root = tmp_path / "root"
    moddir = root / "lib" / "modules" / kernel_61.version
    (moddir / "kernel").mkdir(parents=True)
    shutil.copy(
        next(p for p in kernel_61.modules() if p.name == "dummy.ko"), moddir / "kernel" / "dummy.ko"
    )
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = lkm("depmod", ["--no-cache", "-b", str(root), "-o", str(afile), kernel_61.version])
    assert result.status == 1 and result.stderr.splitlines()[-1].startswith(b"depmod: FATAL: ")
    # A name that is not ASCII is no longer fatal (issue 14): one warning
    # naming the file, the key left out of the binary index, the rest written.
    shutil.copy(moddir / "kernel" / "dummy.ko", moddir / "kernel" / "f\u00f6.ko")
    result = lkm("depmod", ["--no-cache", "-b", str(root), kernel_61.version])
    assert result.status == 0, result.stderr
    warning = f"depmod: WARNING: {moddir}/kernel/f\u00f6.ko: name 'f\u00f6': byte 0xc3"
    assert any(line.startswith(warning) for line in result.stderr.decode().splitlines())
    assert b"kernel/f\xc3\xb6.ko:" in (moddir / "modules.dep").read_bytes()


def _fail_in_second_half(items: list[int]) -> int:
    if 999 in items:
        raise IndexFormatError("/x/modules.dep.bin", "broken")
    return len(items)


def test_worker_errors_come_back_as_lkm_errors() -> None:
    with pytest.raises(WorkerError, match="broken"):
        split_map([*range(300), 999], _fail_in_second_half, min_items=1)
