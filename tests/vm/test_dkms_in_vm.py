"""``lkm dkms install`` of real Debian packages, then ``modprobe`` in the
real Debian 6.1 kernel.

Two bookworm ``*-dkms`` packages whose modules load without hardware,
``v4l2loopback-dkms`` (a video loopback device; needs the kernel's
``videodev`` and ``mc``) and ``acpi-call-dkms`` (``/proc/acpi/call``, which
evaluates ACPI methods; QEMU's pc machine has ACPI), are downloaded with
``apt-get download`` and unpacked with ``dpkg-deb -x`` (never installed).
On the host, ``lkm dkms install`` builds, signs and installs each one into
a copy of the kernel's module tree (module files hard linked, the rest
copied), with its own state tree, source tree and signing key paths
(``mok_signing_key``/``mok_certificate``), so nothing outside the test's
directory is written; it indexes the tree with lkm's depmod.

The guest boots with that tree as its ``/lib/modules/$(uname -r)``. In one
guest step per module: kmod's ``modprobe NAME`` loads it, kmod's
``lsmod`` lists it, kmod's ``modinfo -n`` names ``updates/dkms/NAME.ko``,
and the GNU build ID the kernel holds for the loaded module
(``/sys/module/NAME/notes``) is the installed file's, byte for byte; the
module does its job (a ``video4linux`` device; an ACPI method evaluated);
``modprobe -r`` unloads it; lkm's ``modprobe`` loads and unloads it again.

The Debian kernel does not enforce module signatures and does not know
lkm's key: the module loads, and the kernel taints itself ``O``
(out of tree) and ``E`` (signature not verified) and says so once in its
log. No "Key was rejected by service" may appear (that is what an
enforcing kernel says to a key it does not trust). ``lkm dkms status
--json`` in the guest says so beforehand: the key is not among the
kernel's module keys (read with keyctl; the kernel's own build key is),
and the kernel does not enforce. Booted again with
``module.sig_enforce=1``, ``lkm dkms status`` warns on stderr (its lines
unchanged) and modprobe then fails with "Key was rejected by service".
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Result, command, kmod, lkm

from lkm.formats.elf import ElfFile
from lkm.testing.debian_kernels import KernelFixture
from lkm.testing.guest import Guest, titled_output, titled_script
from lkm.vm.qemu import VmSession

Report = Callable[[str], None]

LKM = str(Path(sys.executable).with_name("lkm"))
# Debian package → the module it builds (its dkms.conf's BUILT_MODULE_NAME).
PACKAGES = {"v4l2loopback-dkms": "v4l2loopback", "acpi-call-dkms": "acpi_call"}
SIGNER = "DKMS module signing key"  # lkm's key, as Debian's dkms names its own
VERIFICATION_FAILED = "module verification failed: signature and/or required key missing"
# What each module does once loaded, and what that prints.
WORKS = {
    "v4l2loopback": ("cat /sys/class/video4linux/video*/name", "Dummy video device (0x0000)\n"),
    "acpi_call": (
        "echo '\\_SB.PCI0._ADR' > /proc/acpi/call && tr -d '\\0' < /proc/acpi/call && echo",
        "0x0\n",
    ),
}


@dataclass(frozen=True)
class Package:
    """One package as ``lkm dkms install`` left it."""

    name: str  # dkms's package name: acpi-call
    version: str
    module: str  # the module file's name: acpi_call
    install: Result  # what ``lkm dkms install`` said


@dataclass(frozen=True)
class Installed:
    """The module tree the packages were installed into."""

    kernel: KernelFixture
    base: Path
    moddir: Path
    packages: tuple[Package, ...]

    def options(self) -> list[str]:
        return [
            "--dkmstree",
            str(self.base / "dkms"),
            "--sourcetree",
            str(self.base / "src"),
            "--installtree",
            str(self.moddir.parent),
        ]

    def env(self) -> dict[str, str]:
        return {
            "mok_signing_key": str(self.base / "mok.key"),
            "mok_certificate": str(self.base / "mok.pub"),
        }

    def installed_path(self, package: Package) -> Path:
        return self.moddir / "updates" / "dkms" / f"{package.module}.ko"


def _link_modules(src: str, dst: str) -> None:
    """Module files hard linked (never written), the rest copied."""
    if ".ko" in os.path.basename(src):
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def _unpack_sources(where: Path) -> dict[str, Path]:
    """Each package's source directory (NAME-VERSION), by Debian package."""
    found = {}
    for package in PACKAGES:
        command(["apt-get", "download", package], cwd=where, check=True)
        deb = next(where.glob(f"{package}_*.deb"))
        command(["dpkg-deb", "-x", str(deb), str(where / package)], check=True)
        confs = list((where / package / "usr" / "src").glob("*/dkms.conf"))
        assert len(confs) == 1, (package, confs)
        found[package] = confs[0].parent
    return found


