"""depmod's other modes against kmod: -A, filename mode, -P, -w, -v; and
lkm's kmod-34 options -o and -m."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import kmod, lkm
from test_depmod_vs_kmod import TEXT, detach, tree_copy

from lkm.testing.debian_kernels import KernelFixture


@pytest.fixture
def pair(kernel_61: KernelFixture, tmp_path: Path) -> tuple[Path, Path]:
    return tree_copy(kernel_61, tmp_path / "kmod"), tree_copy(kernel_61, tmp_path / "lkmx")


def _both(kernel: KernelFixture, pair: tuple[Path, Path], extra: list[str]) -> None:
    (kdir, ldir) = pair
    kroot, lroot = kdir.parents[2], ldir.parents[2]
    want = kmod("depmod", [*extra, "-b", str(kroot), kernel.version])
    got = lkm(
        "depmod",
        [*extra, "--no-cache", "--index-layout=post-order", "-b", str(lroot), kernel.version],
    )
    norm = lambda data, root: data.replace(str(root).encode(), b"ROOT")  # noqa: E731
    assert got.status == want.status
    assert norm(got.stderr, lroot) == norm(want.stderr, kroot)
    weakdep = b"# Weak dependencies extracted from modules themselves.\n"
    assert norm(got.stdout, lroot).replace(weakdep, b"") == norm(want.stdout, kroot)
    for name in TEXT:
        assert (kdir / name).exists() == (ldir / name).exists(), name
        if (kdir / name).exists():
            assert norm((ldir / name).read_bytes(), lroot) == norm(
                (kdir / name).read_bytes(), kroot
            ), name


def test_quick_mode(kernel_61: KernelFixture, pair: tuple[Path, Path]) -> None:
    _both(kernel_61, pair, ["-A"])  # no modules.dep yet: full run
    for moddir in pair:
        (moddir / "modules.dep").write_text("stale\n")
        os.utime(moddir / "modules.dep", (4_000_000_000, 4_000_000_000))
    _both(kernel_61, pair, ["-A"])  # up to date: nothing done
    assert (pair[1] / "modules.dep").read_text() == "stale\n"
    for moddir in pair:
        os.utime(detach(next(moddir.rglob("loop.ko"))), (4_100_000_000, 4_100_000_000))
    _both(kernel_61, pair, ["-A"])  # a newer module: full run
    assert (pair[1] / "modules.dep").read_text() != "stale\n"


def test_filename_mode(kernel_61: KernelFixture, pair: tuple[Path, Path]) -> None:
    kdir, ldir = pair
    names = ("kernel/drivers/net/mii.ko", "kernel/drivers/net/ethernet/realtek/8139cp.ko")
    outside = kdir.parents[3] / "outside-dummy.ko"
    shutil.copy(next(kdir.rglob("dummy.ko")), outside)
    kroot, lroot = kdir.parents[2], ldir.parents[2]
    want = kmod(
        "depmod",
        ["-b", str(kroot), kernel_61.version, *[str(kdir / n) for n in names], str(outside)],
    )
    got = lkm(
        "depmod",
        ["--no-cache", "--index-layout=post-order", "-b", str(lroot), kernel_61.version,
         *[str(ldir / n) for n in names], str(outside)],
    )  # fmt: skip
    assert got.status == want.status == 0, got.stderr
    for name in TEXT:
        ours = (ldir / name).read_bytes().replace(str(lroot).encode(), b"ROOT")
        assert ours == (kdir / name).read_bytes().replace(str(kroot).encode(), b"ROOT"), name
    assert (
        b"kernel/drivers/net/ethernet/realtek/8139cp.ko: kernel/drivers/net/mii.ko"
        in (ldir / "modules.dep").read_bytes()
    )
    for bad in (["relative.ko"], ["/nonexistent.ko"]):
        w = kmod("depmod", ["-b", str(kroot), kernel_61.version, *bad])
        g = lkm("depmod", ["-b", str(lroot), kernel_61.version, *bad])
        assert (g.status, g.stderr) == (w.status, w.stderr)


@pytest.mark.parametrize("options", [["-n", "-P", "m"], ["-w"], ["-n", "-v"]], ids=repr)
def test_prefix_warn_verbose(
    kernel_61: KernelFixture, pair: tuple[Path, Path], options: list[str]
) -> None:
    _both(kernel_61, pair, options)


def test_outdir_and_moduledir(kernel_61: KernelFixture, tmp_path: Path) -> None:
    """kmod 34's -o (write elsewhere) and -m (another module directory)."""
    root = tmp_path / "root"
    moddir = tree_copy(kernel_61, root)
    reference = lkm("depmod", ["--no-cache", "-b", str(root), kernel_61.version])
    assert reference.status == 0
    out = tmp_path / "out"
    result = lkm("depmod", ["--no-cache", "-b", str(root), "-o", str(out), kernel_61.version])
    assert result.status == 0
    written = out / "lib" / "modules" / kernel_61.version
    for name in TEXT:
        assert (written / name).read_bytes() == (moddir / name).read_bytes(), name
    alt = tmp_path / "alt"
    (alt / "usr" / "lib" / "modules").mkdir(parents=True)
    moddir.rename(alt / "usr" / "lib" / "modules" / kernel_61.version)
    result = lkm(
        "depmod", ["--no-cache", "-b", str(alt), "-m", "/usr/lib/modules", kernel_61.version]
    )
    assert result.status == 0
    moved = alt / "usr" / "lib" / "modules" / kernel_61.version
    assert (moved / "modules.dep").read_bytes() == (written / "modules.dep").read_bytes()


def test_helper_process_or_not_same_files(
    kernel_61: KernelFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the helper process (the default: it reads half the modules,
    then renders the alias, softdep, weakdep, built-in and devname files)
    and in one process (LKM_JOBS=1), with and without a cache: the same
    files, byte for byte."""
    root = tmp_path / "root"
    tree_copy(kernel_61, root)
    runs: dict[str, dict[str, bytes]] = {}
    for jobs in ("2", "1"):
        monkeypatch.setenv("LKM_JOBS", jobs)
        for cache in (["--no-cache"], ["--cache-dir", str(tmp_path / f"cache-{jobs}")]):
            out = tmp_path / f"out-{jobs}-{len(cache)}"
            args = [*cache, "-b", str(root), "-o", str(out), kernel_61.version]
            assert lkm("depmod", args).status == 0
            written = out / "lib" / "modules" / kernel_61.version
            runs[f"jobs={jobs} {cache[0]}"] = {p.name: p.read_bytes() for p in written.iterdir()}
    first = next(iter(runs.values()))
    assert len(first) >= 11 and first["modules.alias.bin"]
    for name, files in runs.items():
        assert files == first, name
