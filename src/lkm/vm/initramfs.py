"""The initramfs of lkm's test VM: busybox, the boot modules, an init script.

The guest needs virtio (PCI transport), 9p over virtio to see the host's
root, and overlayfs to make that read-only view writable in memory. Which
module files that takes, and in which order, comes from the kernel's own
module directory through :class:`~lkm.model.database.ModuleDatabase`
(modules built into the kernel need nothing). lkm decompresses them, so the
guest loads plain ``.ko`` files with busybox's insmod.

Every process the init script starts costs 10-20 ms under TCG (a fork
and an exec of busybox), so it starts few: busybox's applets run without
``--install``'s links, and the mounts go in groups through ``mount -a`` on
a table the script holds. (One ``modprobe -a`` for all the boot modules
was slower than an insmod each.)
"""

from __future__ import annotations

import os
import shlex

from lkm.errors import LkmError
from lkm.formats.cpio import Member, write
from lkm.formats.module_file import module_name_from_path, open_module
from lkm.model.database import ModuleDatabase
from lkm.system.files import BINARY, read_file
from lkm.vm.serial import GUEST_CONSOLE, STDIN, WINSIZE

# virtio_console: the serial ports lkm vm shell's console and a step's stdin use.
BOOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay", "virtio_console")
HOST_TAG = "lkmhost"
SCRATCH_TAG = "lkmscratch"
BUSYBOX_PATHS = ("/bin/busybox", "/usr/bin/busybox")
NINEP = "trans=virtio,version=9p2000.L"
# How the guest mounts the host's root, by share type (9p or virtiofs):
# (type, options) of its fstab line. cache=mmap: the pages of a mapped
# file (a program, its libraries) are read through the page cache, with
# read-ahead, instead of one request a page fault; metadata and read()
# stay uncached, so the guest still sees what the host writes while it
# runs (a module lkm try builds). A cold python3 starts in 1.1 s instead
# of 1.6 s under TCG.
HOST_MOUNTS = {
    "9p": ("9p", f"{NINEP},ro,cache=mmap"),
    "virtiofs": ("virtiofs", "ro"),
}


# Where the kernel's module requests go in the guest (/proc/sys/kernel/modprobe).
MODULE_HELPER = "/sbin/lkm-module-helper"
DEFAULT_MODPROBE = "/sbin/modprobe"


def module_helper_script(modprobe: str = DEFAULT_MODPROBE) -> str:
    """The program the guest kernel runs for a module it needs
    (``request_module``: ``-q -- ALIAS``). The kernel runs it in PID 1's
    root — this initramfs, which has no module tree — as root, with a
    minimal environment and file descriptors 0–2 closed; so it runs
    ``modprobe`` (the host root's, kmod's or lkm's) in the overlay root the
    commands see, as a real system's would run, after saying in the kernel
    log what was asked."""
    return f"""#!/bin/busybox sh
echo "lkm-vm: module request: {modprobe} $*" >/dev/kmsg
exec /bin/busybox chroot /root {modprobe} "$@"
"""


class InitramfsError(LkmError):
    """What the VM needs is missing; the message says what."""


def find_busybox() -> str:
    for path in BUSYBOX_PATHS:
        if os.path.exists(path):
            return path
    raise InitramfsError("busybox not found: install the Debian package busybox-static")


def boot_module_files(moddir: str, share: str = "9p") -> list[str]:
    """Module files the guest must load, dependencies first."""
    wanted = BOOT_MODULES + (("virtiofs",) if share == "virtiofs" else ())
    with ModuleDatabase(moddir) as db:
        closure = db.closure(wanted, firmware=False, softdeps=False)
    if closure.missing:
        raise InitramfsError(
            f"{moddir} has no module for {', '.join(closure.missing)} (is it indexed?)"
        )
    return list(closure.modules)


