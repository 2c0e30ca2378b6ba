"""``lkm prepare``: make this machine able to build modules for a kernel
(what module-assistant's ``m-a prepare`` did on Debian).

It looks for what kbuild needs for kernel V: the headers (host or lkm's
cache, :func:`lkm.model.kernels.find_kernel`), then the table of
requirements ``lkm build`` checks too (:data:`lkm.workflows.build.REQUIREMENTS`:
the compiler the kernel was built with, make, ``pahole`` where the headers
generate BTF, the shared libraries of kbuild's prebuilt programs). As root
it installs the Debian packages that provide what is missing with
``apt-get install -y``; otherwise, or in a dry run, it says the command and
changes nothing. It ends by building a hello module against V in a
temporary directory: the proof that the machine is ready.

Headers come first: Debian's ``linux-headers-V`` depends on the compiler
its kernel was built with and on ``linux-kbuild-V`` (objtool and its
libelf; for 6.12 also pahole), so once apt has installed it, a second look
at the headers finds what else is missing, usually nothing but make.
Nothing is run through apt when nothing is missing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

from lkm.records import Record
from lkm.workflows.build import (
    MISSING,
    OK,
    BuildError,
    Finding,
    Headers,
    build,
    find_headers,
    inspect_toolchain,
)

HEADERS = "headers"
HELLO = "hello build"
SKIPPED = "skipped"
FAILED = "failed"

_POLICY = re.compile(r"^(\S+):\n\s+Installed: .*\n\s+Candidate: (\S+)", re.M)


class Preparation(Record, frozen=False):
    """What ``lkm prepare`` found and did."""

    release: str  # the kernel asked for (its release once the headers are found)
    findings: list[Finding]  # the headers, each requirement, the hello build
    install: tuple[str, ...] = ()  # packages missing that apt has (installed when ``installed``)
    installed: bool = False  # apt-get install ran and succeeded
    unknown: tuple[str, ...] = ()  # packages apt does not know

    @property
    def ok(self) -> bool:
        return all(finding.ok for finding in self.findings)


def apt_candidates(packages: Sequence[str]) -> dict[str, str | None]:
    """The version apt would install of each package (None: apt does not
    know it), from ``apt-cache policy``."""
    from lkm.system.run import CommandError, run

    found: dict[str, str | None] = dict.fromkeys(packages)
    if not packages:
        return found
    try:
        text = run(["apt-cache", "policy", *packages], check=False).text
    except CommandError:  # no apt here: nothing it can install
        return found
    for name, candidate in _POLICY.findall(text):
        if name in found and candidate != "(none)":
            found[name] = candidate
    return found


def _headers(spec: str) -> tuple[Headers | None, Finding]:
    """The headers ``spec`` names, or what is missing and which package
    apt would install them from."""
    try:
        headers = find_headers(spec)
    except BuildError as exc:
        if "/" in spec or os.path.exists(spec):  # a directory that is not a headers tree
            return None, Finding(HEADERS, MISSING, str(exc), (), str(exc))
    else:
        return headers, Finding(HEADERS, OK, headers.path)
    package = f"linux-headers-{spec}"
    fetch = f"lkm kernel fetch {spec}"
    if apt_candidates([package])[package] is not None:
        detail = f"none for {spec}: Debian package {package} (or into lkm's cache: {fetch})"
        return None, Finding(HEADERS, MISSING, detail, (package,))
    detail = (
        f"none for {spec}, and apt knows no {package}: fetch them into lkm's cache "
        f"with {fetch}, or pass --kernel HEADERS_DIR"
    )
    return None, Finding(HEADERS, MISSING, detail)


def _look(spec: str) -> tuple[Headers | None, list[Finding]]:
    headers, found = _headers(spec)
    return headers, [found, *inspect_toolchain(headers)]


def _wanted(findings: list[Finding]) -> list[str]:
    return list(dict.fromkeys(p for f in findings if not f.ok for p in f.packages))


def _apt_install(packages: Sequence[str], output: Callable[[str], None]) -> bool:
    """``apt-get install -y``, its output streamed; True when it succeeded."""
    from lkm.system.run import CommandError, command_line, stream

    argv = ["apt-get", "install", "-y", *packages]
    output(f"installing: {command_line(argv)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")  # no debconf questions
    try:
        done = stream(argv, output, env=env)
    except CommandError as exc:
        output(f"apt-get could not run: {exc}")
        return False
    if done.status != 0:
        output(f"apt-get failed with exit status {done.status}")
    return done.status == 0


def _hello(headers: Headers, output: Callable[[str], None]) -> Finding:
    """Build lkm's hello module against ``headers`` in a temporary directory."""
    import tempfile

    from lkm.formats.module_file import open_module
    from lkm.workflows.scaffold import create

    with tempfile.TemporaryDirectory(prefix="lkm-prepare-") as work:
        directory = os.path.join(work, "hello")
        create(directory, author="lkm prepare")
        output(f"building a hello module against {headers.version} in {directory}")
        lines: list[str] = []
        try:
            result = build(directory, headers.path, output=lines.append)
        except BuildError as exc:
            for line in lines[-20:]:  # make's last words: what the one line is about
                output(f"  {line}")
            return Finding(HELLO, FAILED, str(exc), (), str(exc))
        if not result.modules:
            return Finding(HELLO, FAILED, "make succeeded but made no hello.ko")
        with open_module(result.modules[0]) as module:
            vermagic = dict(module.modinfo() or []).get("vermagic", "none").strip()
    return Finding(HELLO, OK, f"hello.ko, vermagic {vermagic}")


def prepare(
    kernel: str | None = None,
    *,
    dry_run: bool = False,
    as_root: bool | None = None,
    output: Callable[[str], None] = print,
) -> Preparation:
    """Check, install (as root, unless ``dry_run``) and prove with a hello
    build what kbuild needs for ``kernel`` (default: the running one)."""
    spec = kernel or os.uname().release
    may_install = not dry_run and (os.geteuid() == 0 if as_root is None else as_root)
    headers, findings = _look(spec)
    report = Preparation(headers.version if headers else spec, findings)
    attempted: set[str] = set()
    while True:
        wanted = [p for p in _wanted(report.findings) if p not in attempted]
        if not wanted:
            break
        known = apt_candidates(wanted)
        report.unknown += tuple(p for p, version in known.items() if version is None)
        install = tuple(p for p, version in known.items() if version is not None)
        if not install:
            break
        report.install += install
        if not may_install:
            why = "dry run" if dry_run else "not root"
            command = " ".join(["apt-get", "install", *install])
            output(f"{why}, nothing installed; to install what is missing: {command}")
            break
        attempted.update(wanted)
        report.installed = _apt_install(install, output)
        headers, report.findings = _look(spec)  # the new headers may need more
        report.release = headers.version if headers else spec
        if not report.installed:
            break
        still = [f.check for f in report.findings if not f.ok and set(f.packages) & set(install)]
        if still:  # installed, yet not found: a PATH without /usr/bin, say
            output(f"still missing after apt-get install: {', '.join(still)} (is PATH right?)")
    for package in report.unknown:
        output(f"apt knows no package {package}: run apt-get update, or install it another way")
    if headers is not None and report.ok:
        report.findings.append(_hello(headers, output))
    else:
        report.findings.append(Finding(HELLO, SKIPPED, "something above is missing"))
    return report


__all__ = ["FAILED", "HEADERS", "HELLO", "SKIPPED", "Preparation", "apt_candidates", "prepare"]
