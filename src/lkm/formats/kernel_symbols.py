"""Symbols the kernel image exports: ``Module.symvers`` and ``System.map``.

depmod ``-e`` checks every module's needs against them. Parsing follows
kmod's depmod (depmod_load_symvers, depmod_load_system_map): from
Module.symvers only lines whose third field is exactly ``vmlinux`` count
(CRC in hex); from System.map only ``__ksymtab_NAME`` entries (no CRC).
Bad lines are reported as (level, message) pairs.

Both files are read as kmod reads them, with ``fgets`` into a 10240-byte
buffer: a line ends at ``\\n`` and nowhere else (not at ``\\r``, ``\\f`` or
the other breaks ``str.splitlines`` knows), a longer line is read as
several lines, each counted, and the C string functions that look at a
line stop at its first NUL byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# depmod's `char line[10240]`: fgets stores at most one byte less.
_FGETS_BUFFER = 10240
_SEPARATORS = re.compile(rb"[ \t]+")
_KSYMTAB = b"__ksymtab_"

Messages = list[tuple[str, str]]


def fgets_lines(data: bytes, buffer: int = _FGETS_BUFFER) -> Iterator[bytes]:
    """The lines ``fgets(line, buffer, fp)`` returns one call after another,
    each cut at its first NUL (what C string functions then see)."""
    longest = buffer - 1
    start, end = 0, len(data)
    while start < end:
        stop = data.find(b"\n", start, start + longest)
        stop = min(start + longest, end) if stop < 0 else stop + 1
        yield data[start:stop].split(b"\0", 1)[0]
        start = stop


def parse_symvers(data: bytes, path: str, prefix: str | None) -> tuple[dict[str, int], Messages]:
    """Kernel symbol → CRC from Module.symvers, and messages."""
    symbols: dict[str, int] = {}
    messages: Messages = []
    for number, line in enumerate(fgets_lines(data), start=1):
        fields = [f for f in _SEPARATORS.split(line) if f]  # strtok(line, " \t")
        if len(fields) < 3 or fields[2] != b"vmlinux":
            # A three-field line keeps its newline in the third field, so
            # kmod skips it too.
            continue
        version, name = _text(fields[0]), _text(fields[1])
        crc = _parse_hex(version)
        if crc is None:
            messages.append(("ERROR", f"{path}:{number} Invalid symbol version {version}: Success"))
            continue
        symbols[_strip_prefix(name, prefix)] = crc
    return symbols, messages


def _parse_hex(text: str) -> int | None:
    """strtoull(text, &end, 16) that must consume everything: leading
    white space is skipped, trailing white space is left (and fails)."""
    body = text.lstrip(" \t\n\r\f\v")
    negative = body[:1] == "-"
    if body[:1] in ("+", "-"):
        body = body[1:]
    if body[:2].lower() == "0x":
        body = body[2:]
    if not body or any(c not in "0123456789abcdefABCDEF" for c in body):
        return None
    value = int(body, 16)
    return -value % (1 << 64) if negative else value % (1 << 64)


def parse_system_map(data: bytes, path: str, prefix: str | None) -> tuple[dict[str, int], Messages]:
    """Kernel symbols (CRC 0) from System.map's ``__ksymtab_`` entries."""
    symbols: dict[str, int] = {}
    messages: Messages = []
    marker = prefix.encode("utf-8", "surrogateescape")[:1] if prefix else b""
    for number, line in enumerate(fgets_lines(data), start=1):
        parts = line.split(b" ", 2)
        if len(parts) < 3:
            # kmod echoes the raw line, newline included.
            messages.append(("ERROR", f"{path}:{number}: invalid line: {_text(line)}"))
            continue
        name = parts[2]
        if marker and name.startswith(marker):
            name = name[1:]
        if not name.startswith(_KSYMTAB):
            continue
        symbols[_text(name[len(_KSYMTAB) :].split(b"\n", 1)[0])] = 0
    return symbols, messages


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _strip_prefix(name: str, prefix: str | None) -> str:
    return name[1:] if prefix and name.startswith(prefix) else name
