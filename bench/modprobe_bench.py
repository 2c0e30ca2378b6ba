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
   process with the library (``Resolver.lookup`` + ``Engine.probe_list``,
   what ``-D`` lists), and to its modules only (what ``-R`` prints). kmod
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
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import compile_lkm, fixtures_by_label

from lkm.testing.debian_kernels import KernelFixture

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


def _time(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def _output(cmd: list[str], env: dict[str, str]) -> tuple[int, bytes, bytes]:
    proc = subprocess.run(cmd, capture_output=True, env=env)
    return proc.returncode, proc.stdout, proc.stderr


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


def per_call(kernel: KernelFixture, names: list[str], rounds: int) -> None:
    kmod = _kmod_modprobe()
    lkm = str(Path(sys.executable).with_name("lkm"))
    env = _env()
    base = ["-d", kernel.indexed_root, "-S", kernel.version, "-D"]
    floor_cmd = [sys.executable, "-I", "-S", "-c", "pass"]
    for name in names:
        ours, theirs = (
            _output([lkm, "modprobe", *base, name], env),
            _output([kmod, *base, name], env),
        )
        if ours != theirs:
            sys.exit(
                f"lkm and kmod differ on -D {name} ({kernel.label}):\n"
                f"lkm:  {ours!r}\nkmod: {theirs!r}"
            )
    samples: dict[str, dict[str, list[float]]] = {n: {"kmod": [], "lkm": []} for n in names}
    floor: list[float] = []
    for cmd in (floor_cmd, [lkm, "modprobe", *base, names[0]], [kmod, *base, names[0]]):
        _time(cmd, env)  # warm the page cache
    for _ in range(rounds):
        floor.append(_time(floor_cmd, env))
        for name in names:
            samples[name]["kmod"].append(_time([kmod, *base, name], env))
            samples[name]["lkm"].append(_time([lkm, "modprobe", *base, name], env))
    fl = statistics.median(floor)
    print(f"modprobe -D on {kernel.label} ({kernel.version}), {rounds} rounds, median per call")
    print(
        f"  {'name':42} {'kmod':>8} {'lkm':>8} {'lkm/kmod':>9} {'floor/kmod':>11} {'lkm-floor':>10}"
    )
    for name in names:
        k = statistics.median(samples[name]["kmod"])
        m = statistics.median(samples[name]["lkm"])
        shown = name if len(name) <= 42 else name[:39] + "..."
        print(
            f"  {shown:42} {k * 1e3:6.1f}ms {m * 1e3:6.1f}ms {m / k:9.1f} {fl / k:11.1f}"
            f" {(m - fl) * 1e3:8.1f}ms"
        )
    print(f"  python -I -S -c pass (start-up floor): {fl * 1e3:.1f} ms")


# -- part 2: throughput -----------------------------------------------------------------


def _library(kernel: KernelFixture, aliases: list[str]) -> tuple[float, float, list[str], int]:
    """One pass over the aliases in this process, as one run would: (seconds
    in all, set-up and lookups and load lists; seconds in the lookups alone;
    the module names the lookups found, as -R -a prints them; aliases that
    resolve to nothing). One pass, not two, to stay in the time budget: a
    lookup costs about a millisecond."""
    from lkm.errors import AliasError
    from lkm.model.moddir import ModuleDirectory
    from lkm.model.modprobe_config import DEFAULT_PATHS, read_config
    from lkm.workflows.modprobe import Engine, RecordingActions, Resolver, SimulatedKernel

    moddir = str(kernel.indexed_moddir)
    try:
        with open("/proc/cmdline", encoding="utf-8", errors="surrogateescape") as f:
            cmdline: str | None = f.read()
    except OSError:
        cmdline = None
    clock = time.perf_counter
    names: list[str] = []
    missing = 0
    in_lookups = 0.0
    start = clock()
    # The configuration kmod reads too: modprobe.d, modules.softdep, cmdline.
    config = read_config(moddir, list(DEFAULT_PATHS), cmdline)
    with ModuleDirectory(moddir) as directory:
        resolver = Resolver(directory, config)
        state = SimulatedKernel()
        engine = Engine(resolver, state, RecordingActions(state, resolver))
        for alias in aliases:
            before = clock()
            try:
                modules = resolver.lookup(alias)
            except AliasError:
                modules = []
            in_lookups += clock() - before
            if not modules:
                missing += 1
            for module in modules:
                names.append(module.name)
                engine.probe_list(module, False)
    return clock() - start, in_lookups, names, missing


def _kmod_all(
    kmod: str, kernel: KernelFixture, flag: str, aliases: list[str]
) -> tuple[float, bytes]:
    env = _env()
    out: list[bytes] = []
    start = time.perf_counter()
    for i in range(0, len(aliases), CHUNK):
        cmd = [kmod, "-d", kernel.indexed_root, "-S", kernel.version, flag, "-a"]
        proc = subprocess.run(
            [*cmd, *aliases[i : i + CHUNK]],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        out.append(proc.stdout)
    return time.perf_counter() - start, b"".join(out)


def throughput(kernel: KernelFixture, rounds: int, sample: int, every: int) -> None:
    kmod = _kmod_modprobe()
    env = _env()
    aliases, skipped = tree_aliases(kernel.indexed_moddir)
    aliases = aliases[::every]
    n = len(aliases)
    best: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, seconds), seconds)

    # lkm's pass takes tens of seconds: once is enough, and all the budget allows.
    full, lookups, names, missing = _library(kernel, aliases)
    best["lkm library, lookup + load list"] = full
    best["lkm library, lookup only"] = lookups
    kmod_r = b""
    for _ in range(rounds):
        seconds, kmod_r = _kmod_all(kmod, kernel, "-R", aliases)
        keep("kmod -R -a (lookup only)", seconds)
        seconds, _ = _kmod_all(kmod, kernel, "-D", aliases)
        keep("kmod -D -a (lookup + load list)", seconds)
    # One alias per process, as a caller without -a runs it.
    picked = random.Random(0).sample(aliases, min(sample, n))
    base = [kmod, "-d", kernel.indexed_root, "-S", kernel.version, "-R"]
    start = time.perf_counter()
    for alias in picked:
        subprocess.run(
            [*base, alias], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
    per_process = (time.perf_counter() - start) / len(picked)

    same = "identical" if "".join(f"{m}\n" for m in names).encode() == kmod_r else "DIFFERENT"
    print(
        f"alias throughput on {kernel.label}: {n} aliases from modules.alias"
        f"{'' if every == 1 else f' (every {every}th)'} "
        f"({skipped} negated classes skipped, {missing} resolve to nothing);\n"
        f"  lkm: one pass in this process; kmod: chunks of {CHUNK} per process, best of {rounds}"
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
    ):
        print(f"ratio {ours} / {theirs} (time): {best[ours] / best[theirs]:.2f}")
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
    parser.add_argument("labels", nargs="*", default=["6.1", "6.12"])
    args = parser.parse_args()
    compile_lkm()
    kernels = fixtures_by_label()
    for label in args.labels:
        kernel = kernels[label]
        aliases, _ = tree_aliases(kernel.indexed_moddir)
        per_call(kernel, [*NAMES, _pci_alias(aliases)], args.rounds)
        throughput(kernel, args.throughput_rounds, args.sample, args.every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
