"""Killing depmod while it writes never leaves a half-written index.

Each file goes through a temporary file and a rename, so after a kill at
any moment every index is either the complete old one or the complete new
one. The test kills a real ``lkm depmod`` process at random moments, many
times, and checks exactly that.
"""

from __future__ import annotations

import random
import shutil
import sys
import time
from pathlib import Path

from test_depmod_vs_kmod import tree_copy

from lkm.system.run import NULL, Process, start
from lkm.testing.debian_kernels import KernelFixture
from lkm.workflows.depmod import OUTPUT_FILES

FILES = OUTPUT_FILES
ROUNDS = 12


def _depmod(root: Path, version: str, cache: Path) -> Process:
    cmd = [
        sys.executable,
        "-m",
        "lkm",
        "depmod",
        "--cache-dir",
        str(cache),
        "-b",
        str(root),
        version,
    ]
    return start(cmd, stdout=NULL, stderr=NULL)


def _snapshot(moddir: Path) -> dict[str, bytes]:
    return {name: (moddir / name).read_bytes() for name in FILES}


def _restore(moddir: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (moddir / f"{name}.restore").write_bytes(data)
        (moddir / f"{name}.restore").rename(moddir / name)


def test_kill_at_random_moments(kernel_61: KernelFixture, tmp_path: Path, report) -> None:  # type: ignore[no-untyped-def]
    root, cache = tmp_path / "root", tmp_path / "cache"
    moddir = tree_copy(kernel_61, root)
    assert _depmod(root, kernel_61.version, cache).wait() == 0
    old = _snapshot(moddir)
    # The new state: one more module, so every index changes.
    (moddir / "extra").mkdir()
    shutil.copy(
        next(p for p in kernel_61.modules() if p.name == "loop.ko"), moddir / "extra" / "loopy.ko"
    )
    start = time.monotonic()
    assert _depmod(root, kernel_61.version, cache).wait() == 0
    duration = time.monotonic() - start
    new = _snapshot(moddir)
    changed = ("modules.dep", "modules.dep.bin", "modules.alias", "modules.alias.bin")
    assert all(old[name] != new[name] for name in changed)
    rng = random.Random(20261122)
    outcomes = {"old": 0, "new": 0, "mixed": 0}
    for _ in range(ROUNDS):
        _restore(moddir, old)
        process = _depmod(root, kernel_61.version, cache)
        time.sleep(rng.uniform(0.2, 1.3) * duration)
        process.kill()  # SIGKILL, then reaped
        states = set()
        for name in FILES:
            data = (moddir / name).read_bytes()
            assert data in (old[name], new[name]), f"{name} is neither the old nor the new index"
            states.add("old" if data == old[name] else "new")
        outcomes["mixed" if len(states) > 1 else states.pop()] += 1
        for stray in moddir.glob("modules.*.*.*.*"):
            stray.unlink()  # a killed run may leave its temporary file
    report(f"depmod killed {ROUNDS} times at random moments: {outcomes}, never a partial index")
