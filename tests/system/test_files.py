"""The one reader of files lkm did not create (lkm.system.files): each
kind of file against each policy, with no fixtures and no mocks."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from lkm.errors import UnreadableFileError
from lkm.formats.file_kinds import open_regular
from lkm.system.files import (
    BINARY,
    CONFIGURATION,
    KEY,
    FilePolicy,
    read_file,
    read_head,
    read_text,
)

SMALL = FilePolicy(16, streams=True)


def test_a_regular_file_is_read_whole_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 16)
    assert read_file(str(path), SMALL) == b"x" * 16
    path.write_bytes(b"x" * 17)
    with pytest.raises(UnreadableFileError) as raised:
        read_file(str(path), SMALL)
    assert str(raised.value) == f"{path}: File too large (over 16 bytes)"
    assert raised.value.errno == errno.EFBIG and isinstance(raised.value, OSError)


def test_text_keeps_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"alias a\xff b\n")
    assert read_text(str(path), CONFIGURATION).encode("utf-8", "surrogateescape") == (
        b"alias a\xff b\n"
    )


def test_devices_are_read_up_to_the_limit_where_streams_are_taken() -> None:
    assert read_file("/dev/null", CONFIGURATION) == b""
    with pytest.raises(UnreadableFileError, match="File too large \\(over 8 MiB\\)"):
        read_file("/dev/zero", CONFIGURATION)
    with pytest.raises(UnreadableFileError) as raised:
        read_file("/dev/zero", BINARY)
    assert raised.value.problem == "not a regular file (a character device)"
    assert raised.value.errno == errno.EINVAL


def test_a_proc_file_of_size_zero_is_read_to_its_end() -> None:
    assert read_file("/proc/self/status", KEY).startswith(b"Name:")


def test_a_directory_is_empty_or_refused_by_policy(tmp_path: Path) -> None:
    assert read_file(str(tmp_path), CONFIGURATION) == b""  # kmod's fgets: EISDIR ends the loop
    with pytest.raises(UnreadableFileError) as raised:
        read_file(str(tmp_path), KEY)
    assert (raised.value.errno, raised.value.problem) == (errno.EISDIR, "Is a directory")


def test_a_fifo_nobody_writes_to_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(UnreadableFileError, match="a FIFO nobody writes to"):
        read_file(str(fifo), CONFIGURATION)
    assert time.monotonic() - started < 5
    with pytest.raises(UnreadableFileError, match="not a regular file \\(a FIFO\\)"):
        read_file(str(fifo), BINARY)


def test_a_pipe_whose_writer_is_slow_is_waited_for() -> None:
    read_end, write_end = os.pipe()

    def write_later() -> None:
        time.sleep(0.2)
        os.write(write_end, b"key")
        os.close(write_end)

    writer = threading.Thread(target=write_later)
    writer.start()
    try:
        assert read_file(f"/dev/fd/{read_end}", KEY) == b"key"
    finally:
        writer.join()
        os.close(read_end)


def test_a_socket_cannot_be_opened(tmp_path: Path) -> None:
    path = str(tmp_path / "sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        with pytest.raises(OSError) as raised:
            read_file(path, CONFIGURATION)
    assert raised.value.errno == errno.ENXIO


def test_read_head_and_open_regular(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    assert read_head(str(path), 4) == b"0123"
    with pytest.raises(UnreadableFileError):
        read_head("/dev/zero", 4)
    fd, st = open_regular(str(path))
    os.close(fd)
    assert st.st_size == 10
