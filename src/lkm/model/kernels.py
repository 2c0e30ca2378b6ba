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
# Debian architecture -> the flavour of its standard kernel (what
# ``linux-image-ARCH`` style meta-packages are named after).
_STANDARD_FLAVOURS = {
    "amd64": "amd64",
    "arm64": "arm64",
    "armhf": "armmp",
    "s390x": "s390x",
    "i386": "686-pae",
    "ppc64el": "powerpc64le",
    "riscv64": "riscv64",
    "loong64": "loong64",
    "mips64el": "mips64r2el",
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


def host_arch() -> str:
    """The machine's Debian architecture ("" when lkm does not know it)."""
    return _MACHINES.get(os.uname().machine, "")


def flavour_of(arch: str) -> str:
    """The flavour of an architecture's standard Debian kernel (``armmp``
    for armhf); the architecture's own name when the table lacks it."""
    return _STANDARD_FLAVOURS.get(arch, arch)


def known_architectures() -> list[str]:
    """The Debian architectures whose standard kernel flavour lkm knows."""
    return sorted(_STANDARD_FLAVOURS)


def version_key(release: str) -> tuple[int, ...]:
    """Sort key putting releases in version order (``6.1.0-9`` before ``6.1.0-57``)."""
    return tuple(int(n) for n in re.findall(r"\d+", release))


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
    """The release a headers tree was made for, as a module built against
    it will say in its vermagic: ``UTS_RELEASE`` (what vermagic is made
    of), else the tree's Debian directory name ``linux-headers-RELEASE``,
    else ``include/config/kernel.release``, else None. Never the top
    Makefile's VERSION fields; and kernel.release only last, because
    Debian's 6.1 headers hold the upstream version there, not the release
    their modules carry."""
    text = _headers_text(path, "include/generated/utsrelease.h")
    match = _UTS_RELEASE.search(text or "")
    if match:
        return match.group(1)
    name = os.path.basename(os.path.abspath(path))
    if name.startswith("linux-headers-") and name != "linux-headers-":
        return name.removeprefix("linux-headers-")
    return (_headers_text(path, "include/config/kernel.release") or "").strip() or None


def _headers_text(path: str, name: str) -> str | None:
    try:
        return read_file(f"{path}/{name}", HEADERS_TEXT).decode("utf-8", "replace")
    except OSError:
        return None


def _existing(path: str) -> str | None:
    return path if os.path.exists(path) else None


def _headers_under(root: str, release: str) -> str | None:
    # Debian's own place first: the build link names it on an installed
    # system, and a path without links is what make's messages then show.
    for candidate in (
        f"{root}/usr/src/linux-headers-{release}",
        f"{root}/lib/modules/{release}/build",
    ):
        if is_headers_tree(candidate):
            return candidate
    return None


def kernel_in_root(root: str, release: str, cached: bool = False, indexed: str = "") -> Kernel:
    """The kernel ``release`` as laid out under ``root`` (``""``: the host);
    ``indexed``: a root holding an indexed copy of its module tree."""
    moddir = f"{root}/lib/modules/{release}"
    indexed_moddir = f"{indexed}/lib/modules/{release}" if indexed else ""
    modules = moddir
    if not os.path.exists(f"{moddir}/modules.dep.bin") and os.path.isdir(indexed_moddir or "\0"):
        modules = indexed_moddir  # a cache from before lkm indexed trees in place
    default_arch = "" if cached else host_arch()
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
        if release.startswith(".") or not os.path.isdir(root):
            continue  # a fetch or removal under way
        indexed = os.path.join(base, INDEXED, release)
        kernels.append(kernel_in_root(root, release, cached=True, indexed=indexed))
    return kernels


def _version_key(kernel: Kernel) -> tuple[int, ...]:
    return version_key(kernel.release)


def available_kernels(root: str = "", cache: str | None = None) -> list[Kernel]:
    """The host's kernels, then the cached ones, each group oldest first."""
    return host_kernels(root) + sorted(cached_kernels(cache), key=_version_key)


def _is_bzimage(path: str) -> bool:
    from lkm.formats.bzimage import is_bzimage

    try:
        return is_bzimage(read_head(path, 0x206))
    except OSError:
        return False


def _from_image(path: str, root: str) -> Kernel:
    """An image named ``vmlinuz-V`` in ``ROOT/boot``: its tree is ``ROOT``;
    parts not there come from a kernel of the same release elsewhere."""
    if not _is_bzimage(path):
        raise KernelNotFound(
            f"{path}: not a kernel image (no bzImage header); pass a vmlinuz file, "
            "a kernel release or a headers directory"
        )
    release = os.path.basename(path).removeprefix("vmlinuz-")
    tree = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    return _completed(_kernel_at(tree, release).replace(image=path), root)


def _kernel_at(tree: str, release: str) -> Kernel:
    """The kernel ``release`` laid out under ``tree``, which may be one of
    lkm's cache's."""
    cache = cache_dir()
    cached = os.path.dirname(tree) == os.path.abspath(os.path.join(cache, KERNELS))
    indexed = os.path.join(cache, INDEXED, release) if cached else ""
    return kernel_in_root(tree, release, cached, indexed)


def _from_headers(path: str, root: str) -> Kernel:
    """A headers tree: its release as its modules' vermagic will say, with
    the image and modules of that release when they are beside it (Debian's
    layout, ``ROOT/usr/src/linux-headers-V``), installed or cached."""
    if not is_headers_tree(path):
        raise KernelNotFound(
            f"{path}: not a kernel headers tree (no Makefile and .config); "
            "point --kernel at e.g. /usr/src/linux-headers-VERSION"
        )
    path = os.path.abspath(path)
    release = headers_release(path) or os.path.basename(path)
    beside = _kernel_at(os.path.dirname(os.path.dirname(os.path.dirname(path))), release)
    kernel = beside.replace(headers=path)
    return _completed(kernel, root)


def _completed(kernel: Kernel, root: str) -> Kernel:
    """``kernel`` with the parts it lacks taken from another kernel of the
    same release (the machine's, or lkm's cache's): one release, one
    image, one module tree, one headers tree wherever the user points."""
    for other in available_kernels(root):
        if other.release != kernel.release:
            continue
        kernel = kernel.replace(
            image=kernel.image or other.image,
            modules=kernel.modules or other.modules,
            headers=kernel.headers or other.headers,
            cached=kernel.cached or (other.cached and kernel.image is None),
        )
    return kernel


def _matches(kernel: Kernel, spec: str) -> bool:
    name = spec.removeprefix("linux-image-").removeprefix("linux-headers-")
    return name in (kernel.release, kernel.label)


def find_kernel(spec: str | None, *, need: str = "image", root: str = "") -> Kernel:
    """The kernel ``spec`` names, or the default one, having the part
    ``need`` (``"image"`` to boot, ``"headers"`` to build, ``"modules"``).

    ``spec``: an image file, a headers directory, a release or a label;
    None: the running kernel when it is installed with that part, else the
    newest cached amd64 kernel that has it. ``root``: the host's root
    directory (a parameter so tests can build one).
    """
    if spec and os.path.isfile(spec):
        return _from_image(spec, root)
    if spec and ("/" in spec or os.path.isdir(spec)):
        return _from_headers(spec, root)
    kernels = available_kernels(root)
    usable = [k for k in kernels if getattr(k, need) is not None]
    if need == "image":  # QEMU here emulates the host's machine only
        usable = [k for k in usable if k.arch in ("", host_arch())]
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
    """What is missing and the command that fixes it, in one line."""
    wanted = spec or os.uname().release
    if need == "headers":
        return (
            f"no kernel headers for {wanted}: run 'lkm kernel fetch {wanted}' (a Debian "
            f"kernel into lkm's cache) or 'lkm prepare --kernel {wanted}' (installs "
            f"linux-headers-{wanted}), or pass --kernel HEADERS_DIR"
        )
    if spec is None:
        return (
            f"no kernel to boot: the running kernel {wanted} is not installed and no kernel "
            "is in lkm's cache: run 'lkm kernel fetch' (Debian's default kernel), "
            "or pass --kernel IMAGE"
        )
    return (
        f"no kernel {wanted} to boot: run 'lkm kernel fetch {wanted}' (a Debian kernel into "
        "lkm's cache), or pass --kernel IMAGE"
    )


__all__ = [
    "Kernel",
    "KernelNotFound",
    "architecture",
    "available_kernels",
    "cached_kernels",
    "find_kernel",
    "flavour_of",
    "headers_release",
    "host_arch",
    "host_kernels",
    "is_headers_tree",
    "kernel_in_root",
    "known_architectures",
    "not_found_message",
    "version_key",
]
