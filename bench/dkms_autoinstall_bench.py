"""``lkm dkms autoinstall`` against Debian's ``dkms autoinstall`` (3.0.10)
on real bookworm ``*-dkms`` packages for the Debian 6.1 and 6.12 kernels.

In one run, in a fresh temporary directory:

- the packages are downloaded (``apt-get download``) and unpacked
  (``dpkg-deb -x``), never installed; each tool gets its own state tree
  (``--dkmstree``), source tree (``--sourcetree``), signing key
  (``mok_signing_key``/``mok_certificate``) and copy of both kernels'
  module trees (module files hard linked, the rest copied, indexed by
  kmod's ``depmod -b`` beforehand so both start from the same state), and
  each tool ``add``s every package (not timed);
- timed, wall clock around the processes: dkms's ``autoinstall -k V -j N``
  once per kernel (dkms takes one kernel per call; ``-j`` goes to make, N
  defaults to the CPU count), lkm's ``autoinstall -k V1 -k V2 -j N`` in
  one call (N jobs in all, over package/kernel pairs);
- the same again with nothing changed (a second run: dkms builds the pairs
  that failed again; the count of builds shows whether lkm does), then once
  more on the kernels where the first run installed every package (a
  second run with nothing to build);
- which package/kernel pairs each tool installed, as real ``dkms status``
  reads each tree, and the module files each placed.

Rounds (``--rounds``, default 2) start from fresh trees and alternate which
tool goes first; the wall times, the CPU time of each tool's process tree
(user + system: what the machine's other load does not change much) and
the ratio lkm / dkms are printed per round, then the median ratio.

Both tools find a kernel's headers at ``/lib/modules/V/build`` (a single
``--kernelsourcedir`` would serve every ``-k`` of lkm's one call) and dkms
chooses the compression of what it installs from
``/lib/modules/V/modules.dep``. So each tool runs in a private mount
namespace (``unshare -m``) in which its own copy of the trees is
``/lib/modules``: an overlay on ``/usr/lib`` whose upper layer is in the
temporary directory gives the mount point (this host has no
``/lib/modules``). Nothing outside the temporary directory is written: in
its namespace dkms runs its own ``depmod -a V`` on its copy and makes
``.ko.xz`` files for 6.12 as on an installed system; lkm runs its own
depmod with ``LKM_CACHE`` in the temporary directory (a cold cache). The
namespace costs a few milliseconds per call, printed, and is in every time.

``make`` is found through a wrapper on PATH that logs its arguments, so the
bench counts the builds each run started (a top-level make carries the
``KERNELRELEASE=V`` both tools insert, dkms's after ``-jN``). Some packages
fail to compile against 6.12: that is expected, and both tools should fail
the same ones.

lkm runs from a byte-compiled copy of its package taken at the start
(PYTHONPATH), so edits to src/ during the minutes this takes do not reach
it. Run with ``python bench/dkms_autoinstall_bench.py`` (as root; minutes per
round: these are real compiles, and the machine's other load shows in both
wall times). Exits 1 when the tools did not install the same pairs/files.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from lkm.records import Record
from lkm.system.run import run, start
from lkm.testing.debian_kernels import KernelFixture, load_manifest

LKM = str(Path(sys.executable).with_name("lkm"))
# AUTOINSTALL=yes packages of different shapes: an array MAKE with
# BUILD_EXCLUSIVE_CONFIG, bash logic sourcing the kernel's .config, three
# modules with mixed locations, a plain MAKE with KERNEL_TREE, a Makefile
# that finds the headers through /lib/modules/$(KVERSION)/build itself.
PACKAGES = (
    "acpi-call-dkms",
    "v4l2loopback-dkms",
    "tp-smapi-dkms",
    "dm-writeboost-dkms",
    "digimend-dkms",
)
LABELS = ("6.1", "6.12")
# Run in a new mount namespace: $1 the overlay's directory, $2 the module
# trees to show as /lib/modules (a link to /usr/lib here), then the command.
NAMESPACE_SCRIPT = """set -e
mount -t overlay overlay -o "lowerdir=/usr/lib,upperdir=$1/upper,workdir=$1/work" /usr/lib
mkdir -p /usr/lib/modules
mount --bind "$2" /usr/lib/modules
shift 2
exec "$@"
"""
MAKE_WRAPPER = """#!/bin/sh
echo "$*" >> "$BENCH_MAKE_LOG"
exec {make} "$@"
"""
# A build's top-level make: both tools insert KERNELRELEASE after a leading
# "make", dkms with -jN before it (lkm's makes share its jobserver through
# MAKEFLAGS, as kbuild's sub-makes get theirs).
_TOP_MAKE = re.compile(r"^(-j\S* )?KERNELRELEASE=", re.M)
# dkms status: "acpi-call/1.2.2, 6.1.0-57-amd64, x86_64: installed"
_STATUS = re.compile(r"^([^,]+), ([^,]+), [^:]+: installed", re.M)


def say(line: str) -> None:
    print(line, flush=True)


class Timing(Record):
    """One timed step of one tool: its calls' wall time and CPU time (its
    whole process tree's, user and system), worst exit status, builds
    started and the lines it wrote to stderr."""

    seconds: float
    cpu: float
    status: int
    calls: int
    builds: int
    errors: tuple[str, ...]


class Side:
    """One tool's trees, key and namespace overlay, under ``base``."""

    def __init__(self, base: Path, kernels: Sequence[KernelFixture], sources: list[Path]) -> None:
        self.base = base
        self.tree = base / "dkms"
        self.src = base / "src"
        self.modules = base / "root" / "lib" / "modules"
        self.overlay = base / "overlay"
        self.cache = base / "lkm-cache"
        for directory in (self.tree, self.modules, self.overlay / "upper", self.overlay / "work"):
            directory.mkdir(parents=True)
        self.cache.mkdir()
        self.src.mkdir()
        for source in sources:
            shutil.copytree(source, self.src / source.name, symlinks=True)
        for kernel in kernels:
            _copy_module_tree(kernel, self.modules / kernel.version)

    def env(self, make_log: Path, bin_dir: Path) -> dict[str, str]:
        return dict(
            os.environ,
            PATH=f"{bin_dir}:{os.environ['PATH']}",
            BENCH_MAKE_LOG=str(make_log),
            LKM_CACHE=str(self.cache),
            mok_signing_key=str(self.base / "mok.key"),
            mok_certificate=str(self.base / "mok.pub"),
        )

    def trees(self) -> list[str]:
        return ["--dkmstree", str(self.tree), "--sourcetree", str(self.src)]

    def inside(self, cmd: Sequence[str]) -> list[str]:
        """``cmd`` run where this side's module trees are /lib/modules."""
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            NAMESPACE_SCRIPT,
            "sh",
            str(self.overlay),
            str(self.modules),
            *cmd,
        ]

    def placed(self) -> set[str]:
        """Module files installed outside the kernel's own (``V/updates/…``)."""
        return {
            str(path.relative_to(self.modules))
            for path in self.modules.glob("*/updates/**/*.ko*")
            if path.is_file()
        }


