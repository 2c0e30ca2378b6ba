"""The kernels lkm can build against, boot, or index: one record each.

A kernel is its release (``uname -r``), the Debian architecture it was
built for, and where its parts are: the bootable image, the module tree
and the headers tree kbuild builds against (any may be missing). Two
places hold kernels:

* the **host**, under a root directory: ``/boot/vmlinuz-V``,
  ``/lib/modules/V``, and headers at ``/lib/modules/V/build`` or
  ``/usr/src/linux-headers-V`` (Debian's package layout);
* lkm's **cache** (:func:`lkm.system.paths.cache_dir`): each
  ``kernels/V/`` is a root into which Debian's ``linux-image-V`` and
  ``linux-headers-V`` packages were unpacked (same layout), and
  ``indexed/V/lib/modules/V``, when present, is a copy of its module tree
  with the index files made, which is the tree a VM boots with.

Every ``--kernel`` argument (``lkm vm run``, ``lkm try``, ``lkm build``)
resolves through :func:`find_kernel`: an image path, a headers
directory, a release, or a series (``6.1``, ``6.12``; ``6.1-armhf`` for
another architecture).
"""

from __future__ import annotations

import os
import re

from lkm.errors import LkmError
from lkm.records import Record
from lkm.system.files import HEADERS_TEXT, read_file, read_head
from lkm.system.paths import INDEXED, KERNELS, cache_dir

# Debian kernel flavours (the release's last word) -> Debian architecture.
_FLAVOURS = {
    "amd64": "amd64",
    "arm64": "arm64",
    "armmp": "armhf",
    "lpae": "armhf",  # armmp-lpae
    "s390x": "s390x",
    "686": "i386",
    "pae": "i386",  # 686-pae
    "powerpc64le": "ppc64el",
    "riscv64": "riscv64",
    "loong64": "loong64",
    "mips64r2el": "mips64el",
    "octeon": "mips64el",
}
# uname -m -> Debian architecture, for the host's own kernels.
_MACHINES = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "armhf",
    "s390x": "s390x",
    "i686": "i386",
    "ppc64le": "ppc64el",
    "riscv64": "riscv64",
}
_SERIES = re.compile(r"^(\d+\.\d+)")
_UTS_RELEASE = re.compile(r'^#define UTS_RELEASE "([^"]+)"', re.M)


class KernelNotFound(LkmError, LookupError):
    """No kernel matches what was asked for; the message says what to do."""


class Kernel(Record):
    """One kernel and where its parts are (None: not there)."""

    release: str
    arch: str  # Debian architecture ("amd64", "armhf", …; "" when unknown)
    image: str | None  # the bootable image (vmlinuz)
    modules: str | None  # the module tree to use: the indexed copy when there is one
    headers: str | None  # a headers tree kbuild can build against
    cached: bool = False  # unpacked into lkm's cache, not installed on the host

    @property
    def series(self) -> str:
        """``6.1`` for ``6.1.0-57-amd64``: what a label names."""
        match = _SERIES.match(self.release)
        return match.group(1) if match else self.release

    @property
    def label(self) -> str:
        """``6.1`` for an amd64 kernel, ``6.1-armhf`` for another architecture."""
        return self.series if self.arch in ("amd64", "") else f"{self.series}-{self.arch}"


def _host_arch() -> str:
    return _MACHINES.get(os.uname().machine, "")


def architecture(release: str, default: str = "") -> str:
    """The Debian architecture a release was built for, from its flavour
    (``6.1.0-57-armmp`` → ``armhf``); ``default`` when it does not say."""
    return _FLAVOURS.get(release.rsplit("-", 1)[-1], default)


def is_headers_tree(path: str) -> bool:
    """A tree kbuild can build against: its Makefile and the kernel's config."""
    return os.path.isfile(f"{path}/Makefile") and (
        os.path.isfile(f"{path}/.config") or os.path.isfile(f"{path}/include/config/auto.conf")
    )


def headers_release(path: str) -> str | None:
    """The release a headers tree was made for: ``UTS_RELEASE`` (what the
    module's vermagic will say), else ``include/config/kernel.release``
    (Debian's 6.1 headers put the upstream version there), else None."""
    for name, pattern in (
        ("include/generated/utsrelease.h", _UTS_RELEASE),
        ("include/config/kernel.release", None),
    ):
        try:
            text = read_file(f"{path}/{name}", HEADERS_TEXT).decode("utf-8", "replace")
        except OSError:
            continue
        if pattern is None:
            return text.strip() or None
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None


def _existing(path: str) -> str | None:
    return path if os.path.exists(path) else None


def _headers_under(root: str, release: str) -> str | None:
    for candidate in (
        f"{root}/lib/modules/{release}/build",
        f"{root}/usr/src/linux-headers-{release}",
    ):
        if is_headers_tree(candidate):
            return candidate
    return None


