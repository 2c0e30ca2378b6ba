"""What may follow a compressed module's data, as kmod reads each format
(libkmod-file*.c; compared with Debian's kmod in
tests/cli/test_hostile_files.py): pure, no fixtures."""

from __future__ import annotations

import struct

import pytest

from lkm.errors import FormatError
from lkm.formats.compression import Compression, compress, decompress

DATA = b"\x7fELF" + bytes(range(256)) * 64
SKIPPABLE_ZSTD_FRAME = struct.pack("<II", 0x184D2A50, 3) + b"abc"


def _whole(kind: Compression, tail: bytes) -> bytes:
    return decompress(compress(DATA, kind) + tail, kind)


@pytest.mark.parametrize(
    "kind,tail",
    [
        (Compression.XZ, b"\0" * 8),  # stream padding, a multiple of 4
        (Compression.XZ, compress(DATA, Compression.XZ)),  # LZMA_CONCATENATED
        (Compression.ZSTD, SKIPPABLE_ZSTD_FRAME),
        (Compression.ZSTD, compress(DATA, Compression.ZSTD)),
        (Compression.GZIP, compress(DATA, Compression.GZIP)),  # gzread: members
        (Compression.GZIP, b"GARBAGE!"),  # gzread ignores trailing garbage
        (Compression.GZIP, b"\0" * 7),
    ],
    ids=repr,
)
def test_what_kmod_takes_after_the_data(kind: Compression, tail: bytes) -> None:
    whole = _whole(kind, tail)
    assert whole[: len(DATA)] == DATA
    assert whole[len(DATA) :] in (b"", DATA)


@pytest.mark.parametrize(
    "kind,tail,problem",
    [
        (Compression.XZ, b"GARBAGE!", "trailing garbage after the xz stream"),
        (Compression.XZ, b"\0" * 3, "stream padding is not a multiple of 4 bytes"),
        (Compression.XZ, b"\0" * 4 + b"GARB", "trailing garbage after the xz stream"),
        (Compression.ZSTD, b"GARBAGE!", "trailing garbage after the zstd stream"),
        (Compression.ZSTD, b"\0" * 8, "trailing garbage after the zstd stream"),
    ],
    ids=repr,
)
def test_what_kmod_refuses_after_the_data(kind: Compression, tail: bytes, problem: str) -> None:
    with pytest.raises(FormatError, match=problem):
        _whole(kind, tail)


@pytest.mark.parametrize("kind", [Compression.XZ, Compression.GZIP, Compression.ZSTD])
def test_a_truncated_stream_is_refused(kind: Compression) -> None:
    with pytest.raises(FormatError, match=f"truncated {kind.value} stream"):
        decompress(compress(DATA, kind)[:-16], kind)


@pytest.mark.parametrize("kind", [Compression.XZ, Compression.GZIP, Compression.ZSTD])
def test_a_kernel_payload_ends_with_its_size(kind: Compression) -> None:
    """bzImage: the stream, then its decompressed size (size_append)."""
    payload = compress(DATA, kind) + struct.pack("<I", len(DATA))
    assert decompress(payload, kind, first_stream_only=True) == DATA
