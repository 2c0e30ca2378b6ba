"""``lkm dkms --root`` (an image being built) and lkm's kernel hooks, on the
real Debian 6.1 kernel fixture with a small module package.

The image is a directory: its module tree (a copy of the fixture's), its
headers link, its /usr/src, /var/lib/dkms and /etc. lkm works on it from
outside with ``--root``; then the hooks ``lkm dkms hooks --root`` wrote
into it run as a kernel package runs them (``run-parts --arg=RELEASE``)
and as ``kernel-install`` does, in a mount namespace where the image's
trees are bound over /lib/modules, /usr/src, /var/lib/dkms, /etc/kernel
and /etc/dkms — so the host's are never read or written.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from conftest import command, lkm

from lkm.testing.debian_kernels import KernelFixture
from lkm.testing.host import mountpoints

PACKAGE = "lkmhello"
SOURCE = """\
#include <linux/init.h>
#include <linux/module.h>

static int __init lkmhello_init(void) { return 0; }
static void __exit lkmhello_exit(void) {}
module_init(lkmhello_init);
module_exit(lkmhello_exit);
MODULE_LICENSE("GPL");
"""
CONF = f"""\
PACKAGE_NAME={PACKAGE}
PACKAGE_VERSION=1.0
BUILT_MODULE_NAME={PACKAGE}
DEST_MODULE_LOCATION=/extra
AUTOINSTALL=yes
"""
# The image's trees, bound where the hooks and initramfs-tools look for them.
BOUND = (
    "lib/modules",
    "usr/src",
    "var/lib/dkms",
    "etc/kernel",
    "etc/dkms",
    "boot",
    "etc/initramfs-tools",
    "var/lib/initramfs-tools",
)
_BIND_AND_RUN = f"""
root=$1; shift
for dir in {" ".join(BOUND)}; do
    mount --bind "$root/$dir" "/$dir" || exit 99
