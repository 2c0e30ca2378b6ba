"""lkm depmod vs kmod's depmod on identical copies of the Debian trees.

For each tree (6.1, uncompressed; 6.12, xz): hard-linked copies, kmod's
depmod on one and lkm's on the others, runs interleaved and repeated. Per
lkm, four runs a round: a first run on the tree (default options, the
cache on but empty: what happens after a kernel package is installed),
``--no-cache``, and on copies of their own, a re-run with nothing changed
since the last (warm cache) and a re-run with one module touched. The
best wall time, the best CPU time (user + system of the process and its
helper: two cores must not hide a CPU cost) and the peak memory (max
RSS) of each are printed, with the ratios to kmod's full run and issue
20's targets. Below 1.0 means lkm is faster.
Run through ``./dev bench``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from benchlib import (
    add_also_option,
    compile_lkm,
    kernels_by_label,
    lkms_to_time,
    measured,
    module_files,
    module_tree,
)

from lkm.model.kernels import Kernel
from lkm.system.run import run

Sample = tuple[float, int, float]  # wall seconds, peak RSS in KiB, CPU seconds
# Issue 20's targets (wall time, lkm / kmod), by the run's kind.
TARGETS = {"first run": 0.8, "--no-cache": 0.7, "nothing changed": 0.1}


def _copy(kernel: Kernel, root: Path) -> Path:
    target = root / "lib" / "modules" / kernel.release
    target.parent.mkdir(parents=True)
    run(["cp", "-al", module_tree(kernel), str(target)])
    return target


def _kmod_depmod() -> str:
    for path in ("/usr/sbin/depmod", "/sbin/depmod"):
        if os.path.exists(path):
            return path
    sys.exit("kmod's depmod is not installed (Debian package kmod)")


def _commands(
    lkms: dict[str, str], kernel: Kernel, work: Path
) -> tuple[dict[str, list[str]], list[Path], list[Path]]:
    """Each timed command by name (kmod's, then each lkm's runs), the
    module each lkm's touched re-run sees changed, and the cache
    directories emptied before each round's first runs."""
    kmod_root = work / "kmod"
    _copy(kernel, kmod_root)
    commands = {"kmod": [_kmod_depmod(), "-b", str(kmod_root), kernel.release]}
    touched: list[Path] = []
    cold: list[Path] = []

    # The re-runs have a tree and cache each: a run with nothing changed
    # since the last one leaves the files as they are (see lkm's
    # depmod/state.py), which another run's writes (or its touched
    # module) on the same tree would make a run after a change.
    def copies(kind: str) -> dict[str, Path]:
        return {name: _copy(kernel, work / f"{name}{kind}".replace(" ", "_")) for name in lkms}

    roots, warm_roots, touched_roots = copies(""), copies(" warm"), copies(" touched")
    # Every copy is made before any cache is filled: a hard link made later
    # gives the shared inodes a new ctime, and a cache filled before it
    # would see every module changed once (and report that run's memory).
    for name, lkm in lkms.items():
        slug = name.replace(" ", "_")
        tree = ["-b", str(roots[name].parents[2]), kernel.release]
        first = work / f"{slug}-first-cache"
        cold.append(first)
        commands[f"{name} first run"] = [lkm, "depmod", "--cache-dir", str(first), *tree]
        commands[f"{name} --no-cache"] = [lkm, "depmod", "--no-cache", *tree]
        warm_tree = ["-b", str(warm_roots[name].parents[2]), kernel.release]
        warm = [lkm, "depmod", "--cache-dir", str(work / f"{slug}-cache"), *warm_tree]
        commands[f"{name} nothing changed"] = warm
        moddir = touched_roots[name]
        touched_tree = ["-b", str(moddir.parents[2]), kernel.release]
        touching = [lkm, "depmod", "--cache-dir", str(work / f"{slug}-touched-cache")]
        commands[f"{name} one touched"] = [*touching, *touched_tree]
        measured(warm)  # fills the cache (and the page cache)
        measured(commands[f"{name} one touched"])
        module = next(moddir.rglob("*.ko*"))
        data = module.read_bytes()  # its own inode: the fixture's stays untouched
        module.unlink()
        module.write_bytes(data)
        touched.append(module)
    return commands, touched, cold


def bench(kernel: Kernel, rounds: int, work: Path, lkms: dict[str, str]) -> None:
    commands, touched, cold = _commands(lkms, kernel, work)
    results: dict[str, list[Sample]] = {name: [] for name in commands}
    for _ in range(rounds):
        for cache in cold:
            shutil.rmtree(cache, ignore_errors=True)
        for name, cmd in commands.items():
            if name.endswith("one touched"):
                for module in touched:
                    # A new ctime: a real change for the cache.
                    os.utime(module)
            results[name].append(measured(cmd))
    count = len(module_files(kernel))
    print(f"depmod on {kernel.label} ({kernel.release}, {count} modules), {rounds} rounds")
    for name, samples in results.items():
        wall = min(s[0] for s in samples)
        cpu = min(s[2] for s in samples)
        rss = max(s[1] for s in samples)
        print(f"  {name:26} best {wall:6.3f} s   CPU {cpu:6.3f} s   peak RSS {rss / 1024:6.1f} MiB")
    for name in results:
        if name != "kmod":
            _print_ratio(name, results[name], results["kmod"])


def _print_ratio(name: str, mine: list[Sample], kmod: list[Sample]) -> None:
    ratio = min(s[0] for s in mine) / min(s[0] for s in kmod)
    cpu = min(s[2] for s in mine) / min(s[2] for s in kmod)
    memory = max(s[1] for s in mine) / max(s[1] for s in kmod)
    # This machine's speed drifts from minute to minute: each round's runs
    # follow each other within seconds, so the median of the rounds' own
    # ratios is steadier than a ratio of two minimums.
    paired = statistics.median(a[0] / b[0] for a, b in zip(mine, kmod, strict=True))
    target = next((f" (target <= {t})" for kind, t in TARGETS.items() if kind in name), "")
    print(
        f"ratio {name} / kmod full run: time {ratio:.2f} (best to best), "
        f"{paired:.2f} (median of the rounds){target}, CPU {cpu:.2f}, peak memory {memory:.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("labels", nargs="*", default=["6.1", "6.12"])
    add_also_option(parser)
    args = parser.parse_args()
    compile_lkm()
    lkms = lkms_to_time(args)
    kernels = kernels_by_label()
    for label in args.labels:
        work = Path(tempfile.mkdtemp(prefix="lkm-bench-"))
        try:
            bench(kernels[label], args.rounds, work, lkms)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
