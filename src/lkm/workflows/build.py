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
from collections.abc import Callable

from lkm.errors import LkmError
from lkm.model.kernels import KernelNotFound, find_kernel, not_found_message
from lkm.records import Record
from lkm.system.files import HEADERS_TEXT, read_file
from lkm.system.run import ProgramNotFound, stream


class BuildError(LkmError):
    """A build that cannot start or failed; the message says why and what to do."""


class Headers(Record):
    """A kernel headers tree kbuild can build against."""

    path: str
    version: str  # kernel release the headers belong to
    config: dict[str, str]

    @property
    def compiler(self) -> str:
        """The compiler command the kernel was built with (CONFIG_CC_VERSION_TEXT)."""
        text = self.config.get("CONFIG_CC_VERSION_TEXT", "gcc").strip('"')
        return text.split()[0] if text else "gcc"


class BuildResult(Record):
    modules: tuple[str, ...]  # built .ko files
    headers: Headers


def _read_config(path: str) -> dict[str, str]:
    config: dict[str, str] = {}
    for candidate in (f"{path}/include/config/auto.conf", f"{path}/.config"):
        try:
            text = read_file(candidate, HEADERS_TEXT).decode("utf-8", "replace")
        except OSError:
            continue
        for line in text.splitlines():
            key, eq, value = line.partition("=")
            if eq and key.startswith("CONFIG_"):
                config[key] = value
        return config
    return config


def find_headers(kernel: str | None) -> Headers:
    """Headers for a kernel (a release, a label, a headers tree or an image
    beside its headers; see :func:`lkm.model.kernels.find_kernel`).

    Without ``kernel``: the running kernel's, else the newest cached kernel's.
    """
    try:
        found = find_kernel(kernel, need="headers")
    except KernelNotFound as exc:
        raise BuildError(str(exc)) from None
    if found.headers is None:  # an image with no headers beside it
        raise BuildError(not_found_message(found.release, "headers"))
    return Headers(found.headers, found.release, _read_config(found.headers))


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
    if jobs is not None and jobs < 1:
        raise BuildError(f"--jobs must be at least 1, not {jobs}")
    if any(c.isspace() for c in directory):
        # make splits M=… at white space, and kbuild's rules cannot quote it.
        raise BuildError(
            f"{directory}: kbuild cannot build in a path with white space; "
            "move the module or build through a symbolic link without it"
        )
    if not (os.path.isfile(f"{directory}/Kbuild") or os.path.isfile(f"{directory}/Makefile")):
        raise BuildError(f"{directory}: no Kbuild or Makefile (create one with: lkm new NAME)")
    headers = find_headers(kernel)
    check_toolchain(headers)
    command = ["make", "-C", headers.path, f"M={directory}", "modules"]
    if jobs:
        command.insert(1, f"-j{jobs}")
    try:
        done = stream(command, output)
    except ProgramNotFound:
        raise BuildError("make is not installed: install the Debian package make") from None
    if done.status != 0:
        raise BuildError(explain_failure(done.text, headers, done.status))
    built = tuple(sorted(glob.glob(f"{directory}/*.ko")))
    return BuildResult(built, headers)


__all__ = ["BuildError", "BuildResult", "Headers", "build", "check_toolchain", "find_headers"]
