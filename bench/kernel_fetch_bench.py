"""``lkm kernel fetch SERIES`` against the same work done by hand.

In one run, into fresh temporary directories:

- lkm: ``lkm kernel fetch SERIES`` into an empty ``LKM_CACHE`` (apt
  resolves the packages, downloads them, they are unpacked, the headers
  repaired, the module tree indexed by lkm's depmod);
- by hand: ``apt-get download`` of the same packages, ``dpkg-deb -x`` of
  each, kmod's ``depmod -b``.

Prints the wall time and the bytes downloaded of each and their ratio.
Both download the same files from the same mirror, so the network's
speed shows in both; run it twice to see it settle. Run through
``./dev bench`` (or ``python bench/kernel_fetch_bench.py 6.12``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from lkm.system.run import run
from lkm.workflows.kernel_store import offer

LKM = str(Path(sys.executable).with_name("lkm"))


def _tree_bytes(path: Path, suffix: str) -> int:
    return sum(p.stat().st_size for p in path.rglob(f"*{suffix}") if p.is_file())


def _lkm(series: str, scratch: Path) -> float:
    cache = scratch / "lkm-cache"
    started = time.monotonic()
    run([LKM, "kernel", "fetch", series], env=dict(os.environ, LKM_CACHE=str(cache)))
    return time.monotonic() - started


def _by_hand(packages: list[str], release: str, scratch: Path) -> tuple[float, int]:
    debs = scratch / "debs"
    root = scratch / "root"
    debs.mkdir()
    root.mkdir()
    started = time.monotonic()
    run(["apt-get", "-o", "APT::Sandbox::User=root", "download", *packages], cwd=str(debs))
    for deb in sorted(debs.glob("*.deb")):
        run(["dpkg-deb", "-x", str(deb), str(root)])
    run(["depmod", "-b", str(root), release])
    elapsed = time.monotonic() - started
    return elapsed, _tree_bytes(debs, ".deb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("series", nargs="?", default=None, help="default: Debian's default kernel")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    args = parser.parse_args()
    wanted = offer(args.series)
    packages = [deb.package for deb in wanted.packages]
    print(f"kernel fetch {args.series or 'default'}: {wanted.release}, {len(packages)} packages")
    lkm_times: list[float] = []
    hand_times: list[float] = []
    hand_bytes = 0
    for round_number in range(args.rounds):
        scratch = Path(tempfile.mkdtemp(prefix="lkm-fetch-bench-"))
        try:
            (scratch / "lkm").mkdir()
            (scratch / "hand").mkdir()
            # Alternate who goes first: the machine's speed drifts.
            if round_number % 2:
                hand_seconds, hand_bytes = _by_hand(packages, wanted.release, scratch / "hand")
                lkm_times.append(_lkm(args.series or wanted.release, scratch / "lkm"))
            else:
                lkm_times.append(_lkm(args.series or wanted.release, scratch / "lkm"))
                hand_seconds, hand_bytes = _by_hand(packages, wanted.release, scratch / "hand")
            hand_times.append(hand_seconds)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    lkm_bytes = wanted.size  # what apt announced and lkm checked it received
    label = "apt-get download + dpkg-deb -x + depmod"
    print(f"  {'':40} {'best s':>8} {'median s':>9} {'MB downloaded':>14}")
    for name, times, size in (
        ("lkm kernel fetch", lkm_times, lkm_bytes),
        (label, hand_times, hand_bytes),
    ):
        print(f"  {name:40} {min(times):8.1f} {statistics.median(times):9.1f} {size / 1e6:14.1f}")
    ratios = [lkm / hand for lkm, hand in zip(lkm_times, hand_times, strict=True)]
    print(
        f"  ratio lkm / by hand: best {min(lkm_times) / min(hand_times):.2f}, "
        f"median of rounds {statistics.median(ratios):.2f}, bytes {lkm_bytes / hand_bytes:.2f}"
    )


if __name__ == "__main__":
    main()