def _copy_module_tree(kernel: KernelFixture, target: Path) -> None:
    """The kernel's module tree: module files hard linked (neither tool
    writes them), the rest copied, ``build``/``source`` pointing at the
    cached headers, indexed afresh by kmod's depmod."""

    def link_or_copy(src: str, dst: str) -> None:
        if ".ko" in os.path.basename(src):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    shutil.copytree(kernel.moddir, target, symlinks=True, copy_function=link_or_copy)
    common = kernel.headers.with_name(re.sub(r"-[^-]+$", "-common", kernel.headers.name))
    for name, points_to in (("build", kernel.headers), ("source", common)):
        (target / name).unlink(missing_ok=True)
        (target / name).symlink_to(points_to)
    run(["depmod", "-b", str(target.parents[2]), kernel.version])


def _sign_file(kernel: KernelFixture) -> str:
    found = sorted(Path(kernel.root).glob("usr/lib/linux-kbuild-*/scripts/sign-file"))
    if not found:
        sys.exit(f"the kernel fixture {kernel.version} has no kbuild sign-file")
    return str(found[0])


def _unpack(packages: Sequence[str], where: Path) -> list[Path]:
    """Each package's /usr/src/NAME-VERSION, from its .deb."""
    debs = where / "debs"
    root = where / "unpacked"
    debs.mkdir()
    run(["apt-get", "-o", "APT::Sandbox::User=root", "download", *packages], cwd=str(debs))
    for deb in sorted(debs.glob("*.deb")):
        run(["dpkg-deb", "-x", str(deb), str(root)])
    found = sorted(conf.parent for conf in (root / "usr" / "src").glob("*/dkms.conf"))
    if len(found) != len(packages):
        sys.exit(f"expected {len(packages)} dkms sources, found {[p.name for p in found]}")
    return found


