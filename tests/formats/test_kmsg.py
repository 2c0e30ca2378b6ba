"""/dev/kmsg records and util-linux's way of printing them (the comparison
with util-linux dmesg itself runs in tests/vm)."""

from __future__ import annotations

import pytest

from lkm.errors import FormatError
from lkm.formats.kmsg import format_record, from_module, parse_record, subsys_end


def test_record_fields_and_dictionary() -> None:
    record = parse_record(b"6,339,5140900,-;dummy: unknown parameter\n SUBSYSTEM=net\n DEVICE=n2\n")
    assert (record.facility, record.level, record.sequence) == (0, 6, 339)
    assert record.microseconds == 5140900 and record.message == b"dummy: unknown parameter"
    assert record.fields == (("SUBSYSTEM", "net"), ("DEVICE", "n2"))
    assert format_record(record) == b"[    5.140900] dummy: unknown parameter\n"
    assert format_record(record, decode=True) == (
        b"kern  :info  : [    5.140900] dummy: unknown parameter\n"
    )
    assert format_record(record, show_time=False) == b"dummy: unknown parameter\n"


def test_escapes_tabs_and_continuation_lines() -> None:
    record = parse_record(b"12,1,0,-;a\\x09b\\x0acontinued\\x01\\xff\n")
    assert record.facility == 1 and record.level_name == "warn"
    assert format_record(record) == b"[    0.000000] a\tb\n               continued\\x01\\xff\n"
    assert format_record(record, utf8=True).endswith(b"continued\\x01\\xff\n")
    assert format_record(parse_record(b"6,2,0,-;\n")) == b"\n"


def test_module_filter() -> None:
    assert from_module(parse_record(b"6,1,0,-;dummy: x\n"), "dummy")
    assert from_module(parse_record(b"6,1,0,-;snd_hda: x\n"), "snd-hda")
    assert not from_module(parse_record(b"6,1,0,-;dummy0: x\n"), "dummy")
    assert not from_module(parse_record(b"6,1,0,-;loop: x\n"), "dummy")


@pytest.mark.parametrize("raw", [b"", b"no separator", b"x,y,z;msg", b"6;msg"])
def test_malformed_records(raw: bytes) -> None:
    with pytest.raises(FormatError):
        parse_record(raw)


def test_colours_as_util_linux_dmesg() -> None:
    """util-linux 2.38's default scheme: time green, "subsys: " brown, the
    rest by level (emerg and below-warn plain, "segfault at" half-bright
    red), each reset after; -x's prefix plain."""
    record = parse_record(b"3,1,5140900,-;e1000e 0000:00:19.0: failed\n")
    assert format_record(record, colour=True) == (
        b"\033[32m[    5.140900] \033[0m\033[33me1000e 0000:00:19.0: \033[0m\033[31mfailed\033[0m\n"
    )
    assert format_record(record, decode=True, show_time=False, colour=True) == (
        b"kern  :err   : \033[33me1000e 0000:00:19.0: \033[0m\033[31mfailed\033[0m\n"
    )
    info = parse_record(b"6,2,0,-;a[1]: segfault at 0 ip 0\n")
    assert format_record(info, show_time=False, colour=True) == (
        b"\033[33ma[1]: \033[0m\033[2m\033[31msegfault at 0 ip 0\033[0m\n"
    )
    emerg = parse_record(b"0,3,0,-;no prefix\n")
    assert format_record(emerg, show_time=False, colour=True) == b"no prefix\n"
    assert format_record(parse_record(b"3,4,0,-;\n"), colour=True) == b"\n"


@pytest.mark.parametrize(
    ("message", "end"),
    [
        (b"usb 1-1: new device", 9),
        (b"a:b: c", 5),
        (b"a:b:c", 0),
        (b"colon at the end:", 0),
        (b"a blank, nothing after: ", 0),
        (b"one byte after: x", 16),
        (b"tab:\tx", 5),
        (b"nul\0 first: x", 0),
    ],
)
def test_subsys_prefix(message: bytes, end: int) -> None:
    assert subsys_end(message) == end
