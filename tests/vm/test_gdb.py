"""``lkm try --gdb`` in the real Debian kernels, driven as a person would:
gdb (Debian's, in batch mode) runs the commands lkm wrote, sets a
breakpoint in the chardev template's read function and says go
(``lkm-go``); the test command then writes to and reads ``/dev/NAME``, and
gdb stops in that function at its source line and reads the module's
variables (which lie in its ``.bss``: right only when every section was
placed where the kernel put it). Then gdb detaches, the VM goes on, the
module is unloaded and ``lkm try`` reports success. No QEMU may be left.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import command

from lkm.system.run import TO_STDOUT, Process, start
from lkm.testing.debian_kernels import KernelFixture
from lkm.workflows.scaffold import create

LKM = str(Path(sys.executable).with_name("lkm"))
NAME = "echodev"
PAYLOAD = "gdb saw these bytes"
# Generous: under TCG the build and the boot take a minute or more on a busy host.
HELD_WITHIN = 900.0
GDB_WITHIN = 600.0
DONE_WITHIN = 600.0


@pytest.fixture(params=["6.1", "6.12"])
def kernel(request: pytest.FixtureRequest, kernels: list[KernelFixture]) -> KernelFixture:
    return next(k for k in kernels if k.label == request.param)


def function_lines(source: Path, signature: str) -> range:
    """The source lines (1-based) from ``signature`` to the function's closing brace."""
    lines = source.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(signature))
    last = next(i for i in range(first, len(lines)) if lines[i] == "}")
    return range(first + 1, last + 2)


def wait_for_file(path: Path, proc: Process, output: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"lkm try ended before writing {path}:\n{output.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {path} after {seconds:.0f} s:\n{output.read_text()}")
        time.sleep(0.5)


def processes_naming(text: str) -> list[int]:
    """Processes whose command line contains ``text`` (the VM's gdb socket)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def stop(proc: Process) -> None:
    """End lkm try as Ctrl-C would (it then powers its VM off), else kill it."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGINT)
        if proc.wait(90) is None:
            proc.kill()
    proc.close()


def test_gdb_breaks_in_the_read_function(kernel: KernelFixture, tmp_path: Path) -> None:
    directory = tmp_path / NAME
    create(str(directory), "chardev")
    script = directory / ".lkm-gdb"
    test = ["sh", "-c", f'printf %s "$1" > /dev/{NAME} && cat /dev/{NAME}', "sh", PAYLOAD]
    argv = [LKM, "try", str(directory), "--kernel", kernel.version, "-j2", "--gdb", "--", *test]
    output = tmp_path / "try.out"
    socket = ""
    with open(output, "wb") as sink:
        proc = start(argv, stdout=sink.fileno(), stderr=TO_STDOUT)
    try:
        wait_for_file(script, proc, output, HELD_WITHIN)
        commands = script.read_text()
        socket = re.search(r"^target remote (\S+)$", commands, re.M).group(1)  # type: ignore[union-attr]
        gdb = command(
            ["gdb", "-batch", "-nx", "-x", script, "-ex", f"break {NAME}_read", "-ex", "lkm-go",
             "-ex", f"print {NAME}_length", "-ex", f"print {NAME}_data", "-ex", "bt 1"],
            text=True, timeout=GDB_WITHIN,
        )  # fmt: skip
        said = gdb.stdout + gdb.stderr
        status = proc.wait(DONE_WITHIN)
    finally:
        stop(proc)
        left = processes_naming(socket) if socket else []
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    report = output.read_text()
    assert not left, f"QEMU still ran after lkm try: {left}"
    assert socket and not os.path.exists(socket), commands
    assert "add-symbol-file " in commands and "-s .bss 0x" in commands, commands

    hit = re.search(rf"^Breakpoint 1, {NAME}_read \(.*\) at (\S+):(\d+)$", said, re.M)
    assert hit, f"{said}\n{report}"
    source = directory / f"{NAME}.c"
    assert hit.group(1) == str(source), said
    assert int(hit.group(2)) in function_lines(source, f"static ssize_t {NAME}_read("), said
    assert f"$1 = {len(PAYLOAD)}\n" in said, said  # the module's .bss, read at the breakpoint
    assert f'$2 = "{PAYLOAD}", ' in said, said
    assert re.search(rf"^#0  {NAME}_read \(", said, re.M), said

    assert status == 0, report
    assert f"== go ({script}.go): test and unload\n" in report, report
    assert f"test: exit status 0\n  | {PAYLOAD}\n" in report, report
    assert f"rmmod {NAME}: ok\n" in report, report


def test_vm_run_gdb_attaches_to_the_kernel(kernel_612: KernelFixture, tmp_path: Path) -> None:
    """``lkm vm run --gdb``: the stub, ``nokaslr``, and a command file that
    attaches (gdb may attach at any time: while it boots, here)."""
    script = tmp_path / "attach.gdb"
    argv = [LKM, "vm", "run", "--kernel", kernel_612.version, "--gdb", "--gdb-file", str(script),
            "--", "sh", "-c", "cat /proc/cmdline; sleep 3"]  # fmt: skip
    output = tmp_path / "vm.out"
    socket = ""
    with open(output, "wb") as sink:
        proc = start(argv, stdout=sink.fileno(), stderr=TO_STDOUT)
    try:
        wait_for_file(script, proc, output, HELD_WITHIN)
        commands = script.read_text()
        socket = re.search(r"^target remote (\S+)$", commands, re.M).group(1)  # type: ignore[union-attr]
        gdb = command(["gdb", "-batch", "-nx", "-x", script, "-ex", "info registers rip"],
                      text=True, timeout=GDB_WITHIN)  # fmt: skip
        status = proc.wait(DONE_WITHIN)
    finally:
        stop(proc)
        left = processes_naming(socket) if socket else []
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    said = output.read_text()
    assert not left, f"QEMU still ran after lkm vm run: {left}"
    assert status == 0, said
    assert f"lkm vm: gdb stub at {socket}: gdb -x {script}\n" in said
    assert " nokaslr" in said.splitlines()[-1], said
    # Attached: gdb read the processor's registers (wherever it was: the
    # kernel mostly, but a user process now and then).
    assert re.search(r"^rip +0x[0-9a-f]+ ", gdb.stdout, re.M), gdb.stdout + gdb.stderr