def _module_version(source: Path) -> str:
    """NAME/VERSION from the source directory's NAME-VERSION."""
    return "/".join(source.name.rsplit("-", 1))


def _real_dkms(where: Path) -> str:
    """A copy of Debian's dkms script, taken now: ``/usr/sbin/dkms`` may be
    diverted to lkm (Debian's own client test does so for a while, and this
    machine is shared), so the diversion's true name is read and the
    script checked and copied before anything is timed."""
    path = shutil.which("dkms")
    if shutil.which("dpkg-divert") is not None:
        path = run(["dpkg-divert", "--truename", "/usr/sbin/dkms"]).text.strip()
    if path is None or not os.path.isfile(path):
        sys.exit("Debian's dkms is not installed (apt-get install --no-install-recommends dkms)")
    with open(path, "rb") as script:
        head = script.read(4096)
    if not head.startswith(b"#!/bin/bash") or b"Dynamic Kernel Module Support" not in head:
        sys.exit(f"{path} is not Debian's dkms script")
    copy = where / "real-dkms" / "dkms"
    copy.parent.mkdir()
    shutil.copy2(path, copy)
    return str(copy)


def _make_wrapper(where: Path) -> Path:
    make = shutil.which("make")
    if make is None:
        sys.exit("make is not installed")
    bin_dir = where / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "make"
    wrapper.write_text(MAKE_WRAPPER.format(make=make))
    wrapper.chmod(0o755)
    return bin_dir


def _timed(
    commands: Sequence[tuple[Sequence[str], Mapping[str, str]]], logs: Path, make_log: Path
) -> Timing:
    """Run the commands (each with its environment) one after another,
    their output to files beside ``logs``."""
    make_log.unlink(missing_ok=True)
    statuses = []
    errors: list[str] = []
    seconds = cpu = 0.0
    for number, (cmd, env) in enumerate(commands):
        out, err = logs.with_suffix(f".{number}.out"), logs.with_suffix(f".{number}.err")
        with out.open("wb") as stdout, err.open("wb") as stderr:
            started = time.monotonic()
            with start(cmd, stdout=stdout.fileno(), stderr=stderr.fileno(), env=env) as process:
                status, usage = process.wait_with_usage()
            seconds += time.monotonic() - started
        # wait4's usage counts the process and every descendant it waited for.
        cpu += usage.ru_utime + usage.ru_stime
        statuses.append(status)
        errors += [line for line in err.read_text(errors="replace").splitlines() if line]
    builds = len(_TOP_MAKE.findall(make_log.read_text())) if make_log.exists() else 0
    worst = max(statuses, key=abs)
    return Timing(seconds, cpu, worst, len(commands), builds, tuple(errors))


