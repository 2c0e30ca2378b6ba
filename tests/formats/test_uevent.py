"""Uevent datagrams and sysfs uevent files: the kernel's shape parsed,
anything else refused with a reason (fuzzed)."""

from __future__ import annotations

import pytest
from conftest import fuzz_example
from hypothesis import given
from hypothesis import strategies as st

from lkm.formats.uevent import NotAUevent, parse_uevent, parse_uevent_file

# As lib/kobject_uevent.c sends it for a PCI device being added.
KERNEL = (
    b"add@/devices/pci0000:00/0000:00:05.0\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:05.0\0"
    b"SUBSYSTEM=pci\0PCI_CLASS=20000\0MODALIAS=pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00\0"
    b"SEQNUM=1712\0"
)


def test_kernel_datagram() -> None:
    event = parse_uevent(KERNEL)
    assert (event.action, event.devpath) == ("add", "/devices/pci0000:00/0000:00:05.0")
    assert event.modalias == "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00"
    assert event.env["SEQNUM"] == "1712"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"libudev\0\xfe\xed\xca\xfe", "header"),
        (b"no header here", "header"),
        (b"add@/devices/x\0ACTION=remove\0DEVPATH=/devices/x\0", "do not match"),
        (b"add@/devices/x\0ACTION=add\0", "do not match"),
        (b"add@/devices/x\0ACTION=add\0DEVPATH=/devices/x\0JUNK\0", "KEY=VALUE"),
        (b"add@devices\0ACTION=add\0DEVPATH=devices\0", "not a path"),
        (b"add@/d\0ACTION=add\0DEVPATH=/d\0" + b"X=" + b"y" * 70000, "longer"),
    ],
)
def test_not_uevents(data: bytes, why: str) -> None:
    with pytest.raises(NotAUevent, match=why):
        parse_uevent(data)


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_refused(data: bytes) -> None:
    fuzz_example("uevent datagrams")
    try:
        event = parse_uevent(data)
    except NotAUevent:
        return
    assert event.env["ACTION"] == event.action and event.devpath.startswith("/")


def test_sysfs_uevent_file() -> None:
    text = "DRIVER=e1000\nPCI_CLASS=20000\nMODALIAS=pci:v00008086d0000100E\nnoise\n"
    assert parse_uevent_file(text)["MODALIAS"] == "pci:v00008086d0000100E"
