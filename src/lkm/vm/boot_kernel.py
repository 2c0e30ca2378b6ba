"""Which kernel a VM boots: an image path, a fixture version or label, or
the host's own kernel.

``lkm vm run`` and ``lkm try`` take the same ``--kernel`` spellings: a
path to a ``vmlinuz-VERSION`` image next to ``lib/modules/VERSION``, or
the version or label (``6.1``, ``6.12``) of a Debian fixture kernel; by
default the host's running kernel when its image and modules are
installed, else the newest fixture kernel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lkm.errors import LkmError


@dataclass(frozen=True)
class KernelChoice:
    image: str
    moddir: str
    version: str


def choose_kernel(spec: str | None, root: str = "") -> KernelChoice:
    """The kernel to boot; ``root`` is the filesystem root holding /boot and
    /lib/modules (a parameter so tests can build one)."""
    from lkm.testing.debian_kernels import load_manifest

    if spec and os.path.isfile(spec):
        version = os.path.basename(spec).removeprefix("vmlinuz-")
        root = os.path.dirname(os.path.dirname(os.path.abspath(spec)))
        return KernelChoice(spec, f"{root}/lib/modules/{version}", version)
    fixtures = load_manifest()
    if spec:
        for kernel in fixtures:
            if spec in (kernel.version, kernel.label) and kernel.arch == "amd64":
                return KernelChoice(str(kernel.vmlinuz), str(kernel.indexed_moddir), kernel.version)
        raise LkmError(
            f"no kernel {spec}: give a vmlinuz path or a fixture version (./dev fixtures)"
        )
    release = os.uname().release
    host_image = f"{root}/boot/vmlinuz-{release}"
    host_modules = f"{root}/lib/modules/{release}"
    if os.path.exists(host_image) and os.path.isdir(host_modules):
        return KernelChoice(host_image, host_modules, release)
    amd64 = [k for k in fixtures if k.arch == "amd64"]
    if not amd64:
        raise LkmError(
            "no kernel to boot: the host has none installed and there are no fixtures"
            " (./dev fixtures)"
        )
    newest = amd64[-1]
    return KernelChoice(str(newest.vmlinuz), str(newest.indexed_moddir), newest.version)
