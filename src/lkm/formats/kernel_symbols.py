"""Symbols the kernel image exports: ``Module.symvers`` and ``System.map``.

depmod ``-e`` checks every module's needs against them. Parsing follows
kmod's depmod: from Module.symvers only lines whose third field is exactly
``vmlinux`` count (CRC in hex); from System.map only ``__ksymtab_NAME``
entries (no CRC). Bad lines are reported as (level, message) pairs.
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[ \t]+")


def parse_symvers(
    text: str, path: str, prefix: str | None
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Kernel symbol → CRC from Module.symvers, and messages."""
    symbols: dict[str, int] = {}
    messages: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        fields = [f for f in _SEPARATORS.split(line) if f]
        if len(fields) < 3 or fields[2] != "vmlinux":
            # A three-field line keeps its newline in the third field, so
            # kmod skips it too.
            continue
        version, name = fields[0], fields[1]
        crc = _parse_hex(version)
        if crc is None:
            messages.append(("ERROR", f"{path}:{number} Invalid symbol version {version}: Success"))
            continue
        symbols[_strip_prefix(name, prefix)] = crc
    return symbols, messages


def _parse_hex(text: str) -> int | None:
    """strtoull(text, &end, 16) that must consume everything."""
    body = text.strip(" \t\n\r\f\v")
    if body[:1] in "+-":
        body = body[1:]
    if body[:2].lower() == "0x":
        body = body[2:]
    if not body or any(c not in "0123456789abcdefABCDEF" for c in body):
        return None
    value = int(body, 16)
    return -value % (1 << 64) if text.strip()[:1] == "-" else value % (1 << 64)


def parse_system_map(
    text: str, path: str, prefix: str | None
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Kernel symbols (CRC 0) from System.map's ``__ksymtab_`` entries."""
    symbols: dict[str, int] = {}
    messages: list[tuple[str, str]] = []
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        parts = line.split(" ", 2)
        if len(parts) < 3:
            # kmod echoes the raw line, newline included.
            messages.append(("ERROR", f"{path}:{number}: invalid line: {line}"))
            continue
        name = parts[2]
        if prefix and name.startswith(prefix):
            name = name[1:]
        if not name.startswith("__ksymtab_"):
            continue
        symbols[name[len("__ksymtab_") :].split("\n", 1)[0]] = 0
    return symbols, messages


def _strip_prefix(name: str, prefix: str | None) -> str:
    return name[1:] if prefix and name.startswith(prefix) else name
