"""``lkm install`` and ``lkm uninstall`` in real Debian 6.1 and 6.12 guests.

The module has a dashed file name, ``kernel-module-example.ko`` (module
name ``kernel_module_example``): the hello template (``lkm new``) renamed
and built with ``lkm build`` against the fixture's headers. In one guest
step per kernel it is installed into the guest's own module tree
(``/lib/modules/$(uname -r)``, writable in the guest's memory), loaded by
``lkm modprobe`` and by kmod's ``modprobe``, found by kmod's ``modinfo
-n``, unloaded by ``lkm modprobe -r``, and uninstalled, after which the
indexes no longer list it.

The guest boots with a reduced copy of its kernel's tree: the modules the
VM's initramfs loads (virtio, 9p, overlay and what they need), the
kernel's built-in lists, ``modules.order``, and ``build``/``source`` links
to its headers, as installed kernels have; indexed by kmod's depmod on the
host. A whole tree's depmod, which every install runs, takes kmod's own
depmod about 2.5 minutes on the 6.12 tree in a guest without KVM (TCG),
and lkm's longer; the host-side tests (tests/workflows/test_install.py)
index the whole trees.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import command, kmod

from lkm.model.database import ModuleDatabase
from lkm.testing.debian_kernels import KernelFixture
from lkm.testing.guest import Guest, titled_output, titled_script
from lkm.vm.initramfs import BOOT_MODULES
from lkm.vm.qemu import VmSession
from lkm.workflows.scaffold import create

LKM = str(Path(sys.executable).with_name("lkm"))
NAME = "kernel-module-example"
HELLO_GOODBYE = "kernel_module_example: Hello, world\nkernel_module_example: Goodbye, world\n"


class InstallGuest(Guest):
    """A guest, and the module built for its kernel on the host."""

    def __init__(self, session: VmSession, kernel: KernelFixture, module: Path) -> None:
        super().__init__(session, kernel)
        self.module = module


def build_example(kernel: KernelFixture, base: Path) -> Path:
    """``lkm new`` + ``lkm build``, the files renamed to the dashed name."""
    directory = base / "kernel_module_example"
    create(str(directory), "hello")
    (directory / "kernel_module_example.c").rename(directory / f"{NAME}.c")
    (directory / "Kbuild").write_text(f"obj-m += {NAME}.o\n")
    built = command([LKM, "build", str(directory), "--kernel", kernel.version, "-j2"], text=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr
    return directory / f"{NAME}.ko"


def reduced_tree(kernel: KernelFixture, root: Path) -> Path:
    """The guest's module tree: see the module's documentation."""
    moddir = root / "lib" / "modules" / kernel.version
    with ModuleDatabase(str(kernel.indexed_moddir)) as db:
        closure = db.closure(BOOT_MODULES, firmware=False, softdeps=False)
    for path in closure.modules:
        target = moddir / Path(path).relative_to(kernel.indexed_moddir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        shutil.copyfile(kernel.moddir / name, moddir / name)
    (moddir / "build").symlink_to(kernel.headers)
    (moddir / "source").symlink_to(kbuild_source(kernel))
    indexed = kmod("depmod", ["-b", str(root), kernel.version])
    assert indexed.status == 0, indexed.stderr
    return moddir


def kbuild_source(kernel: KernelFixture) -> Path:
    return next(Path(kernel.root, "usr", "src").glob("linux-headers-*-common"))


def kbuild_install_dir(kernel: KernelFixture) -> str:
    """INSTALL_MOD_DIR's default, read here on its own from the kernel's
    scripts/Makefile.modinst."""
    modinst = (kbuild_source(kernel) / "scripts" / "Makefile.modinst").read_text()
    found = re.findall(r"^INSTALL_MOD_DIR \?= (\S+)$", modinst, re.M)
    assert len(found) == 1, found
    return str(found[0])


def tree_suffix(kernel: KernelFixture) -> str:
    """The suffix of the kernel's own modules (".ko", ".ko.xz")."""
    suffixes = {re.sub(r"^[^.]*", "", p.name) for p in (kernel.moddir / "kernel").rglob("*.ko*")}
    assert len(suffixes) == 1, suffixes
    return suffixes.pop()


@pytest.fixture(scope="module", params=["6.1", "6.12"])
def vm(
    request: pytest.FixtureRequest,
    kernels: list[KernelFixture],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[InstallGuest]:
    kernel = next(k for k in kernels if k.label == request.param)
    base = tmp_path_factory.mktemp(f"install-{kernel.label}")
    module = build_example(kernel, base)
    moddir = reduced_tree(kernel, base / "root")
    with VmSession(str(kernel.vmlinuz), str(moddir), kernel.version) as session:
        yield InstallGuest(session, kernel, module)


def story(module: Path) -> str:
    """The whole story as one guest step; each part's output after a mark."""
    count = "echo \"loaded: $(grep -c '^kernel_module_example ' /proc/modules)\""
    parts = {
        "install": f"{LKM} install {module}",
        "lkm modprobe": f"{LKM} modprobe {NAME} && {count}",
        "lkm modprobe -r": f"{LKM} modprobe -r {NAME} && {count}",
        "kmod modprobe": f"modprobe {NAME} && {count}",
        "kmod modinfo -n": f"modinfo -n {NAME}",
        "lkm modinfo -n": f"{LKM} modinfo -n kernel_module_example",
        "lkm modprobe -r again": f"{LKM} modprobe -r {NAME} && {count}",
        "uninstall": f"{LKM} uninstall {NAME}",
        "indexes after": 'grep -c "kernel.module.example" "$M"/modules.dep "$M"/modules.alias',
        "files after": 'find "$M" -name "kernel[-_]module[-_]example*"',
        "modinfo after": f"modinfo -n {NAME}",
        "kernel log": "dmesg | grep -oE 'kernel_module_example: (Hello|Goodbye), world'",
    }
    return titled_script(parts, prelude="M=/lib/modules/$(uname -r)")


def test_install_load_unload_uninstall(vm: InstallGuest) -> None:
    kernel, module = vm.kernel, vm.module
    moddir = f"/lib/modules/{kernel.version}"
    path = f"{moddir}/{kbuild_install_dir(kernel)}/{NAME}{tree_suffix(kernel)}"
    result = vm.check(story(module), timeout=600)
    got = titled_output(result.stdout)
    assert got == {
        "install": f"{module} -> {path}\nindexed {moddir}\nstatus 0\n",
        "lkm modprobe": "loaded: 1\nstatus 0\n",
        "lkm modprobe -r": "loaded: 0\nstatus 0\n",
        "kmod modprobe": "loaded: 1\nstatus 0\n",
        "kmod modinfo -n": f"{path}\nstatus 0\n",
        "lkm modinfo -n": f"{path}\nstatus 0\n",
        "lkm modprobe -r again": "loaded: 0\nstatus 0\n",
        "uninstall": f"removed {path}\nindexed {moddir}\nstatus 0\n",
        "indexes after": f"{moddir}/modules.dep:0\n{moddir}/modules.alias:0\nstatus 1\n",
        "files after": "status 0\n",
        "modinfo after": f"modinfo: ERROR: Module {NAME} not found.\nstatus 1\n",
        "kernel log": HELLO_GOODBYE * 2 + "status 0\n",  # loaded twice
    }, result.describe()
    assert os.path.exists(module)  # the host's build is untouched
