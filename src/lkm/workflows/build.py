"""``lkm build``: kbuild for an out-of-tree module, with the failures
people actually hit explained in one line.

The build itself is ``make -C KDIR M=DIR modules``. Before it, lkm finds
the headers tree for the kernel asked for and checks what kbuild would
trip over later with a less helpful message: the headers missing, the
kernel's compiler missing, ``pahole`` missing where BTF must be generated.
After a failed build, modpost's "undefined!" errors become "MODULE uses
SYMBOL, which kernel V does not export".
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from lkm.errors import LkmError


class BuildError(LkmError):
    """A build that cannot start or failed; the message says why and what to do."""


@dataclass(frozen=True)
class Headers:
    """A kernel headers tree kbuild can build against."""

    path: str
    version: str  # kernel release the headers belong to
    config: dict[str, str]

    @property
    def compiler(self) -> str:
        """The compiler command the kernel was built with (CONFIG_CC_VERSION_TEXT)."""
        text = self.config.get("CONFIG_CC_VERSION_TEXT", "gcc").strip('"')
        return text.split()[0] if text else "gcc"


@dataclass(frozen=True)
class BuildResult:
    modules: tuple[str, ...]  # built .ko files
    headers: Headers


def _read_config(path: str) -> dict[str, str]:
    config: dict[str, str] = {}
    for candidate in (f"{path}/include/config/auto.conf", f"{path}/.config"):
        try:
            with open(candidate, encoding="utf-8", errors="replace") as f:
                for line in f:
                    key, eq, value = line.rstrip("\n").partition("=")
                    if eq and key.startswith("CONFIG_"):
                        config[key] = value
        except OSError:
            continue
        return config
    return config


def _release_of(path: str) -> str | None:
    try:
        with open(f"{path}/include/config/kernel.release", encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


def _is_headers_tree(path: str) -> bool:
    return os.path.isfile(f"{path}/Makefile") and (
        os.path.isfile(f"{path}/.config") or os.path.isfile(f"{path}/include/config/auto.conf")
    )


def header_candidates(version: str, search_roots: tuple[str, ...] = ("",)) -> list[str]:
    """Where headers for ``version`` live: ``/lib/modules/V/build``, Debian's
    ``/usr/src/linux-headers-V``, each under every root (lkm's unpacked
    Debian kernels are such roots)."""
    found = []
    for root in search_roots:
        found += [f"{root}/lib/modules/{version}/build", f"{root}/usr/src/linux-headers-{version}"]
    return found


def fixture_roots() -> tuple[str, ...]:
    """Roots of the Debian kernels lkm unpacked (``lkm.testing.debian_kernels``)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return tuple(sorted(glob.glob(f"{cache}/lkm/kernels/*")))


def _fixture_version(spec: str) -> str:
    """The release of the Debian fixture kernel labelled ``spec`` (``6.1``,
    ``6.12``), as ``lkm vm`` and ``lkm try`` accept it; else ``spec``."""
    from lkm.testing.debian_kernels import load_manifest

    for fixture in load_manifest():
        if spec == fixture.label and fixture.arch == "amd64":
            return fixture.version
    return spec


def find_headers(kernel: str | None) -> Headers:
    """Headers for a kernel release, or the headers tree ``kernel`` names.

    Without ``kernel``: the running kernel's, else the newest kernel lkm
    unpacked.
    """
    if kernel is not None and ("/" in kernel or os.path.isdir(kernel)):
        if not _is_headers_tree(kernel):
            raise BuildError(
                f"{kernel}: not a kernel headers tree (no Makefile and .config); "
                "point --kernel at e.g. /usr/src/linux-headers-VERSION"
            )
        path = os.path.abspath(kernel)
        config = _read_config(path)
        return Headers(path, _release_of(path) or os.path.basename(path), config)
    roots = ("", *fixture_roots())
    versions = [_fixture_version(kernel)] if kernel else [os.uname().release]
    if kernel is None:
        versions += [os.path.basename(root) for root in reversed(roots[1:])]
    for version in versions:
        for candidate in header_candidates(version, roots):
            if _is_headers_tree(candidate):
                return Headers(candidate, version, _read_config(candidate))
    wanted = kernel or os.uname().release
    raise BuildError(
        f"no kernel headers for {wanted}: install the Debian package linux-headers-{wanted}, "
        "or pass --kernel HEADERS_DIR"
    )


def check_toolchain(headers: Headers, which: Callable[[str], str | None] = shutil.which) -> None:
    """The compiler and BTF tool the headers call for, or a BuildError saying
    which package provides them."""
    compiler = headers.compiler
    if which(compiler) is None:
        base = re.sub(r"^.*-linux-gnu-", "", compiler)
        version = re.search(r"-(\d+)$", base)
        package = f"gcc-{version.group(1)}" if version else base
        text = headers.config.get("CONFIG_CC_VERSION_TEXT", "").strip('"')
        raise BuildError(
            f"kernel {headers.version} was built with {text or compiler}; "
            f"'{compiler}' is not installed: install the Debian package {package}"
        )
    needs_btf = headers.config.get("CONFIG_DEBUG_INFO_BTF_MODULES") == "y"
    if needs_btf and os.path.exists(f"{headers.path}/vmlinux") and which("pahole") is None:
        raise BuildError(
            f"kernel {headers.version} generates BTF for modules and 'pahole' is not "
            "installed: install the Debian package dwarves"
        )


_UNDEFINED = re.compile(r'ERROR: modpost: "([^"]+)" \[([^\]]+)\] undefined!')


def explain_failure(output: str, headers: Headers, status: int) -> str:
    """One line for a failed make: an unexported symbol when modpost said so."""
    undefined = _UNDEFINED.findall(output)
    if undefined:
        symbol, module = undefined[0]
        more = f" (and {len(undefined) - 1} more)" if len(undefined) > 1 else ""
        return (
            f"{os.path.basename(module)} uses {symbol}{more}, which kernel {headers.version} "
            "does not export to modules (a typo, a missing dependency module, or a "
            "GPL-only symbol in a non-GPL module)"
        )
    return f"make failed with status {status}; the compiler's messages are above"


def build(
    directory: str,
    kernel: str | None = None,
    jobs: int | None = None,
    output: Callable[[str], None] = print,
) -> BuildResult:
    """Run kbuild in ``directory``, streaming its output line by line."""
    directory = os.path.abspath(directory)
    if not (os.path.isfile(f"{directory}/Kbuild") or os.path.isfile(f"{directory}/Makefile")):
        raise BuildError(f"{directory}: no Kbuild or Makefile (create one with: lkm new NAME)")
    headers = find_headers(kernel)
    check_toolchain(headers)
    command = ["make", "-C", headers.path, f"M={directory}", "modules"]
    if jobs:
        command.insert(1, f"-j{jobs}")
    lines: list[str] = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            output(line.rstrip("\n"))
        status = proc.wait()
    if status != 0:
        raise BuildError(explain_failure("".join(lines), headers, status))
    built = tuple(sorted(glob.glob(f"{directory}/*.ko")))
    return BuildResult(built, headers)


__all__ = ["BuildError", "BuildResult", "Headers", "build", "check_toolchain", "find_headers"]
