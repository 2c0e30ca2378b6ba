"""``lkm check``'s work, for the CLI and for the tools that explain a
refused load with it (``insmod -v``, ``modprobe -v``, ``lkm try``, ``lkm
dkms status``): a kernel's facts found by release, series, headers or
image; the verdicts on modules checked together; the running kernel's
state (modules loaded, ``sig_enforce``, ``module_blacklist=``).
"""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from lkm.model.load_check import KernelFacts, Verdict

# What the kernel's loader refuses a module with (not EEXIST and friends,
# which say all there is to say).
LOADER_ERRORS = frozenset(
    (
        errno.ENOEXEC,
        errno.ENOENT,
        errno.EINVAL,
        errno.ERANGE,
        errno.ENOSPC,
        errno.EKEYREJECTED,
        errno.EPERM,
        errno.ENOKEY,
        errno.EBADMSG,
    )
)


def kernel_facts_for(spec: str | None) -> KernelFacts:
    """The facts of the kernel ``spec`` names (None: the running one)."""
    from lkm.model.kernels import find_kernel
    from lkm.model.load_check import CheckError, kernel_facts

    kernel = find_kernel(spec, need="headers")
    if kernel.modules is None or kernel.headers is None:
        raise CheckError(f"{kernel.release}: its module tree is needed too (lkm kernel fetch)")
    return kernel_facts(
        kernel.release, kernel.arch or "amd64", kernel.modules, kernel.headers, kernel.image
    )


def check_all(
    modules: list[tuple[str, str]],
    kernel: KernelFacts,
    *,
    sig_enforce: bool,
    running: bool,
    running_signing: bool = False,
) -> list[Verdict]:
    """The verdict on each (module file, parameters). ``running``: with the
    running kernel's state (loaded modules, module_blacklist=, lockdown,
    its keys); ``running_signing``: its lockdown and keys only."""
    from lkm.model.load_check import check_module, exports_of

    loaded = None
    blacklist: frozenset[str] = frozenset()
    lockdown = False
    running_keys: tuple[str, ...] = ()
    if running:
        from lkm.system.kernel import KernelModules

        loaded = frozenset(KernelModules().loaded_names())
        blacklist = _command_line_blacklist()
    if running or running_signing:
        lockdown = locked_down()
        running_keys = _running_keys()
    together = exports_of(path for path, _ in modules) if len(modules) > 1 else {}
    verdicts = []
    for path, args in modules:
        name = os.path.basename(path).split(".", 1)[0].replace("-", "_")
        others = {owner: names for owner, names in together.items() if owner != name}
        verdicts.append(
            check_module(
                path,
                kernel,
                others=others,
                sig_enforce=sig_enforce,
                loaded=loaded,
                blacklist=blacklist,
                args=args,
                lockdown=lockdown,
                running_keys=running_keys,
            )
        )
    return verdicts


def _command_line_blacklist() -> frozenset[str]:
    """The modules ``module_blacklist=`` on the running kernel's command
    line names."""
    try:
        with open("/proc/cmdline", encoding="utf-8", errors="replace") as f:
            words = f.read().split()
    except OSError:
        return frozenset()
    names: set[str] = set()
    for word in words:
        if word.startswith("module_blacklist="):
            names.update(n.replace("-", "_") for n in word.partition("=")[2].split(",") if n)
    return frozenset(names)


def explain(path: str, args: str = "") -> list[str]:
    """Why the running kernel refused the module at ``path`` loaded with
    ``args``, as ``lkm check --running`` sees it: lines for ``insmod -v``
    and friends to print after their own error (one line when it cannot
    tell)."""
    from lkm.errors import LkmError

    try:
        kernel = kernel_facts_for(os.uname().release)
        verdict = check_all([(path, args)], kernel, sig_enforce=sig_enforced(), running=True)[0]
    except (LkmError, OSError) as exc:
        return [f"lkm check cannot tell why: {exc}"]
    reason = verdict.reason
    if reason is None:
        return [
            "lkm check finds nothing the kernel refuses before the module's own code runs: "
            "its init function, or a parameter its own code checks, failed (see dmesg)"
        ]
    lines = [f"the kernel's reason: {reason.message}"]
    if reason.advice:
        lines.append(f"  {reason.advice}")
    return lines


def sig_enforced() -> bool:
    """Whether the running kernel enforces module signatures."""
    try:
        with open("/sys/module/module/parameters/sig_enforce", encoding="ascii") as f:
            return f.read().strip() == "Y"
    except OSError:
        return False


def _running_keys() -> tuple[str, ...]:
    """The descriptions of the keys the running kernel verifies modules
    with (its keyrings, MOK included; none when they cannot be read)."""
    from lkm.system.keyrings import module_keys

    return tuple(module_keys() or ())


def locked_down() -> bool:
    """Whether the running kernel is locked down (integrity or
    confidentiality): securityfs says which level is chosen (``none
    [integrity] confidentiality``); where it is not mounted, the command
    line's ``lockdown=``."""
    try:
        with open("/sys/kernel/security/lockdown", encoding="ascii") as f:
            return "[none]" not in f.read()
    except OSError:
        pass
    try:
        with open("/proc/cmdline", encoding="utf-8", errors="replace") as f:
            words = f.read().split()
    except OSError:
        return False
    return any(w in ("lockdown=integrity", "lockdown=confidentiality") for w in words)


def running_kernel_notes(paths: list[str], built_for: str) -> list[str]:
    """After a build for kernel ``built_for``: when the running kernel is
    another, whether it would load the modules at ``paths`` (checked
    together), a line each; nothing when it is the same kernel or its
    facts cannot be read (no module tree or headers of it here)."""
    from lkm.errors import LkmError

    running = os.uname().release
    if running == built_for:
        return []
    try:
        kernel = kernel_facts_for(running)
    except (LkmError, OSError):
        return []
    return load_notes(paths, built_for, kernel)


def load_notes(paths: list[str], built_for: str, kernel: KernelFacts) -> list[str]:
    """Whether ``kernel``, the running one (not the one the modules were
    built for), would load each module, with its signature settings and
    keys, one line each."""
    modules = [(path, "") for path in paths]
    verdicts = check_all(
        modules, kernel, sig_enforce=sig_enforced(), running=False, running_signing=True
    )
    notes = []
    for verdict in verdicts:
        head = f"{verdict.name} is built for {built_for}, not the running {kernel.release}"
        reason = verdict.reason
        if reason is None:
            taints = f" {verdict.taints}" if verdict.taints else ""
            notes.append(f"{head}, which would load it too ({verdict.verdict}{taints})")
        else:
            notes.append(f"{head}, which would refuse it: {reason.message}")
    return notes


__all__ = [
    "LOADER_ERRORS",
    "check_all",
    "explain",
    "kernel_facts_for",
    "load_notes",
    "locked_down",
    "running_kernel_notes",
    "sig_enforced",
]
