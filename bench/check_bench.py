"""lkm check's speed on the Debian trees (issue 19's targets).

For each tree: reading the kernel's facts (its ``Module.symvers``,
configuration, one of its modules, and its signing key's certificate from
its image: every signature is verified), then one module checked with the
facts in memory (median over a sample of the tree, target under 50 ms),
then every module of the tree (target for 6.1: under 10 s). There is no
incumbent to compare with: no tool predicts the kernel's verdict. In
this process; run through ``./dev bench``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

from benchlib import kernels_by_label, module_files, module_tree

from lkm.model.kernels import Kernel
from lkm.model.load_check import LOADS, check_module, kernel_facts


def bench(kernel: Kernel, sample: int) -> None:
    assert kernel.headers is not None
    started = time.perf_counter()
    tree, headers, image = module_tree(kernel), kernel.headers, kernel.image
    facts = kernel_facts(kernel.release, kernel.arch, tree, headers, image)
    facts_seconds = time.perf_counter() - started
    files = module_files(kernel)
    each = []
    for path in random.Random(0).sample(files, min(sample, len(files))):
        started = time.perf_counter()
        check_module(path, facts)
        each.append(time.perf_counter() - started)
    started = time.perf_counter()
    verdicts = [check_module(path, facts) for path in files]
    whole = time.perf_counter() - started
    loads = sum(1 for v in verdicts if v.verdict == LOADS)
    print(f"lkm check on {kernel.label} ({kernel.release}, {len(files)} modules):")
    print(f"  the kernel's facts read in {facts_seconds * 1e3:.0f} ms")
    print(
        f"  one module: median {statistics.median(each) * 1e3:.1f} ms, "
        f"max {max(each) * 1e3:.1f} ms over {len(each)} (target < 50 ms)"
    )
    target = " (target < 10 s)" if kernel.label == "6.1" else ""
    print(f"  every module: {whole:.1f} s{target}; {loads} load without taint")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sample", type=int, default=200, help="modules timed one by one")
    parser.add_argument("labels", nargs="*", default=["6.1", "6.12"])
    args = parser.parse_args()
    kernels = kernels_by_label()
    for label in args.labels:
        bench(kernels[label], args.sample)
    return 0


if __name__ == "__main__":
    sys.exit(main())
