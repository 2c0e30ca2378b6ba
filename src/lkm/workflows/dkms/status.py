"""``dkms status``: one line per package version and kernel, in dkms
3.0.10's words and order, and the same facts as records for ``--json``.

::

    NAME/VERSION: added
    NAME/VERSION, KVER, ARCH: built
    NAME/VERSION, KVER, ARCH: installed (WARNING! Diff between built and installed module!)
"""

from __future__ import annotations

import os

from lkm.records import Record
from lkm.workflows.dkms.tree import Target, Tree, module_file, recorded_results
from lkm.workflows.dkms.trust import KeyTrust
from lkm.workflows.dkms.versions import same_version

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from lkm.model.load_check import KernelFacts


class StatusEntry(Record):
    """One status line's facts."""

    module: str
    version: str
    state: str  # added, built, installed (skipped: BUILD_EXCLUSIVE not met)
    kernel: str | None = None
    arch: str | None = None
    notes: tuple[str, ...] = ()  # dkms's parenthesised remarks
    reason: str | None = None
    log: str | None = None
    signing: KeyTrust | None = None  # whether the kernel accepts DKMS's key
    # lkm check's verdict on each built module: (module, verdict, the
    # kernel's reason or "", advice or ""); None: not checked
    load: tuple[tuple[str, str, str, str], ...] | None = None

    def line(self) -> str:
        """The line as dkms prints it."""
        if self.kernel is None:
            return f"{self.module}/{self.version}: {self.state}"
        extra = "".join(f" ({note})" for note in self.notes)
        return f"{self.module}/{self.version}, {self.kernel}, {self.arch}: {self.state}{extra}"

    def as_json(self) -> dict[str, object]:
        return {
            "module": self.module,
            "version": self.version,
            "kernel": self.kernel,
            "arch": self.arch,
            "state": self.state,
            "notes": list(self.notes),
            "reason": self.reason,
            "log": self.log,
            "signing": None if self.signing is None else self.signing.as_json(),
            "load": None
            if self.load is None
            else [
                {"module": m, "verdict": v, "reason": r or None, "advice": a or None}
                for m, v, r, a in self.load
            ],
        }


def status(
    tree: Tree,
    module: str | None = None,
    version: str | None = None,
    kernel: str | None = None,
    arch: str | None = None,
    results: bool = False,
) -> list[StatusEntry]:
    """What dkms status prints for these (shell-pattern) filters; with
    ``results``, also each kernel a build failed or was skipped for (lkm's
    record: dkms's text has no line for them)."""
    entries = []
    for m, v in tree.packages(module or None, version or None):
        built = tree.builds(m, v, kernel or None, arch or None)
        tried = _tried(tree, m, v, kernel, arch, built) if results else []
        entries.extend(tried)
        if not built:
            if not tried:
                entries.append(StatusEntry(m, v, "added"))
            continue
        for t in built:
            installed = tree.link_is_to(t)
            state = "installed" if installed else "built"
            log = tree.make_log(t)
            entries.append(
                StatusEntry(
                    m,
                    v,
                    state,
                    t.kernel,
                    t.arch,
                    notes(tree, t, installed),
                    log=log if os.path.exists(log) else None,
                )
            )
    return entries


def with_trust(tree: Tree, entries: list[StatusEntry]) -> list[StatusEntry]:
    """``entries`` with each kernel's verdict on DKMS's signing key."""
    from lkm.workflows.dkms.trust import key_trust

    verdicts: dict[str, KeyTrust] = {}
    for entry in entries:
        if entry.kernel is not None and entry.kernel not in verdicts:
            config = tree.kernel_config(entry.kernel)
            verdicts[entry.kernel] = key_trust(tree.settings.cert, entry.kernel, config)
    return [e if e.kernel is None else e.replace(signing=verdicts[e.kernel]) for e in entries]