class Round:
    """One round: both sides, fresh, and the commands timed on them."""

    def __init__(
        self, work: Path, kernels: Sequence[KernelFixture], sources: list[Path], jobs: str
    ) -> None:
        work.mkdir(parents=True)
        self.kernels = kernels
        self.jobs = jobs
        self.dkms_path = _real_dkms(work)
        self.bin_dir = _make_wrapper(work)
        self.logs = work / "logs"
        self.logs.mkdir()
        self.dkms = Side(work / "dkms-side", kernels, sources)
        self.lkm = Side(work / "lkm-side", kernels, sources)
        self.names = [_module_version(source) for source in sources]
        for side, tool in ((self.dkms, [self.dkms_path]), (self.lkm, [LKM, "dkms"])):
            for name in self.names:
                env = side.env(self.logs / "add.make", self.bin_dir)
                run(side.inside([*tool, "add", name, *side.trees()]), env=env)

    def run_dkms(self, label: str, kernels: Sequence[KernelFixture]) -> Timing:
        """dkms's autoinstall, one call per kernel (it takes one)."""
        side = self.dkms
        make_log = self.logs / f"{label}.make"
        commands = []
        for k in kernels:
            cmd = [self.dkms_path, "autoinstall", "-k", k.version, "-j", self.jobs, *side.trees()]
            # dkms guesses /usr/lib/linux-kbuild-SERIES for sign-file, which
            # 6.12's packages do not use: name the kernel's own, as the tests do.
            env = dict(side.env(make_log, self.bin_dir), sign_file=_sign_file(k))
            commands.append((side.inside(cmd), env))
        return _timed(commands, self.logs / label, make_log)

    def run_lkm(self, label: str, kernels: Sequence[KernelFixture]) -> Timing:
        """lkm's autoinstall, every kernel in one call."""
        side = self.lkm
        each = [arg for k in kernels for arg in ("-k", k.version)]
        cmd = side.inside([LKM, "dkms", "autoinstall", *each, "-j", self.jobs, *side.trees()])
        make_log = self.logs / f"{label}.make"
        return _timed([(cmd, side.env(make_log, self.bin_dir))], self.logs / label, make_log)

    def installed(self, side: Side) -> set[tuple[str, str]]:
        """(NAME/VERSION, kernel) pairs installed, as real dkms reads the tree."""
        env = side.env(self.logs / "status.make", self.bin_dir)
        done = run(side.inside([self.dkms_path, "status", *side.trees()]), env=env)
        return {(m.group(1), m.group(2)) for m in _STATUS.finditer(done.text)}

    def namespace_cost(self) -> float:
        started = time.monotonic()
        run(self.lkm.inside(["true"]))
        return time.monotonic() - started


class Result(Record):
    """What one round measured (``idle``: the kernels on which run 1
    installed every package, run again: a second run with no build)."""

    dkms_1: Timing
    lkm_1: Timing
    dkms_2: Timing
    lkm_2: Timing
    idle_kernels: tuple[str, ...]
    dkms_idle: Timing | None
    lkm_idle: Timing | None
    agree: bool
    load: float  # the load average (1 min) when the round began

    @property
    def ratio(self) -> float:
        return self.lkm_1.seconds / self.dkms_1.seconds

    @property
    def valid(self) -> bool:
        """Both first runs ended as autoinstall does (0, or 11: some pair
        failed): anything else (lkm's "internal error" while its sources
        are being edited, say) stopped a run early and its time means nothing."""
        return self.dkms_1.status in (0, 11) and self.lkm_1.status in (0, 11)


def _line(name: str, timing: Timing) -> str:
    calls = "1 call" if timing.calls == 1 else f"{timing.calls} calls"
    return (
        f"  {name:30} {timing.seconds:7.2f} s   CPU {timing.cpu:7.2f} s   "
        f"{calls}, {timing.builds} builds, exit status {timing.status}"
    )


def _first_run(bench: Round, lkm_first: bool) -> tuple[Timing, Timing]:
    results: dict[str, Timing] = {}
    for tool in ("lkm", "dkms") if lkm_first else ("dkms", "lkm"):
        say(f"  run 1: {tool} autoinstall (building)…")
        if tool == "dkms":
            timing = bench.run_dkms("dkms-1", bench.kernels)
        else:
            timing = bench.run_lkm("lkm-1", bench.kernels)
        say(f"    {tool}: {timing.seconds:.1f} s, exit status {timing.status}")
        results[tool] = timing
    return results["dkms"], results["lkm"]


