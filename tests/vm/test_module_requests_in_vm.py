"""The guest kernel's own module requests, as on a real system: a link
type (``ip link add d0 type dummy``: ``rtnl-link-dummy``), a filesystem
(``mount -t squashfs``: ``fs-squashfs``) and a socket family (``AF_CAN``:
``net-pf-29``, then ``can-proto-1``) each load their module through the
kernel's ``request_module``, first with kmod's ``modprobe`` (the default
helper), then with lkm's (``modprobe`` as a link to lkm) — run by the
kernel with no standard file descriptors and a minimal environment. The
arguments the kernel passed are read back from the helper's kernel-log
line and asserted.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from conftest import command

from lkm.testing.debian_kernels import KernelFixture
from lkm.testing.guest import Guest
from lkm.vm.initramfs import DEFAULT_MODPROBE, module_helper_script

LKM = str(Path(sys.executable).with_name("lkm"))
REQUESTED = ("dummy", "squashfs", "can_raw", "can")  # unloaded in this order
# What each action asks the kernel for, in the order it asks.
EXPECTED_REQUESTS = ["rtnl-link-dummy", "fs-squashfs", "net-pf-29", "can-proto-1"]
CAN_SOCKET = (
    'import socket; socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW); print("can: ok")'
)


@pytest.fixture(scope="module")
def squashfs_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("squashfs-tree")
    (tree / "hello.txt").write_text("hello from squashfs\n")
    image = tmp_path_factory.mktemp("squashfs") / "small.sqsh"
    made = command(["mksquashfs", str(tree), str(image), "-quiet", "-noappend"], text=True)
    assert made.returncode == 0, made.stderr
    return image


def _actions(image: Path) -> str:
    """Each action, then the modules it left loaded; then everything undone."""
    return f"""
set -e
ip link add d0 type dummy
echo link: $(cat /sys/class/net/d0/operstate 2>/dev/null || echo missing)
modprobe loop
mkdir -p /mnt/sq
mount -t squashfs -o loop,ro {image} /mnt/sq
cat /mnt/sq/hello.txt
/usr/bin/python3 -c '{CAN_SOCKET}'
echo loaded: $(cut -d' ' -f1 /proc/modules | grep -xE '{"|".join(REQUESTED)}' | sort)
ip link del d0
umount /mnt/sq
rmmod {" ".join(REQUESTED)}
"""


def _requests(vm: Guest, helper: str) -> list[str]:
    """The aliases the kernel asked ``helper`` for since the log was cleared."""
    log = vm.check("dmesg").stdout.decode(errors="replace")
    asked = re.findall(rf"lkm-vm: module request: {re.escape(helper)} (.*)$", log, re.M)
    vm.check("dmesg -C")
    return asked


def _check_round(vm: Guest, image: Path, helper: str) -> None:
    vm.check("dmesg -C")
    done = vm.check(_actions(image)).stdout.decode()
    assert "link: " in done and "link: missing" not in done
    assert "hello from squashfs\n" in done and "can: ok\n" in done
    assert f"loaded: {' '.join(sorted(REQUESTED))}\n" in done
    asked = _requests(vm, helper)
    assert [a.removeprefix("-q -- ") for a in asked] == EXPECTED_REQUESTS, asked
    assert all(a.startswith("-q -- ") for a in asked), asked


def test_module_requests_reach_kmods_then_lkms_modprobe(
    vm: Guest, squashfs_image: Path, tmp_path: Path
) -> None:
    _check_round(vm, squashfs_image, DEFAULT_MODPROBE)

    # lkm's modprobe as the helper: what `lkm vm run --modprobe PATH` sets
    # up at boot, set here at run time (the helper path is looked up in
    # the initramfs's root, where the host's root is /root).
    link = tmp_path / "modprobe"
    link.symlink_to(LKM)
    wrapper = tmp_path / "helper"
    wrapper.write_text(module_helper_script(str(link)))
    wrapper.chmod(0o755)
    vm.check(f"echo /root{wrapper} >/proc/sys/kernel/modprobe")
    try:
        _check_round(vm, squashfs_image, str(link))
    finally:
        vm.check("echo /sbin/lkm-module-helper >/proc/sys/kernel/modprobe")


def test_vm_run_modprobe_option_names_the_helper(kernel_612: KernelFixture, tmp_path: Path) -> None:
    """``lkm vm run --modprobe PATH`` sets the helper up at boot."""
    kernel = kernel_612
    link = tmp_path / "modprobe"
    link.symlink_to(LKM)
    script = "ip link add d0 type dummy && dmesg | grep -o 'module request: .*'"
    options = ["--kernel", kernel.version, "--modprobe", str(link)]
    ran = command(
        [LKM, "vm", "run", *options, "--", "sh", "-c", script],
        text=True,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == f"module request: {link} -q -- rtnl-link-dummy\n"
