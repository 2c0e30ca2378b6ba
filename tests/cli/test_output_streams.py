"""Every command with its usual arguments, stdout on ``/dev/full`` and
stdout closed (``>&-``): kmod's exit status (kmod's tools do not check their
writes: a lost output costs no status), and never a traceback.

For kmod's tools the status is kmod's own on the same arguments, run the
same way; for lkm's own commands it is the status the same command has
with a working stdout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import _kmod_tool

from lkm.testing.debian_kernels import KernelFixture

LKM = str(Path(sys.executable).with_name("lkm"))
WAYS = ("full", "closed")


def _run(argv: list[str], way: str, cwd: Path) -> tuple[int, bytes]:
    """(status, stderr) of ``argv`` with stdout ``way``."""
    if way == "full":
        with open("/dev/full", "wb") as full:
            done = subprocess.run(
                argv, stdout=full, stderr=subprocess.PIPE, cwd=cwd, timeout=120, check=False
            )
    elif way == "closed":
        done = subprocess.run(
            ["sh", "-c", 'exec "$@" >&-', "sh", *argv],
            stderr=subprocess.PIPE,
            cwd=cwd,
            timeout=120,
            check=False,
        )
    else:
        done = subprocess.run(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=cwd,
            timeout=120,
            check=False,
        )
    return done.returncode, done.stderr


def _kmod_cases(kernel: KernelFixture) -> list[list[str]]:
    module = str(next(p for p in kernel.modules() if p.name == "dummy.ko"))
    root, version = kernel.indexed_root, kernel.version
    return [
        ["modinfo", module],
        ["modinfo", "-F", "alias", module],
        ["modinfo", "--help"],
        ["modinfo", "-b", root, "-k", version, "e1000"],
        ["modprobe", "-c"],
        ["modprobe", "--show-depends", "-d", root, "-S", version, "ext4"],
        ["modprobe", "-n", "-v", "-d", root, "-S", version, "dummy"],
        ["modprobe", "-D", "-d", root, "-S", version, "dummy"],
        ["modprobe", "-R", "-d", root, "-S", version, "pci:v00008086d0000100Esv*sd*bc*sc*i*"],
        ["modprobe", "--show-exports", module],
        ["modprobe", "--help"],
        ["depmod", "-n", "-b", root, version],
        ["depmod", "--help"],
        ["lsmod"],
        ["insmod", module],
        ["insmod"],
        ["rmmod", "dummy"],
        ["rmmod", "--help"],
    ]


def test_kmods_tools_keep_kmods_status_on_a_full_or_closed_stdout(
    kernel_61: KernelFixture, tmp_path: Path, report: Callable[[str], None]
) -> None:
    cases = _kmod_cases(kernel_61)
    for argv in cases:
        kmod_argv = [_kmod_tool(argv[0]), *argv[1:]]
        for way in WAYS:
            status, stderr = _run([LKM, *argv], way, tmp_path)
            expected, kmod_stderr = _run(kmod_argv, way, tmp_path)
            assert b"Traceback" not in stderr and b"internal error" not in stderr, (argv, way)
            assert status == expected, (argv, way, stderr, kmod_stderr)
    report(f"output streams: {len(cases)} kmod commands x {len(WAYS)} broken stdouts vs kmod")


def _own_cases(tmp_path: Path, kernel: KernelFixture) -> list[list[str]]:
    module = str(next(p for p in kernel.modules() if p.name == "dummy.ko"))
    key, cert = str(tmp_path / "k.pem"), str(tmp_path / "c.pem")
    return [
        [],
        ["--help"],
        ["--version"],
        ["lsmod", "--json"],
        ["dmesg"],
        ["ksyms", "--help"],
        ["keygen", "--key", key, "--cert", cert, "--force"],
        ["sign", module, "--key", key, "--cert", cert, "-o", str(tmp_path / "signed.ko")],
        ["new", str(tmp_path / "hello")],
        ["build", "--kernel", kernel.label, str(tmp_path / "hello")],
        ["vm", "run", "--dry-run", "--kernel", kernel.label, "--", "true"],
        ["vm", "--help"],
        ["try", "--help"],
    ]


def test_lkms_own_commands_keep_their_status_on_a_full_or_closed_stdout(
    kernel_61: KernelFixture, tmp_path: Path, report: Callable[[str], None]
) -> None:
    cases = _own_cases(tmp_path, kernel_61)
    compared = 0
    for argv in cases:
        for way in (*WAYS, "working"):
            if argv[:1] == ["new"]:
                _remove_tree(tmp_path / "hello")
            status, stderr = _run([LKM, *argv], way, tmp_path)
            assert b"Traceback" not in stderr and b"internal error" not in stderr, (argv, way)
            if way == WAYS[0]:
                first = status
            else:
                assert status == first, (argv, way, stderr)
            compared += 1
        if argv[:1] == ["new"]:
            _remove_tree(tmp_path / "hello")
            assert _run([LKM, *argv], "working", tmp_path)[0] == 0  # for build, next
    report(f"output streams: {len(cases)} lkm commands x 3 stdouts, {compared} runs")


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("way", WAYS)
def test_a_closed_stdout_does_not_let_output_land_in_a_file_lkm_opens(
    way: str, tmp_path: Path
) -> None:
    """With fd 1 closed, the first file lkm opens would get number 1; the
    guard puts /dev/null there first, so ``lkm new`` writes its Makefile
    whole and its "created" lines go nowhere."""
    status, stderr = _run([LKM, "new", str(tmp_path / "hello")], way, tmp_path)
    assert (status, stderr) == (0, b"")
    for written in (tmp_path / "hello").iterdir():
        assert b"created " not in written.read_bytes(), written
    assert os.path.getsize(tmp_path / "hello" / "Kbuild") > 0
