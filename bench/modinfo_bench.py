"""lkm modinfo vs kmod's modinfo over every module of the Debian 6.1 tree.

One process each, the same file list, runs interleaved and repeated; the
best wall time of each is compared (the least disturbed run: this machine
shares its cores). Prints the times and the ratio lkm / kmod: below 1.0
means lkm is faster. Run through ``./dev bench``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys

from benchlib import add_also_option, kernels_by_label, lkms_to_time, module_files, timed


def _kmod_modinfo() -> str:
    for path in ("/usr/sbin/modinfo", "/sbin/modinfo"):
        if os.path.exists(path):
            return path
    found = shutil.which("modinfo")
    if found is None:
        sys.exit("kmod's modinfo is not installed (Debian package kmod)")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--label", default="6.1", help="cached kernel (default 6.1)")
    add_also_option(parser)
    args = parser.parse_args()
    kernel = kernels_by_label().get(args.label)
    if kernel is None:
        sys.exit(f"no cached kernel {args.label}: run ./dev fixtures")
    files = module_files(kernel)
    lkms = lkms_to_time(args)
    env = dict(os.environ)
    single = dict(env, LKM_JOBS="1")
    commands = {"kmod modinfo": ([_kmod_modinfo(), *files], env)}
    for name, lkm in lkms.items():
        commands[f"{name} modinfo"] = ([lkm, "modinfo", *files], env)
        commands[f"{name} modinfo, LKM_JOBS=1"] = ([lkm, "modinfo", *files], single)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for cmd, cmd_env in commands.values():  # warm the page cache
        timed(cmd, cmd_env)
    for _ in range(args.rounds):
        for name, (cmd, cmd_env) in commands.items():
            times[name].append(timed(cmd, cmd_env))
    print(f"modinfo over {len(files)} modules of {kernel.release}, {args.rounds} rounds")
    for name, samples in times.items():
        print(f"  {name:30} best {min(samples):.3f} s   median {statistics.median(samples):.3f} s")
    kmod_best = min(times["kmod modinfo"])
    for name in times:
        if name != "kmod modinfo":
            print(f"ratio {name} / kmod (best wall time): {min(times[name]) / kmod_best:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
