"""Incremental depmod: the per-module cache is used only when sound."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_depmod_vs_kmod import BINARY, TEXT, detach, tree_copy

from lkm.testing.debian_kernels import KernelFixture
from lkm.workflows.depmod import DepmodSettings, run_depmod
from lkm.workflows.depmod.cache import cache_path

FILES = (*TEXT, *BINARY, "modules.weakdep")


def _run(root: Path, version: str, cache: Path | None) -> tuple[dict[str, bytes], list[str]]:
    messages: list[str] = []
    settings = DepmodSettings(
        version=version,
        basedir=str(root),
        use_cache=cache is not None,
        cache_dir=str(cache) if cache else None,
    )
    status = run_depmod(settings, lambda level, text: messages.append(f"{level}: {text}")).status
    assert status == 0, messages
    moddir = root / "lib" / "modules" / version
    return {name: (moddir / name).read_bytes() for name in FILES}, messages


def _dummy_becomes_veth(tree: Path) -> None:
    """Replace the dummy module's content (a hard link: write a new file)."""
    dummy = next((tree / "lib").rglob("dummy.ko"))
    dummy.unlink()
    shutil.copy(next((tree / "lib").rglob("veth.ko")), dummy)


def _cache_file(cache: Path, tree: Path, kernel: KernelFixture, suffix: str = "") -> Path:
    moddir = str(tree / "lib" / "modules" / kernel.version)
    return Path(cache_path(str(cache), moddir) + suffix)


def _flip_middle_bit(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :]


def _reads(messages: list[str]) -> str:
    return next(m for m in messages if "lkm cache" in m)


# The part of the 6.1 tree these tests use: copied, not hard-linked. A
# module's identity includes its inode's change time, which any hard link
# made to the fixture's inodes (another test's tree copy, another suite
# running at the same time) moves: shared inodes made every module look
# changed now and then, and the stored facts were never read.
PRIVATE_PARTS = (
    "kernel/drivers/block",
    "kernel/lib",
    "kernel/crypto",
    "kernel/net/802",
    "kernel/net/llc",
    "kernel/drivers/net/dummy.ko",
    "kernel/drivers/net/veth.ko",
    "modules.builtin",
    "modules.builtin.modinfo",
    "modules.order",
)


def private_tree(kernel: KernelFixture, root: Path) -> Path:
    """Part of a kernel's module tree with inodes of its own."""
    target = root / "lib" / "modules" / kernel.version
    for part in PRIVATE_PARTS:
        source = kernel.moddir / part
        (target / part).parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target / part)
        else:
            shutil.copy2(source, target / part)
    return root


def module_count(root: Path) -> int:
    return sum(1 for _ in (root / "lib").rglob("*.ko"))


@pytest.fixture
def tree(kernel_61: KernelFixture, tmp_path: Path) -> Path:
    return private_tree(kernel_61, tmp_path / "root")