def init_script(
    module_names: list[str], kernel: str, moddir: str, share: str = "9p", headers: str = ""
) -> str:
    """The guest's /init: set up the host view, then run steps until told to stop.

    Each step runs chrooted in an overlay of the host root (writable,
    changes kept in memory; host files everywhere stay visible, /tmp
    included) in which /lib/modules holds only the booted kernel's module
    tree (the host's own trees, if any, are hidden under a tmpfs: what the
    guest sees does not depend on what the host has installed). That tree
    is a bind of the host's, under an overlay of its own whose writes are
    kept in memory too, so that a step can install modules and index the
    tree (``lkm install``, ``depmod``) without reaching the host. The host
    hands over step N as ``/scratch/step-N.cmd`` (a shell script, created
    by rename so it is never seen half-written); the guest
    leaves its stdout and stderr beside it and writes ``step-N.status``
    last. ``/scratch/quit`` powers the guest off. Boot is quiet; after it
    every kernel message goes to the console, where the host finds each
    step's share (and ``lkm-vm: init`` and ``lkm-vm: ready``, how far the
    boot is). A step whose ``step-N.stdin`` exists reads the ``lkm.stdin``
    serial port; one whose ``step-N.tty`` exists runs on the console
    (``/dev/hvc0``) as its controlling tty, in a session of its own, its
    window size set from the ``lkm.winsize`` port (see
    :mod:`lkm.vm.serial`). ``headers``: the kernel's headers tree, a path
    in the host's root, which the module tree's ``build`` link then names.
    ``module_names``: the boot modules, dependencies first, as
    :func:`build_initramfs` puts them in ``/modules``.
    """
    build = f"/root/lib/modules/{kernel}/build"
    build_link = f"ln -sfn {shlex.quote(headers)} {build}\n" if headers else ""
    loads = "".join(f"insmod /modules/{name}.ko\n" for name in module_names)
    host_type, host_options = HOST_MOUNTS[share]
    tree = f"/root/lib/modules/{kernel}"
    # Directories on the tmpfs /rw: both overlays' upper and work
    # directories, and the one bound on /lib/modules that holds the tree.
    memory_dirs = f"/rw/upper /rw/work /rw/modules/upper /rw/modules/work /rw/lib-modules/{kernel}"
    shares = _mount_all(
        [
            ("sysfs", "/sys", "sysfs", "defaults"),
            ("devtmpfs", "/dev", "devtmpfs", "defaults"),
            (HOST_TAG, "/host", host_type, host_options),
            (SCRATCH_TAG, "/scratch", "9p", NINEP),
            ("tmpfs", "/rw", "tmpfs", "defaults"),
        ],
        "cannot mount the host root or scratch",
    )
    # The module tree: the host's, bound on a directory of its own on a
    # tmpfs (which hides the host's other trees), under an overlay of its
    # own whose writes stay in memory.
    binds = _mount_all(
        [
            ("/proc", "/root/proc", "none", "bind"),
            ("/sys", "/root/sys", "none", "bind"),
            ("/dev", "/root/dev", "none", "bind"),
            ("/rw/lib-modules", "/root/lib/modules", "none", "bind"),
            (f"/host{moddir}", tree, "none", "bind"),
            ("overlay", tree, "overlay",
             f"lowerdir={tree},upperdir=/rw/modules/upper,workdir=/rw/modules/work"),
            ("/scratch", "/root/scratch", "none", "bind"),
        ],
        "cannot mount the module tree or scratch in the root",
    )  # fmt: skip
    # Busybox's shell starts an applet that has no link in PATH through
    # /proc/self/exe: /proc is mounted first, through busybox's own path.
    return f"""#!/bin/busybox sh
echo lkm-vm: init
/bin/busybox mount -t proc proc /proc
{loads}{shares}mkdir -p {memory_dirs}
mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work /root \\
    || echo LKM-VM: cannot mount the overlay
mkdir -p /root/proc /root/sys /root/dev /root/lib/modules /root/scratch
{binds}{build_link}echo {MODULE_HELPER} >/proc/sys/kernel/modprobe
# The device of the virtio serial port named $1, in $port: the shell's
# builtins only (a command substitution or a cat is a process, 10-20 ms).
find_port() {{
    port=
    for p in /sys/class/virtio-ports/*; do
        read -r name <$p/name
        [ "$name" = "$1" ] && port=/dev/${{p##*/}}
    done
}}
follow_sizes() {{
    [ -n "$sizes" ] && return
    find_port {WINSIZE}
    sizes=$port
    while read -r rows cols; do stty -F {GUEST_CONSOLE} rows $rows cols $cols; done <$sizes &
}}
echo 8 >/proc/sys/kernel/printk
# Steps run as root with root's home (the kernel gave init HOME=/): lkm in
# the guest then finds the host's cache (~/.cache/lkm, read-only below the
# overlay), such as the kernel's signing certificate it took seconds to find.
export HOME=/root
# The loop waits with the shell's read on a FIFO nobody writes: sleep is a
# process each time (busybox runs it through a fork and an exec).
mkfifo /wait
echo lkm-vm: ready
n=0
while [ ! -e /scratch/quit ]; do
    step=/scratch/step-$n
    if [ -e $step.cmd ]; then
        if [ -e $step.tty ]; then
            follow_sizes
            setsid -c chroot /root /bin/sh $step.cmd <>{GUEST_CONSOLE} >&0 2>&0
        else
            input=/dev/null
            if [ -e $step.stdin ]; then find_port {STDIN}; input=$port; fi
            chroot /root /bin/sh $step.cmd <$input >$step.out 2>$step.err
        fi
        echo $? >$step.tmp
        mv $step.tmp $step.status
        n=$((n + 1))
    else
        read -t 0.02 nothing <>/wait
    fi
done
sync
poweroff -f
"""


