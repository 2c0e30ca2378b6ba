"""``lkm vm run`` boots the real Debian kernels under QEMU (TCG) and runs
commands inside: exit status, stdout and stderr come back; the guest sees
the host's files and its own kernel's module tree; a panic ends the run
quickly with the console tail."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import lkm

from lkm.testing.debian_kernels import KernelFixture
from lkm.vm import qemu

LKM = str(Path(sys.executable).with_name("lkm"))


@pytest.mark.parametrize("label", ["6.1", "6.12"])
def test_status_output_and_module_tree(kernels: list[KernelFixture], label: str, report) -> None:  # type: ignore[no-untyped-def]
    kernel = next(k for k in kernels if k.label == label)
    start = time.monotonic()
    script = (
        "uname -r; ls /lib/modules; test -r /etc/os-release && echo host-visible;"
        " echo written > /tmp/x && cat /tmp/x; echo to-stderr >&2; exit 7"
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
    ]
    assert result.stderr == b"to-stderr\n"
    report(f"lkm vm run on {label}: boot, command, power-off in {elapsed:.1f} s")


def test_host_python_and_lkm_inside(kernel_612: KernelFixture) -> None:
    """The checkout's lkm runs in the guest against the booted kernel's tree."""
    proc = subprocess.run(
        [
            LKM,
            "vm",
            "run",
            "--kernel",
            kernel_612.version,
            "--",
            LKM,
            "modinfo",
            "-F",
            "name",
            "loop",
        ],
        capture_output=True,
        timeout=300,
    )
    assert (proc.returncode, proc.stdout) == (0, b"loop\n"), proc.stderr


def test_panic_ends_the_run_quickly(kernel_612: KernelFixture) -> None:
    start = time.monotonic()
    with pytest.raises(qemu.VmError) as info:
        # init= is ignored for an initramfs, so panic by killing PID 1.
        qemu.run(str(kernel_612.vmlinuz), str(kernel_612.indexed_moddir), kernel_612.version,
                 ["sh", "-c", "echo c > /proc/sysrq-trigger"], timeout=100)  # fmt: skip
    assert "panic" in str(info.value).lower()
    assert time.monotonic() - start < 60


def test_dry_run_prints_the_qemu_command(kernel_61: KernelFixture) -> None:
    result = lkm("lkm", ["vm", "run", "--kernel", "6.1", "--dry-run", "--", "true"])
    assert result.status == 0
    assert result.stdout.startswith(b"qemu-system-x86_64 -accel tcg")
    assert str(kernel_61.vmlinuz).encode() in result.stdout and b"multidevs=remap" in result.stdout
