"""Names, paths and symbols that are not UTF-8 (or not ASCII) against kmod
(issue 14): kmod is byte-clean, and so is lkm.

A small tree of real 6.1 modules, edited so that a file name holds a 0xff
byte, another a line break, exported and imported symbols a 0xf2 byte,
and an alias an 0xf2 byte. kmod 30 (the reference) indexes it without a
word; lkm writes the same text files byte for byte, the same binary
indexes for every ASCII key, and leaves the keys that are not ASCII out
of the binary indexes with one warning per module naming its file:
kmod's readers address a node's children by a 7-bit character, kmod 34's
depmod refuses such keys, and kmod 30's crashes (SIGSEGV) where one
branches off another key at such a byte — so the edits here keep every
such byte inside a key's own tail, where kmod 30 survives. The same
modules through modprobe and modinfo answer as kmod's do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import kmod, lkm

from lkm.formats.kmod_index import KmodIndex
from lkm.testing.debian_kernels import KernelFixture

Report = Callable[[str], None]
TEXT_FILES = (
    "modules.dep",
    "modules.alias",
    "modules.symbols",
    "modules.softdep",
    "modules.devname",
)
BINARY_FILES = ("modules.dep.bin", "modules.alias.bin", "modules.symbols.bin")
# name in the tree -> (module in the 6.1 tree, byte edits of the same length)
EDITS: dict[bytes, tuple[str, list[tuple[bytes, bytes]]]] = {
    b"llc.ko": ("net/llc/llc.ko", [(b"llc_", b"ll\xf2_")]),
    b"stp.ko": ("net/802/stp.ko", [(b"llc_", b"ll\xf2_")]),
    b"psnap.ko": ("net/802/psnap.ko", [(b"llc_", b"ll\xf2_")]),
    b"bad\xff.ko": ("drivers/net/dummy.ko", []),
    b"new\nline.ko": ("drivers/block/loop.ko", []),
    b"odd.ko": (
        "drivers/net/ifb.ko",
        [(b"alias=rtnl-link-ifb\0", b"alias=rtnl-link-if\xf2\0")],
    ),
}


def _module_tree(kernel: KernelFixture, root: Path) -> Path:
    moddir = root / "lib" / "modules" / kernel.version
    (moddir / "kernel").mkdir(parents=True)
    for name, (source, edits) in EDITS.items():
        data = (kernel.moddir / "kernel" / source).read_bytes()
        for old, new in edits:
            assert old in data, (source, old)
            data = data.replace(old, new)
        Path(os.fsdecode(os.fsencode(moddir / "kernel") + b"/" + name)).write_bytes(data)
    for empty in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        (moddir / empty).write_bytes(b"")
    return moddir


@pytest.fixture(scope="module")
def indexed(
    kernel_61: KernelFixture, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, bytes]:
    """(kmod's tree, lkm's tree, lkm's stderr), both indexed."""
    base = tmp_path_factory.mktemp("bytes")
    kmod_dir = _module_tree(kernel_61, base / "kmod")
    lkm_dir = _module_tree(kernel_61, base / "lkm")
    want = kmod("depmod", ["-b", str(base / "kmod"), kernel_61.version])
    got = lkm("depmod", ["-b", str(base / "lkm"), "--no-cache", kernel_61.version])
    assert (want.status, want.stderr) == (0, b"")
    assert got.status == 0, got.stderr
    return kmod_dir, lkm_dir, got.stderr


def test_text_files_are_kmods_byte_for_byte(
    indexed: tuple[Path, Path, bytes], report: Report
) -> None:
    kmod_dir, lkm_dir, _ = indexed
    for name in TEXT_FILES:
        assert (lkm_dir / name).read_bytes() == (kmod_dir / name).read_bytes(), name
    assert b"bad\xff.ko" in (lkm_dir / "modules.dep").read_bytes()
    assert b"ll\xf2_sap_open" in (lkm_dir / "modules.symbols").read_bytes()
    report(f"depmod with names that are not UTF-8: {len(TEXT_FILES)} text files as kmod's")


def test_binary_indexes_hold_every_ascii_key_of_kmods_and_warn_for_the_rest(
    indexed: tuple[Path, Path, bytes], report: Report
) -> None:
    kmod_dir, lkm_dir, stderr = indexed
    compared = 0
    for name in BINARY_FILES:
        theirs = KmodIndex((kmod_dir / name).read_bytes())
        mine = KmodIndex((lkm_dir / name).read_bytes())
        expected = {k: v for k, v in theirs.items() if k.isascii()}
        assert dict(mine.items()) == expected, name
        compared += len(expected)
    lines = stderr.decode("utf-8", "surrogateescape").splitlines()
    assert len(lines) == 3, lines  # one per module and index
    assert lines[0].startswith(f"depmod: WARNING: {lkm_dir}/kernel/bad\udcff.ko: name 'bad\udcff'")
    assert "byte 0xff is not 7-bit ASCII; left out of modules.dep.bin" in lines[0]
    assert lines[1].startswith(
        f"depmod: WARNING: {lkm_dir}/kernel/odd.ko: alias 'rtnl_link_if\udcf2'"
    )
    assert lines[2].startswith(f"depmod: WARNING: {lkm_dir}/kernel/llc.ko: 9 symbols (")
    assert all("\\n" not in line or "new\\nline" in line for line in lines)
    report(f"depmod with names that are not UTF-8: {compared} binary index keys as kmod's")


def test_modprobe_and_modinfo_of_such_modules_answer_as_kmods(
    kernel_61: KernelFixture, indexed: tuple[Path, Path, bytes], report: Report
) -> None:
    kmod_dir, lkm_dir, _ = indexed
    cases = [
        ("modprobe", ["--show-exports", "{dir}/kernel/llc.ko"]),
        ("modprobe", ["--dump-modversions", "{dir}/kernel/stp.ko"]),
        ("modprobe", ["-D", "-d", "{root}", "-S", kernel_61.version, "stp"]),
        ("modprobe", ["-D", "-d", "{root}", "-S", kernel_61.version, "ll\udcf2_sap_open"]),
        ("modinfo", ["{dir}/kernel/bad\udcff.ko"]),
        ("modinfo", ["-F", "alias", "{dir}/kernel/odd.ko"]),
        ("modinfo", ["-b", "{root}", "-k", kernel_61.version, "stp"]),
    ]
    for tool, args in cases:

        def fill(arg: str, where: Path) -> str:
            return arg.format(dir=where, root=where.parents[2])

        want = kmod(tool, [fill(a, kmod_dir) for a in args])
        got = lkm(tool, [fill(a, lkm_dir) for a in args])
        norm = [
            (
                r.status,
                r.stdout.replace(os.fsencode(d), b"D"),
                r.stderr.replace(os.fsencode(d), b"D"),
            )
            for r, d in ((want, kmod_dir), (got, lkm_dir))
        ]
        assert norm[1] == norm[0], (tool, args)
    report(f"modprobe and modinfo of modules not UTF-8: {len(cases)} commands as kmod's")


def test_filename_mode_takes_a_path_that_is_not_utf8(
    kernel_61: KernelFixture, indexed: tuple[Path, Path, bytes], tmp_path: Path
) -> None:
    kmod_dir, lkm_dir, _ = indexed
    outside = Path(os.fsdecode(os.fsencode(tmp_path) + b"/x\xff.ko"))
    outside.write_bytes((kmod_dir / "kernel" / "stp.ko").read_bytes())
    want = kmod("depmod", ["-n", "-b", str(kmod_dir.parents[2]), kernel_61.version, str(outside)])
    got = lkm("depmod", ["-n", "-b", str(lkm_dir.parents[2]), kernel_61.version, str(outside)])
    assert (got.status, want.status) == (0, 0), got.stderr
    dep = os.fsencode(outside) + b":\n"
    assert got.stdout.startswith(dep) and want.stdout.startswith(dep)
