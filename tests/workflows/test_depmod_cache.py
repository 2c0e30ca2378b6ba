"""Incremental depmod: the per-module cache is used only when sound."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
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


def test_a_module_replaced_during_a_first_run_is_read_again(
    kernel_61: KernelFixture, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first run caches each module under its identity from before the
    # scan: dummy.ko replaced after it was read (while the run resolves)
    # must not be cached with the old file's facts.
    import lkm.workflows.depmod.run as depmod_run

    resolve = depmod_run.resolve

    def replace_then_resolve(*args: object, **kwargs: object) -> object:
        _dummy_becomes_veth(tree)
        return resolve(*args, **kwargs)  # type: ignore[arg-type]

    cache = tmp_path / "cache"
    with monkeypatch.context() as patched:
        patched.setattr(depmod_run, "resolve", replace_then_resolve)
        _, messages = _run(tree, kernel_61.version, cache)
    assert any("lkm cache: first run" in m for m in messages), messages
    cached, messages = _run(tree, kernel_61.version, cache)
    assert _reads(messages).endswith(f"read 1 of {module_count(tree)} modules")
    assert cached == _run(tree, kernel_61.version, None)[0]
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
    assert "first run" in _reads(messages)  # made as --no-cache makes them, then cached
    assert _rendered(messages) is None
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


# -- a bounded cache, in a place that suits how depmod is run -----------------


def _tree_files(cache: Path, moddir: Path | str, sizes: int, *, version: str | None = None) -> Path:
    """A tree's index (a header as lkm writes it), store and outputs of
    ``sizes`` bytes each; the index's path."""
    from lkm import __version__
    from lkm.workflows.depmod.cache import FORMAT, MAGIC

    index = Path(cache_path(str(cache), str(moddir)))
    header = f"{FORMAT} index {version or __version__} {moddir}\n".encode()
    index.write_bytes(MAGIC + header + b"\0" * sizes)
    for suffix in (".facts", ".out"):
        Path(f"{index}.{suffix.lstrip('.')}").write_bytes(b"\0" * sizes)
    return index


def test_prune_drops_what_no_run_uses_then_the_least_recently_used(tmp_path: Path) -> None:
    from lkm.workflows.depmod.cache import STALE_TEMPORARY, prune

    cache = tmp_path / "cache"
    cache.mkdir()
    trees = {name: tmp_path / name for name in ("old", "recent", "current")}
    for path in trees.values():
        path.mkdir()
    mib = 1 << 20
    index = {name: _tree_files(cache, path, mib) for name, path in trees.items()}
    gone = _tree_files(cache, tmp_path / "removed-tree", mib)
    foreign = _tree_files(cache, tmp_path / "other", mib, version="0.0.0-other")
    (tmp_path / "other").mkdir()
    orphan = Path(cache_path(str(cache), "/no/index")).with_suffix(".cache.facts")
    orphan.write_bytes(b"x")
    stale_tmp = Path(f"{index['old']}.facts.123.tmp")
    fresh_tmp = Path(f"{index['recent']}.out.456.tmp")
    for temporary in (stale_tmp, fresh_tmp):
        temporary.write_bytes(b"partial")
    unrelated = [cache / "notes.tmp", cache / "x.cache", cache / "README"]
    for path in unrelated:
        path.write_bytes(b"not lkm's")
    hour_ago = time.time() - STALE_TEMPORARY - 60
    os.utime(stale_tmp, (hour_ago, hour_ago))
    os.utime(unrelated[0], (hour_ago, hour_ago))
    os.utime(index["old"], (hour_ago, hour_ago))  # used least recently
    # Three live trees of 3 MiB each, room for two: the oldest goes.
    removed = prune(str(cache), str(index["current"]), max_bytes=7 * mib)
    left = {path.name for path in cache.iterdir()}
    assert left == {
        *(p.name for p in unrelated),
        fresh_tmp.name,
        *(f"{index[n].name}{s}" for n in ("recent", "current") for s in ("", ".facts", ".out")),
    }
    assert {gone.name, foreign.name, orphan.name, stale_tmp.name, index["old"].name} <= set(removed)
    # The tree in use is kept whatever the bound.
    prune(str(cache), str(index["current"]), max_bytes=0)
    assert index["current"].exists() and not index["recent"].exists()


