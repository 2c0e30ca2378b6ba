"""``dkms autoinstall``: build and install, for each kernel asked, the
newest added version of every package whose dkms.conf sets AUTOINSTALL.

Which packages, as Debian's dkms 3.0.10's ``autoinstall`` picks them: the
added ones; for each, nothing when a version is installed for the kernel
already (``kernel-KVER-ARCH`` resolves to it: dkms's _is_module_installed,
so a second run reads no dkms.conf and builds nothing), else the newest
version (dkms's ``VER`` order) whose dkms.conf, read for that kernel, sets
AUTOINSTALL; BUILD_DEPENDS wait for the packages they name to be installed
for the kernel. Unlike dkms (one kernel, stops reporting at the first
error, exits 11 without saying which), every package is tried for every
kernel and each failure is reported.

Builds of different package/kernel pairs run in threads, up to ``-j``
jobs in all: ``min(N, pairs)`` workers whose makes share N job slots
through a jobserver lkm holds (:mod:`lkm.system.jobserver`);
two kernels of one package version take turns (dkms builds in the
version's one ``build/`` directory). Installs run after each round of
builds, one at a time, then lkm's depmod once per kernel (dkms: once per
package), in the calling thread: depmod forks, and no build thread is
alive then.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable

from lkm.records import Record
from lkm.workflows.dkms.tree import DkmsError, Target, Tree, collation_key
from lkm.workflows.dkms.versions import padded

Say = Callable[[str], None]
Report = Callable[[str, str], None]
SKIPPED = 77  # BUILD_EXCLUSIVE_* not met: dkms's "skipped", not a failure
_REMEMBERED = (7, 10)  # a module not built, make failed


class Outcome(Record):
    """What autoinstall did with one package for one kernel."""

    target: Target
    state: str  # installed, skipped, failed
    message: str = ""  # the failure's (or skip's) one line
    status: int = 0  # dkms's exit status for it
    placed: tuple[str, ...] = ()  # the module files installed

    @property
    def failed(self) -> bool:
        return self.state == "failed"


def choose(tree: Tree, kernel: str, arch: str) -> list[Target]:
    """The package versions dkms's autoinstall would install for the kernel."""
    by_module: dict[str, list[str]] = {}
    for module, version in tree.packages():
        by_module.setdefault(module, []).append(version)
    chosen = []
    for module, versions in by_module.items():
        newest_first = sorted(versions, key=lambda v: collation_key(padded(v)), reverse=True)
        for version in newest_first:
            t = Target(module, version, kernel, arch)
            if tree.link_is_to(t):
                break  # installed already: dkms skips the package
            conf = tree.conf(t)
            if conf.autoinstall or conf.problems:  # a bad conf is reported by build
                chosen.append(t)
                break
    return chosen


def autoinstall(
    tree: Tree,
    kernels: list[tuple[str, str]],
    jobs: str | None,
    say: Say,
    report: Report,
    on_outcome: Callable[[Outcome], None],
) -> list[Outcome]:
    """Build and install the chosen packages for every (kernel, arch);
    ``on_outcome`` hears of each one as it ends."""
    pending = [t for kernel, arch in kernels for t in choose(tree, kernel, arch)]
    installed = {k: _installed_modules(tree, k, a) for k, a in kernels}
    outcomes: list[Outcome] = []
    building = {t.kernel for t in pending if _will_build(tree, t)}
    warming = _warm_depmod(tree, sorted(building))

    def done(outcome: Outcome) -> None:
        outcomes.append(outcome)
        on_outcome(outcome)

    while pending:
        ready = [t for t in pending if _depends(tree, t) <= installed[t.kernel]]
        if not ready:
            break
        pending = [t for t in pending if t not in ready]
        built = build_all(tree, ready, jobs, say)
        for process in warming:
            process.wait()  # before lkm's depmod runs on the same trees
        warming = []
        placed = []
        for t in ready:
            failure = built[t]
            placed.append(_install(tree, t, say, report) if failure is None else failure)
        indexed = _reindexed(tree, placed, report)
        _refresh_initramfs(tree, indexed, say)
        for outcome in indexed:
            if outcome.state == "installed":
                installed[outcome.target.kernel].add(outcome.target.module)
            done(outcome)
    for t in pending:
        missing = " ".join(sorted(_depends(tree, t) - installed[t.kernel]))
        message = f"{t.label}: not built: it depends on {missing}, not installed for this kernel"
        done(Outcome(t, "failed", message, 11))
    return outcomes


