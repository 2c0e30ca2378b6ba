"""``lkm vm run`` boots the real Debian kernels under QEMU (TCG) and runs
commands inside: exit status, stdout and stderr come back; the guest sees
the host's files and its own kernel's module tree; a panic ends the run
quickly with the console tail."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import command, lkm

from lkm.testing.debian_kernels import KernelFixture
from lkm.vm import qemu
from lkm.vm.kernel_image import bootable_image

LKM = str(Path(sys.executable).with_name("lkm"))


@pytest.fixture
def host_module_tree() -> Iterator[str]:
    """A module tree of another kernel on the host, for the test's length:
    the guest must not show it (and the test must not depend on whether
    the host has any). Removed afterwards, /lib/modules too if it made it."""
    base = Path("/lib/modules")
    made_base = not base.exists()
    tree = base / "lkm-test-not-the-booted-kernel"
    tree.mkdir(parents=True)
    try:
        yield tree.name
    finally:
        tree.rmdir()
        if made_base:
            base.rmdir()


@pytest.mark.parametrize("label", ["6.1", "6.12"])
def test_status_output_and_module_tree(  # type: ignore[no-untyped-def]
    kernels: list[KernelFixture], label: str, host_module_tree: str, report
) -> None:
    kernel = next(k for k in kernels if k.label == label)
    start = time.monotonic()
    script = (
        "uname -r; ls /lib/modules; test -r /etc/os-release && echo host-visible;"
        " echo written > /tmp/x && cat /tmp/x; echo to-stderr >&2;"
        " cat /sys/module/cryptomgr/parameters/notests; exit 7"
    )
    result = qemu.run(
        str(kernel.vmlinuz), str(kernel.indexed_moddir), kernel.version, ["sh", "-c", script]
    )
    elapsed = time.monotonic() - start
    assert result.status == 7
    assert result.stdout.decode().split() == [
        kernel.version,
        kernel.version,
        "host-visible",
        "written",
        "Y",  # the crypto self-tests are skipped (lkm.vm.qemu's command line)
    ]
    assert result.stderr == b"to-stderr\n"
    report(f"lkm vm run on {label}: boot, command, power-off in {elapsed:.1f} s")


def test_host_python_and_lkm_inside(kernel_612: KernelFixture, tmp_path: Path) -> None:
    """The checkout's lkm runs in the guest against the booted kernel's
    tree; the kernel console is kept where --console says."""
    console = tmp_path / "console.log"
    proc = command(
        [LKM, "vm", "run", "--kernel", kernel_612.version, "--console", str(console),
         "--", LKM, "modinfo", "-F", "name", "loop"],
        timeout=300,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout) == (0, b"loop\n"), proc.stderr
    assert "reboot: Power down" in console.read_text()


def test_panic_ends_the_run_quickly(kernel_612: KernelFixture) -> None:
    start = time.monotonic()
    with pytest.raises(qemu.VmError) as info:
        # init= is ignored for an initramfs, so panic by killing PID 1.
        qemu.run(str(kernel_612.vmlinuz), str(kernel_612.indexed_moddir), kernel_612.version,
                 ["sh", "-c", "echo c > /proc/sysrq-trigger"], timeout=100)  # fmt: skip
    assert "panic" in str(info.value).lower()
    assert "Kernel panic - not syncing: sysrq triggered crash" in info.value.console
    assert str(info.value).count("console (last lines):") == 1
    assert time.monotonic() - start < 60


def test_console_tail_reaches_back_to_the_panic_line() -> None:
    boot = [f"[ 1.{n:06d}] boot line {n}" for n in range(200)]
    trace = [f"[ 5.{n:06d}]  frame_{n}+0x11/0x40" for n in range(70)]
    panic = "[ 5.000000] Kernel panic - not syncing: lkm try panics here"
    oops = "[ 4.900000] BUG: kernel NULL pointer dereference, address: 0000000000000000"
    assert qemu.console_tail("\n".join(boot)).splitlines() == boot[-qemu.CONSOLE_TAIL :]
    tail = qemu.console_tail("\n".join([*boot, panic, *trace])).splitlines()
    assert tail == [panic, *trace]
    short = trace[:30]
    tail = qemu.console_tail("\n".join([*boot, oops, *short, panic, *short])).splitlines()
    assert tail == [oops, *short, panic, *short]
    far_back = [*boot, panic, *boot[: 3 * qemu.CONSOLE_TAIL]]  # too far back to reach
    assert qemu.console_tail("\n".join(far_back)).splitlines() == far_back[-qemu.CONSOLE_TAIL :]


def test_a_boot_device_gets_a_working_legacy_interrupt(kernel_61: KernelFixture) -> None:
    """With no monitor, the guest routes PCI interrupts through the MP
    table (acpi=noirq, see lkm.vm.qemu): a device given at boot that uses
    a legacy interrupt (e1000's INTx) gets one, and it fires. With -v,
    QEMU's command line and the kernel's console come on stderr. --append
    comes after lkm's own command line: cryptomgr.notests=0 wins."""
    script = (
        f"{LKM} modprobe e1000 && busybox ip link set eth0 up && sleep 1"
        " && grep -w eth0 /proc/interrupts && cat /sys/module/cryptomgr/parameters/notests"
    )
    proc = command(
        [LKM, "vm", "run", "-v", "--kernel", kernel_61.version, "--device", "e1000",
         "--append", "cryptomgr.notests=0", "--", "sh", "-c", script],
        text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    shown = proc.stderr.splitlines()
    assert shown[0].startswith("lkm vm: qemu-system-x86_64 ") and "-device e1000" in shown[0]
    assert any(f"Linux version {kernel_61.version} " in line for line in shown), shown[:5]
    interrupts, notests = proc.stdout.splitlines()
    fired = interrupts.split()[1]  # " 10:  COUNT  IO-APIC  10-fasteoi  eth0" (one CPU)
    assert int(fired) > 0, proc.stdout
    assert notests == "N"


def test_dry_run_prints_the_qemu_command(kernel_61: KernelFixture) -> None:
    result = lkm("lkm", ["vm", "run", "--kernel", "6.1", "--dry-run", "--", "true"])
    assert result.status == 0
    assert result.stdout.startswith(b"qemu-system-x86_64 -accel ")
    boots = bootable_image(str(kernel_61.vmlinuz))
    assert f"-kernel {boots} ".encode() in result.stdout and b"multidevs=remap" in result.stdout
    assert "/vmlinux-" in boots  # the PVH entry: no decompressor under TCG
    # qboot (qemu-system-x86 depends on qemu-system-data, which has it),
    # but SeaBIOS for a guest with devices of the user's
    argv = result.stdout.decode().split()
    assert argv[argv.index("-bios") + 1].endswith("/qboot.rom")
    devices = ["vm", "run", "--kernel", "6.1", "--dry-run", "--device", "intel-hda", "--", "true"]
    assert b"-bios" not in lkm("lkm", devices).stdout


def test_kvm_probe_is_quick_and_remembered(kernel_612: KernelFixture, tmp_path: Path) -> None:
    """On these machines /dev/kvm exists but KVM guests die: the probe must
    say so within seconds, and the second call must not probe again."""
    image = bootable_image(str(kernel_612.vmlinuz))
    start = time.monotonic()
    usable = qemu.kvm_usable(image, cache_dir=str(tmp_path))
    assert time.monotonic() - start < qemu.KVM_PROBE_SECONDS + 3
    start = time.monotonic()
    assert qemu.kvm_usable(image, cache_dir=str(tmp_path)) == usable
    assert time.monotonic() - start < 0.5
    if os.path.exists("/dev/kvm"):
        (remembered,) = (tmp_path / "kvm-probe").iterdir()
        assert remembered.read_text() == ("kvm\n" if usable else "tcg\n")


def test_default_kernel_is_the_hosts_when_installed(
    tmp_path: Path, kernels: list[KernelFixture]
) -> None:
    from lkm.vm.boot_kernel import choose_kernel

    release = os.uname().release
    fallback = choose_kernel(None, root=str(tmp_path))
    assert fallback.release == [k for k in kernels if k.arch == "amd64"][-1].version
    assert fallback.image.endswith(f"vmlinuz-{fallback.release}")
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot" / f"vmlinuz-{release}").write_bytes(b"image")
    (tmp_path / "lib" / "modules" / release).mkdir(parents=True)
    host = choose_kernel(None, root=str(tmp_path))
    assert host.image == f"{tmp_path}/boot/vmlinuz-{release}" and host.release == release
    assert choose_kernel("6.1").release == next(k for k in kernels if k.label == "6.1").version


def test_virtiofs_share(kernel_61: KernelFixture) -> None:
    """--share virtiofs: the host's root through virtiofsd (qemu-system-x86
    brings one), the command and its output as with 9p."""
    proc = command(
        [LKM, "vm", "run", "--kernel", "6.1", "--share", "virtiofs", "--", "sh", "-c",
         "grep -o '^lkmhost [^ ]* virtiofs ro' /proc/mounts; test -r /etc/os-release"],
        timeout=300,
    )  # fmt: skip
    # The chroot sees the share where the module tree is bind-mounted.
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"lkmhost /usr/lib/modules/{kernel_61.version} virtiofs ro\n".encode()