def test_a_run_bounds_the_cache_and_marks_its_tree_used(
    tree: Path, tmp_path: Path, kernel_61: KernelFixture
) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "cache"
    cache.mkdir()
    stale = _tree_files(cache, tmp_path / "a-tree-since-removed", 1 << 20)
    _run(tree, kernel_61.version, cache)
    index = _cache_file(cache, tree, kernel_61)
    assert index.exists() and not stale.exists()
    long_ago = time.time() - 86400
    os.utime(index, (long_ago, long_ago))
    _, messages = _run(tree, kernel_61.version, cache)  # nothing changed, nothing written
    assert _reads(messages).endswith(f"read 0 of {module_count(tree)} modules")
    assert index.stat().st_mtime > long_ago + 3600


def test_slashes_before_the_tree_share_its_cache(
    tree: Path, tmp_path: Path, kernel_61: KernelFixture
) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "cache"
    _run(tree, kernel_61.version, cache)
    messages: list[str] = []
    settings = DepmodSettings(version=kernel_61.version, basedir=f"/{tree}", cache_dir=str(cache))
    assert run_depmod(settings, lambda level, text: messages.append(f"{level}: {text}")).status == 0
    assert _reads(messages).endswith(f"read 0 of {module_count(tree)} modules")


_WHERE = """
import json, sys
from lkm.workflows.depmod.cache import default_cache_dir
print(json.dumps([default_cache_dir(b) for b in sys.argv[1:]]))
"""


def _default_places(tmp_path: Path, *, user: bool, lkm_cache: bool) -> list[str | None]:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home")}
    if lkm_cache:
        env["LKM_CACHE"] = str(tmp_path / "lkm-cache")
    argv = [sys.executable, "-c", _WHERE, "", "/", "/srv/image"]
    if user:  # Debian's nobody: what a package build or a user runs as
        argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    places: list[str | None] = json.loads(done.stdout)
    return places


