"""Kernel log records as ``/dev/kmsg`` hands them out, and util-linux's view.

One ``read()`` of ``/dev/kmsg`` returns one record::

    PRIORITY,SEQUENCE,MICROSECONDS,FLAGS[,…];MESSAGE
     KEY=value                       (optional dictionary lines)

The kernel escapes unprintable bytes of MESSAGE as ``\\xNN``. util-linux
``dmesg`` prints ``[%5ld.%06ld] MESSAGE`` (with ``-x`` after a
``%-6s:%-6s: `` facility and level prefix), undoes the kernel's escaping,
escapes again what the locale cannot print, and indents continuation
lines under the message. :func:`format_record` reproduces that, and
``--color``'s colours with util-linux's default scheme.
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


# util-linux 2.38's dmesg names the facilities kern … ftp only
# (facility_names[]): records of the others get no -x prefix, and those past
# the table's end plus one (parse_faclev's off-by-one) no facility at all,
# which -l filters out.
NAMED_FACILITIES = 12

# util-linux 2.38 sys-utils/dmesg.c colors[] (the defaults terminal-colors.d
# may override), in include/color-names.h's sequences. Emergencies have no
# colour of their own there.
TIME_COLOUR = b"\033[32m"  # green
SUBSYS_COLOUR = b"\033[33m"  # brown
LEVEL_COLOURS = {
    1: b"\033[7m\033[31m",  # alert: reverse red
    2: b"\033[1m\033[31m",  # crit: bold red
    3: b"\033[31m",  # err: red
    4: b"\033[1m",  # warn: bold
}
SEGFAULT_COLOUR = b"\033[2m\033[31m"  # half-bright red, any other level
RESET = b"\033[0m"


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

    def as_json(self) -> dict[str, object]:
        """lkm dmesg --json's record (lkm/schemas/dmesg.schema.json)."""
        return {
            "sequence": self.sequence,
            "usec": self.microseconds,
            "facility": self.facility_name,
            "level": self.level_name,
            "message": self.message.decode("utf-8", "replace"),
            "fields": dict(self.fields),
        }


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
    record: KmsgRecord,
    decode: bool = False,
    show_time: bool = True,
    utf8: bool = False,
    colour: bool = False,
) -> bytes:
    """The line(s) util-linux ``dmesg`` prints for ``record`` (with
    ``colour``, as ``dmesg --color=always`` does: print_record)."""
    if not record.message:
        return b"\n"
    facility_level = b""
    if decode and record.facility < NAMED_FACILITIES:
        facility_level = f"{record.facility_name:<6}:{record.level_name:<6}: ".encode()
    stamp = b""
    if show_time:
        seconds, micros = divmod(record.microseconds, 1_000_000)
        stamp = f"[{seconds:5d}.{micros:06d}] ".encode()
    indent = len(facility_level) + len(stamp)  # continuation lines go under the text
    if not colour:
        return facility_level + stamp + _printable(record.message, indent, utf8) + b"\n"
    if stamp:
        stamp = TIME_COLOUR + stamp + RESET  # 2.38 leaves the facility and level plain
    return facility_level + stamp + _coloured_message(record, indent, utf8) + b"\n"


def _coloured_message(record: KmsgRecord, indent: int, utf8: bool) -> bytes:
    """The message as dmesg --color prints it: its "subsys: " prefix in
    brown, the rest in its level's colour."""
    message = record.message
    cut = subsys_end(message)
    out = b""
    if cut:
        out = SUBSYS_COLOUR + _printable(message[:cut], indent, utf8) + RESET
        message = message[cut:]
    colour = LEVEL_COLOURS.get(record.level)
    if colour is None and b"segfault at" in message:
        colour = SEGFAULT_COLOUR  # an important line at an unimportant level
    text = _printable(message, indent, utf8)
    return out + (colour + text + RESET if colour else text)


def subsys_end(message: bytes) -> int:
    """Where the "subsys: " prefix of ``message`` ends, 0 when it has none:
    util-linux's get_subsys_delimiter takes the first ':' followed by a
    blank and at least one more byte, and stops at a NUL (strnchr)."""
    end = message.find(b"\0")
    end = len(message) if end < 0 else end
    colon = message.find(b":", 0, end)
    while colon >= 0:
        if len(message) - colon - 1 >= 2 and message[colon + 1] in b" \t":
            return colon + 2
        colon = message.find(b":", colon + 1, end)
    return 0


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
