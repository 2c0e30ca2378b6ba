"""The host's ends of the guest's serial ports: a console for a shell, a
command's stdin, the terminal's window size.

One ``virtio-serial`` bus (the guest's ``virtio_console`` driver) carries
three ports, each a unix socket QEMU listens on in the session's directory:

- ``lkm.console``, port 0, a ``virtconsole``: the guest's ``/dev/hvc0``, a
  real tty (line discipline, job control, ``^C``), where ``lkm vm shell``
  runs its shell;
- ``lkm.stdin``: a step's stdin. A guest read returns 0, end of file, once
  the host's end is not connected (drivers/char/virtio_console.c,
  ``port_fops_read``). lkm ends its input with ``shutdown(SHUT_WR)``: QEMU
  then reads the rest, hands it on, and only after it sees the end and
  disconnects. A ``close()`` would hang the socket up at once (AF_UNIX
  reports POLLHUP when the peer is gone) and QEMU would drop what it had
  not read yet;
- ``lkm.winsize``: ``ROWS COLS`` lines the guest applies to ``/dev/hvc0``
  (QEMU's virtconsole passes no size on).

lkm connects to all three as soon as QEMU has made them, seconds before
the guest looks at them: a port whose host end is not connected reads as
end of file, so connecting later would race with the guest's first read.
QEMU reads a port's socket only while the guest has the port open, so
what lkm sends early waits in the socket (a stdin that ends waits too).
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable

from lkm.errors import LkmError

CONSOLE = "lkm.console"
STDIN = "lkm.stdin"
WINSIZE = "lkm.winsize"
PORTS = (CONSOLE, STDIN, WINSIZE)  # port numbers 0, 1, 2: a console must be 0
GUEST_CONSOLE = "/dev/hvc0"  # the first virtconsole's tty (drivers/tty/hvc)
_SOCKETS = {CONSOLE: "console", STDIN: "stdin", WINSIZE: "winsize"}
CONNECT_SECONDS = 10.0
# QEMU listens and does not wait for lkm before starting the guest.
_SERVER = "server=on,wait=off"


class PortError(LkmError, ConnectionError):
    """lkm could not connect to a serial port's socket; the message says which."""


def socket_path(directory: str, port: str) -> str:
    return os.path.join(directory, f"{_SOCKETS[port]}.sock")


def qemu_args(directory: str) -> list[str]:
    """The virtio-serial bus and its ports, sockets in ``directory``."""
    args = ["-device", "virtio-serial-pci,id=lkmserial"]
    for number, port in enumerate(PORTS):
        chardev = f"lkm{_SOCKETS[port]}"
        kind = "virtconsole" if port == CONSOLE else "virtserialport"
        args += [
            "-chardev", f"socket,id={chardev},path={socket_path(directory, port)},{_SERVER}",
            "-device", f"{kind},bus=lkmserial.0,nr={number},chardev={chardev},name={port}",
        ]  # fmt: skip
    return args


class HostPorts:
    """The connected host ends of the three ports (see the module's docstring)."""

    def __init__(self, directory: str, alive: Callable[[], bool] | None = None) -> None:
        """Connect to each port's socket once QEMU has made it; ``alive``,
        if given, is a callable telling whether QEMU still runs (a QEMU that
        stopped does not make sockets)."""
        self._sockets: dict[str, socket.socket] = {}
        self.stdin_ended = False
        try:
            for port in PORTS:
                self._sockets[port] = _connect(socket_path(directory, port), alive)
        except BaseException:
            self.close()
            raise

    def fileno(self, port: str) -> int:
        return self._sockets[port].fileno()

    def end_stdin(self) -> None:
        """The end of the step's stdin: the guest reads what was sent, then
        end of file."""
        if not self.stdin_ended:
            self.stdin_ended = True
            # (an error: QEMU went away; the step's wait says why)
            with contextlib.suppress(OSError):
                self._sockets[STDIN].shutdown(socket.SHUT_WR)

    def send_window_size(self, rows: int, columns: int) -> None:
        with contextlib.suppress(OSError):  # QEMU went away, or the guest reads no sizes
            self._sockets[WINSIZE].sendall(f"{rows} {columns}\n".encode())

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()


def _connect(path: str, alive: Callable[[], bool] | None) -> socket.socket:
    deadline = time.monotonic() + CONNECT_SECONDS
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            stopped = alive is not None and not alive()
            if stopped or time.monotonic() > deadline:
                raise PortError(f"cannot connect to the VM's serial port {path}: {exc}") from None
            time.sleep(0.005)
            continue
        sock.setblocking(False)
        return sock


__all__ = [
    "CONSOLE",
    "GUEST_CONSOLE",
    "PORTS",
    "STDIN",
    "WINSIZE",
    "HostPorts",
    "PortError",
    "qemu_args",
    "socket_path",
]