def _agreement(bench: Round) -> tuple[bool, set[tuple[str, str]]]:
    """Whether both tools installed the same pairs and placed the same
    files (said, with the differences), and lkm's installed pairs."""
    by_dkms, by_lkm = bench.installed(bench.dkms), bench.installed(bench.lkm)
    placed_dkms, placed_lkm = bench.dkms.placed(), bench.lkm.placed()
    pairs = len(bench.names) * len(bench.kernels)
    say(
        f"  installed package/kernel pairs (of {pairs}): dkms {len(by_dkms)}, lkm {len(by_lkm)}; "
        f"not installed: dkms {pairs - len(by_dkms)}, lkm {pairs - len(by_lkm)}"
    )
    for kernel in bench.kernels:
        ours = sorted(m for m, k in by_lkm if k == kernel.version)
        say(f"    {kernel.version}: {', '.join(ours) or 'none'}")
    same_pairs, same_files = by_dkms == by_lkm, placed_dkms == placed_lkm
    say(
        f"  agreement: installed pairs {'same' if same_pairs else 'DIFFER'}, "
        f"module files placed ({len(placed_lkm)}) {'same' if same_files else 'DIFFER'}"
    )
    for only, names in (
        ("only dkms", placed_dkms - placed_lkm),
        ("only lkm", placed_lkm - placed_dkms),
    ):
        for name in sorted(names):
            say(f"    {only}: {name}")
    for only, found in (("only dkms", by_dkms - by_lkm), ("only lkm", by_lkm - by_dkms)):
        for module, release in sorted(found):
            say(f"    {only} installed: {module} for {release}")
    return same_pairs and same_files, by_lkm


def one_round(
    work: Path, kernels: Sequence[KernelFixture], sources: list[Path], jobs: str, lkm_first: bool
) -> Result:
    say("  copying and indexing the module trees (kmod depmod -b), adding the packages…")
    bench = Round(work, kernels, sources, jobs)
    load = os.getloadavg()[0]
    say(f"  load average {load:.2f} on {os.cpu_count()} CPUs")
    dkms_1, lkm_1 = _first_run(bench, lkm_first)
    say("  run 2 (nothing changed): dkms, then lkm…")
    dkms_2, lkm_2 = bench.run_dkms("dkms-2", kernels), bench.run_lkm("lkm-2", kernels)
    for name, timing in (("run 1", lkm_1), ("run 2", lkm_2)):
        for line in timing.errors:
            say(f"  lkm {name}: {line}")
    agree, by_lkm = _agreement(bench)
    idle = [k for k in kernels if all((name, k.version) in by_lkm for name in bench.names)]
    dkms_idle = lkm_idle = None
    if idle:
        say(f"  run 2 again on {', '.join(k.version for k in idle)} only (nothing to build)…")
        dkms_idle, lkm_idle = bench.run_dkms("dkms-idle", idle), bench.run_lkm("lkm-idle", idle)
    versions = tuple(k.version for k in idle)
    result = Result(dkms_1, lkm_1, dkms_2, lkm_2, versions, dkms_idle, lkm_idle, agree, load)
    _print_round(result, bench.namespace_cost())
    return result


def _print_round(result: Result, cost: float) -> None:
    say(f"  times (each includes ~{cost * 1000:.0f} ms of namespace set-up per call):")
    say(_line("dkms autoinstall, run 1", result.dkms_1))
    say(_line("lkm dkms autoinstall, run 1", result.lkm_1))
    say(
        f"    ratio lkm / dkms: wall {result.ratio:.2f} (target ≤ 0.6), "
        f"CPU {result.lkm_1.cpu / result.dkms_1.cpu:.2f}"
    )
    say(_line("dkms autoinstall, run 2", result.dkms_2))
    say(_line("lkm dkms autoinstall, run 2", result.lkm_2))
    if result.dkms_idle is not None and result.lkm_idle is not None:
        which = ", ".join(result.idle_kernels)
        say(_line(f"dkms, run 2 on {len(result.idle_kernels)} kernel(s)", result.dkms_idle))
        say(_line(f"lkm, run 2 on {len(result.idle_kernels)} kernel(s)", result.lkm_idle))
        say(f"    ({which}: every package installed in run 1)")


