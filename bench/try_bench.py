"""``lkm try`` on the hello template, phase by phase, against the same story
done by hand.

For each cached Debian kernel (amd64), interleaved runs of:

- ``lkm try``: build, boot, load, unload, with the wall time of each
  phase and its share of the whole;
- by hand: ``make -C HEADERS M=DIR modules``, then a boot of the same
  kernel in lkm's VM running ``insmod hello.ko && lsmod && rmmod hello``
  with kmod's tools and ``dmesg`` — what a developer types, without the
  report.

The ratio lkm / by hand is what the report costs. Run through
``./dev bench``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchlib import kernels_by_label

from lkm.model.kernels import Kernel
from lkm.system.run import run
from lkm.vm.boot_kernel import choose_kernel
from lkm.vm.qemu import VmSession
from lkm.workflows.build import find_headers
from lkm.workflows.scaffold import create
from lkm.workflows.try_module import try_module


def _lkm_try(directory: Path, kernel: Kernel) -> dict[str, float]:
    shutil.rmtree(directory, ignore_errors=True)
    create(str(directory))
    started = time.monotonic()
    report = try_module(str(directory), kernel.release, output=lambda line: None)
    if not report.ok:
        raise SystemExit("lkm try failed:\n" + "\n".join(report.lines()))
    phases = dict(report.seconds)
    phases["total"] = time.monotonic() - started
    return phases


def _by_hand(directory: Path, kernel: Kernel) -> dict[str, float]:
    shutil.rmtree(directory, ignore_errors=True)
    create(str(directory))
    headers = find_headers(kernel.release)
    started = time.monotonic()
    run(["make", "-C", headers.path, f"M={directory}", "modules"])
    built = time.monotonic()
    boot = choose_kernel(kernel.release)
    with VmSession(boot.image, boot.modules, boot.release) as vm:
        script = f"insmod {directory}/hello.ko && lsmod && rmmod hello && dmesg | tail -3"
        step = vm.run(script)
        if step.status != 0:
            raise SystemExit("by hand failed:\n" + step.describe())
    done = time.monotonic()
    return {"build": built - started, "boot + load + unload": done - built, "total": done - started}


def _show(name: str, runs: list[dict[str, float]]) -> float:
    total = statistics.median(run["total"] for run in runs)
    print(f"  {name}: median {total:.2f} s over {len(runs)} runs")
    for phase in runs[0]:
        if phase == "total":
            continue
        seconds = statistics.median(run.get(phase, 0.0) for run in runs)
        print(f"    {phase:<22} {seconds:6.2f} s  {100 * seconds / total:5.1f} %")
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    kernels = [k for k in kernels_by_label().values() if k.arch == "amd64" and k.image]
    print("lkm try, hello template: phases, and the same story by hand (make, kmod in the VM)")
    with tempfile.TemporaryDirectory(prefix="lkm-try-bench-") as work:
        for kernel in kernels:
            print(f"\nDebian {kernel.label} ({kernel.release})")
            mine: list[dict[str, float]] = []
            hand: list[dict[str, float]] = []
            for _ in range(options.runs):
                mine.append(_lkm_try(Path(work) / "hello", kernel))
                hand.append(_by_hand(Path(work) / "hello", kernel))
            ours = _show("lkm try", mine)
            theirs = _show("by hand", hand)
            print(f"  ratio lkm try / by hand: {ours / theirs:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
