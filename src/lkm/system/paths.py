"""Where lkm keeps what it makes for itself: one cache directory.

``LKM_CACHE`` when set, else ``$XDG_CACHE_HOME/lkm`` (when absolute: the
XDG spec says to ignore a relative value), else ``~/.cache/lkm`` — looked
up at call time, so a test (or a caller) that sets ``LKM_CACHE`` moves
everything at once. The cache is only created where the user could expect
it (:func:`make_cache_dir`): with ``HOME=/nonexistent``, as Debian's
``nobody`` has, lkm works without a cache rather than create ``/nonexistent``.
Inside it, each user of the cache has its own subdirectory (:data:`KERNELS`, :data:`DEPMOD`, …),
named here and nowhere else.
"""

from __future__ import annotations

import os

# Subdirectories of the cache, one per user of it.
KERNELS = "kernels"  # unpacked Debian kernel packages, one root per release
INDEXED = "indexed"  # module trees indexed by kmod's depmod (test fixtures)
DEPMOD = "depmod"  # depmod's per-tree facts and outputs
VM = "vm"  # vmlinux images extracted from bzImages
KVM_PROBE = "kvm-probe"  # whether KVM works, per host boot
KERNEL_KEYS = "kernel-keys"  # module signing certificates found in kernel images


def cache_dir() -> str:
    """The cache directory (not created)."""
    explicit = os.environ.get("LKM_CACHE")
    if explicit:
        return explicit
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return os.path.join(xdg, "lkm")
    return os.path.join(os.path.expanduser("~"), ".cache", "lkm")


def make_cache_dir(directory: str) -> bool:
    """Create ``directory`` (a directory lkm caches in) unless that would
    write where nobody asked; True when it exists afterwards."""
    if os.path.isdir(directory):
        return True
    if not _may_create(directory):
        return False
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError:
        return False
    return True


def _may_create(directory: str) -> bool:
    """Whether making ``directory`` is asked for: it is outside the default
    cache (the caller named it), or ``LKM_CACHE`` names the cache, or the
    default cache would be made under a directory that exists and that the
    user owns (the home directory, or the parent of ``XDG_CACHE_HOME``)."""
    if os.environ.get("LKM_CACHE"):
        return True
    root = cache_dir()
    if os.path.commonpath([os.path.abspath(directory), os.path.abspath(root)]) != os.path.abspath(
        root
    ):
        return True
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    anchor = os.path.dirname(xdg.rstrip("/")) if os.path.isabs(xdg) else os.path.expanduser("~")
    try:
        return os.stat(anchor or "/").st_uid == os.geteuid()
    except OSError:
        return False


def make_absolute(path: str) -> str:
    """kmod's path_make_absolute_cwd: prefix the cwd, no normalisation
    (here, not with the module directory's reader: depmod's options take
    it without loading that)."""
    if path.startswith("/"):
        return path
    return f"{os.getcwd()}/{path}"


def cache_path(*parts: str) -> str:
    """A path inside the cache directory (not created)."""
    return os.path.join(cache_dir(), *parts)


__all__ = [
    "DEPMOD",
    "INDEXED",
    "KERNELS",
    "KERNEL_KEYS",
    "KVM_PROBE",
    "VM",
    "cache_dir",
    "cache_path",
    "make_absolute",
    "make_cache_dir",
]
