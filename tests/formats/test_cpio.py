"""cpio newc: round trip, and busybox's cpio (the real extractor) agrees."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import command
from hypothesis import given, settings
from hypothesis import strategies as st

from lkm.errors import FormatError
from lkm.formats.cpio import Member, read, write

BUSYBOX = "/bin/busybox"


def _members() -> list[Member]:
    return [
        Member.directory("bin"),
        Member.file("bin/tool", b"#!/bin/sh\necho hi\n", 0o755),
        Member.symlink("bin/sh", "tool"),
        Member.directory("empty", 0o700),
        Member.file("data/odd-size", bytes(range(7)) * 3),
        Member.file("zero", b""),
    ]


def test_round_trip() -> None:
    members = [Member.directory("data"), *_members()]
    assert read(write(members)) == members
    assert len(write(members)) % 4 == 0


def test_busybox_extracts_what_we_write(tmp_path: Path) -> None:
    archive = tmp_path / "a.cpio"
    archive.write_bytes(write([Member.directory("data"), *_members()]))
    out = tmp_path / "out"
    out.mkdir()
    with archive.open("rb") as stdin:
        command([BUSYBOX, "cpio", "-i", "-d"], stdin=stdin.fileno(), cwd=out, check=True)
    assert (out / "bin" / "tool").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert stat.S_IMODE((out / "bin" / "tool").stat().st_mode) == 0o755
    assert os.readlink(out / "bin" / "sh") == "tool"
    assert (out / "data" / "odd-size").read_bytes() == bytes(range(7)) * 3
    assert (out / "empty").is_dir() and (out / "zero").read_bytes() == b""
    listing = command([BUSYBOX, "cpio", "-t"], input=archive.read_bytes(), check=True)
    assert listing.stdout.decode().split() == [
        "data",
        "bin",
        "bin/tool",
        "bin/sh",
        "empty",
        "data/odd-size",
        "zero",
    ]


@settings(max_examples=200, deadline=None, database=None)
@given(st.binary(max_size=300))
def test_garbage_is_a_format_error(data: bytes) -> None:
    """Any input: members or a FormatError, never another exception."""
    try:
        members = read(data)
    except FormatError:
        return
    assert all(isinstance(m, Member) and m.name for m in members)


def test_truncated_archive() -> None:
    data = write(_members())
    for cut in (0, 5, 110, len(data) // 2, len(data) - 4):
        with pytest.raises(FormatError):
            read(data[:cut])
