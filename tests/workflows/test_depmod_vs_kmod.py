"""``lkm depmod`` against kmod's depmod on the real Debian trees.

kmod's outputs come from the fixture step (kmod's depmod over a
hard-linked copy of each tree). lkm indexes another hard-linked copy: in
post-order mode every file must equal kmod 30's byte for byte; in the
default pre-order mode every text file must, and every index must hold the
same keys and values. Deliberate difference (kmod 34 behaviour): lkm also
writes ``modules.weakdep``, and ``-n`` prints its header.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import INDEX_BINARY_FILES, INDEX_TEXT_FILES, command, kmod, lkm

from lkm.formats.kmod_index import KmodIndex
from lkm.testing.debian_kernels import KernelFixture

TEXT, BINARY = INDEX_TEXT_FILES, INDEX_BINARY_FILES
LABELS = ["6.1", "6.12", "6.1-s390x", "6.1-armhf"]


# What depmod writes; the fixture trees hold lkm's (lkm kernel fetch
# indexes what it unpacks), which a copy for a depmod test must not have.
DEPMOD_OUTPUTS = (
    *TEXT,
    *BINARY,
    "modules.weakdep",
    "modules.builtin.alias.bin",
    "modules.builtin.bin",
)


def tree_copy(kernel: KernelFixture, root: Path) -> Path:
    """Hard-linked copy of a kernel's unpacked module tree, without
    depmod's outputs: the tree as the packages left it."""
    target = root / "lib" / "modules" / kernel.version
    target.parent.mkdir(parents=True)
    command(["cp", "-al", str(kernel.moddir), str(target)], check=True)
    for name in DEPMOD_OUTPUTS:
        (target / name).unlink(missing_ok=True)
    return target


def detach(path: Path) -> Path:
    """Give a hard-linked file its own inode, so changing its times or
    content cannot reach the shared fixture."""
    data = path.read_bytes()
    path.unlink()
    path.write_bytes(data)
    return path


def _kernel(kernels: list[KernelFixture], label: str) -> KernelFixture:
    return next(k for k in kernels if k.label == label)


@pytest.mark.parametrize("label", LABELS)
def test_post_order_equals_kmod_30(
    kernels: list[KernelFixture], label: str, tmp_path: Path, report
) -> None:  # type: ignore[no-untyped-def]
    kernel = _kernel(kernels, label)
    moddir = tree_copy(kernel, tmp_path / "root")
    args = [
        "--index-layout=post-order",
        "--cache-dir",
        str(tmp_path / "cache"),
        "-b",
        str(tmp_path / "root"),
        kernel.version,
    ]
    result = lkm("depmod", args)
    assert result.status == 0 and result.stderr == b"", result.stderr[:2000]
    for name in TEXT + BINARY:
        assert (moddir / name).read_bytes() == (kernel.indexed_moddir / name).read_bytes(), name
    weakdep = (moddir / "modules.weakdep").read_bytes()
    assert weakdep.startswith(b"# Weak dependencies extracted from modules themselves.\n")
    modules = len((moddir / "modules.dep").read_text().splitlines())
    files = len(TEXT + BINARY)
    report(f"depmod post-order on {label}: {files} files byte-identical, {modules} modules")


@pytest.mark.parametrize("label", ["6.1", "6.12"])
def test_pre_order_same_answers(
    kernels: list[KernelFixture], label: str, tmp_path: Path, report
) -> None:  # type: ignore[no-untyped-def]
    kernel = _kernel(kernels, label)
    moddir = tree_copy(kernel, tmp_path / "root")
    result = lkm(
        "depmod",
        ["--cache-dir", str(tmp_path / "cache"), "-b", str(tmp_path / "root"), kernel.version],
    )
    assert result.status == 0, result.stderr
    keys = 0
    for name in TEXT:
        assert (moddir / name).read_bytes() == (kernel.indexed_moddir / name).read_bytes(), name
    for name in BINARY:
        ours = list(KmodIndex((moddir / name).read_bytes(), name).items())
        theirs = list(KmodIndex((kernel.indexed_moddir / name).read_bytes(), name).items())
        assert ours == theirs, name
        keys += len(ours)
    # Spot checks through kmod's own tools reading lkm's pre-order files.
    root = str(tmp_path / "root")
    for name in ("loop", "btrfs", "ext4", "snd_hda_intel", "nvme"):
        want = kmod("modprobe", ["-d", str(kernel.indexed_root), "-S", kernel.version, "-D", name])
        got = kmod("modprobe", ["-d", root, "-S", kernel.version, "-D", name])
        assert got.stdout.replace(root.encode(), b"ROOT") == want.stdout.replace(
            kernel.indexed_root.encode(), b"ROOT"
        ), name
    modinfo = kmod(
        "modinfo", ["-b", root, "-k", kernel.version, "-F", "name", "block-major-7-0", "fs-vfat"]
    )
    assert modinfo.stdout == b"loop\nvfat\n"
    report(f"depmod pre-order on {label}: {keys} index keys answer like kmod's")


