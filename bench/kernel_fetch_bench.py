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
    args = parser.parse_args()
    wanted = offer(args.series)
    packages = [deb.package for deb in wanted.packages]
    print(f"kernel fetch {args.series or 'default'}: {wanted.release}, {len(packages)} packages")
    scratch = Path(tempfile.mkdtemp(prefix="lkm-fetch-bench-"))
    try:
        (scratch / "lkm").mkdir()
        (scratch / "hand").mkdir()
        lkm_seconds = _lkm(args.series or wanted.release, scratch / "lkm")
        hand_seconds, hand_bytes = _by_hand(packages, wanted.release, scratch / "hand")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    lkm_bytes = wanted.size  # what apt announced and lkm checked it received
    print(f"  {'':40} {'wall s':>8} {'MB downloaded':>14}")
    print(f"  {'lkm kernel fetch':40} {lkm_seconds:8.1f} {lkm_bytes / 1e6:14.1f}")
    label = "apt-get download + dpkg-deb -x + depmod"
    print(f"  {label:40} {hand_seconds:8.1f} {hand_bytes / 1e6:14.1f}")
    print(
        f"  ratio lkm / by hand: time {lkm_seconds / hand_seconds:.2f}, "
        f"bytes {lkm_bytes / hand_bytes:.2f}"
    )


if __name__ == "__main__":
    main()
