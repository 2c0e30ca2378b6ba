"""``modules.devname``: the device nodes of modules loaded on first open,
read as kmod 30's ``static-nodes`` reads it, and written in its formats.

Each line is ``MODULE DEVNAME TYPEMAJOR:MINOR`` (``loop loop-control
c10:237``), scanned like C's ``sscanf(buf, "%s %s %c%u:%u")`` on lines
``fgets`` cut at 4095 bytes: ``#`` lines are skipped, anything that does
not scan (a blank line too) or has a type other than ``c``/``b`` is an
"invalid devname entry". ``%u`` takes what strtoul takes (a sign, and
wraps to 32 bits).
"""

from __future__ import annotations

from collections.abc import Iterator

from lkm.records import Record

LINE_LIMIT = 4095  # fgets into kmod's 4096-byte buffer
FORMATS = {
    "human": "(default) a human readable format. Do not parse.",
    "tmpfiles": "the tmpfiles.d(5) format used by systemd-tmpfiles.",
    "devname": "the modules.devname format.",
}
_SPACE = b" \t\n\v\f\r"
_ULONG = 2**64


class DevnameEntry(Record):
    module: bytes
    devname: bytes
    kind: str  # "c" or "b"
    major: int
    minor: int


def lines(data: bytes) -> Iterator[bytes]:
    """What successive ``fgets`` calls return: up to a newline, at most
    :data:`LINE_LIMIT` bytes."""
    at = 0
    while at < len(data):
        end = data.find(b"\n", at, at + LINE_LIMIT)
        stop = end + 1 if end >= 0 else min(len(data), at + LINE_LIMIT)
        yield data[at:stop]
        at = stop


def scan(line: bytes) -> DevnameEntry | None:
    """``sscanf(line, "%s %s %c%u:%u")`` with all five matched and a
    c/b type, else None (the C string ends at a NUL)."""
    text = line.split(b"\0", 1)[0]
    at = 0
    words = []
    for _ in range(2):
        at = _skip_space(text, at)
        start = at
        while at < len(text) and text[at] not in _SPACE:
            at += 1
        if at == start:
            return None
        words.append(text[start:at])
    at = _skip_space(text, at)
    if at >= len(text) or text[at : at + 1] not in (b"c", b"b"):
        return None
    kind = text[at : at + 1].decode()
    major, at = _unsigned(text, at + 1)
    if major is None or text[at : at + 1] != b":":
        return None
    minor, at = _unsigned(text, at + 1)
    if minor is None:
        return None
    return DevnameEntry(words[0], words[1], kind, major, minor)


def _skip_space(text: bytes, at: int) -> int:
    while at < len(text) and text[at] in _SPACE:
        at += 1
    return at


def _unsigned(text: bytes, at: int) -> tuple[int | None, int]:
    """``%u``: spaces, an optional sign, decimal digits; strtoul's
    saturation and negation, then the unsigned int's 32 bits."""
    at = _skip_space(text, at)
    negative = False
    if text[at : at + 1] in (b"+", b"-"):
        negative = text[at : at + 1] == b"-"
        at += 1
    start = at
    while at < len(text) and 0x30 <= text[at] <= 0x39:
        at += 1
    if at == start:
        return None, at
    value = min(int(text[start:at]), _ULONG - 1)
    if negative and int(text[start:at]) < _ULONG:
        value = (_ULONG - value) % _ULONG
    return value & 0xFFFFFFFF, at


def render(entry: DevnameEntry, fmt: str) -> bytes:
    """One entry as kmod's ``static-nodes --format FMT`` writes it."""
    module, devname = entry.module, entry.devname
    numbers = f"{entry.major}:{entry.minor}".encode()
    if fmt == "devname":
        return b"%s %s %s%s\n" % (module, devname, entry.kind.encode(), numbers)
    if fmt == "tmpfiles":
        head = b""
        slash = devname.rfind(b"/")
        if slash >= 0:
            head = b"d /dev/%s 0755 - - -\n" % devname[:slash]
        return head + b"%s! /dev/%s 0600 - - - %s\n" % (entry.kind.encode(), devname, numbers)
    kind = b"character" if entry.kind == "c" else b"block"
    return (
        b"Module: %s\n\tDevice node: /dev/%s\n\t\tType: %s device\n\t\tMajor: %d\n\t\tMinor: %d\n"
        % (module, devname, kind, entry.major, entry.minor)
    )


__all__ = ["FORMATS", "LINE_LIMIT", "DevnameEntry", "lines", "render", "scan"]
