"""The host side of a guest step's streams, without a guest: pumps, the
stdin port's end, the terminal's escape keys, the boot progress line and
the shell's script (the real thing is in tests/vm/test_vm_workbench.py)."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import socket
import tempfile

import pytest

from lkm.vm import serial
from lkm.vm.shell import prompt, shell_script
from lkm.vm.streams import Pump, pump_round
from lkm.vm.terminal import BootProgress, Terminal, TerminalEscape


def test_pump_moves_everything_then_runs_at_end() -> None:
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    ended: list[bool] = []
    pump = Pump(read_end, ours.fileno(), lambda: ended.append(True))
    data = os.urandom(300_000)  # more than a socket buffer holds: writes wait
    received = b""
    written = 0
    while not ended:
        if written < len(data):
            with contextlib.suppress(BlockingIOError):
                written += os.write(write_end, data[written : written + 65536])
            if written == len(data):
                os.close(write_end)
        pump_round([pump], 0.01)
        while select.select([theirs], [], [], 0)[0]:
            received += theirs.recv(1 << 20)
    assert received == data and pump.done
    os.close(read_end)
    ours.close()
    theirs.close()


def test_stdin_ends_without_hanging_up() -> None:
    """What QEMU's side sees when lkm's stdin ends: the rest of the data,
    then end of file, and no hang-up before it has read them (a hang-up
    would make QEMU drop what it had not read)."""
    with tempfile.TemporaryDirectory() as work:
        servers = {}
        for port in serial.PORTS:
            servers[port] = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            servers[port].bind(serial.socket_path(work, port))
            servers[port].listen(1)
        ports = serial.HostPorts(work)
        qemu_side, _ = servers[serial.STDIN].accept()
        os.write(ports.fileno(serial.STDIN), b"a\nb\n")
        ports.end_stdin()
        poller = select.poll()
        poller.register(qemu_side, select.POLLIN | select.POLLHUP)
        ((_, events),) = poller.poll(1000)
        assert events & select.POLLIN and not events & select.POLLHUP
        assert qemu_side.recv(100) == b"a\nb\n" and qemu_side.recv(100) == b""
        ports.close()
        qemu_side.close()
        for server in servers.values():
            server.close()


def test_three_escape_keys_leave() -> None:
    terminal = Terminal()
    terminal.watch(b"ls\x1d\x1d")
    terminal.watch(b"x\x1d\x1d")  # not in a row
    with pytest.raises(TerminalEscape):
        terminal.watch(b"\x1d")


def test_boot_progress_on_a_terminal_only() -> None:
    main, secondary = pty.openpty()
    progress = BootProgress("lkm vm: 6.x", secondary)
    for stage in ("booting", "init", "ready"):
        progress(stage)
    shown = ""
    while select.select([main], [], [], 0.2)[0]:
        shown += os.read(main, 1000).decode()
    assert shown.startswith("\r\x1b[Klkm vm: 6.x: booting\r\x1b[Klkm vm: 6.x: init (")
    assert "lkm vm: 6.x: ready in " in shown and shown.endswith("\r\x1b[K")  # wiped
    os.close(main)
    os.close(secondary)
    read_end, write_end = os.pipe()
    BootProgress("lkm vm: 6.x", write_end)("booting")
    os.close(write_end)
    assert os.read(read_end, 100) == b""
    os.close(read_end)


def test_shell_script() -> None:
    script = shell_script("6.1.0-test", (33, 101), "xterm")
    assert "stty rows 33 cols 101\n" in script
    assert f"PS1='{prompt('6.1.0-test')}'" in script and "TERM=xterm" in script
    assert script.rstrip().endswith("exec sh -i")
    assert "stty" not in shell_script("6.1.0-test", None, "dumb")
