"""``lkm check``: will kernel K load these modules, and if not, why.

``lkm check MODULE|DIR… [--kernel VERSION|HEADERS|IMAGE] [--running]
[--sig-enforce] [--json]`` takes each module (a directory: every ``.ko*``
under it, as DKMS build output or a build tree holds them) through the
kernel's load-time checks, in the kernel's order, from the module file and
the kernel's packages (its module tree and headers): the verdict
(``loads``, ``loads with taint X``, ``refused``) and each finding as the
line the kernel would log, with its errno or taint and what to do.
Modules checked together satisfy each other's symbols. ``--running`` adds
the live kernel's state (modules already loaded, ``sig_enforce``);
``--sig-enforce`` assumes ``module.sig_enforce=1``. Exit status: 0 when
every module would load (taints allowed), 1 when one would be refused or
the kernel's facts cannot be read, 2 for usage errors.
"""

from __future__ import annotations

import os

from lkm.cli.options import UsageError, parse

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import BinaryIO

    from lkm.model.load_check import KernelFacts, Verdict

PROG = "check"
USAGE = (
    "usage: lkm check MODULE|DIR... [--kernel VERSION|HEADERS|IMAGE] [--running] "
    "[--sig-enforce] [--json]\n"
)
HELP = (
    USAGE
    + """
Say whether a kernel will load each module, and if not exactly why.

  --kernel SPEC    the kernel: a release, a series (6.1), a headers
                   directory or an image (default: the running kernel)
  --running        add the running kernel's state: modules already
                   loaded, module.sig_enforce
  --sig-enforce    assume module.sig_enforce=1 (unsigned modules refused)
  --json           one JSON array of verdicts
  -h, --help       this help

Exit status: 0 every module loads (taints allowed), 1 one is refused,
2 usage error.
"""
)


def module_paths(operands: list[str]) -> list[str]:
    """The module files the operands name (a directory: its ``.ko*``
    files, sorted); an operand that is neither stays as given, for the
    check to report."""
    paths: list[str] = []
    for operand in operands:
        if not os.path.isdir(operand):
            paths.append(operand)
            continue
        found = []
        for directory, dirs, files in os.walk(operand):
            dirs.sort()
            found += [os.path.join(directory, n) for n in files if _is_module_name(n)]
        paths += sorted(found)
    return paths


def _is_module_name(name: str) -> bool:
    return name.endswith((".ko", ".ko.xz", ".ko.gz", ".ko.zst"))


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = PROG) -> int:
    try:
        opts, operands = parse(
            argv0, args, "h", ("kernel=", "running", "sig-enforce", "json", "help")
        )
    except UsageError as exc:
        err.write(f"lkm check: {exc}\n{USAGE}".encode())
        return 2
    if any(name in ("-h", "--help") for name, _ in opts):
        out.write(HELP.encode())
        return 0
    if not operands:
        err.write(f"lkm check: no module given\n{USAGE}".encode())
        return 2
    given = dict(opts)
    from lkm.errors import LkmError

    try:
        kernel = _kernel_facts(given.get("--kernel"))
        verdicts = check_all(
            module_paths(operands),
            kernel,
            sig_enforce="--sig-enforce" in given or ("--running" in given and _sig_enforced()),
            running="--running" in given,
        )
    except (LkmError, OSError) as exc:
        err.write(f"lkm check: {exc}\n".encode())
        return 1
    if not verdicts:
        err.write(b"lkm check: no module files in the given directories\n")
        return 1
    if "--json" in given:
        import json

        out.write((json.dumps([as_json(v) for v in verdicts], indent=2) + "\n").encode())
    else:
        out.write("".join(as_text(v) for v in verdicts).encode())
    return 1 if any(v.reason is not None for v in verdicts) else 0


def _kernel_facts(spec: str | None) -> KernelFacts:
    from lkm.model.kernels import find_kernel
    from lkm.model.load_check import CheckError, kernel_facts

    kernel = find_kernel(spec, need="headers")
    if kernel.modules is None or kernel.headers is None:
        raise CheckError(f"{kernel.release}: its module tree is needed too (lkm kernel fetch)")
    return kernel_facts(
        kernel.release, kernel.arch or "amd64", kernel.modules, kernel.headers, kernel.image
    )


def check_all(
    paths: list[str], kernel: KernelFacts, *, sig_enforce: bool, running: bool
) -> list[Verdict]:
    from lkm.model.load_check import check_module, exports_of

    loaded = None
    blacklist: frozenset[str] = frozenset()
    if running:
        from lkm.system.kernel import KernelModules

        loaded = frozenset(KernelModules().loaded_names())
        blacklist = _command_line_blacklist()
    together = exports_of(paths) if len(paths) > 1 else {}
    verdicts = []
    for path in paths:
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


def explain(path: str) -> list[str]:
    """Why the running kernel refused the module at ``path``, as ``lkm
    check --running`` sees it: lines for ``insmod -v`` and friends to
    print after their own error (one line when it cannot tell)."""
    from lkm.errors import LkmError

    try:
        kernel = _kernel_facts(os.uname().release)
        verdict = check_all([path], kernel, sig_enforce=_sig_enforced(), running=True)[0]
    except (LkmError, OSError) as exc:
        return [f"lkm check cannot tell why: {exc}"]
    reason = verdict.reason
    if reason is None:
        return [
            "lkm check finds nothing the kernel refuses before the module's own code runs: "
            "its init function or a parameter failed (see dmesg)"
        ]
    lines = [f"the kernel's reason: {reason.message}"]
    if reason.advice:
        lines.append(f"  {reason.advice}")
    return lines


def _sig_enforced() -> bool:
    try:
        with open("/sys/module/module/parameters/sig_enforce", encoding="ascii") as f:
            return f.read().strip() == "Y"
    except OSError:
        return False


def as_text(verdict: Verdict) -> str:
    from lkm.model.load_check import TAINTS, insmod_text

    head = verdict.verdict
    if head == TAINTS:
        head += f" {', '.join(verdict.taints)}"
    lines = [f"{verdict.path}: {head} ({verdict.release})"]
    for finding in verdict.findings:
        what = f"taint {finding.taint}" if finding.taint else "note"
        if finding.errno:
            what = f"{finding.errno} (insmod: {insmod_text(finding.errno)})"
        lines.append(f"  {what}: {finding.message}")
        if finding.advice:
            lines.append(f"    {finding.advice}")
    if verdict.needs and verdict.reason is None:
        lines.append(
            f"  needs loaded first: {', '.join(verdict.needs)} (modprobe loads them; "
            "insmod alone would fail with Unknown symbol)"
        )
    return "\n".join(lines) + "\n"


def as_json(verdict: Verdict) -> dict[str, object]:
    from lkm.model.load_check import insmod_text

    return {
        "path": verdict.path,
        "module": verdict.name,
        "kernel": verdict.release,
        "verdict": verdict.verdict,
        "taints": verdict.taints,
        "findings": [
            {
                "code": f.code,
                "message": f.message,
                "errno": f.errno or None,
                "insmod": insmod_text(f.errno) if f.errno else None,
                "taint": f.taint or None,
                "advice": f.advice or None,
            }
            for f in verdict.findings
        ],
        "needs": list(verdict.needs),
    }
