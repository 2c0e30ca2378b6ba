"""The kernel hooks that keep DKMS packages built: ``lkm dkms hooks``.

Debian's kernel packages run ``/etc/kernel/postinst.d/*`` with the new
kernel's release after installing it and ``/etc/kernel/prerm.d/*`` before
removing one; systemd's ``kernel-install`` runs
``/etc/kernel/install.d/*.install`` with ``add``/``remove`` and the
release. lkm's hooks:

- postinst (``dkms-lkm``, before ``initramfs-tools``): ``lkm dkms
  autoinstall -k RELEASE`` — every AUTOINSTALL package built and
  installed for the new kernel. Its status is the hook's, so a package
  that fails to build fails the kernel's
  configuration as Debian's dkms hook does, with one line per failure;
  missing headers are one line with the package that provides them, and
  the kernel installs.
- prerm: ``lkm dkms unbuild`` of every package built for the kernel
  going away. Unlike Debian's hook (``dkms remove``), the package stays
  added, so the next kernel still builds it.
- kernel-install: the same two, for ``add`` and ``remove``.

With ``--root`` they are written into an image (image builders), and
``lkm dkms autoinstall --root DIR`` does from outside what the hook does
inside.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable

from lkm.records import Record

Say = Callable[[str], None]

_HEADER = """\
#!/bin/sh
# Written by `lkm dkms hooks`; `lkm dkms hooks --remove` removes it.
"""
# The lkm to run: the one on PATH, else the one that wrote the hook (in
# an image: none but the image's own).
_FIND_LKM = """\
command -v lkm >/dev/null || @FALLBACK@
"""
_FALLBACK_HERE = 'lkm() { @LKM@ "$@"; }'
_FALLBACK_IMAGE = (
    '{ echo "lkm dkms: lkm is not installed: DKMS packages not handled for kernel $1" >&2; '
    "exit 0; }"
)
POSTINST = (
    _HEADER
    + """\
# Build and install every AUTOINSTALL DKMS package for the kernel being
# installed ($1).
kernel=$1
[ -n "$kernel" ] || exit 0
[ -f /etc/dkms/no-autoinstall ] && exit 0
"""
    + _FIND_LKM
    + """\
if [ ! -e "/lib/modules/$kernel/build/include" ]; then
    echo "lkm dkms: kernel $kernel has no headers (/lib/modules/$kernel/build):" \\
        "apt-get install linux-headers-$kernel; DKMS packages not built" >&2
    exit 0
fi
lkm dkms autoinstall -k "$kernel"
"""
)
PRERM = (
    _HEADER
    + """\
# Delete every DKMS package's build for the kernel being removed ($1); the
# packages stay added for the next kernel.
kernel=$1
[ -n "$kernel" ] || exit 0
"""
    + _FIND_LKM
    + """\
lkm dkms status -k "$kernel" 2>/dev/null |
while IFS=",:/ " read -r name version _ arch state _; do
    case $state in built|installed) ;; *) continue ;; esac
    lkm dkms unbuild "$name/$version" -k "$kernel/$arch"
done
rmdir "/lib/modules/$kernel/updates/dkms" "/lib/modules/$kernel/updates" 2>/dev/null
exit 0
"""
)
KERNEL_INSTALL = (
    _HEADER
    + """\
# kernel-install plugin: $1 is add or remove, $2 the kernel's release.
case $1 in
add) exec /etc/kernel/postinst.d/dkms-lkm "$2" ;;
remove) exec /etc/kernel/prerm.d/dkms-lkm "$2" ;;
esac
exit 0
"""
)


class Hook(Record):
    path: str  # under /etc
    text: str


# run-parts goes in name order: "dkms-lkm" comes before Debian's
# "initramfs-tools", so a new kernel's initramfs is made with its DKMS
# modules in place (as Debian's own "dkms" hook is placed); kernel-install
# runs 40- before dracut's and initramfs-tools' 50- plugins.
HOOKS = (
    Hook("/etc/kernel/postinst.d/dkms-lkm", POSTINST),
    Hook("/etc/kernel/prerm.d/dkms-lkm", PRERM),
    Hook("/etc/kernel/install.d/40-dkms-lkm.install", KERNEL_INSTALL),
)


def lkm_command() -> str:
    """How a hook runs this lkm when ``lkm`` is not on its PATH."""
    beside = f"{sys.prefix}/bin/lkm"
    if os.access(beside, os.X_OK):
        return shlex.quote(beside)
    return f"{shlex.quote(sys.executable)} -m lkm"


def write_hooks(root: str, say: Say) -> list[str]:
    """Write the hooks under ``root`` ("" for this machine); the paths."""
    written = []
    for hook in HOOKS:
        path = f"{root}{hook.path}"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = f"{path}.lkm-new"
        fallback = _FALLBACK_IMAGE if root else _FALLBACK_HERE.replace("@LKM@", lkm_command())
        with open(partial, "w", encoding="utf-8") as file:
            file.write(hook.text.replace("@FALLBACK@", fallback))
        os.chmod(partial, 0o755)
        os.replace(partial, path)
        say(f"Wrote {path}")
        written.append(path)
    return written


def remove_hooks(root: str, say: Say) -> list[str]:
    removed = []
    for hook in HOOKS:
        path = f"{root}{hook.path}"
        if os.path.lexists(path):
            os.unlink(path)
            say(f"Removed {path}")
            removed.append(path)
    return removed


__all__ = ["HOOKS", "Hook", "lkm_command", "remove_hooks", "write_hooks"]
