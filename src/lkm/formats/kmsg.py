"""Kernel log records as ``/dev/kmsg`` hands them out, and util-linux's view.

One ``read()`` of ``/dev/kmsg`` returns one record::

    PRIORITY,SEQUENCE,MICROSECONDS,FLAGS[,…];MESSAGE
     KEY=value                       (optional dictionary lines)

The kernel escapes unprintable bytes of MESSAGE as ``\\xNN``. util-linux
``dmesg`` prints ``[%5ld.%06ld] MESSAGE`` (with ``-x`` after a
``%-6s:%-6s: `` facility and level prefix), undoes the kernel's escaping,
escapes again what the locale cannot print, and indents continuation
lines under the message. :func:`format_record` reproduces that.
"""

from __future__ import annotations

from lkm.errors import FormatError
from lkm.records import Record

LEVELS = ("emerg", "alert", "crit", "err", "warn", "notice", "info", "debug")
FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news",
    "uucp", "cron", "authpriv", "ftp", "res0", "res1", "res2", "res3",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip


class KmsgRecord(Record):
    """One record."""

    facility: int
    level: int
    sequence: int
    microseconds: int
    message: bytes  # unescaped
    fields: tuple[tuple[str, str], ...] = ()  # dictionary: SUBSYSTEM=…, DEVICE=…

    @property
    def level_name(self) -> str:
        return LEVELS[self.level]

    @property
    def facility_name(self) -> str:
        return FACILITIES[self.facility] if self.facility < len(FACILITIES) else "?"


def parse_record(raw: bytes) -> KmsgRecord:
    """One record as read from ``/dev/kmsg``."""
    head, semicolon, rest = raw.partition(b";")
    if not semicolon:
        raise FormatError("kmsg record without ';'")
    prefix = head.split(b",")
    try:
        priority, sequence, microseconds = (int(x) for x in prefix[:3])
    except ValueError:
        raise FormatError(f"kmsg record with a bad prefix: {head[:40]!r}") from None
    lines = rest.split(b"\n")
    fields = []
    for line in lines[1:]:
        if line.startswith(b" "):
            key, _, value = line[1:].decode("utf-8", "replace").partition("=")
            fields.append((key, value))
    return KmsgRecord(
        facility=priority >> 3,
        level=priority & 7,
        sequence=sequence,
        microseconds=microseconds,
        message=unescape(lines[0]),
        fields=tuple(fields),
    )


def unescape(text: bytes) -> bytes:
    """Undo the kernel's ``\\xNN`` escaping."""
    if b"\\x" not in text:
        return text
    out = bytearray()
    i = 0
    while i < len(text):
        if text.startswith(b"\\x", i) and _is_hex(text[i + 2 : i + 4]):
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return bytes(out)


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


def format_record(
    record: KmsgRecord, decode: bool = False, show_time: bool = True, utf8: bool = False
) -> bytes:
    """The line(s) util-linux ``dmesg`` prints for ``record``."""
    prefix = b""
    if decode:
        prefix = f"{record.facility_name:<6}:{record.level_name:<6}: ".encode()
    if show_time:
        seconds, micros = divmod(record.microseconds, 1_000_000)
        prefix += f"[{seconds:5d}.{micros:06d}] ".encode()
    if not record.message:
        return b"\n"
    return prefix + _printable(record.message, len(prefix), utf8) + b"\n"


def _printable(message: bytes, indent: int, utf8: bool) -> bytes:
    """util-linux's safe_fwrite: unprintable bytes as ``\\xNN``, a line break
    followed by the indent that lines continuation lines up."""
    text = message.decode("utf-8" if utf8 else "ascii", "surrogateescape")
    out = []
    for i, char in enumerate(text):
        if char == "\n" and i + 1 < len(text) and indent:
            out.append("\n" + " " * indent)
        elif char.isprintable() or char in "\n\r\t":
            out.append(char)
        else:
            out.append("".join(f"\\x{b:02x}" for b in char.encode("utf-8", "surrogateescape")))
    return "".join(out).encode("utf-8", "surrogateescape")


def from_module(record: KmsgRecord, module: str) -> bool:
    """Whether ``record`` is a line the module ``module`` logged.

    Modules prefix their lines with their name (``pr_fmt``, ``dev_*``
    through the driver name, the module loader's "NAME: …" lines); dashes
    and underscores count as equal, as in module names.
    """
    head = record.message.split(b":", 1)[0].split(b" ", 1)[0]
    return head.replace(b"-", b"_") == module.replace("-", "_").encode("utf-8", "surrogateescape")