def _dkms(installed: Installed, args: list[str]) -> Result:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in installed.env().items():
            patch.setenv(key, value)
        return lkm("dkms", args)


@pytest.fixture(scope="module")
def installed(kernel_61: KernelFixture, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Both packages installed with ``lkm dkms install`` into a copy of the
    6.1 tree (the copy of the tree kmod's depmod indexed)."""
    kernel = kernel_61
    base = tmp_path_factory.mktemp("dkms-in-vm")
    sources = _unpack_sources(tmp_path_factory.mktemp("dkms-debs"))
    (base / "dkms").mkdir()
    (base / "src").mkdir()
    for path in sources.values():
        shutil.copytree(path, base / "src" / path.name, symlinks=True)
    moddir = base / "root" / "lib" / "modules" / kernel.version
    shutil.copytree(kernel.indexed_moddir, moddir, symlinks=True, copy_function=_link_modules)
    tree = Installed(kernel, base, moddir, ())
    packages = []
    for package, path in sources.items():
        name, version = path.name.rsplit("-", 1)
        args = ["install", f"{name}/{version}", "-k", kernel.version, "-j", "2"]
        args += [*tree.options(), "--kernelsourcedir", str(kernel.headers)]
        packages.append(Package(name, version, PACKAGES[package], _dkms(tree, args)))
    return Installed(kernel, base, moddir, tuple(packages))


@pytest.fixture(scope="module")
def vm(installed: Installed) -> Iterator[Guest]:
    """The real 6.1 kernel booted with the tree the packages went into,
    and a virtio disk holding an ext2 filesystem."""
    for package in installed.packages:
        if package.install.status != 0:
            pytest.fail(f"lkm dkms install {package.name} failed:\n{package.install.stderr!r}")
    kernel = installed.kernel
    disk = installed.base / "disk.img"
    command(["mke2fs", "-q", "-F", "-t", "ext2", str(disk), "8M"], check=True)
    extra = [
        "-drive",
        f"file={disk},if=none,id=lkmdisk,format=raw",
        "-device",
        "virtio-blk-pci,drive=lkmdisk",
    ]
    with VmSession(
        str(kernel.vmlinuz), str(installed.moddir), kernel.version, extra=extra
    ) as session:
        yield Guest(session, kernel)


def test_dkms_install_puts_signed_modules_in_updates_dkms(
    installed: Installed, report: Report
) -> None:
    kernel, machine = installed.kernel, os.uname().machine
    compared = 0
    for package in installed.packages:
        assert package.install.status == 0, package.install.stderr.decode()
        path = installed.installed_path(package)
        assert path.is_file(), package.install.stdout.decode()
        # The kernel ships no module of that name: the one modprobe finds is this one.
        assert not list(kernel.moddir.rglob(f"{package.module}.ko*"))
        assert kmod("modinfo", ["-F", "signer", str(path)]).stdout.decode() == f"{SIGNER}\n"
        assert (
            kmod("modinfo", ["-F", "vermagic", str(path)])
            .stdout.decode()
            .startswith(f"{kernel.version} SMP")
        )
        dep = (installed.moddir / "modules.dep").read_text().splitlines()
        assert [line for line in dep if line.startswith(f"updates/dkms/{package.module}.ko:")]
        compared += 4
    status = _dkms(installed, ["status", *installed.options()])
    assert (status.status, status.stderr) == (0, b"")
    assert status.stdout.decode() == "".join(
        f"{p.name}/{p.version}, {kernel.version}, {machine}: installed\n"
        for p in sorted(installed.packages, key=lambda p: p.name)
    )
    compared += len(installed.packages)
    report(
        f"lkm dkms install on {kernel.version}: "
        f"{', '.join(p.name for p in installed.packages)}: {compared} checks"
    )


def _build_id(path: Path) -> str:
    """The module file's GNU build-ID note, as the kernel shows it in
    ``/sys/module/NAME/notes/.note.gnu.build-id`` (hex)."""
    note = ElfFile(path.read_bytes()).section_data(".note.gnu.build-id")
    assert note, f"{path} has no build ID"
    return note.hex()


def _story(module: str) -> dict[str, str]:
    """One module's part of the guest step: title → shell commands."""
    count = f"echo \"loaded: $(grep -c '^{module} ' /proc/modules)\""
    works, _ = WORKS[module]
    return {
        f"{module}: modprobe": f"modprobe {module} && {count}",
        f"{module}: lsmod": f"lsmod | awk '$1 == \"{module}\" {{ print $1, $3 }}'",
        f"{module}: modinfo -n": f"modinfo -n {module}",
        f"{module}: build id": (
            f"od -An -v -tx1 /sys/module/{module}/notes/.note.gnu.build-id | tr -d ' \\n'; echo"
        ),
        f"{module}: taint": f"cat /sys/module/{module}/taint",
        f"{module}: works": works,
        f"{module}: modprobe -r": f"modprobe -r {module} && {count}",
        f"{module}: lkm modprobe": f"{LKM} modprobe {module} && {count}",
        f"{module}: lkm modprobe -r": f"{LKM} modprobe -r {module} && {count}",
    }


def _expected(installed: Installed, package: Package) -> dict[str, str]:
    module = package.module
    path = f"/lib/modules/{installed.kernel.version}/updates/dkms/{module}.ko"
    _, works = WORKS[module]
    return {
        f"{module}: modprobe": "loaded: 1\nstatus 0\n",
        f"{module}: lsmod": f"{module} 0\nstatus 0\n",
        f"{module}: modinfo -n": f"{path}\nstatus 0\n",
        f"{module}: build id": f"{_build_id(installed.installed_path(package))}\nstatus 0\n",
        f"{module}: taint": "OE\nstatus 0\n",
        f"{module}: works": f"{works}status 0\n",
        f"{module}: modprobe -r": "loaded: 0\nstatus 0\n",
        f"{module}: lkm modprobe": "loaded: 1\nstatus 0\n",
        f"{module}: lkm modprobe -r": "loaded: 0\nstatus 0\n",
    }


def test_modprobe_loads_the_dkms_installed_copy(
    vm: Guest, installed: Installed, report: Report
) -> None:
    parts: dict[str, str] = {}
    expected: dict[str, str] = {}
    for package in installed.packages:
        parts.update(_story(package.module))
        expected.update(_expected(installed, package))
    parts["kernel log: key rejected"] = "dmesg | grep -c 'Key was rejected'"
    expected["kernel log: key rejected"] = "0\nstatus 1\n"
    parts["kernel log: not verified"] = f"dmesg | grep -o '{VERIFICATION_FAILED}'"
    expected["kernel log: not verified"] = f"{VERIFICATION_FAILED}\nstatus 0\n"  # once a boot
    result = vm.check(titled_script(parts), timeout=600)
    assert titled_output(result.stdout) == expected, result.describe()
    report(
        f"lkm dkms install, then modprobe in {vm.kernel.version} (QEMU): "
        f"{', '.join(p.module for p in installed.packages)}: {len(expected)} guest checks"
    )


# In the guest: the running kernel's module keys read with keyctl, the
# builtin key found among them by its key id, and DKMS's key not.
_KEYS_PROBE = """
from lkm.system.keyrings import module_keys
from lkm.workflows.dkms.trust import certificate_key_id, in_module_keys
keys = module_keys()
builtin = [k for k in keys if k.startswith("Build time autogenerated kernel key: ")]
print(len(builtin), in_module_keys("/proc/keys", builtin[0].rsplit(": ", 1)[1]))
print(in_module_keys("/proc/keys", certificate_key_id(CERT)))
"""


def _status_summary(installed: Installed) -> str:
    """``lkm dkms status --json`` in the guest, each entry's state and its
    kernel's verdict on DKMS's key."""
    probe = (
        "import json, sys; entries = json.load(sys.stdin); "
        "print(sorted({(e['state'], e['signing']['trust'], e['signing']['enforced']) "
        "for e in entries}))"
    )
    options = " ".join(installed.options())
    cert = installed.env()["mok_certificate"]
    return (
        f'mok_certificate={cert} {LKM} dkms status --json {options} | {sys.executable} -c "{probe}"'
    )


def test_status_says_whether_the_kernel_accepts_the_key(
    vm: Guest, installed: Installed, report: Report
) -> None:
    """Not enforcing, key unknown: loads (tainted), status says untrusted."""
    cert = installed.env()["mok_certificate"]
    probe = _KEYS_PROBE.replace("CERT", json.dumps(cert))
    parts = {
        "status --json": _status_summary(installed),
        "module keys": f"{sys.executable} -c {shlex.quote(probe)}",
    }
    expected = {
        "status --json": "[('installed', 'untrusted', False)]\nstatus 0\n",
        "module keys": "1 True\nFalse\nstatus 0\n",
    }
    result = vm.check(titled_script(parts), timeout=300)
    assert titled_output(result.stdout) == expected, result.describe()
    report(f"lkm dkms status signing verdicts in {vm.kernel.version}: {len(expected)} checks")


def test_enforcing_kernel_rejects_as_status_warned(installed: Installed, report: Report) -> None:
    """Booted with module.sig_enforce=1: lkm dkms status warns (stderr, the
    status lines unchanged) before modprobe fails with the kernel's
    "Key was rejected by service"."""
    kernel = installed.kernel
    options = " ".join(installed.options())
    cert = installed.env()["mok_certificate"]
    parts = {
        "status": f"mok_certificate={cert} {LKM} dkms status {options} 2>/dev/null",
        "warning": f"mok_certificate={cert} {LKM} dkms status {options} 2>&1 >/dev/null",
        "modprobe": "modprobe acpi_call",
        "loaded": "grep -c '^acpi_call ' /proc/modules",
    }
    lines = "".join(
        f"{p.name}/{p.version}, {kernel.version}, {os.uname().machine}: installed\n"
        for p in sorted(installed.packages, key=lambda p: p.name)
    )
    with VmSession(
        str(kernel.vmlinuz), str(installed.moddir), kernel.version, append="module.sig_enforce=1"
    ) as session:
        result = Guest(session, kernel).check(titled_script(parts), timeout=300)
    got = titled_output(result.stdout)
    assert got["status"] == f"{lines}status 0\n", result.describe()
    warning = got["warning"].splitlines()
    assert len(warning) == 2 and warning[1] == "status 0", got["warning"]
    assert f"kernel {kernel.version} enforces module signatures" in warning[0]
    assert f"mokutil --import {cert}" in warning[0]
    assert "Key was rejected by service" in got["modprobe"], got["modprobe"]
    assert got["loaded"] == "0\nstatus 1\n"
    report(f"sig_enforce=1 {kernel.version}: status warned, modprobe rejected: 5 checks")


_BOOT_PROBE = """
import glob
from lkm.workflows.dkms.initramfs import device_modaliases, drives
found = device_modaliases("/mnt")
print(found[0])
print(drives(glob.glob("/lib/modules/*/kernel/drivers/block/virtio_blk.ko*")[0], found))
print(drives(glob.glob("/lib/modules/*/kernel/drivers/ata/ahci.ko*")[0], found))
"""


def test_the_module_a_filesystem_needs(vm: Guest, report: Report) -> None:
    """The devices under a mounted filesystem and the module that drives
    them, as lkm dkms decides an initramfs update (for "/"): an ext2
    filesystem on a QEMU virtio disk, whose driver virtio_blk is a module
    of the Debian kernel; ahci does not drive it."""
    parts = {
        "mount": "modprobe virtio_blk && modprobe ext2 && mount -t ext2 /dev/vda /mnt && echo ok",
        "probe": f"{sys.executable} -c {shlex.quote(_BOOT_PROBE)}",
        "unmount": "umount /mnt && echo ok",
    }
    result = vm.check(titled_script(parts), timeout=300)
    got = titled_output(result.stdout)
    alias = "virtio:d00000002v00001AF4"
    assert got == {
        "mount": "ok\nstatus 0\n",
        "probe": f"{alias}\n{alias}\nNone\nstatus 0\n",
        "unmount": "ok\nstatus 0\n",
    }, result.describe()
    report(f"root-device modaliases and driver in {vm.kernel.version}: 4 checks")