def with_load_verdicts(tree: Tree, entries: list[StatusEntry]) -> list[StatusEntry]:
    """``entries`` with lkm check's verdict on each built module, against
    its kernel's module tree and headers (entries whose kernel's facts
    cannot be read stay unchecked)."""
    from lkm.errors import LkmError
    from lkm.model.load_check import kernel_facts

    facts: dict[str, KernelFacts | None] = {}
    checked = []
    for entry in entries:
        if entry.kernel is None or entry.arch is None or entry.state not in ("built", "installed"):
            checked.append(entry)
            continue
        if entry.kernel not in facts:
            try:
                facts[entry.kernel] = kernel_facts(
                    entry.kernel,
                    "",
                    f"{tree.settings.install_tree}/{entry.kernel}",
                    tree.kernel_source_dir(entry.kernel),
                )
            except LkmError:
                facts[entry.kernel] = None
        known = facts[entry.kernel]
        target = Target(entry.module, entry.version, entry.kernel, entry.arch)
        load = None if known is None else _load_verdicts(tree, target, known)
        checked.append(entry.replace(load=load))
    return checked


def _load_verdicts(
    tree: Tree, t: Target, facts: KernelFacts
) -> tuple[tuple[str, str, str, str], ...]:
    from lkm.workflows.check import check_all

    paths = [tree.built_file(t, m.dest_name) for m in tree.conf(t).modules]
    found = [(p, "") for p in paths if p is not None]
    verdicts = []
    for verdict in check_all(found, facts, sig_enforce=False, running=False):
        reason = verdict.reason
        message, advice = (reason.message, reason.advice) if reason else ("", "")
        verdicts.append((verdict.name, verdict.verdict, message, advice))
    return tuple(verdicts)


def _tried(
    tree: Tree, module: str, version: str, kernel: str | None, arch: str | None, built: list[Target]
) -> list[StatusEntry]:
    from lkm.formats.fnmatch import fnmatch

    found = []
    for result in recorded_results(tree, module, version):
        t = result.target
        if t in built or not fnmatch(kernel or "*", t.kernel) or not fnmatch(arch or "*", t.arch):
            continue
        found.append(
            StatusEntry(
                module,
                version,
                result.state,
                t.kernel,
                t.arch,
                reason=result.reason,
                log=result.log,
            )
        )
    return found


def notes(tree: Tree, t: Target, installed: bool) -> tuple[str, ...]:
    """dkms's remarks after the state (module_status_built_extra)."""
    found = []
    if os.path.isdir(f"{tree.root}/{t.module}/original_module/{t.kernel}/{t.arch}"):
        found.append("original_module exists")
    conf = tree.conf(t)
    for index, mod in enumerate(conf.modules):
        built = tree.built_file(t, mod.dest_name)
        if built is None:
            found.append("WARNING! Missing some built modules!")
        elif installed:
            placed = installed_file(tree, t, index)
            if placed is None or not _same_bytes(built, placed):
                found.append("WARNING! Diff between built and installed module!")
    return tuple(found)


def installed_file(tree: Tree, t: Target, index: int) -> str | None:
    """Where module ``index`` of the package is installed for the kernel:
    dkms's install location, or DEST_MODULE_LOCATION as written, whichever
    holds a file of the same version as the built one
    (find_actual_dest_module_location)."""
    location = installed_location(tree, t, index)
    if location is None:
        return None
    mod = tree.conf(t).modules[index]
    directory = f"{tree.settings.install_tree}/{t.kernel}{location}"
    return module_file(directory, mod.dest_name, tree.module_suffix(t.kernel))


def installed_location(tree: Tree, t: Target, index: int) -> str | None:
    mod = tree.conf(t).modules[index]
    suffix = tree.module_suffix(t.kernel)
    link = tree.kernel_link(t.module, t.kernel, t.arch)
    owned = module_file(f"{link}/module", mod.dest_name, suffix)
    locations = [mod.dest_location]
    if mod.conf_location != mod.dest_location:
        locations.append(mod.conf_location)
    for location in locations:
        directory = f"{tree.settings.install_tree}/{t.kernel}{location}"
        placed = module_file(directory, mod.dest_name, suffix)
        if placed is not None and same_version(owned, placed):
            return location
    return None


def _same_bytes(a: str, b: str) -> bool:
    try:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            return fa.read() == fb.read()
    except OSError:
        return False


__all__ = [
    "StatusEntry",
    "installed_file",
    "installed_location",
    "notes",
    "status",
    "with_trust",
]