def kernel_in_root(root: str, release: str, cached: bool = False, indexed: str = "") -> Kernel:
    """The kernel ``release`` as laid out under ``root`` (``""``: the host);
    ``indexed``: a root holding an indexed copy of its module tree."""
    moddir = f"{root}/lib/modules/{release}"
    indexed_moddir = f"{indexed}/lib/modules/{release}" if indexed else ""
    modules = indexed_moddir if indexed_moddir and os.path.isdir(indexed_moddir) else moddir
    default_arch = "" if cached else _host_arch()
    return Kernel(
        release,
        architecture(release, default_arch),
        _existing(f"{root}/boot/vmlinuz-{release}"),
        modules if os.path.isdir(modules) else None,
        _headers_under(root, release),
        cached,
    )


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def host_kernels(root: str = "") -> list[Kernel]:
    """Kernels installed under ``root``: each ``lib/modules/V``."""
    return [kernel_in_root(root, release) for release in _listdir(f"{root}/lib/modules")]


def cached_kernels(cache: str | None = None) -> list[Kernel]:
    """Kernels unpacked into lkm's cache (``cache``: another cache directory)."""
    base = cache if cache is not None else cache_dir()
    kernels = []
    for release in _listdir(os.path.join(base, KERNELS)):
        root = os.path.join(base, KERNELS, release)
        indexed = os.path.join(base, INDEXED, release)
        kernels.append(kernel_in_root(root, release, cached=True, indexed=indexed))
    return kernels


def _version_key(kernel: Kernel) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", kernel.release))


def available_kernels(root: str = "", cache: str | None = None) -> list[Kernel]:
    """The host's kernels, then the cached ones, each group oldest first."""
    return host_kernels(root) + sorted(cached_kernels(cache), key=_version_key)


def _is_bzimage(path: str) -> bool:
    from lkm.formats.bzimage import is_bzimage

    try:
        return is_bzimage(read_head(path, 0x206))
    except OSError:
        return False


def _from_image(path: str) -> Kernel:
    """An image named ``vmlinuz-V`` in ``ROOT/boot``: its tree is ``ROOT``."""
    if not _is_bzimage(path):
        raise KernelNotFound(
            f"{path}: not a kernel image (no bzImage header); pass a vmlinuz file, "
            "a kernel release or a headers directory"
        )
    release = os.path.basename(path).removeprefix("vmlinuz-")
    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    cache = cache_dir()
    cached = os.path.dirname(root) == os.path.abspath(os.path.join(cache, KERNELS))
    indexed = os.path.join(cache, INDEXED, release) if cached else ""
    return kernel_in_root(root, release, cached, indexed).replace(image=path)


def _from_headers(path: str) -> Kernel:
    if not is_headers_tree(path):
        raise KernelNotFound(
            f"{path}: not a kernel headers tree (no Makefile and .config); "
            "point --kernel at e.g. /usr/src/linux-headers-VERSION"
        )
    path = os.path.abspath(path)
    release = headers_release(path) or os.path.basename(path).removeprefix("linux-headers-")
    return Kernel(release, architecture(release, _host_arch()), None, None, path)


def _matches(kernel: Kernel, spec: str) -> bool:
    return spec in (kernel.release, kernel.label)


def find_kernel(spec: str | None, *, need: str = "image", root: str = "") -> Kernel:
    """The kernel ``spec`` names, or the default one, having the part
    ``need`` (``"image"`` to boot, ``"headers"`` to build, ``"modules"``).

    ``spec``: an image file, a headers directory, a release or a label;
    None: the running kernel when it is installed with that part, else the
    newest cached amd64 kernel that has it. ``root``: the host's root
    directory (a parameter so tests can build one).
    """
    if spec and os.path.isfile(spec):
        return _from_image(spec)
    if spec and ("/" in spec or os.path.isdir(spec)):
        return _from_headers(spec)
    kernels = available_kernels(root)
    usable = [k for k in kernels if getattr(k, need) is not None]
    if need == "image":  # QEMU here emulates the host's machine only
        usable = [k for k in usable if k.arch in ("", _host_arch())]
    if spec:
        found = [k for k in usable if _matches(k, spec)]
        if found:
            return found[0]
        raise KernelNotFound(not_found_message(spec, need))
    release = os.uname().release
    for kernel in usable:
        if kernel.release == release and not kernel.cached:
            return kernel
    amd64 = [k for k in usable if k.cached and k.arch == "amd64"]
    if amd64:
        return amd64[-1]
    raise KernelNotFound(not_found_message(None, need))


def not_found_message(spec: str | None, need: str) -> str:
    """What is missing and what the user can do about it, in one line."""
    wanted = spec or os.uname().release
    if need == "headers":
        return (
            f"no kernel headers for {wanted}: install the Debian package "
            f"linux-headers-{wanted}, or pass --kernel HEADERS_DIR"
        )
    if spec is None:
        return (
            f"no kernel to boot: the running kernel {wanted} is not installed and no kernel "
            "is cached: install the Debian package linux-image-amd64, or pass --kernel IMAGE"
        )
    return (
        f"no kernel {wanted} to boot: install the Debian package linux-image-{wanted}, "
        "or pass --kernel IMAGE"
    )


__all__ = [
    "Kernel",
    "KernelNotFound",
    "architecture",
    "available_kernels",
    "cached_kernels",
    "find_kernel",
    "headers_release",
    "host_kernels",
    "is_headers_tree",
    "kernel_in_root",
    "not_found_message",
]