def _mount_all(entries: list[tuple[str, str, str, str]], failure: str) -> str:
    """Shell that mounts ``entries`` (source, mount point, type, options)
    in order with one busybox ``mount -a``, its table on stdin (a quoted
    here-document: nothing in it is expanded); ``failure`` is said on the
    console when any of them fails (busybox names which before)."""
    table = "".join(
        " ".join(_fstab_field(field) for field in entry) + " 0 0\n" for entry in entries
    )
    return f"mount -a -T /proc/self/fd/0 <<'EOF' || echo LKM-VM: {failure}\n{table}EOF\n"


def _fstab_field(text: str) -> str:
    """``text`` as one fstab field: getmntent(3) reads these octal escapes."""
    for char, escape in (("\\", "\\134"), (" ", "\\040"), ("\t", "\\011"), ("\n", "\\012")):
        text = text.replace(char, escape)
    return text


def build_initramfs(
    moddir: str,
    kernel: str,
    share: str = "9p",
    modprobe: str = DEFAULT_MODPROBE,
    headers: str = "",
) -> bytes:
    """The cpio archive the VM boots with; ``modprobe``: the program (a
    path in the host's root) that serves the kernel's module requests;
    ``headers``: see :func:`init_script`."""
    directories = ("bin", "sbin", "dev", "proc", "sys", "modules", "host", "scratch", "rw", "root")
    members = [Member.directory(d) for d in directories]
    helper = module_helper_script(modprobe).encode("utf-8", "surrogateescape")
    members.append(Member.file(MODULE_HELPER.lstrip("/"), helper, 0o755))
    members.append(Member.file("bin/busybox", read_file(find_busybox(), BINARY), 0o755))
    members.append(Member.symlink("bin/sh", "busybox"))  # for whatever expects one
    names = []
    for path in boot_module_files(moddir, share):
        with open_module(path) as module:
            raw = bytes(module.data[: len(module.data)])
        name = module_name_from_path(path)
        names.append(name)
        members.append(Member.file(f"modules/{name}.ko", raw))
    script = init_script(names, kernel, moddir, share, headers)
    members.append(Member.file("init", script.encode(), 0o755))
    return write(members)