def test_default_cache_places(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    # root: the system's trees in /var/cache; another root (an image) nowhere
    assert _default_places(tmp_path, user=False, lkm_cache=False) == [
        "/var/cache/lkm/depmod",
        "/var/cache/lkm/depmod",
        None,
    ]
    # anyone else: their own cache, whatever the tree
    assert (
        _default_places(tmp_path, user=True, lkm_cache=False) == [f"{home}/.cache/lkm/depmod"] * 3
    )
    # LKM_CACHE: where the caller put lkm's cache, for every tree
    chosen = str(tmp_path / "lkm-cache" / "depmod")
    assert _default_places(tmp_path, user=False, lkm_cache=True) == [chosen] * 3


def test_root_indexing_an_image_writes_no_cache(
    tree: Path, tmp_path: Path, kernel_61: KernelFixture
) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("LKM_CACHE", "XDG_CACHE_HOME")}
    env["HOME"] = str(home)
    lkm_path = str(Path(sys.executable).with_name("lkm"))
    done = subprocess.run(
        [lkm_path, "depmod", "-b", str(tree), kernel_61.version], env=env, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    assert (tree / "lib" / "modules" / kernel_61.version / "modules.dep").exists()
    assert list(home.iterdir()) == []  # nothing in root's home


def test_a_run_checking_crcs_does_not_use_a_first_runs_lean_facts(
    kernel_61: KernelFixture, tree: Path, tmp_path: Path
) -> None:
    """A first run stores facts read for dependencies only (no CRCs);
    ``-e -E`` with that cache reads the modules again, says what an
    uncached run says, and leaves full facts for the runs after it."""
    cache = tmp_path / "cache"
    _run(tree, kernel_61.version, cache)
    lines = (kernel_61.headers / "Module.symvers").read_text().splitlines(keepends=True)
    symvers = tmp_path / "Module.symvers"
    # Every 50th CRC wrong: warnings only the modules' own CRCs give.
    symvers.write_text(
        "".join(
            "0xdeadbeef" + line[line.index("\t") :] if i % 50 == 0 else line
            for i, line in enumerate(lines)
        )
    )

    def checked(use: Path | None) -> list[str]:
        messages: list[str] = []
        settings = DepmodSettings(
            version=kernel_61.version,
            basedir=str(tree),
            print_unknown=True,
            symvers=str(symvers),
            use_cache=use is not None,
            cache_dir=str(use) if use else None,
        )
        status = run_depmod(settings, lambda level, text: messages.append(f"{level}: {text}"))
        assert status.status == 0
        return messages

    def said(messages: list[str]) -> list[str]:
        return [m for m in messages if "lkm cache" not in m]

    with_cache, uncached = said(checked(cache)), said(checked(None))
    assert with_cache == uncached
    assert sum("disagrees about version" in m for m in uncached) > 5
    # The facts stored now have CRCs: the same check again reads nothing.
    assert _reads(checked(cache)).endswith(f"read 0 of {module_count(tree)} modules")


# -- a re-run that finds every input and output as it was writes nothing -----

CURRENT = "nothing written"  # the debug note of a run that found its files current


def _settled(tree: Path) -> Path:
    """Wait until the tree's files are older than a run's racy margin (a
    file changed right before a run may change while it reads it: such a
    run saves no state)."""
    from lkm.workflows.depmod.state import RACY_NS

    time.sleep(RACY_NS / 1e9 + 0.05)
    return tree


def _identities(moddir: Path) -> dict[str, tuple[int, int]]:
    return {name: ((s := (moddir / name).stat()).st_ino, s.st_mtime_ns) for name in FILES}


def _change(change: str, moddir: Path, cache: Path, config: Path) -> None:
    if change == "output removed":
        (moddir / "modules.alias.bin").unlink()
    elif change == "module added":
        shutil.copy(moddir / "kernel/drivers/net/veth.ko", moddir / "kernel/lib/veth2.ko")
    elif change == "module rewritten in place":
        dummy = moddir / "kernel/drivers/net/dummy.ko"
        with dummy.open("r+b") as f:  # same inode, same directory
            f.write((moddir / "kernel/drivers/net/veth.ko").read_bytes())
    elif change == "modules.order":
        order = moddir / "modules.order"
        order.write_text("".join(reversed(order.read_text().splitlines(keepends=True))))
    elif change == "top-level file":
        (moddir / "README").write_text("not a module\n")
    elif change == "configuration":
        config.write_text("exclude dummy.ko\n")
    elif change == "state damaged":
        state = next(cache.glob("*.state"))
        state.write_bytes(_flip_middle_bit(state.read_bytes()))


@pytest.mark.parametrize(
    "change",
    [
        "nothing",
        "output removed",
        "module added",
        "module rewritten in place",
        "modules.order",
        "top-level file",
        "configuration",
        "state damaged",
    ],
)
def test_a_rerun_writes_nothing_only_when_nothing_changed(
    kernel_61: KernelFixture, tree: Path, tmp_path: Path, change: str
) -> None:
    cache, config = tmp_path / "cache", tmp_path / "depmod.conf"
    config.write_text("")
    moddir = tree / "lib" / "modules" / kernel_61.version
    _settled(tree)

    def depmod(use: Path | None) -> tuple[dict[str, bytes], list[str]]:
        messages: list[str] = []
        settings = DepmodSettings(
            version=kernel_61.version,
            basedir=str(tree),
            config=(str(config),),
            use_cache=use is not None,
            cache_dir=str(use) if use else None,
        )
        assert run_depmod(settings, lambda lvl, text: messages.append(f"{lvl}: {text}")).status == 0
        return {name: (moddir / name).read_bytes() for name in FILES}, messages

    first, messages = depmod(cache)  # a first run saves the state too
    written = _identities(moddir)
    again, messages = depmod(cache)
    assert any(CURRENT in m for m in messages)
    assert _reads(messages).endswith(f"read 0 of {module_count(tree)} modules")
    assert again == first and _identities(moddir) == written  # not even rewritten
    _change(change, moddir, cache, config)
    cached, messages = depmod(cache)
    assert any(CURRENT in m for m in messages) == (change == "nothing"), messages
    uncached, _ = depmod(None)
    assert cached == uncached
    if change in ("module added", "module rewritten in place", "modules.order", "configuration"):
        assert cached != first
    if change in ("output removed", "top-level file", "state damaged"):
        _settled(tree)
        depmod(cache)  # saves the state again
        assert any(CURRENT in m for m in depmod(cache)[1])
