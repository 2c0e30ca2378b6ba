"""Kernel uevents: the datagrams the kernel multicasts on
``NETLINK_KOBJECT_UEVENT`` and the ``uevent`` files of ``/sys``.

A datagram is ``ACTION@DEVPATH`` then ``KEY=VALUE`` fields, each ending
in a NUL (lib/kobject_uevent.c): ``add@/devices/pci0000:00/0000:00:03.0``,
``ACTION=add``, ``DEVPATH=…``, ``SUBSYSTEM=pci``, ``MODALIAS=pci:v…``,
``SEQNUM=…``. udev's own re-broadcasts start ``libudev`` and go to another
multicast group. Anything that does not have this shape — no ``@``, no
ACTION or DEVPATH field, fields that disagree with the header, a key
without ``=`` — is not a uevent (:func:`parse_uevent` says why).
"""

from __future__ import annotations

from collections.abc import Mapping

from lkm.records import Record

MAX_DATAGRAM = 64 * 1024  # the kernel's are below 2 KiB (UEVENT_BUFFER_SIZE)


class Uevent(Record):
    action: str
    devpath: str
    env: Mapping[str, str]

    @property
    def modalias(self) -> str | None:
        return self.env.get("MODALIAS") or None


class NotAUevent(ValueError):
    """A datagram that is not a kernel uevent; the message says why."""


def parse_uevent(data: bytes) -> Uevent:
    """The uevent in a datagram; :class:`NotAUevent` when it is not one."""
    if len(data) > MAX_DATAGRAM:
        raise NotAUevent(f"{len(data)} bytes: longer than any uevent")
    header, *fields = data.rstrip(b"\0").split(b"\0")
    if b"@" not in header:
        raise NotAUevent("no ACTION@DEVPATH header")
    action, _, devpath = header.decode("utf-8", "surrogateescape").partition("@")
    env: dict[str, str] = {}
    for raw in fields:
        key, equals, value = raw.decode("utf-8", "surrogateescape").partition("=")
        if not equals or not key:
            raise NotAUevent(f"field {raw[:40]!r} is not KEY=VALUE")
        env[key] = value
    if env.get("ACTION") != action or env.get("DEVPATH") != devpath:
        raise NotAUevent("ACTION and DEVPATH fields do not match the header")
    if not devpath.startswith("/"):
        raise NotAUevent(f"DEVPATH {devpath[:60]!r} is not a path")
    return Uevent(action, devpath, env)


def parse_uevent_file(text: str) -> dict[str, str]:
    """A ``/sys/…/uevent`` file: ``KEY=VALUE`` lines."""
    env = {}
    for line in text.splitlines():
        key, equals, value = line.partition("=")
        if equals and key:
            env[key] = value
    return env


__all__ = ["MAX_DATAGRAM", "NotAUevent", "Uevent", "parse_uevent", "parse_uevent_file"]
