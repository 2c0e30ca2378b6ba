"""Which kernel a VM boots (see :func:`lkm.model.kernels.find_kernel`).

``lkm vm run`` and ``lkm try`` take the same ``--kernel`` spellings: a
path to a ``vmlinuz-VERSION`` image next to ``lib/modules/VERSION``, a
release, or a series label (``6.1``, ``6.12``) of an installed or cached
kernel; by default the host's running kernel when its image and modules
are installed, else the newest cached kernel.
"""

from __future__ import annotations

from lkm.model.kernels import KernelNotFound, find_kernel
from lkm.records import Record


class BootKernel(Record):
    """A kernel that has what booting it needs."""

    release: str
    image: str
    modules: str  # its module tree (the guest's /lib/modules/RELEASE)


def choose_kernel(spec: str | None, root: str = "") -> BootKernel:
    """The kernel to boot, with its image and module tree; ``root`` is the
    filesystem root holding /boot and /lib/modules (a parameter so tests
    can build one)."""
    kernel = find_kernel(spec, need="image", root=root)
    if kernel.image is None:  # a headers directory with no image of its release
        raise KernelNotFound(
            f"{spec}: no image of kernel {kernel.release} to boot: run 'lkm kernel fetch "
            f"{kernel.release}', or pass --kernel IMAGE"
        )
    if kernel.modules is None:
        raise KernelNotFound(
            f"kernel {kernel.release} has no module tree at lib/modules/{kernel.release} "
            f"next to {kernel.image}: run 'lkm kernel fetch {kernel.release}', or unpack "
            f"linux-image-{kernel.release} beside it"
        )
    return BootKernel(kernel.release, kernel.image, kernel.modules)


__all__ = ["BootKernel", "choose_kernel"]
