"""One cache directory: with ``LKM_CACHE`` set, everything lkm keeps goes there.

A fresh ``LKM_CACHE`` whose kernels and packages are links to the real
cache's (fetching them again would take minutes and a gigabyte): the
fixture fetch finds them there and writes its manifest there, ``lkm build
--kernel`` builds against the headers there, ``lkm try`` boots from there
and keeps its extracted image and KVM answer there, and depmod's cache
lands there. Nothing new appears in the real cache meanwhile.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from conftest import command

from lkm.system.paths import cache_dir
from lkm.testing.debian_kernels import KernelFixture
from lkm.workflows.scaffold import create

LKM = str(Path(sys.executable).with_name("lkm"))
LINKED = ("kernels", "indexed", "recompressed")  # per kernel: one link each
SHARED = ("debs", "apt")  # whole directories


def _linked_cache(real: Path, fresh: Path) -> None:
    for name in LINKED:
        (fresh / name).mkdir(parents=True)
        for entry in (real / name).iterdir():
            (fresh / name / entry.name).symlink_to(entry)
    for name in SHARED:
        if (real / name).exists():
            (fresh / name).symlink_to(real / name)


def _listing(real: Path) -> dict[str, list[str]]:
    """What the real cache holds, a level down (its depmod files included)."""
    return {
        entry.name: sorted(os.listdir(entry)) if entry.is_dir() else [] for entry in real.iterdir()
    }


def test_everything_goes_to_lkm_cache(
    kernel_61: KernelFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Path(cache_dir())
    fresh = tmp_path / "cache"
    _linked_cache(real, fresh)
    before = _listing(real)
    env = dict(os.environ, LKM_CACHE=str(fresh))
    monkeypatch.setenv("LKM_CACHE", str(fresh))

    fetched = command([sys.executable, "-m", "lkm.testing.debian_kernels"], env=env, text=True)
    assert fetched.returncode == 0, fetched.stderr
    manifest = json.loads((fresh / "manifest.json").read_text())
    assert all(k["root"].startswith(f"{fresh}/kernels/") for k in manifest["kernels"])

    create(str(tmp_path / "hello"))
    # The runner's trace shows the headers lkm chose (make itself prints
    # the directory with the links resolved).
    traced = dict(env, LKM_TRACE="1")
    built = command(
        [LKM, "build", str(tmp_path / "hello"), "--kernel", "6.1"], env=traced, text=True
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert (
        f"lkm: + make -C {fresh}/kernels/{kernel_61.version}/usr/src/linux-headers-" in built.stderr
    )
    assert built.stdout.endswith(f"built {tmp_path}/hello/hello.ko for {kernel_61.version}\n")

    tried = command([LKM, "try", str(tmp_path / "hello"), "--kernel", "6.1"], env=env, text=True)
    assert tried.returncode == 0, tried.stdout + tried.stderr
    assert f"against {fresh}/kernels/{kernel_61.version}/" in tried.stdout
    assert list((fresh / "vm").glob("vmlinux-*")) and list((fresh / "kvm-probe").iterdir())

    tree = tmp_path / "tree" / "lib" / "modules" / kernel_61.version
    tree.mkdir(parents=True)
    (tree / "hello.ko").write_bytes((tmp_path / "hello" / "hello.ko").read_bytes())
    indexed = command([LKM, "depmod", "-b", str(tmp_path / "tree"), kernel_61.version], env=env)
    assert indexed.returncode == 0, indexed.stderr
    assert [p.suffix for p in (fresh / "depmod").iterdir()].count(".cache") == 1

    assert _listing(real) == before
