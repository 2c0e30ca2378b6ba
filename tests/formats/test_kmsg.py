"""/dev/kmsg records and util-linux's way of printing them (the comparison
with util-linux dmesg itself runs in tests/vm)."""

from __future__ import annotations

import pytest

from lkm.errors import FormatError
from lkm.formats.kmsg import format_record, from_module, parse_record


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