def test_touching_one_module_rereads_only_it(
    kernel_61: KernelFixture, tree: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    full, messages = _run(tree, kernel_61.version, cache)
    assert _reads(messages).endswith(f"read {module_count(tree)} of {module_count(tree)} modules")
    loop = detach(next((tree / "lib").rglob("loop.ko")))
    os.utime(loop, (1 << 31, 1 << 31))
    again, messages = _run(tree, kernel_61.version, cache)
    assert _reads(messages).endswith(f"read 1 of {module_count(tree)} modules")
    assert again == full


def test_rendered_outputs_reused_only_when_inputs_match(
    kernel_61: KernelFixture, tree: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first, _ = _run(tree, kernel_61.version, cache)
    moddir = tree / "lib" / "modules" / kernel_61.version
    for name in FILES:
        (moddir / name).unlink()
    again, _ = _run(tree, kernel_61.version, cache)  # outputs from the cache
    assert again == first
    builtin = moddir / "modules.builtin"
    text = builtin.read_text()
    builtin.unlink()  # a hard link: replace, do not edit
    builtin.write_text(text.replace("kernel/mm/zbud.ko\n", ""))
    changed, _ = _run(tree, kernel_61.version, cache)
    assert changed["modules.builtin.bin"] != first["modules.builtin.bin"]
    uncached, _ = _run(tree, kernel_61.version, None)
    assert changed == uncached


def test_changed_module_is_read_again(kernel_61: KernelFixture, tree: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _run(tree, kernel_61.version, cache)
    _dummy_becomes_veth(tree)
    cached, messages = _run(tree, kernel_61.version, cache)
    assert _reads(messages).endswith(f"read 1 of {module_count(tree)} modules")
    uncached, _ = _run(tree, kernel_61.version, None)
    assert cached == uncached
    assert b"alias rtnl-link-veth dummy\n" in cached["modules.alias"]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign", "bitflip"])
def test_bad_cache_is_ignored(
    kernel_61: KernelFixture, tree: Path, tmp_path: Path, damage: str
) -> None:
    cache = tmp_path / "cache"
    full, _ = _run(tree, kernel_61.version, cache)
    moddir = str(tree / "lib" / "modules" / kernel_61.version)
    location = Path(cache_path(str(cache), moddir))
    data = location.read_bytes()
    if damage == "garbage":
        location.write_bytes(b"\x00garbage" * 100)
        Path(f"{location}.out").write_bytes(b"\x00garbage" * 100)
    elif damage == "truncated":
        location.write_bytes(data[: len(data) // 2])
    elif damage == "bitflip":
        location.write_bytes(data[:-100] + bytes([data[-100] ^ 1]) + data[-99:])
        out = Path(f"{location}.out")
        rendered = out.read_bytes()
        out.write_bytes(rendered[:-50] + bytes([rendered[-50] ^ 1]) + rendered[-49:])
    else:
        other = tmp_path / "other"
        private_tree(kernel_61, other)
        shutil.copy(
            location, cache_path(str(cache), str(other / "lib" / "modules" / kernel_61.version))
        )
        _outputs, messages = _run(other, kernel_61.version, cache)
        assert _reads(messages).endswith(
            f"read {module_count(tree)} of {module_count(tree)} modules"
        )
        return
    again, messages = _run(tree, kernel_61.version, cache)
    assert _reads(messages).endswith(f"read {module_count(tree)} of {module_count(tree)} modules")
    assert again == full


def _rendered(messages: list[str]) -> str | None:
    return next((m for m in messages if "lkm cache: render" in m), None)


def test_touched_module_with_same_facts_renders_nothing(
    kernel_61: KernelFixture, tree: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first, messages = _run(tree, kernel_61.version, cache)
    assert _rendered(messages) == "DEBUG: lkm cache: render 8 of 8 output groups"
    loop = detach(next((tree / "lib").rglob("loop.ko")))
    os.utime(loop)
    again, messages = _run(tree, kernel_61.version, cache)
    assert _reads(messages).endswith(f"read 1 of {module_count(tree)} modules")
    assert _rendered(messages) is None  # outputs written from the cache
    assert again == first


def test_changed_module_rerenders_only_the_groups_it_feeds(
    kernel_61: KernelFixture, tree: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    _run(tree, kernel_61.version, cache)
    _dummy_becomes_veth(tree)
    cached, messages = _run(tree, kernel_61.version, cache)
    # Its aliases changed (alias and devname groups); its exports did not.
    rendered = _rendered(messages)
    assert rendered is not None
    count = int(rendered.split("render ")[1].split(" of")[0])
    assert 2 <= count < 8, rendered
    uncached, _ = _run(tree, kernel_61.version, None)
    assert cached == uncached


@pytest.mark.parametrize("damage", ["bitflip", "truncated", "swapped"])
def test_damaged_facts_store_is_not_trusted(
    kernel_61: KernelFixture, tree: Path, tmp_path: Path, damage: str
) -> None:
    cache = tmp_path / "cache"
    first, _ = _run(tree, kernel_61.version, cache)
    store = _cache_file(cache, tree, kernel_61, ".facts")
    data = store.read_bytes()
    if damage == "bitflip":
        store.write_bytes(_flip_middle_bit(data))
    elif damage == "truncated":
        store.write_bytes(data[: len(data) // 2])
    else:  # another run's store: a different token
        _run(tree, kernel_61.version, tmp_path / "other")
        store.write_bytes(_cache_file(tmp_path / "other", tree, kernel_61, ".facts").read_bytes())
    # What another suite running meanwhile does (and what once made every
    # module look changed, so the store was never read): link the
    # fixture's inodes again.
    tree_copy(kernel_61, tmp_path / "elsewhere")
    # A changed module makes the run read the stored facts.
    _dummy_becomes_veth(tree)
    cached, messages = _run(tree, kernel_61.version, cache)
    assert any("stored facts unusable, read again" in m for m in messages)
    uncached, _ = _run(tree, kernel_61.version, None)
    assert cached == uncached
    assert first != cached
