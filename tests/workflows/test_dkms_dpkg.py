"""Debian's own dkms client driving lkm: ``dpkg -i`` of a real ``*-dkms``
package with ``/usr/sbin/dkms`` diverted to lkm.

The package's postinst runs Debian's ``/usr/lib/dkms/common.postinst``,
which calls ``dkms add``, ``dkms status -m N -v V -k K``, ``dkms build`` and
``dkms install`` for each kernel in ``/lib/modules``; its prerm calls
``dkms status -m N -v V`` and ``dkms remove -m N -v V --all``. With the real
script diverted away (``dpkg-divert --rename``) and ``/usr/sbin/dkms`` a link
to lkm's executable (lkm run as ``dkms`` is ``lkm dkms``), every one of those
calls is lkm's.

This test changes the host, as Debian's client only works on the real
paths: it creates ``/lib/modules/V`` for the Debian 6.1 kernel fixture (the
module files hard linked, the index files copied, ``build`` and ``source``
linking to the fixture's headers), diverts ``/usr/sbin/dkms``, installs and
purges the package; lkm makes ``/var/lib/dkms/mok.key``/``mok.pub`` when
absent. Each change is recorded in ``STATE`` before it is made and undone
after the test, pass or fail; a run that died midway is undone by the next.
lkm's depmod cache goes to the test's directory (``LKM_CACHE``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypedDict

import pytest
from conftest import command, kmod

from lkm.system.run import TO_STDOUT, run
from lkm.testing.debian_kernels import KernelFixture

LKM = str(Path(sys.executable).with_name("lkm"))
PACKAGE = "acpi-call-dkms"
NAME, MODULE = "acpi-call", "acpi_call"
DKMS = "/usr/sbin/dkms"
DIVERTED = "/usr/sbin/dkms.real"
INSTALL_TREE = "/lib/modules"
DKMS_TREE = "/var/lib/dkms"
KEY_FILES = (f"{DKMS_TREE}/mok.key", f"{DKMS_TREE}/mok.pub")
# What the test changed on the host, written before each change.
STATE = Path("/var/tmp/lkm-test-dkms-dpkg.json")
# dpkg's words when another process holds its lock, and how long to wait.
LOCKED = "locked by another process"
LOCK_WAIT = 600.0
# Lines only dkms 3.0.10 prints when installing (check_version_sanity,
# do_install) and uninstalling (do_uninstall); lkm says "Installing PATH"
# and "Deleting PATH" for each module file instead.
DKMS_ONLY = (
    "Running module version sanity check.",
    " - Installation",
    "Before uninstall, this module version was ACTIVE on this kernel.",
    " - Uninstallation",
)


class State(TypedDict):
    moddirs: list[str]  # /lib/modules/V for each kernel, made by the test
    made_install_tree: bool  # /lib/modules too
    keys: list[str]  # signing key files absent before (lkm makes them)
    diverted: bool  # /usr/sbin/dkms diverted (or about to be)


class Host:
    """The host's changes, saved to STATE as they are made."""

    def __init__(self, kernels: list[KernelFixture]) -> None:
        self.kernels = kernels
        self.state = State(
            moddirs=[f"{INSTALL_TREE}/{k.version}" for k in kernels],
            made_install_tree=not os.path.exists(INSTALL_TREE),
            keys=[k for k in KEY_FILES if not os.path.lexists(k)],
            diverted=False,
        )
        self.save()

    def save(self) -> None:
        STATE.write_text(json.dumps(self.state))

    def make_module_trees(self) -> None:
        """``/lib/modules/V`` as kernel packages leave it, with headers."""
        for kernel in self.kernels:
            moddir = Path(INSTALL_TREE) / kernel.version
            shutil.copytree(
                kernel.moddir,
                moddir,
                symlinks=True,
                copy_function=_link_modules,
                ignore=shutil.ignore_patterns("build", "source"),
            )
            (moddir / "build").symlink_to(kernel.headers)
            (moddir / "source").symlink_to(os.path.realpath(Path(kernel.moddir) / "source"))

    def divert(self) -> None:
        self.state["diverted"] = True
        self.save()
        status, output = _dpkg(["dpkg-divert", "--rename", "--divert", DIVERTED, "--add", DKMS])
        assert status == 0, output
        # The link is named dkms: lkm takes its tool from argv[0].
        os.symlink(LKM, DKMS)


def _link_modules(src: str, dst: str) -> None:
    """Module files hard linked (nothing writes them), the rest copied."""
    if ".ko" in os.path.basename(src):
        os.link(src, dst)
    else:
        shutil.copy2(src, dst)