def compare(work: Path, packages: Sequence[str], jobs: str, rounds: int, keep: bool) -> bool:
    kernels = _kernels()
    say(f"downloading and unpacking {len(packages)} packages…")
    sources = _unpack(packages, work)
    names = ", ".join(_module_version(source) for source in sources)
    versions = ", ".join(k.version for k in kernels)
    say(f"dkms autoinstall of {names} for {versions}, -j {jobs}, {rounds} round(s)")
    results: list[Result] = []
    for number in range(rounds):
        # Alternate who goes first: the machine's speed drifts.
        lkm_first = number % 2 == 0
        say(f"round {number + 1} ({'lkm' if lkm_first else 'dkms'} first):")
        directory = work / f"round-{number + 1}"
        results.append(one_round(directory, kernels, sources, jobs, lkm_first))
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)
    _summary(results)
    return all(result.agree for result in results if result.valid)


def _summary(results: list[Result]) -> None:
    say(f"summary over {len(results)} round(s), load average now {os.getloadavg()[0]:.2f}:")
    for number, result in enumerate(results, 1):
        if not result.valid:
            say(
                f"  round {number} not counted: dkms exited {result.dkms_1.status}, "
                f"lkm {result.lkm_1.status} in the first run"
            )
    results = [result for result in results if result.valid]
    if not results:
        return
    ratios = [result.ratio for result in results]
    say(
        f"  first run, lkm / dkms wall time: {', '.join(f'{r:.2f}' for r in ratios)} "
        f"(median {statistics.median(ratios):.2f}; target ≤ 0.6; load averages at the "
        f"rounds' start: {', '.join(f'{r.load:.2f}' for r in results)})"
    )
    second = [result.lkm_2.seconds for result in results]
    say(
        f"  lkm's second run: {', '.join(f'{s:.2f}' for s in second)} s "
        f"(dkms's: {', '.join(f'{r.dkms_2.seconds:.2f}' for r in results)} s; target < 1 s: "
        f"{'met' if max(second) < 1.0 else 'NOT met'})"
    )
    idle = [result.lkm_idle.seconds for result in results if result.lkm_idle is not None]
    if idle:
        say(f"  lkm's second run where nothing failed: {', '.join(f'{s:.2f}' for s in idle)} s")
    agree = all(result.agree for result in results)
    say(f"  both tools installed the same pairs and files: {'yes' if agree else 'NO'}")


def _snapshot_lkm(where: Path) -> Path:
    """A byte-compiled copy of lkm's package, for PYTHONPATH: others edit
    src/ while this runs (a half-edited module once failed lkm's first
    run with an ImportError; a changed build digest once made its second
    run rebuild), and every lkm run of the bench must be the same lkm."""
    import lkm

    target = where / "lkm-snapshot"
    shutil.copytree(lkm.__path__[0], target / "lkm", ignore=shutil.ignore_patterns("__pycache__"))
    compileall.compile_dir(str(target), quiet=1)
    return target


def _kernels() -> list[KernelFixture]:
    fixtures = {k.label: k for k in load_manifest()}
    missing = [label for label in LABELS if label not in fixtures]
    if missing:
        sys.exit(f"no cached Debian kernel {', '.join(missing)}: run ./dev fixtures")
    return [fixtures[label] for label in LABELS]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", nargs="+", default=list(PACKAGES), metavar="PKG")
    parser.add_argument("-j", "--jobs", default="2", help="jobs for each tool (default 2)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds, alternating who goes first (default 2)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: dkms autoinstall and the mount namespace need it")
    work = Path(tempfile.mkdtemp(prefix="lkm-dkms-bench-"))
    try:
        # Ahead of the editable install's src/ on sys.path, in every command run.
        os.environ["PYTHONPATH"] = str(_snapshot_lkm(work))
        agree = compare(work, args.packages, args.jobs, args.rounds, args.keep)
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