def _will_build(tree: Tree, t: Target) -> bool:
    return not tree.is_built(t) and _unchanged_failure(tree, t) is None


def _refresh_initramfs(tree: Tree, outcomes: list[Outcome], say: Say) -> None:
    """Once per kernel, after its tree is indexed: the initramfs of each
    kernel a REMAKE_INITRD or boot-critical module was installed for. A
    failure is a warning: the modules are installed either way."""
    from lkm.workflows.dkms.initramfs import reason_to_refresh, refresh_initramfs

    reasons: dict[str, tuple[Target, str]] = {}
    for o in outcomes:
        if o.state != "installed" or o.target.kernel in reasons:
            continue
        remake = tree.conf(o.target).remake_initrd
        reason = reason_to_refresh(tree, o.target, remake, list(o.placed))
        if reason is not None:
            reasons[o.target.kernel] = (o.target, reason)
    for t, reason in reasons.values():
        try:
            refresh_initramfs(tree, t, reason, say)
        except DkmsError as exc:
            say(f"Warning: {exc}")


def _warm_depmod(tree: Tree, kernels: list[str]) -> list[subprocess.Popen[bytes]]:
    """lkm's depmod over each kernel's tree as it is, in the background
    while the builds run: its index files come out the same, and its
    cache then holds every module's facts, so the depmod after the
    installs reads only the new modules (a kernel just installed has a
    cold cache: 5 s of reading on Debian's 6.12). A separate process
    (spawned, not forked: the build threads are running)."""
    import sys

    from lkm.workflows.depmod.cache import default_cache_dir
    from lkm.workflows.dkms.install import depmod_tree

    if tree.settings.no_depmod or default_cache_dir(depmod_tree(tree)[0]) is None:
        return []  # no cache to warm (root indexing an image's trees)
    started = []
    for kernel in kernels:
        basedir, moduledir = depmod_tree(tree)
        if not os.path.isfile(f"{basedir}{moduledir}/{kernel}/modules.dep"):
            continue  # not a tree depmod has indexed: left for the real run
        argv = [
            sys.executable,
            "-m",
            "lkm",
            "depmod",
            *(["-b", basedir] if basedir else []),
            "-m",
            moduledir,
            kernel,
        ]
        started.append(
            subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
    return started


def _installed_modules(tree: Tree, kernel: str, arch: str) -> set[str]:
    """Packages with some version installed for the kernel."""
    return {m for m, _ in tree.packages() if os.path.exists(tree.kernel_link(m, kernel, arch))}


def _depends(tree: Tree, t: Target) -> set[str]:
    return set(tree.conf(t).build_depends) - {t.module}


def build_all(
    tree: Tree, targets: list[Target], jobs: str | None, say: Say
) -> dict[Target, Outcome | None]:
    """Build every target not built yet, in parallel; None for each built
    (or built already), an Outcome for each that failed or was skipped."""
    from concurrent.futures import ThreadPoolExecutor

    from lkm.workflows.dkms.build import jobs_argument, prepare_signing

    if not targets:
        return {}
    from lkm.system.jobserver import Jobserver

    total = jobs_argument(jobs)  # "" for -j 0: make's unlimited -j, one worker per pair
    workers = len(targets) if not total else max(1, min(int(total), len(targets)))
    # N slots shared by all the makes (a make alone may use them all);
    # -j 0: every make unlimited, as dkms's -j 0.
    jobserver = Jobserver(int(total)) if total else None
    builder = Tree(tree.settings.replace(jobs="0", jobserver=jobserver))
    prepare_signing(tree, targets[0], say)  # the key, made once before any thread
    locks = {(t.module, t.version): threading.Lock() for t in targets}

    def one(t: Target) -> Outcome | None:
        with locks[t.module, t.version]:
            if jobserver is None:
                return _build(builder, t, say)
            jobserver.acquire()  # the make's own slot
            try:
                return _build(builder, t, say)
            finally:
                jobserver.release()

    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lkm-dkms") as pool:
            results = list(pool.map(one, targets))
    finally:
        if jobserver is not None:
            jobserver.close()
    return dict(zip(targets, results, strict=True))


def _build(tree: Tree, t: Target, say: Say) -> Outcome | None:
    from lkm.workflows.dkms.build import build

    try:
        if tree.is_built(t):
            return None
        unchanged = _unchanged_failure(tree, t)
        if unchanged is not None:
            return unchanged
        build(tree, t, say)
    except DkmsError as exc:
        return _failure(t, exc)
    return None


def _unchanged_failure(tree: Tree, t: Target) -> Outcome | None:
    """The recorded failure (or skip) of ``t`` when nothing it depends on
    changed since: the same build would fail the same way, so a kernel
    hook run again does not spend minutes finding that out."""
    from lkm.workflows.dkms.tree import build_digest, read_result

    if tree.settings.force:
        return None
    previous = read_result(tree, t)
    # Only make's failures are worth remembering: the rest fail fast again.
    if previous is None or previous.status not in _REMEMBERED:
        return None
    if previous.digest != build_digest(tree, t):
        return None
    reason = previous.reason
    if previous.state == "failed":
        reason += "; not rebuilt: sources, dkms.conf and headers unchanged (--force rebuilds)"
    return Outcome(t, previous.state, reason, previous.status)


def _install(tree: Tree, t: Target, say: Say, report: Report) -> Outcome:
    """The modules placed; the kernel's tree is indexed by :func:`_reindexed`."""
    from lkm.workflows.dkms.install import install

    try:
        placed = install(tree, t, say, report, reindex=False)
    except DkmsError as exc:
        return _failure(t, exc)
    return Outcome(t, "installed", placed=tuple(placed))


def _reindexed(tree: Tree, outcomes: list[Outcome], report: Report) -> list[Outcome]:
    """One depmod per kernel something was installed for (not one per
    package, as dkms runs it); a kernel whose tree cannot be indexed turns
    its installs into failures."""
    from lkm.workflows.dkms.install import reindex

    if tree.settings.no_depmod:
        return outcomes
    kernels = dict.fromkeys(o.target.kernel for o in outcomes if o.state == "installed")
    problems: dict[str, DkmsError] = {}
    for kernel in kernels:
        try:
            reindex(tree, kernel, f"kernel {kernel}", report)
        except DkmsError as exc:
            problems[kernel] = exc
    return [
        _failure(o.target, problems[o.target.kernel])
        if o.state == "installed" and o.target.kernel in problems
        else o
        for o in outcomes
    ]


def _failure(t: Target, exc: DkmsError) -> Outcome:
    state = "skipped" if exc.status == SKIPPED else "failed"
    return Outcome(t, state, str(exc), exc.status)


def installed_kernels(tree: Tree) -> list[str]:
    """Kernels with a module tree in the install tree (``--all``), oldest first."""
    root = tree.settings.install_tree
    try:
        names = os.listdir(root)
    except OSError:
        return []
    found = [n for n in names if os.path.isfile(f"{root}/{n}/modules.dep")]
    return sorted(found, key=lambda k: collation_key(padded(k)))


__all__ = ["Outcome", "autoinstall", "build_all", "choose", "installed_kernels"]
