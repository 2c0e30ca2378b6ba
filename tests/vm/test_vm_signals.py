"""A SIGTERM (or SIGHUP) to ``lkm vm run`` ends it and its guest: QEMU is
killed, not left running without its lkm, and lkm exits with the status a
shell gives that signal."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lkm.testing.debian_kernels import KernelFixture

LKM = str(Path(sys.executable).with_name("lkm"))


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_ends_lkm_and_its_guest(kernel_612: KernelFixture, signum: int) -> None:
    argv = [LKM, "vm", "run", "--kernel", kernel_612.version, "--"]
    argv += ["sh", "-c", "echo started; sleep 600"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 300)
        assert ready and proc.stdout.readline() == b"started\n"  # the guest runs the command
        qemu = [p for p in _children(proc.pid) if _alive(p)]
        assert qemu, "no QEMU child"
        proc.send_signal(signum)
        assert proc.wait(30) == 128 + signum
        assert not any(_alive(p) for p in qemu)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
