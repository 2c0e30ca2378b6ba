"""``lkm check``: will kernel K load these modules, and if not, why.

``lkm check MODULE|DIR… [--kernel VERSION|HEADERS|IMAGE] [--running]
[--sig-enforce] [--json] [--color[=WHEN]]`` takes each module (a
directory: every ``.ko*`` under it, as DKMS build output or a build tree
holds them) through the
kernel's load-time checks, in the kernel's order, from the module file and
the kernel's packages (its module tree and headers): the verdict
(``loads``, ``loads with taint X``, ``refused``) and each finding as the
line the kernel would log, with its errno or taint and what to do.
Modules checked together satisfy each other's symbols. ``--running`` adds
the live kernel's state (modules already loaded, ``sig_enforce``);
``--sig-enforce`` assumes ``module.sig_enforce=1``. On a terminal the
verdicts are in colour (:mod:`lkm.cli.colour`). Exit status: 0 when
every module would load (taints allowed), 1 when one would be refused or
the kernel's facts cannot be read, 2 for usage errors.
"""

from __future__ import annotations

import os

from lkm.cli.options import UsageError, own_version_text, parse, usage_line

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from typing import BinaryIO

    from lkm.model.load_check import Verdict

PROG = "check"
SHORTOPTS = "h"
LONGOPTS = ("kernel=", "running", "sig-enforce", "json", "color==", "help", "version")
USAGE = (
    "usage: lkm check MODULE [PARAM=VALUE...]|DIR... [--kernel VERSION|HEADERS|IMAGE] "
    "[--running] [--sig-enforce] [--json] [--color[=WHEN]]\n"
)
HELP = (
    USAGE
    + """
Say whether a kernel will load each module, and if not exactly why.
Words after a module that are not files are its parameters, as insmod
takes them (checked against the module's parameter table).

  --kernel SPEC    the kernel: a release, a series (6.1), a headers
                   directory or an image (default: the running kernel)
  --running        add the running kernel's state: modules already
                   loaded, module.sig_enforce
  --sig-enforce    assume module.sig_enforce=1 (unsigned modules refused)
  --json           one JSON array of verdicts
  --color[=WHEN]   verdicts in colour (loads green, loads with taint
                   yellow, refused red): auto (the default: on a
                   terminal, unless NO_COLOR is set or TERM is dumb),
                   always or never
  -h, --help       this help
  --version        the version

Exit status: 0 every module loads (taints allowed), 1 one is refused,
2 usage error.
"""
)


def module_paths(operands: list[str]) -> list[tuple[str, str]]:
    """(module file, its parameters) for the operands: a directory gives
    its ``.ko*`` files, sorted; a word after a module that is neither a
    file nor a module's name is that module's parameter (insmod's
    ``NAME=VALUE``); anything else stays as given, for the check to
    report."""
    modules: list[tuple[str, list[str]]] = []
    for operand in operands:
        if modules and not _names_a_module(operand):
            path, params = modules[-1]
            if os.path.isdir(path):
                raise UsageError(f"parameter {operand} given after a directory")
            params.append(operand)
        else:
            modules.append((operand, []))
    found: list[tuple[str, str]] = []
    for path, params in modules:
        if os.path.isdir(path):
            found += [(module, "") for module in _modules_under(path)]
        else:
            found.append((path, " ".join(params)))
    return found


def _names_a_module(operand: str) -> bool:
    """A file, or a path or module file name; ``NAME=…`` (a value may hold
    a path) is a parameter unless it is an existing file."""
    if os.path.exists(operand):
        return True
    name, equals, _ = operand.partition("=")
    if equals and "/" not in name:
        return False
    return "/" in operand or _is_module_name(operand)


def _modules_under(directory: str) -> list[str]:
    found = []
    for parent, dirs, files in os.walk(directory):
        dirs.sort()
        found += [os.path.join(parent, n) for n in files if _is_module_name(n)]
    return sorted(found)


def _is_module_name(name: str) -> bool:
    return name.endswith((".ko", ".ko.xz", ".ko.gz", ".ko.zst"))


def run(args: list[str], out: BinaryIO, err: BinaryIO, argv0: str = PROG) -> int:
    try:
        opts, operands = parse(argv0, args, SHORTOPTS, LONGOPTS)
    except UsageError as exc:
        err.write(usage_line(f"lkm check: {exc}"))
        return 2
    if any(name in ("-h", "--help") for name, _ in opts):
        out.write(HELP.encode())
        return 0
    if any(name == "--version" for name, _ in opts):
        out.write(own_version_text().encode())
        return 0
    if not operands:
        err.write(usage_line("lkm check: no module given"))
        return 2
    given = dict(opts)
    from lkm.cli.colour import ColourModeError, wanted, when_of

    try:
        colour = wanted(when_of(given.get("--color", "")), out)
    except ColourModeError as exc:
        err.write(usage_line(f"lkm check: {exc}"))
        return 2
    try:
        modules = module_paths(operands)
    except UsageError as exc:
        err.write(usage_line(f"lkm check: {exc}"))
        return 2
    from lkm.errors import LkmError
    from lkm.workflows.check import check_all, kernel_facts_for, sig_enforced

    try:
        kernel = kernel_facts_for(given.get("--kernel"))
        verdicts = check_all(
            modules,
            kernel,
            sig_enforce="--sig-enforce" in given or ("--running" in given and sig_enforced()),
            running="--running" in given,
        )
    except (LkmError, OSError) as exc:
        err.write(f"lkm check: {exc}\n".encode())
        return 1
    if not verdicts:
        err.write(b"lkm check: no module files in the given directories\n")
        return 1
    if "--json" in given:
        from lkm.cli.json_output import write_array

        write_array(out, (as_json(v) for v in verdicts))
    else:
        out.write("".join(as_text(v, colour) for v in verdicts).encode())
    return 1 if any(v.reason is not None for v in verdicts) else 0


def as_text(verdict: Verdict, colour: bool = False) -> str:
    from lkm.cli.colour import GREEN, RED, YELLOW, paint
    from lkm.model.load_check import LOADS, REFUSED, TAINTS, insmod_text

    head = verdict.verdict
    if head == TAINTS:
        head += f" {', '.join(verdict.taints)}"
    # Green goes, yellow goes with a mark on the kernel, red stops.
    head = paint(head, {LOADS: GREEN, TAINTS: YELLOW, REFUSED: RED}[verdict.verdict], colour)
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
