"""Builds kept by what they were built from: a package version built
again for a kernel with the same sources, dkms.conf, overrides, headers
and signing certificate (:func:`~lkm.workflows.dkms.tree.build_digest`)
is copied from the last such build instead of compiled — after ``dkms
unbuild`` or a kernel's removal and reinstallation, say. The copies live
in the version's ``.lkm-builds/DIGEST/`` (a dot directory: dkms passes
over it, and it goes with the version), the newest :data:`KEEP` of them.
PRE_BUILD and POST_BUILD do not run for a reused build.
"""

from __future__ import annotations

import os
import shutil

from lkm.workflows.dkms.tree import Target, Tree

KEEP = 4  # builds kept per package version (each a few modules)


def cached_build(tree: Tree, t: Target, digest: str) -> str | None:
    path = f"{tree.builds_cache(t.module, t.version)}/{digest}"
    return path if os.path.isdir(f"{path}/module") else None


def restore_build(tree: Tree, t: Target, cached: str) -> str:
    """The cached build copied into ``KVER/ARCH``; its ``module/``."""
    base = tree.base_dir(t)
    # A dot name: neither tool takes it for an architecture if left behind.
    partial = f"{os.path.dirname(base)}/.{os.path.basename(base)}.lkm-new"
    os.makedirs(os.path.dirname(base), exist_ok=True)
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(cached, partial, symlinks=True)
    os.replace(partial, base)
    os.utime(cached)  # recently used: kept longest
    return f"{base}/module"


def store_build(tree: Tree, t: Target, digest: str) -> None:
    """Keep a copy of the build just made; the oldest beyond KEEP go."""
    cache = tree.builds_cache(t.module, t.version)
    target = f"{cache}/{digest}"
    partial = f"{target}.new"
    os.makedirs(cache, exist_ok=True)
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(tree.base_dir(t), partial, symlinks=True)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)
    entries = sorted(
        (e for e in os.scandir(cache) if e.is_dir() and not e.name.endswith(".new")),
        key=lambda e: e.stat().st_mtime,
        reverse=True,
    )
    for old in entries[KEEP:]:
        shutil.rmtree(old.path, ignore_errors=True)


__all__ = ["KEEP", "cached_build", "restore_build", "store_build"]
