"""The kernel file QEMU boots: a PVH-capable ``vmlinux`` when there is one.

Booting the uncompressed kernel through its PVH entry skips the bzImage
decompressor, which under TCG costs seconds. lkm extracts ``vmlinux``
once per image into its cache (keyed by the image's path, size, mtime
and inode) and falls back to the bzImage itself when the image has no
PVH entry or a payload lkm cannot decompress.
"""

from __future__ import annotations

import hashlib
import os

from lkm.errors import FormatError
from lkm.system.files import BINARY, read_file
from lkm.system.paths import VM, cache_path, make_cache_dir


def bootable_image(bzimage: str, cache_dir: str | None = None) -> str:
    """The path QEMU's ``-kernel`` should get for ``bzimage``."""
    st = os.stat(bzimage)
    key = f"{os.path.realpath(bzimage)}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    directory = os.path.join(cache_dir, VM) if cache_dir else cache_path(VM)
    cached = os.path.join(directory, f"vmlinux-{digest}")
    refusal = cached + ".nopvh"
    if os.path.exists(cached):
        return cached
    if os.path.exists(refusal):
        return bzimage
    if not make_cache_dir(directory):
        return bzimage  # boots too, only without the cached PVH shortcut
    from lkm.formats.bzimage import has_pvh_entry, vmlinux
    from lkm.system.atomic import replace_file

    image = read_file(bzimage, BINARY)
    try:
        elf = vmlinux(image)
    except FormatError:
        elf = b""
    if not elf or not has_pvh_entry(elf):
        replace_file(refusal, b"", f".{os.getpid()}")
        return bzimage
    replace_file(cached, elf, f".{os.getpid()}")
    return cached
