"""System.map and Module.symvers read as kmod's depmod reads them (fgets
into a 10240-byte buffer): pure, no fixtures; compared with kmod in
tests/cli/test_hostile_files.py."""

from __future__ import annotations

from lkm.formats.kernel_symbols import fgets_lines, parse_symvers, parse_system_map


def test_lines_end_at_newline_only_and_long_ones_are_cut() -> None:
    data = b"a\x0cb\rc\x1cd\n" + b"x" * 12 + b"\nlast"
    assert list(fgets_lines(data, buffer=8)) == [
        b"a\x0cb\rc\x1cd",  # 7 bytes: the buffer holds no more
        b"\n",
        b"xxxxxxx",
        b"xxxxx\n",
        b"last",
    ]
    assert list(fgets_lines(b"ab\0cd\nef\n")) == [b"ab", b"ef\n"]


def test_system_map_bad_line_numbers_count_only_newlines() -> None:
    data = b"0 T a\x0cb\n0 T c\x1cd\rq\n0 r __ksymtab_foo\x0c\nbadline\n0 R __ksymtab_bar\n"
    symbols, messages = parse_system_map(data, "S", None)
    assert symbols == {"foo\x0c": 0, "bar": 0}
    assert messages == [("ERROR", "S:4: invalid line: badline\n")]


def test_symvers_version_must_be_all_hex_as_strtoull_reads_it() -> None:
    data = b"0x12\ta\tvmlinux\tEXPORT_SYMBOL\n0x12\r\tb\tvmlinux\tX\n -0x1\tc\tvmlinux\tX\n"
    symbols, messages = parse_symvers(data, "M", None)
    assert symbols == {"a": 0x12, "c": (1 << 64) - 1}
    assert messages == [("ERROR", "M:2 Invalid symbol version 0x12\r: Success")]