def test_dry_run_prints_the_text_files(kernel_61: KernelFixture, tmp_path: Path) -> None:
    tree_copy(kernel_61, tmp_path / "root")
    args = ["-n", "-b", str(tmp_path / "root"), kernel_61.version]
    want, got = kmod("depmod", args), lkm("depmod", [*args, "--no-cache"])
    header = b"# Weak dependencies extracted from modules themselves.\n"
    assert got.status == want.status == 0
    assert got.stdout.replace(header, b"") == want.stdout
    assert got.stdout.count(header) == 1
    assert not list((tmp_path / "root").rglob("modules.dep"))


@pytest.fixture(scope="module")
def scenario(
    kernel_61: KernelFixture, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, Path]:
    """Two identical trees with updates/, extra/, an external dir and a depmod.d."""
    base = tmp_path_factory.mktemp("scenario")
    roots = []
    for name in ("kmod", "lkm"):
        root = base / name
        moddir = tree_copy(kernel_61, root)
        updates = moddir / "updates"
        extra = moddir / "extra"
        for directory in (updates, extra, moddir / "misc", moddir / "skipme"):
            directory.mkdir()
        loop = next(p for p in kernel_61.modules() if p.name == "loop.ko")
        veth = next(p for p in kernel_61.modules() if p.name == "veth.ko")
        dummy = next(p for p in kernel_61.modules() if p.name == "dummy.ko")
        nbd = next(p for p in kernel_61.modules() if p.name == "nbd.ko")
        shutil.copy(loop, updates / "loop.ko")  # shadows kernel/drivers/block/loop.ko
        shutil.copy(veth, extra / "veth-extra.ko")  # not in modules.order
        shutil.copy(dummy, moddir / "misc" / "dummy.ko")  # override target
        shutil.copy(nbd, moddir / "skipme" / "nbd.ko")  # excluded
        roots.append(root)
    external = base / "external"
    external.mkdir()
    tun = next(p for p in kernel_61.modules() if p.name == "tun.ko")
    shutil.copy(tun, external / "tun.ko")
    config = base / "depmod.d"
    config.mkdir()
    (config / "10-lkm.conf").write_text(
        "# search order\n"
        "search updates external built-in\n"
        f"override dummy {kernel_61.version.split('-')[0].replace('.', chr(92) + '.')}.* misc\n"
        f"external * {external}\n"
        "exclude skipme\n"
        "bogus line\n"
    )
    (config / "20-other.conf").write_text("override veth * nowhere\nsearch extra\n")
    return roots[0], roots[1], config


def test_updates_extra_external_and_config(
    kernel_61: KernelFixture, scenario: tuple[Path, Path, Path], tmp_path: Path, report
) -> None:  # type: ignore[no-untyped-def]
    kmod_root, lkm_root, config = scenario
    version = kernel_61.version
    want = kmod("depmod", ["-C", str(config), "-b", str(kmod_root), version])
    got = lkm(
        "depmod",
        [
            "--index-layout=post-order",
            "--cache-dir",
            str(tmp_path),
            "-C",
            str(config),
            "-b",
            str(lkm_root),
            version,
        ],
    )
    assert got.status == want.status == 0
    assert got.stderr.replace(str(lkm_root).encode(), b"ROOT") == want.stderr.replace(
        str(kmod_root).encode(), b"ROOT"
    )
    kmod_dir = kmod_root / "lib" / "modules" / version
    lkm_dir = lkm_root / "lib" / "modules" / version
    for name in TEXT + BINARY:
        ours = (lkm_dir / name).read_bytes().replace(str(lkm_root).encode(), b"ROOT")
        theirs = (kmod_dir / name).read_bytes().replace(str(kmod_root).encode(), b"ROOT")
        if name.endswith(".bin") and len(str(lkm_root)) != len(str(kmod_root)):
            ours = bytes(len(ours))  # absolute paths change offsets: compare keys instead
            theirs = bytes(len(ours))
        assert ours == theirs, name
    dep = (lkm_dir / "modules.dep").read_text()
    assert "updates/loop.ko:" in dep and "kernel/drivers/block/loop.ko" not in dep
    assert "extra/veth-extra.ko:" in dep and "misc/dummy.ko:" in dep
    assert "skipme" not in dep and "/external/tun.ko:" in dep
    report("depmod with updates/, extra/, external, override, exclude, search: all files identical")