def _package_status() -> str:
    """dpkg's status word for the package ("" when dpkg does not know it)."""
    done = command(["dpkg-query", "-W", "-f=${db:Status-Status}", PACKAGE], text=True)
    return str(done.stdout).strip() if done.returncode == 0 else ""


def _diverted() -> bool:
    done = command(["dpkg-divert", "--truename", DKMS], text=True, check=True)
    return str(done.stdout).strip() == DIVERTED


def _restore(state: State) -> list[str]:
    """Undo what ``state`` records (each step idempotent); the problems left."""
    problems = []
    if _package_status() not in ("", "not-installed"):
        with tempfile.TemporaryDirectory() as cache:
            status, output = _dpkg(["dpkg", "-P", PACKAGE], cache)
        if status != 0:
            problems.append(f"dpkg -P {PACKAGE}: {output}")
    shutil.rmtree(f"{DKMS_TREE}/{NAME}", ignore_errors=True)
    if state["diverted"]:
        if os.path.islink(DKMS):
            os.unlink(DKMS)
        if _diverted():
            status, output = _dpkg(["dpkg-divert", "--rename", "--remove", DKMS])
            if status != 0:
                problems.append(f"dpkg-divert --remove: {output}")
    for moddir in state["moddirs"]:
        shutil.rmtree(moddir, ignore_errors=True)
    if state["made_install_tree"] and os.path.isdir(INSTALL_TREE):
        try:
            os.rmdir(INSTALL_TREE)
        except OSError as exc:
            problems.append(f"{INSTALL_TREE} left: {exc.strerror}")
    for key in state["keys"]:
        if os.path.lexists(key):
            os.unlink(key)
    STATE.unlink(missing_ok=True)
    return problems


def _check_untouched(kernels: list[KernelFixture]) -> None:
    """Fail (changing nothing) when the host already has what the test makes."""
    if not os.path.isfile(DKMS) or os.path.islink(DKMS) or _diverted():
        pytest.fail(f"{DKMS} is not Debian's dkms script (diverted or replaced already)")
    if _package_status() not in ("", "not-installed"):
        pytest.fail(f"{PACKAGE} is installed on this host; the test installs and purges it")
    for path in (f"{DKMS_TREE}/{NAME}", *(f"{INSTALL_TREE}/{k.version}" for k in kernels)):
        if os.path.lexists(path):
            pytest.fail(f"{path} exists already; the test makes and removes it")


@pytest.fixture
def host(kernel_61: KernelFixture, kernel_612: KernelFixture) -> Iterator[Host]:
    if os.geteuid() != 0:
        pytest.fail("dpkg -i needs root")
    if STATE.exists():  # an earlier run died midway
        problems = _restore(json.loads(STATE.read_text()))
        assert not problems, problems
    if not os.path.exists(DKMS):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "dkms"]
        install += ["-o", f"DPkg::Lock::Timeout={LOCK_WAIT:.0f}"]
        command(install, env=env, check=True)
    kernels = [kernel_61, kernel_612]
    _check_untouched(kernels)
    changes = Host(kernels)
    try:
        changes.make_module_trees()
        changes.divert()
        yield changes
    finally:
        problems = _restore(changes.state)
        assert not problems, problems
    assert not _diverted() and not os.path.islink(DKMS)


@pytest.fixture
def deb(tmp_path: Path) -> tuple[Path, str]:
    """The package file and the DKMS version it ships (/usr/src/NAME-VERSION)."""
    command(["apt-get", "download", PACKAGE], cwd=tmp_path, check=True)
    found = sorted(tmp_path.glob(f"{PACKAGE}_*.deb"))
    assert len(found) == 1, found
    listing = command(["dpkg-deb", "-c", str(found[0])], text=True, check=True).stdout
    prefix = f"./usr/src/{NAME}-"
    versions = {
        line.split()[-1][len(prefix) :].split("/")[0]
        for line in str(listing).splitlines()
        if line.split()[-1].startswith(prefix)
    }
    assert len(versions) == 1, versions
    return found[0], versions.pop()


