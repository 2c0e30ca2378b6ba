"""The kernel's uevent socket: ``NETLINK_KOBJECT_UEVENT``, multicast group 1.

Every process may listen; only the kernel's datagrams (sender port id 0)
are uevents. A process with the right capability can send to the group
too, so a listener that acts on what it reads must check the sender, as
udev does. The receive buffer is made large (root may force it past
``rmem_max``): coldplug makes hundreds of events in a burst, and a full
buffer drops them (ENOBUFS, reported, not fatal).
"""

from __future__ import annotations

import errno
import select
import socket

from lkm.formats.uevent import MAX_DATAGRAM
from lkm.records import Record

NETLINK_KOBJECT_UEVENT = 15
KERNEL_GROUP = 1
_SO_RCVBUFFORCE = 33
_BUFFER = 8 * 1024 * 1024


class Datagram(Record):
    data: bytes
    sender: int  # netlink port id: 0 for the kernel
    overrun: bool = False  # the buffer overflowed before it: events were lost


class UeventSocket:
    """A bound listener on the kernel's uevent group."""

    def __init__(self) -> None:
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT
        )
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _BUFFER)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
        self.sock.bind((0, KERNEL_GROUP))

    def receive(self, timeout: float | None) -> Datagram | None:
        """The next datagram, or None when ``timeout`` seconds pass first."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return None
        try:
            data, address = self.sock.recvfrom(MAX_DATAGRAM + 1)
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                return Datagram(b"", 0, overrun=True)
            if exc.errno in (errno.EAGAIN, errno.EINTR):
                return None
            raise
        return Datagram(data, int(address[0]))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> UeventSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["KERNEL_GROUP", "NETLINK_KOBJECT_UEVENT", "Datagram", "UeventSocket"]