done
exec "$@"
"""


def _image(tmp_path: Path, kernel: KernelFixture, conf: str = CONF) -> Path:
    root = tmp_path / "image"
    moddir = root / "lib" / "modules" / kernel.version
    shutil.copytree(kernel.moddir, moddir, symlinks=True, copy_function=_link_modules)
    (moddir / "build").unlink(missing_ok=True)
    (moddir / "source").unlink(missing_ok=True)
    headers = f"/usr/src/linux-headers-{kernel.version}"
    os.symlink(headers, moddir / "build")  # absolute: the image's own path
    (root / "usr" / "src").mkdir(parents=True)
    os.symlink(kernel.headers, f"{root}{headers}")
    package = root / "usr" / "src" / f"{PACKAGE}-1.0"
    package.mkdir()
    (package / f"{PACKAGE}.c").write_text(SOURCE)
    (package / "Makefile").write_text(f"obj-m := {PACKAGE}.o\n")
    (package / "dkms.conf").write_text(conf)
    for directory in BOUND:
        (root / directory).mkdir(parents=True, exist_ok=True)
    # A Debian image: Debian's dkms puts every module in updates/dkms.
    (root / "etc" / "os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    return root


def _link_modules(src: str, dst: str) -> None:
    if ".ko" in os.path.basename(src):
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def _in_image(root: Path, argv: list[str]) -> tuple[int, str]:
    """Run ``argv`` with the image's trees in place of the host's."""
    # The image's lkm: the one under test, found on PATH as in an image.
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    with mountpoints(*(f"/{d}" for d in BOUND)):
        done = command(
            ["unshare", "-m", "sh", "-c", _BIND_AND_RUN, "sh", str(root), *argv],
            text=True,
            timeout=600,
            # depmod's cache beside the image, not in the host's /var/cache
            env=dict(os.environ, PATH=path, LKM_CACHE=f"{root}.lkm-cache"),
        )
    return done.returncode, done.stdout + done.stderr


def _status(root: Path) -> str:
    return lkm("dkms", ["status", "--root", str(root)]).stdout.decode()


def test_root_and_kernel_hooks(
    kernel_61: KernelFixture,
    tmp_path: Path,
    report,  # type: ignore[no-untyped-def]
) -> None:
    kernel = kernel_61
    root = _image(tmp_path, kernel)
    version_dir = root / "var/lib/dkms" / PACKAGE / "1.0"
    placed = root / "lib/modules" / kernel.version / "updates/dkms" / f"{PACKAGE}.ko"
    line = f"{PACKAGE}/1.0, {kernel.version}, {os.uname().machine}"
    checks = 0

    # From outside: add and autoinstall into the image.
    added = lkm("dkms", ["add", f"{PACKAGE}/1.0", "--root", str(root), "-k", kernel.version])
    assert added.status == 0, added.stderr
    assert os.readlink(version_dir / "source") == f"/usr/src/{PACKAGE}-1.0"  # the image's path
    done = lkm("dkms", ["autoinstall", "--root", str(root), "-j", "2"])
    assert done.status == 0, done.stderr
    assert placed.is_file() and (root / "var/lib/dkms/mok.key").is_file()
    assert f"updates/dkms/{PACKAGE}.ko:" in (placed.parents[2] / "modules.dep").read_text()
    assert _status(root) == f"{line}: installed\n"
    checks += 5
    refused = lkm("dkms", ["build", f"{PACKAGE}/1.0", "--root", str(root)])
    assert refused.status != 0 and b"-k" in refused.stderr  # no running-kernel default
    checks += 1

    written = lkm("dkms", ["hooks", "--root", str(root)])
    assert written.status == 0, written.stderr
    hooks = [
        root / "etc/kernel/postinst.d/dkms-lkm",
        root / "etc/kernel/prerm.d/dkms-lkm",
        root / "etc/kernel/install.d/40-dkms-lkm.install",
    ]
    assert all(os.access(h, os.X_OK) for h in hooks)
    checks += 1

    # The kernel package's removal: builds deleted, the package kept.
    status, output = _in_image(
        root, ["run-parts", f"--arg={kernel.version}", "/etc/kernel/prerm.d"]
    )
    assert status == 0, output
    assert not placed.exists() and not placed.parent.exists()
    assert _status(root) == f"{PACKAGE}/1.0: added\n"
    assert f"{PACKAGE}.ko:" not in (placed.parents[2] / "modules.dep").read_text()
    checks += 3

    # kernel-install add: built and installed again.
    status, output = _in_image(root, [str(hooks[2]).replace(str(root), ""), "add", kernel.version])
    assert status == 0, output
    assert placed.is_file() and _status(root) == f"{line}: installed\n"
    checks += 2

    # A kernel without headers: one line naming the package to install; the
    # kernel's own installation goes on.
    (root / "lib/modules/0.0.0-none").mkdir()
    status, output = _in_image(root, ["run-parts", "--arg=0.0.0-none", "/etc/kernel/postinst.d"])
    assert status == 0 and "apt-get install linux-headers-0.0.0-none" in output, output
    assert output.count("\n") == 1
    checks += 2

    # kernel-install remove, then the hooks go.
    status, output = _in_image(
        root, [str(hooks[2]).replace(str(root), ""), "remove", kernel.version]
    )
    assert status == 0 and not placed.exists(), output
    assert lkm("dkms", ["hooks", "--remove", "--root", str(root)]).status == 0
    assert not any(h.exists() for h in hooks)
    checks += 3
    report(f"lkm dkms --root and kernel hooks on {kernel.version}: {checks} checks")


def test_remake_initrd_with_initramfs_tools(
    kernel_61: KernelFixture,
    tmp_path: Path,
    report,  # type: ignore[no-untyped-def]
) -> None:
    """REMAKE_INITRD=yes (dkms 3.0.10 ignores it): Debian's update-initramfs
    rebuilds the kernel's initramfs after install, with the module in it,
    and after uninstall, without. initramfs-tools runs on the image's
    /boot, /etc/initramfs-tools and state in a mount namespace."""
    from lkm.testing.guest import titled_output, titled_script

    kernel = kernel_61
    root = _image(tmp_path, kernel, CONF + "REMAKE_INITRD=yes\n")
    (root / "etc/dkms/framework.conf").write_text("")
    conf = root / "etc/initramfs-tools"
    conf.joinpath("conf.d").mkdir()
    conf.joinpath("scripts").mkdir()
    conf.joinpath("initramfs.conf").write_text("MODULES=list\nBUSYBOX=auto\nCOMPRESS=gzip\n")
    conf.joinpath("modules").write_text(f"{PACKAGE}\n")
    image = f"/boot/initrd.img-{kernel.version}"
    lkm_dkms = f"{Path(sys.executable).with_name('lkm')} dkms"
    target = f"{PACKAGE}/1.0 -k {kernel.version}"
    parts = {
        "create": f"update-initramfs -c -k {kernel.version} >/dev/null && echo made",
        "before": f"lsinitramfs {image} | grep -c {PACKAGE}",
        "install": f"{lkm_dkms} install {target} -q",
        "after install": f"lsinitramfs {image} | grep -o 'updates/dkms/{PACKAGE}.ko$'",
        "uninstall": f"{lkm_dkms} uninstall {target} -q",
        "after uninstall": f"lsinitramfs {image} | grep -c {PACKAGE}",
    }
    shutil.copy(f"{kernel.root}/boot/config-{kernel.version}", root / "boot")
    _, output = _in_image(root, ["sh", "-c", titled_script(parts)])
    got = titled_output(output.encode())
    assert got == {
        "create": "made\nstatus 0\n",
        "before": "0\nstatus 1\n",
        "install": f"update-initramfs: Generating {image}\nstatus 0\n",
        "after install": f"updates/dkms/{PACKAGE}.ko\nstatus 0\n",
        "uninstall": f"update-initramfs: Generating {image}\nstatus 0\n",
        "after uninstall": "0\nstatus 1\n",
    }, output
    report(f"REMAKE_INITRD with update-initramfs on {kernel.version}: {len(got)} steps")
