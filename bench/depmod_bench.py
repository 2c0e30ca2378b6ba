"""lkm depmod vs kmod's depmod on identical copies of the Debian trees.

For each tree (6.1, uncompressed; 6.12, xz): two hard-linked copies, kmod's
depmod on one and lkm's on the other, runs interleaved and repeated; the
best wall time of each and the peak memory (max RSS, from GNU time) are
printed with the ratio lkm / kmod. Then lkm's incremental re-run (warm
cache, one module touched) against kmod's full run. Below 1.0 means lkm
is faster. Run through ``./dev bench``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import compile_lkm, fixtures_by_label

from lkm.testing.debian_kernels import KernelFixture


def _measure(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and max RSS in KiB of one command: the clock around
    the process, the RSS from its own rusage (GNU time's %e has only
    10 ms steps, a few percent of a run here)."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            errors.seek(0)
            sys.exit(f"failed: {' '.join(cmd)}\n{errors.read().decode(errors='replace')}")
    return wall, usage.ru_maxrss


def _copy(kernel: KernelFixture, root: Path) -> Path:
    target = root / "lib" / "modules" / kernel.version
    target.parent.mkdir(parents=True)
    subprocess.run(["cp", "-al", str(kernel.moddir), str(target)], check=True)
    return target


def _kmod_depmod() -> str:
    for path in ("/usr/sbin/depmod", "/sbin/depmod"):
        if os.path.exists(path):
            return path
    sys.exit("kmod's depmod is not installed (Debian package kmod)")


def bench(kernel: KernelFixture, rounds: int, work: Path) -> None:
    kmod_root, lkm_root, cache = work / "kmod", work / "lkm", work / "cache"
    _copy(kernel, kmod_root)
    moddir = _copy(kernel, lkm_root)
    lkm = str(Path(sys.executable).with_name("lkm"))
    kmod_cmd = [_kmod_depmod(), "-b", str(kmod_root), kernel.version]
    lkm_cold = [lkm, "depmod", "--no-cache", "-b", str(lkm_root), kernel.version]
    lkm_warm = [lkm, "depmod", "--cache-dir", str(cache), "-b", str(lkm_root), kernel.version]
    results: dict[str, list[tuple[float, int]]] = {"kmod": [], "lkm": [], "lkm incremental": []}
    _measure(lkm_warm)  # fills the cache (and the page cache)
    touched = next(moddir.rglob("*.ko*"))
    data = touched.read_bytes()  # its own inode: the fixture's stays untouched
    touched.unlink()
    touched.write_bytes(data)
    for _ in range(rounds):
        results["kmod"].append(_measure(kmod_cmd))
        results["lkm"].append(_measure(lkm_cold))
        # Touching gives the file a new ctime: a real change for the cache.
        os.utime(touched)
        results["lkm incremental"].append(_measure(lkm_warm))
    count = len(kernel.modules())
    print(f"depmod on {kernel.label} ({kernel.version}, {count} modules), {rounds} rounds")
    for name, samples in results.items():
        best = min(s[0] for s in samples)
        rss = max(s[1] for s in samples)
        print(f"  {name:16} best {best:6.3f} s   peak RSS {rss / 1024:6.1f} MiB")
    kmod_best = min(s[0] for s in results["kmod"])
    kmod_rss = max(s[1] for s in results["kmod"])
    for name in ("lkm", "lkm incremental"):
        ratio = min(s[0] for s in results[name]) / kmod_best
        memory = max(s[1] for s in results[name]) / kmod_rss
        # This machine's speed drifts from minute to minute: each round's
        # runs follow each other within a second, so the median of the
        # rounds' own ratios is steadier than a ratio of two minimums.
        paired = statistics.median(
            lkm[0] / kmod[0] for lkm, kmod in zip(results[name], results["kmod"], strict=True)
        )
        print(
            f"ratio {name} / kmod full run: time {ratio:.2f} (best to best), "
            f"{paired:.2f} (median of the rounds), peak memory {memory:.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("labels", nargs="*", default=["6.1", "6.12"])
    args = parser.parse_args()
    compile_lkm()
    kernels = fixtures_by_label()
    for label in args.labels:
        work = Path(tempfile.mkdtemp(prefix="lkm-bench-"))
        try:
            bench(kernels[label], args.rounds, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
