"""Module compression: detect by magic bytes, decompress in memory.

Kernel modules ship as ``.ko``, ``.ko.gz``, ``.ko.xz`` or ``.ko.zst``. Like
kmod (libkmod-file.c) we look at the first bytes rather than trusting the
extension. ``zstandard`` is imported only when a zstd module is met.
"""

from __future__ import annotations

import enum
import mmap
import zlib
from collections.abc import Callable

from lkm.errors import FormatError, MissingDependencyError

# Compressed module bytes: in memory or a read-only mapping of the file.
Buffer = bytes | mmap.mmap

# Large enough for any real module (the biggest Debian modules are tens of
# MiB uncompressed); small enough that a crafted stream cannot exhaust memory.
MAX_DECOMPRESSED = 1 << 30


class Compression(enum.Enum):
    NONE = "none"
    GZIP = "gzip"
    XZ = "xz"
    ZSTD = "zstd"

    @property
    def extension(self) -> str:
        return _EXTENSIONS[self]


_EXTENSIONS = {
    Compression.NONE: "",
    Compression.GZIP: ".gz",
    Compression.XZ: ".xz",
    Compression.ZSTD: ".zst",
}

_MAGICS: tuple[tuple[bytes, Compression], ...] = (
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
    (b"\xfd7zXZ\x00", Compression.XZ),
    (b"\x1f\x8b", Compression.GZIP),
)

# The longest magic: kmod refuses files shorter than this (EINVAL).
MAGIC_PROBE_SIZE = max(len(m) for m, _ in _MAGICS)


def detect(head: bytes) -> Compression:
    """Compression of a file, from its first :data:`MAGIC_PROBE_SIZE` bytes."""
    for magic, kind in _MAGICS:
        if head.startswith(magic):
            return kind
    return Compression.NONE


def decompress(data: Buffer, kind: Compression) -> bytes:
    """Whole-stream decompression; corrupt or truncated input raises FormatError."""
    if kind is Compression.NONE:
        return bytes(data)
    if kind is Compression.XZ:
        import lzma  # only for xz trees

        xz = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        return _decompress_bounded(xz.decompress, lambda: xz.eof, data, "xz", lzma.LZMAError)
    if kind is Compression.GZIP:
        gz = zlib.decompressobj(wbits=31)
        return _decompress_bounded(gz.decompress, lambda: gz.eof, data, "gzip", zlib.error)
    return _decompress_zstd(data)


def _decompress_bounded(
    step: Callable[[Buffer, int], bytes],
    at_end: Callable[[], bool],
    data: Buffer,
    name: str,
    error: type[Exception],
) -> bytes:
    """One call with an output limit, for decompressors that take one."""
    try:
        out = step(data, MAX_DECOMPRESSED + 1)
    except error as exc:
        raise FormatError(f"corrupt {name} stream: {exc}") from None
    _check_complete(at_end(), len(out), name)
    return out


def _decompress_zstd(data: Buffer) -> bytes:
    try:
        import zstandard
    except ImportError:
        raise MissingDependencyError("zstandard", "zstd-compressed modules") from None
    dec = zstandard.ZstdDecompressor().decompressobj()
    parts: list[bytes] = []
    size = 0
    # The view must be released before returning: the caller closes the
    # mmap it may point into.
    with memoryview(data) as view:
        try:
            # Fed in small pieces: decompressobj has no output limit, and
            # one small piece cannot expand past the limit by much.
            for start in range(0, len(view), _ZSTD_FEED):
                part = dec.decompress(view[start : start + _ZSTD_FEED])
                size += len(part)
                if size > MAX_DECOMPRESSED:
                    break
                parts.append(part)
                if dec.eof:
                    break
        except zstandard.ZstdError as exc:
            raise FormatError(f"corrupt zstd stream: {exc}") from None
    _check_complete(dec.eof, size, "zstd")
    return b"".join(parts)


_ZSTD_FEED = 1 << 14


def _check_complete(eof: bool, size: int, name: str) -> None:
    if size > MAX_DECOMPRESSED:
        raise FormatError(f"{name} stream decompresses beyond 1 GiB")
    if not eof:
        raise FormatError(f"truncated {name} stream")


def compress(data: bytes, kind: Compression) -> bytes:
    """Compress with the settings the kernel's build uses (for tests and tools)."""
    if kind is Compression.NONE:
        return data
    if kind is Compression.XZ:
        import lzma

        return lzma.compress(data, check=lzma.CHECK_CRC32)
    if kind is Compression.GZIP:
        import gzip

        return gzip.compress(data, mtime=0)
    try:
        import zstandard
    except ImportError:
        raise MissingDependencyError("zstandard", "zstd-compressed modules") from None
    return zstandard.ZstdCompressor(level=19).compress(data)
