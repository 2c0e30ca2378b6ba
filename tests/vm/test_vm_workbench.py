"""The VM as a workbench, driven as a user drives it: ``lkm vm shell`` on a
pseudo-terminal, ``lkm vm run`` with stdin and a command whose output comes
while it runs, devices on QEMU's command line and through QMP, more of the
kernel command line, and ``lkm try --shell``.

Each test is one boot of a real Debian kernel (TCG): the shell session
does everything a session can in one guest (module, job control, window
size, kernel command line, processors, a device given at boot and one
added through QMP) and ends with ``exit 3`` on 6.1 and a kernel panic on
6.12.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from lkm.testing.debian_kernels import KernelFixture
from lkm.testing.host import device_add
from lkm.vm.shell import prompt
from lkm.workflows.build import build
from lkm.workflows.scaffold import create

LKM = str(Path(sys.executable).with_name("lkm"))
BOOT_SECONDS = 300  # TCG on a busy machine; a boot takes 4-20 s
E1000 = "pci:v00008086d0000100E"  # QEMU's e1000: Intel 82540EM
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


@pytest.fixture(params=["6.1", "6.12"])
def kernel(request: pytest.FixtureRequest, kernels: list[KernelFixture]) -> KernelFixture:
    return next(k for k in kernels if k.label == request.param)


class GuestShell:
    """``lkm vm shell`` (or ``lkm try --shell``) on a pseudo-terminal."""

    def __init__(self, argv: list[str], release: str, cwd: Path, size: tuple[int, int]) -> None:
        env = dict(os.environ, TERM="dumb")
        self.child = pexpect.spawn(
            argv[0], argv[1:], cwd=str(cwd), env=env, dimensions=size, encoding="utf-8"
        )
        self.transcript: list[str] = []
        self.child.logfile_read = self  # type: ignore[assignment]
        self.prompt = re.escape(prompt(release))

    def write(self, text: str) -> None:  # the transcript, for failures
        self.transcript.append(text)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        return _ESCAPES.sub("", "".join(self.transcript))

    def wait_for_prompt(self, timeout: float = 60) -> str:
        self.child.expect(self.prompt, timeout=timeout)
        return _ESCAPES.sub("", self.child.before)

    def run(self, line: str, timeout: float = 60) -> str:
        """Type ``line``; what it printed (without the echo). The end is an
        echo of a value the typed line does not show (bash may draw its
        prompt more than once: on SIGWINCH, say)."""
        self.child.sendline(f"{line}; echo :$((6 * 7)):")
        self.child.expect_exact(":42:\r\n", timeout=timeout)
        printed = _ESCAPES.sub("", self.child.before)
        self.wait_for_prompt()
        return printed.split("\n", 1)[1] if "\n" in printed else ""

    def end(self, timeout: float = 60) -> int | None:
        self.child.expect(pexpect.EOF, timeout=timeout)
        self.child.close()
        return self.child.exitstatus  # type: ignore[no-any-return]


def _built_hello(directory: Path, kernel: KernelFixture) -> Path:
    create(str(directory))
    built = build(str(directory), str(kernel.headers), jobs=2, output=lambda line: None)
    (module,) = built.modules
    return Path(module)


def test_shell_session(kernel: KernelFixture, tmp_path: Path) -> None:
    module = _built_hello(tmp_path / "hello", kernel)
    qmp = tmp_path / "qmp.sock"
    argv = [LKM, "vm", "shell", "--kernel", kernel.label, "--cpus", "2", "--device", "e1000",
            "--append", "lkm.workbench=yes", "--qmp", str(qmp)]  # fmt: skip
    shell = GuestShell(argv, kernel.version, module.parent, (33, 110))
    try:
        _session(shell, kernel, module, qmp)
    except BaseException:
        print(shell.text())  # pytest shows it with the failure
        raise


def _session(shell: GuestShell, kernel: KernelFixture, module: Path, qmp: Path) -> None:
    booted = shell.wait_for_prompt(BOOT_SECONDS)
    assert f"lkm vm: {kernel.version}: ready in " in booted  # the progress line
    # A real tty of the host terminal's size, the kernel's tree with its headers.
    assert shell.run("stty size; tty").split() == ["33", "110", "/dev/hvc0"]
    shell.child.setwinsize(40, 120)
    shell.wait_for_prompt()  # bash redraws its prompt on SIGWINCH: the guest saw it
    assert shell.run("stty size").split() == ["40", "120"]
    release, cmdline, cpus = shell.run("uname -r; cat /proc/cmdline; nproc").splitlines()
    assert release == kernel.version and "lkm.workbench=yes" in cmdline.split() and cpus == "2"
    assert shell.run("test -f /lib/modules/$(uname -r)/build/Makefile && echo ok") == "ok\n"
    assert shell.run("command -v lkm modprobe").split() == [LKM, "/usr/sbin/modprobe"]
    # The module built by lkm build, with kmod's tools as in a tutorial.
    assert shell.run(f"insmod {module.name}; echo $?") == "0\n"
    assert "hello: Hello, world" in shell.run("dmesg | tail -3")
    assert re.search(r"^hello +\d+ +0$", shell.run("lsmod"), re.M)
    assert shell.run("rmmod hello; dmesg | tail -2").rstrip().endswith("Goodbye, world")
    assert "hello" not in shell.run("lsmod").split()
    # ^C reaches the guest's foreground job; the shell goes on.
    shell.child.sendline("sleep 100")
    shell.child.expect_exact("sleep 100\r\n")
    time.sleep(1)
    started = time.monotonic()
    shell.child.sendcontrol("c")
    shell.wait_for_prompt(timeout=30)
    assert time.monotonic() - started < 30
    assert shell.run("echo status=$?") == "status=130\n"
    # Devices: e1000 given at boot, and one more added through QMP.
    aliases = "cat /sys/bus/pci/devices/*/modalias"
    assert shell.run(f"{aliases} | grep -c {E1000}") == "1\n"
    shell.run("busybox uevent sh -c 'echo $ACTION $MODALIAS >>/tmp/ev' & true")
    time.sleep(1)
    device_add(str(qmp), driver="e1000", id="lkmnic")
    shell.run(f"for i in $(seq 100); do grep -q {E1000} /tmp/ev && break; sleep 0.2; done", 60)
    assert f"add {E1000}" in shell.run("cat /tmp/ev")
    assert shell.run(f"{aliases} | grep -c {E1000}") == "2\n"
    if kernel.label == "6.1":
        shell.child.sendline("exit 3")
        assert shell.end() == 3
    else:  # a panic ends the session, with the console's tail
        shell.child.sendline("echo c >/proc/sysrq-trigger")
        assert shell.end(timeout=120) == 1
        said = shell.text()
        assert "lkm vm: the kernel panicked" in said and "console (last lines):" in said
        assert "sysrq triggered crash" in said


def test_run_forwards_stdin_and_streams_output(kernel: KernelFixture) -> None:
    """stdin reaches CMD (``cat`` ends at its end); a line comes out while
    CMD still runs, on stdout or stderr."""
    script = "cat; echo first; sleep 3; echo second >&2; cat /proc/cmdline"
    argv = [LKM, "vm", "run", "--kernel", kernel.label, "--append", "lkm.x=1 lkm.y=2",
            "--", "sh", "-c", script]  # fmt: skip
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"a\nb\n")
    proc.stdin.close()
    arrivals = [(line, time.monotonic()) for line in proc.stdout]
    assert proc.wait(BOOT_SECONDS) == 0, arrivals
    lines = [line for line, _ in arrivals]
    assert lines[:4] == [b"a\n", b"b\n", b"first\n", b"second\n"], lines
    assert {b"lkm.x=1", b"lkm.y=2"} <= set(lines[4].split())
    first, second = arrivals[2][1], arrivals[3][1]
    assert second - first > 2.5  # "first" came while CMD slept


def test_try_shell(kernel_61: KernelFixture, tmp_path: Path) -> None:
    """``lkm try --shell``: the shell comes after loading, the module is
    there; leaving it unloads and reports as without the shell."""
    directory = tmp_path / "hello"
    create(str(directory))
    argv = [LKM, "try", str(directory), "--kernel", kernel_61.label, "-j2", "--shell"]
    shell = GuestShell(argv, kernel_61.version, tmp_path, (30, 100))
    try:
        shell.wait_for_prompt(BOOT_SECONDS)
        assert re.search(r"^hello +\d+ +0$", shell.run("lsmod"), re.M)
        assert "hello: Hello, world" in shell.run("dmesg | tail -3")
        shell.child.sendline("exit")
        assert shell.end(timeout=120) == 0
        said = shell.text()
        assert "rmmod hello: ok" in said and "\nok (" in said
    except BaseException:
        print(shell.text())
        raise
