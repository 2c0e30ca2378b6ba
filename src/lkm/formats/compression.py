"""Module compression: detect by magic bytes, decompress in memory.

Kernel modules ship as ``.ko``, ``.ko.gz``, ``.ko.xz`` or ``.ko.zst``. Like
kmod (libkmod-file.c) we look at the first bytes rather than trusting the
extension. ``zstandard`` is imported only when a zstd module is met.
"""

from __future__ import annotations

import enum
import mmap
import zlib

from lkm.errors import FormatError, MissingDependencyError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol
else:
    Protocol = object

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

_ANY_MAGIC = tuple(magic for magic, _ in _MAGICS)
# The longest magic: kmod refuses files shorter than this (EINVAL).
MAGIC_PROBE_SIZE = max(len(m) for m, _ in _MAGICS)


def detect(head: bytes) -> Compression:
    """Compression of a file, from its first :data:`MAGIC_PROBE_SIZE` bytes."""
    if not head.startswith(_ANY_MAGIC):  # most modules: one test, not one per format
        return Compression.NONE
    for magic, kind in _MAGICS:
        if head.startswith(magic):
            return kind
    return Compression.NONE


def decompress(data: Buffer, kind: Compression, *, first_stream_only: bool = False) -> bytes:
    """Whole-file decompression as kmod reads each format (libkmod-file*.c):
    corrupt or truncated input, or bytes after the data that kmod does not
    take, raise FormatError. ``first_stream_only``: the first stream, and
    whatever follows it ignored (a kernel image's payload, which ends with
    its decompressed size, as the kernel's own decompressor reads it)."""
    if kind is Compression.NONE:
        return bytes(data)
    if kind is Compression.XZ:
        return _decompress_xz(data, first_stream_only)
    if kind is Compression.GZIP:
        return _decompress_gzip(data, first_stream_only)
    return _decompress_zstd(data, first_stream_only)


class _Decoder(Protocol):
    """One stream's decoder (lzma's and zlib's decompressor objects)."""

    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: Buffer, max_length: int, /) -> bytes: ...


def _decompress_streams(
    data: Buffer,
    name: str,
    new_decoder: Callable[[], _Decoder],
    errors: tuple[type[Exception], ...],
    after_stream: Callable[[bytes], bytes | None],
) -> bytes:
    """Streams one after another, as long as ``after_stream`` (given what
    follows a stream) returns the bytes of another: b"" or None ends."""
    caught: tuple[type[Exception], ...] = (FormatError, *errors)
    parts: list[bytes] = []
    size = 0
    pending: Buffer = data
    while True:
        decoder = new_decoder()
        try:
            part = decoder.decompress(pending, MAX_DECOMPRESSED + 1 - size)
            size += len(part)
            _check_complete(decoder.eof, size, name)
        except caught as exc:
            raise FormatError(_stream_problem(name, exc, after_one=bool(parts))) from None
        parts.append(part)
        following = after_stream(decoder.unused_data)
        if not following:
            return parts[0] if len(parts) == 1 else b"".join(parts)
        pending = following


def _decompress_xz(data: Buffer, first_only: bool) -> bytes:
    """kmod decodes with ``lzma_stream_decoder(…, LZMA_CONCATENATED)``:
    streams one after another, each maybe followed by stream padding
    (zero bytes, a multiple of four); anything else after a stream is an
    error (kmod: EINVAL)."""
    import lzma  # only for xz trees

    def after_stream(rest: bytes) -> bytes | None:
        return None if first_only else _after_xz_padding(rest)

    def new_decoder() -> _Decoder:
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)

    return _decompress_streams(data, "xz", new_decoder, (lzma.LZMAError,), after_stream)


def _after_xz_padding(rest: bytes) -> bytes:
    """What follows a stream's padding (xz file format 2.2: zero bytes, a
    multiple of four; liblzma's stream decoder refuses other padding)."""
    following = rest.lstrip(b"\0")
    if (len(rest) - len(following)) % 4:
        raise FormatError("corrupt xz stream: stream padding is not a multiple of 4 bytes")
    return following


def _decompress_gzip(data: Buffer, first_only: bool) -> bytes:
    """kmod reads gzip with zlib's ``gzread``: members one after another;
    after a member, bytes that do not start another (no gzip magic) are
    trailing garbage that gzread ignores (zlib's gz_look)."""

    def after_stream(rest: bytes) -> bytes | None:
        return rest if not first_only and rest.startswith(_GZIP_MAGIC) else None

    def new_decoder() -> _Decoder:
        return zlib.decompressobj(wbits=31)

    return _decompress_streams(data, "gzip", new_decoder, (zlib.error,), after_stream)


def _stream_problem(name: str, exc: Exception, *, after_one: bool) -> str:
    """What is wrong with a stream: the first one is corrupt or truncated;
    what follows a whole stream (``after_one``) is trailing garbage."""
    if after_one:
        return f"trailing garbage after the {name} stream ({exc})"
    return str(exc) if isinstance(exc, FormatError) else f"corrupt {name} stream: {exc}"


def _decompress_zstd(data: Buffer, first_only: bool) -> bytes:
    """kmod decodes with ``ZSTD_decompressStream`` (kmod 30) or
    ``ZSTD_decompress`` (kmod 34): frames one after another, skippable
    frames skipped; anything else after a frame is an error (EINVAL)."""
    try:
        import zstandard
    except ImportError:
        raise MissingDependencyError("zstandard", "zstd-compressed modules") from None
    new_frame = zstandard.ZstdDecompressor().decompressobj
    dec = new_frame()
    parts: list[bytes] = []
    size = 0
    in_frame = False  # fed part of a frame that has not ended
    frames = 0  # ended, for the error's wording
    # The views must be released before returning, also on an error (whose
    # traceback keeps this frame's variables): the caller closes the mmap
    # they may point into.
    with memoryview(data) as view:
        try:
            # Fed in small pieces: decompressobj has no output limit, and
            # one small piece cannot expand past the limit by much.
            for start in range(0, len(view), _ZSTD_FEED):
                with view[start : start + _ZSTD_FEED] as chunk:
                    piece: bytes | memoryview = chunk
                    while piece and size <= MAX_DECOMPRESSED and not (first_only and frames):
                        part = dec.decompress(piece)
                        size += len(part)
                        parts.append(part)
                        in_frame = not dec.eof
                        piece = b"" if in_frame else dec.unused_data
                        if not in_frame:
                            frames += 1
                            dec = new_frame()
                if size > MAX_DECOMPRESSED or (first_only and frames):
                    break
        except zstandard.ZstdError as exc:
            raise FormatError(_stream_problem("zstd", exc, after_one=frames > 0)) from None
    _check_complete(not in_frame, size, "zstd")
    return b"".join(parts)


_ZSTD_FEED = 1 << 14
_GZIP_MAGIC = b"\x1f\x8b"


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
