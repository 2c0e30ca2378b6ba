"""Where lkm keeps what it makes for itself: one cache directory.

``LKM_CACHE`` when set, else ``$XDG_CACHE_HOME/lkm``, else
``~/.cache/lkm`` — looked up at call time, so a test (or a caller) that
sets ``LKM_CACHE`` moves everything at once. Inside it, each user of the
cache has its own subdirectory (:data:`KERNELS`, :data:`DEPMOD`, …),
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


def cache_dir() -> str:
    """The cache directory (not created)."""
    explicit = os.environ.get("LKM_CACHE")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "lkm")


def cache_path(*parts: str) -> str:
    """A path inside the cache directory (not created)."""
    return os.path.join(cache_dir(), *parts)


__all__ = ["DEPMOD", "INDEXED", "KERNELS", "KVM_PROBE", "VM", "cache_dir", "cache_path"]
