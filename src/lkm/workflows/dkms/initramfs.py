"""The initramfs after ``lkm dkms install``/``uninstall``: rebuilt when the
package asks (``REMAKE_INITRD=yes``, which dkms 3.0.10 reads and ignores,
so boot-critical drivers went missing from initramfs images) or when one
of its modules drives the device the running system's root filesystem is
on — through the system's own tool, ``update-initramfs`` (initramfs-tools)
or ``dracut``, and only for a kernel that has an initramfs already.

The root's device: ``stat("/")``'s device number names its block device
in ``/sys/dev/block``; the modaliases of that device and of every parent
device (the disk of a partition, its virtio or PCI function, …), and of
the devices under a device-mapper or md device (``slaves/``), are what a
driver module's ``alias=`` patterns match, as udev and modprobe match
them at boot; ``fs-TYPE`` of the root filesystem's type is what its
filesystem module (zfs, btrfs…) answers to.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from lkm.errors import LkmError
from lkm.workflows.dkms.tree import DkmsError, Target, Tree

Say = Callable[[str], None]


def device_modaliases(mountpoint: str = "/", sysfs: str = "/sys") -> list[str]:
    """Modaliases of the devices the filesystem at ``mountpoint`` lives on
    (none for a filesystem without a block device: tmpfs, 9p, NFS…)."""
    device = os.stat(mountpoint).st_dev
    if os.major(device) == 0:
        return []
    start = f"{sysfs}/dev/block/{os.major(device)}:{os.minor(device)}"
    if not os.path.exists(start):
        return []
    found: list[str] = []
    _collect(os.path.realpath(start), os.path.realpath(f"{sysfs}/devices"), found, set())
    return found


def _collect(device: str, top: str, found: list[str], seen: set[str]) -> None:
    if device in seen:
        return
    seen.add(device)
    try:
        slaves = sorted(os.listdir(f"{device}/slaves"))
    except OSError:
        slaves = []
    for slave in slaves:
        _collect(os.path.realpath(f"{device}/slaves/{slave}"), top, found, seen)
    path = device
    while path.startswith(f"{top}/"):
        try:
            with open(f"{path}/modalias", encoding="ascii", errors="replace") as file:
                alias = file.read().strip()
        except OSError:
            alias = ""
        if alias and alias not in found:
            found.append(alias)
        path = os.path.dirname(path)


def drives(module_path: str, modaliases: list[str]) -> str | None:
    """The first of ``modaliases`` the module's ``alias=`` patterns match."""
    from lkm.errors import LkmError
    from lkm.formats.fnmatch import fnmatch
    from lkm.formats.module_file import open_module

    try:
        pairs = open_module(module_path).modinfo() or []
    except (LkmError, OSError):
        return None
    patterns = [value for key, value in pairs if key == "alias"]
    for modalias in modaliases:
        if any(fnmatch(pattern, modalias) for pattern in patterns):
            return modalias
    return None


def reason_to_refresh(tree: Tree, t: Target, remake: bool, modules: list[str]) -> str | None:
    """Why the kernel's initramfs needs the change, or None."""
    if remake:
        return "REMAKE_INITRD=yes in its dkms.conf"
    if t.kernel != os.uname().release or tree.settings.root:
        return None  # the running system's root says nothing about another kernel's
    modaliases = device_modaliases("/")
    fstype = root_filesystem_type()
    if fstype:
        modaliases.append(f"fs-{fstype}")  # the filesystem's own module: zfs, btrfs…
    for path in modules:
        matched = drives(path, modaliases)
        if matched is not None:
            return f"{os.path.basename(path)} drives the root filesystem's device ({matched})"
    return None


def root_filesystem_type(mounts: str = "/proc/self/mounts") -> str:
    """The type of the filesystem mounted on / ("" when unknown)."""
    try:
        with open(mounts, encoding="utf-8", errors="replace") as file:
            lines = file.readlines()
    except OSError:
        return ""
    found = ""
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and fields[1] == "/" and fields[2] != "rootfs":
            found = fields[2]  # the last mount on / is the one in use
    return found


def refresh_initramfs(tree: Tree, t: Target, reason: str, say: Say) -> None:
    """Rebuild the kernel's existing initramfs with the system's tool."""
    import shutil

    from lkm.system.run import run

    root = tree.settings.root
    image = _existing_image(root, t.kernel)
    if image is None:
        say(f"No initramfs for kernel {t.kernel} in {root}/boot: nothing to update ({reason})")
        return
    chroot = ["chroot", root] if root else []
    tools = (
        ("update-initramfs", ["update-initramfs", "-u", "-k", t.kernel]),
        ("dracut", ["dracut", "-f", image.removeprefix(root), t.kernel]),
    )
    for name, argv in tools:
        found = _tool(root, name) if root else shutil.which(name)
        if found is None:
            continue
        say(f"Updating the initramfs of {t.kernel} ({reason}): {' '.join(argv)}")
        try:
            done = run([*chroot, *argv], check=False, stdout="inherit", stderr="pipe")
        except LkmError as exc:
            raise DkmsError(f"{t.label}: installed, but {name} could not run: {exc}", 1) from None
        if done.status != 0:
            last = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
            raise DkmsError(
                f"{t.label}: installed, but {name} failed (exit status {done.status}) "
                f"updating {image}: {last[0]}",
                1,
            )
        return
    say(
        f"Warning: {t.label}: {reason}, but neither update-initramfs nor dracut is "
        f"installed: rebuild {image} by hand"
    )


def _existing_image(root: str, kernel: str) -> str | None:
    for name in (f"initrd.img-{kernel}", f"initramfs-{kernel}.img"):
        path = f"{root}/boot/{name}"
        if os.path.exists(path):
            return path
    return None


def _tool(root: str, name: str) -> str | None:
    for directory in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        if os.access(f"{root}{directory}/{name}", os.X_OK):
            return f"{directory}/{name}"
    return None


__all__ = [
    "device_modaliases",
    "drives",
    "reason_to_refresh",
    "refresh_initramfs",
    "root_filesystem_type",
]