def _dpkg(argv: list[str], cache: str | Path | None = None) -> tuple[int, str]:
    """dpkg or dpkg-divert, its stdout and stderr in the order written;
    tried again while another process (apt-get in another session on this
    machine) holds dpkg's lock. lkm's depmod cache goes to ``cache``."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if cache is not None:
        env["LKM_CACHE"] = str(cache)
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        done = run(argv, check=False, stderr=TO_STDOUT, env=env, timeout=1800)
        output = done.stdout.decode("utf-8", "replace")
        if done.status == 0 or LOCKED not in output or time.monotonic() > deadline:
            return done.status, output
        time.sleep(2)
    return done.status, done.stdout.decode("utf-8", "replace")


def _status(tool: list[str], cache: Path) -> str:
    env = dict(os.environ, LKM_CACHE=str(cache))
    done = command([*tool, "status"], env=env, text=True)
    assert done.returncode == 0, done.stderr
    return str(done.stdout)


def _dep_lines(moddir: Path) -> list[str]:
    text = (moddir / "modules.dep").read_text()
    return [line for line in text.splitlines() if line.startswith("updates/")]


def _module_name(kernel: KernelFixture) -> str:
    """acpi_call.ko, compressed as the kernel's own modules are (dkms's
    module_compressed_suffix): .ko on 6.1, .ko.xz on 6.12."""
    loop = sorted((Path(kernel.moddir) / "kernel" / "drivers" / "block").glob("loop.ko*"))
    assert len(loop) == 1, loop
    return f"{MODULE}{loop[0].name[len('loop') :]}"


def _modinfo(path: Path, field: str) -> str:
    return kmod("modinfo", ["-F", field, str(path)]).stdout.decode().strip()


def _check_installed(host: Host, version: str, cache: Path) -> int:
    """Each kernel's module in place, indexed, built for it and signed; the
    status lines of both tools alike. The number of checks made."""
    machine = os.uname().machine
    real, ours = [DIVERTED], [LKM, "dkms"]
    lines = {f"{NAME}/{version}, {k.version}, {machine}: installed" for k in host.kernels}
    by_lkm = _status(ours, cache)
    assert by_lkm == _status(real, cache)
    assert set(by_lkm.splitlines()) == lines and len(by_lkm.splitlines()) == len(lines)
    checks = 2
    for kernel in host.kernels:
        moddir = Path(INSTALL_TREE) / kernel.version
        placed = moddir / "updates" / "dkms" / _module_name(kernel)
        assert placed.is_file(), placed
        assert (Path(DKMS_TREE) / NAME / version / kernel.version / machine / "module").is_dir()
        assert _dep_lines(moddir) == [f"updates/dkms/{placed.name}:"]
        assert _modinfo(placed, "vermagic").startswith(f"{kernel.version} ")
        assert _modinfo(placed, "signer"), f"{placed} is not signed"
        checks += 5
    return checks


def _check_removed(host: Host, cache: Path) -> int:
    assert not os.path.lexists(f"{DKMS_TREE}/{NAME}")
    assert _status([LKM, "dkms"], cache) == _status([DIVERTED], cache) == ""
    for kernel in host.kernels:
        moddir = Path(INSTALL_TREE) / kernel.version
        assert not (moddir / "updates" / "dkms" / _module_name(kernel)).exists()
        assert _dep_lines(moddir) == []
    return 2 + 2 * len(host.kernels)


def test_dpkg_installs_and_removes_a_dkms_package_through_lkm(
    host: Host,
    deb: tuple[Path, str],
    tmp_path: Path,
    report: Callable[[str], None],
) -> None:
    package, version = deb
    cache = tmp_path / "lkm-cache"
    assert os.readlink(DKMS) == LKM and os.path.isfile(DIVERTED)
    placed = [f"{INSTALL_TREE}/{k.version}/updates/dkms/{_module_name(k)}" for k in host.kernels]
    status, output = _dpkg(["dpkg", "-i", str(package)], cache)
    assert status == 0, output
    # common.postinst: the running kernel has no /lib/modules directory
    # (no /boot/config-* either), so it builds for every kernel there is.
    first, second = sorted(k.version for k in host.kernels)
    assert f"Building for {first} and {second}\n" in output, output
    assert f"It is likely that {os.uname().release} belongs to a chroot's host" in output
    for path in placed:  # lkm's words, not dkms's
        assert f"Installing {path}\n" in output, output
    assert not [line for line in DKMS_ONLY if line in output], output
    checks = _check_installed(host, version, cache)

    status, removed = _dpkg(["dpkg", "-r", PACKAGE], cache)
    assert status == 0, removed
    for path in placed:
        assert f"Deleting {path}\n" in removed, removed
    assert not [line for line in DKMS_ONLY if line in removed], removed
    checks += _check_removed(host, cache)
    status, purged = _dpkg(["dpkg", "-P", PACKAGE], cache)
    assert status == 0, purged
    assert _package_status() in ("", "not-installed")
    kernels = ", ".join(k.version for k in host.kernels)
    report(
        f"dpkg -i/-r/-P {package.name} with lkm as /usr/sbin/dkms (postinst's "
        f"add/status/build/install, prerm's status/remove) for {kernels}: "
        f"{checks} checks (status lines of lkm and dkms 3.0.10, files, modules.dep, "
        f"vermagic, signer)"
    )
