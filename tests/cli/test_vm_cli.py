"""``lkm vm run`` / ``lkm vm shell`` command lines, without booting: what
``--dry-run`` prints (the whole QEMU command, lkm's serial ports and the
caller's extras) and the usage errors."""

from __future__ import annotations

import itertools
import shlex

import pytest
from conftest import lkm

from lkm.testing.debian_kernels import KernelFixture


@pytest.mark.parametrize("action", [["run"], ["shell"]])
def test_dry_run_prints_the_extras(kernel_61: KernelFixture, action: list[str]) -> None:
    extras = ["--device", "e1000", "--device", "virtio-rng-pci,id=rng", "--append", "lkm.a=1",
              "--append", "lkm.b=2", "--qmp", "/tmp/lkm test,qmp.sock", "--cpus", "2"]  # fmt: skip
    command = ["--", "true"] if action == ["run"] else []
    result = lkm("lkm", ["vm", *action, "--kernel", "6.1", "--dry-run", *extras, *command])
    assert result.status == 0, result.stderr
    argv = shlex.split(result.stdout.decode())
    pairs = list(itertools.pairwise(argv))
    assert ("-device", "e1000") in pairs and ("-device", "virtio-rng-pci,id=rng") in pairs
    assert ("-smp", "2") in pairs
    # A comma in the socket's path is doubled, as QEMU's option syntax wants.
    assert ("-qmp", "unix:/tmp/lkm test,,qmp.sock,server=on,wait=off") in pairs
    append = argv[argv.index("-append") + 1]
    assert append.endswith(" lkm.a=1 lkm.b=2") and append.startswith("console=ttyS0 ")
    # lkm's own serial ports: the shell's console, stdin, the window size.
    devices = [b for a, b in pairs if a == "-device"]
    assert "virtio-serial-pci,id=lkmserial" in devices
    names = [d.rsplit("name=", 1)[1] for d in devices if "name=" in d]
    assert names == ["lkm.console", "lkm.stdin", "lkm.winsize"]
    assert any(d.startswith("virtconsole,") and "nr=0" in d for d in devices)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["vm", "run", "--cpus", "0", "--", "true"], "lkm vm: --cpus: not a positive number"),
        (["vm", "shell", "--cpus", "x"], "lkm vm: --cpus: not a positive number"),
        (["vm", "shell", "--timeout", "-1"], "lkm vm: --timeout: not a positive number"),
    ],
)
def test_bad_values_are_one_line(args: list[str], message: str) -> None:
    result = lkm("lkm", args)
    assert result.status == 1
    assert result.stderr.decode().startswith(message) and result.stderr.count(b"\n") == 1


@pytest.mark.parametrize("args", [["vm"], ["vm", "run"], ["vm", "shell", "sh"], ["vm", "boot"]])
def test_usage(args: list[str]) -> None:
    result = lkm("lkm", args)
    assert result.status == 2 and result.stderr.count(b"\n") == 1
    assert b"lkm vm: give 'run [OPTIONS] -- CMD...' or 'shell [OPTIONS]'" in result.stderr


@pytest.mark.parametrize(
    ("extras", "mp_table"),
    [([], True), (["--device", "e1000"], True), (["--qmp", "/tmp/lkm-qmp.sock"], False),
     (["--gdb"], False)],
)  # fmt: skip
def test_interrupt_routing_by_mp_table_unless_hotplug_is_possible(
    kernel_61: KernelFixture, extras: list[str], mp_table: bool
) -> None:
    """acpi=noirq (no evaluation of the DSDT's _PRT for each PCI device, a
    second of TCG time a boot) only when no device can be added later: a
    monitor or a gdb stub keeps ACPI's routing, which hotplugged devices
    need."""
    result = lkm("lkm", ["vm", "run", "--kernel", "6.1", "--dry-run", *extras, "--", "true"])
    assert result.status == 0, result.stderr
    argv = shlex.split(result.stdout.decode())
    assert ("acpi=noirq" in argv[argv.index("-append") + 1].split()) == mp_table
