"""lkm modprobe vs kmod's modprobe on the kmod-indexed Debian trees.

Two parts, for each tree (6.1 and 6.12 by default):

1. Per call: ``modprobe -d ROOT -S VERSION -D NAME`` for a few names and
   aliases, lkm's entry script against kmod's binary, runs interleaved and
   repeated; the median wall time of each, the ratio lkm / kmod, and beside
   it the floor no Python tool goes under: the median start-up of
   ``python -I -S -c pass`` and its ratio to kmod. Outputs are checked
   identical first.
2. Throughput: one concrete alias per ``alias`` line of modules.alias
   (``*`` empty, ``?`` as ``0``, a bracket class as its first character;
   negated classes skipped), each resolved to its load list in one Python
   process with the library (``Modprobe.run`` of ``-D -a``: lookups and
   load lists), and to its modules only (``-R -a``). kmod
   runs over the same list with ``-a`` (many names per process, in chunks
   under the argument limit): ``-R -a`` for lookups, ``-D -a`` for load
   lists; and ``-R`` one alias per process on a sample, as a caller
   without ``-a`` pays. Aliases per second for each: lkm's library in one
   pass (tens of seconds; its lookups timed apart), kmod's best of the
   rounds.

Below 1.0 a ratio means lkm is faster. Run through ``./dev bench``.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
from pathlib import Path

from benchlib import (
    add_also_option,
    compile_lkm,
    kernels_by_label,
    lkms_to_time,
    module_tree,
    timed,
    tree_root,
)

from lkm.model.kernels import Kernel
from lkm.system.run import NULL, run

NAMES = ("9p", "ext4", "snd-hda-intel", "fs-9p")
CHUNK = 2000  # aliases per kmod -a process: far below the argument limit


def _kmod_modprobe() -> str:
    for path in ("/usr/sbin/modprobe", "/sbin/modprobe"):
        if os.path.exists(path):
            return path
    sys.exit("kmod's modprobe is not installed (Debian package kmod)")


def _env() -> dict[str, str]:
    # MODPROBE_OPTIONS would change what both tools do.
    return {k: v for k, v in os.environ.items() if k != "MODPROBE_OPTIONS"}


def _output(cmd: list[str], env: dict[str, str]) -> tuple[int, bytes, bytes]:
    done = run(cmd, check=False, env=env)
    return done.status, done.stdout, done.stderr


# -- the aliases of a tree ----------------------------------------------------------


def concrete(pattern: str) -> str | None:
    """One string the pattern matches: ``*`` empty, ``?`` as ``0``, a
    bracket class as its first character; None for a negated class."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            i += 1
        elif c == "?":
            out.append("0")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0 or pattern[i + 1] in "!^":
                return None
            out.append(pattern[i + 1])
            i = end + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def tree_aliases(moddir: Path) -> tuple[list[str], int]:
    """The concrete aliases (first seen order, no repeats) and how many
    lines were skipped."""
    found: dict[str, None] = {}
    skipped = 0
    with open(moddir / "modules.alias", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            words = line.split()
            if len(words) != 3 or words[0] != "alias":
                continue
            alias = concrete(words[1])
            if alias is None or not alias or alias.startswith("-"):
                skipped += 1
                continue
            found.setdefault(alias)
    return list(found), skipped


# -- part 1: one call -----------------------------------------------------------------


def _pci_alias(aliases: list[str]) -> str:
    return next(a for a in aliases if a.startswith("pci:v"))


def per_call(kernel: Kernel, names: list[str], rounds: int, lkms: dict[str, str]) -> None:
    kmod = _kmod_modprobe()
    env = _env()
    base = ["-d", tree_root(kernel), "-S", kernel.release, "-D"]
    floor_cmd = [sys.executable, "-I", "-S", "-c", "pass"]
    tools = {"kmod": [kmod], **{name: [lkm, "modprobe"] for name, lkm in lkms.items()}}
    for name in names:
        theirs = _output([kmod, *base, name], env)
        for tool, argv in tools.items():
            ours = _output([*argv, *base, name], env)
            if ours != theirs:
                sys.exit(
                    f"{tool} and kmod differ on -D {name} ({kernel.label}):\n"
                    f"{tool}:  {ours!r}\nkmod: {theirs!r}"
                )
    samples: dict[str, dict[str, list[float]]] = {n: {t: [] for t in tools} for n in names}
    floor: list[float] = []
    for argv in (floor_cmd, *([*a, *base, names[0]] for a in tools.values())):
        timed(argv, env)  # warm the page cache
    for _ in range(rounds):
        floor.append(timed(floor_cmd, env))
        for name in names:
            for tool, argv in tools.items():
                samples[name][tool].append(timed([*argv, *base, name], env))
    _print_per_call(kernel, rounds, samples, statistics.median(floor))


def _print_per_call(
    kernel: Kernel, rounds: int, samples: dict[str, dict[str, list[float]]], floor: float
) -> None:
    tools = [tool for tool in next(iter(samples.values())) if tool != "kmod"]
    print(f"modprobe -D on {kernel.label} ({kernel.release}), {rounds} rounds, median per call")
    header = "".join(f" {tool:>8} {tool + '/kmod':>12} {tool + '-floor':>12}" for tool in tools)
    print(f"  {'name':42} {'kmod':>8}{header}")
    for name, by_tool in samples.items():
        k = statistics.median(by_tool["kmod"])
        shown = name if len(name) <= 42 else name[:39] + "..."
        row = ""
        for tool in tools:
            m = statistics.median(by_tool[tool])
            row += f" {m * 1e3:6.1f}ms {m / k:12.1f} {(m - floor) * 1e3:10.1f}ms"
        print(f"  {shown:42} {k * 1e3:6.1f}ms{row}")
    print(f"  python -I -S -c pass (start-up floor): {floor * 1e3:.1f} ms")


# -- part 2: throughput -----------------------------------------------------------------


def _library(kernel: Kernel, aliases: list[str]) -> tuple[float, float, float, list[str], int]:
    """The aliases through the library's front door in this process, as
    ``modprobe -R -a`` and ``modprobe -D -a`` walk them: (seconds for the
    load lists, -D; seconds for the lookups alone, -R, on a freshly opened
    tree; the same again on the tree left open, as a daemon serves them;
    the module names -R prints; aliases that resolve to nothing)."""
    from lkm.workflows.modprobe import LOG_TOOL, Modprobe, Request

    clock = time.perf_counter
    names: list[str] = []
    missing: list[str] = []

    def report(priority: int, text: str) -> None:
        if priority == LOG_TOOL:
            missing.append(text)

    start = clock()
    # The configuration kmod reads too: modprobe.d, modules.softdep, cmdline.
    with Modprobe.for_system(tree_root(kernel), kernel.release, report=report) as modprobe:
        modprobe.run(Request(lookup_only=True, use_all=True), aliases, names.append)
        lookups = clock() - start
        start = clock()
        modprobe.run(Request(lookup_only=True, use_all=True), aliases, lambda _line: None)
        open_lookups = clock() - start
    start = clock()
    with Modprobe.for_system(
        tree_root(kernel), kernel.release, report=lambda _p, _t: None, show=lambda _s: None
    ) as modprobe:
        modprobe.run(Request(show_depends=True, dry_run=True, use_all=True), aliases, print)
    return clock() - start, lookups, open_lookups, [n.rstrip("\n") for n in names], len(missing)


def _kmod_all(kmod: str, kernel: Kernel, flag: str, aliases: list[str]) -> tuple[float, bytes]:
    env = _env()
    out: list[bytes] = []
    start = time.perf_counter()
    for i in range(0, len(aliases), CHUNK):
        cmd = [kmod, "-d", tree_root(kernel), "-S", kernel.release, flag, "-a"]
        done = run([*cmd, *aliases[i : i + CHUNK]], check=False, stderr=NULL, env=env)
        out.append(done.stdout)
    return time.perf_counter() - start, b"".join(out)


def throughput(kernel: Kernel, rounds: int, sample: int, every: int) -> None:
    kmod = _kmod_modprobe()
    env = _env()
    aliases, skipped = tree_aliases(Path(module_tree(kernel)))
    aliases = aliases[::every]
    n = len(aliases)
    best: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, seconds), seconds)

    # Each round opens the tree afresh: every round pays for decoding the
    # index and compiling its patterns, as each kmod process does.
    for _ in range(rounds):
        gc.collect()  # the last round's caches, not this round's cost
        full, lookups, open_lookups, names, missing = _library(kernel, aliases)
        keep("lkm library, lookup + load list", full)
        keep("lkm library, lookup only", lookups)
        keep("lkm library, lookup only, tree open", open_lookups)
    kmod_r = b""
    for _ in range(rounds):
        seconds, kmod_r = _kmod_all(kmod, kernel, "-R", aliases)
        keep("kmod -R -a (lookup only)", seconds)
        seconds, _ = _kmod_all(kmod, kernel, "-D", aliases)
        keep("kmod -D -a (lookup + load list)", seconds)
    # One alias per process, as a caller without -a runs it.
    picked = random.Random(0).sample(aliases, min(sample, n))
    base = [kmod, "-d", tree_root(kernel), "-S", kernel.release, "-R"]
    start = time.perf_counter()
    for alias in picked:
        run([*base, alias], check=False, stdout=NULL, stderr=NULL, env=env)
    per_process = (time.perf_counter() - start) / len(picked)

    same = "identical" if "".join(f"{m}\n" for m in names).encode() == kmod_r else "DIFFERENT"
    print(
        f"alias throughput on {kernel.label}: {n} aliases from modules.alias"
        f"{'' if every == 1 else f' (every {every}th)'} "
        f"({skipped} negated classes skipped, {missing} resolve to nothing);\n"
        f"  lkm: in this process, the tree opened afresh each round; kmod: chunks of {CHUNK}"
        f" per process; best of {rounds} each"
    )
    print(f"  lkm lookups vs kmod -R -a: {same}")
    for name, seconds in best.items():
        print(f"  {name:36} {seconds:7.3f} s   {n / seconds:9.0f} aliases/s")
    print(
        f"  {'kmod -R, one process per alias':36} {per_process * 1e3:7.2f} ms/alias "
        f"{1 / per_process:6.0f} aliases/s (sample of {len(picked)})"
    )
    for ours, theirs in (
        ("lkm library, lookup + load list", "kmod -D -a (lookup + load list)"),
        ("lkm library, lookup only", "kmod -R -a (lookup only)"),
        ("lkm library, lookup only, tree open", "kmod -R -a (lookup only)"),
    ):
        target = " (issue 18's target: <= 1.0)" if "lookup only" in ours else ""
        print(f"ratio {ours} / {theirs} (time): {best[ours] / best[theirs]:.2f}{target}")
    ratio = best["lkm library, lookup only"] / n / per_process
    print(f"ratio lkm library lookup / kmod -R one process per alias (time): {ratio:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30, help="per-call repetitions")
    parser.add_argument("--throughput-rounds", type=int, default=3)
    parser.add_argument("--sample", type=int, default=300, help="aliases for kmod one per process")
    parser.add_argument(
        "--every", type=int, default=1, help="throughput over every Nth alias (default: all)"
    )
    parser.add_argument(
        "--throughput-only", action="store_true", help="part 2 only (alias resolution)"
    )
    parser.add_argument("labels", nargs="*", default=["6.1", "6.12"])
    add_also_option(parser)
    args = parser.parse_args()
    compile_lkm()
    lkms = lkms_to_time(args)
    kernels = kernels_by_label()
    for label in args.labels:
        kernel = kernels[label]
        aliases, _ = tree_aliases(Path(module_tree(kernel)))
        if not args.throughput_only:
            per_call(kernel, [*NAMES, _pci_alias(aliases)], args.rounds, lkms)
        throughput(kernel, args.throughput_rounds, args.sample, args.every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
