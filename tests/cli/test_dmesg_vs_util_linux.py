"""``lkm dmesg`` against util-linux's ``dmesg`` (2.38.1 on Debian bookworm),
byte for byte, with and without ``--color=always``, in each option
combination lkm supports (plain, ``-x``, ``-t``, ``-l LEVELS``).

Two sources of the same records:

- crafted records, one per rule of util-linux's colouring and escaping
  (each level, the "subsys: " prefix and its edge cases, "segfault at",
  continuation lines, unprintable and non-UTF-8 bytes), written as the
  syslog(2) buffer ``dmesg -F FILE`` reads and as the ``/dev/kmsg``
  records lkm dmesg is given in-process, in the C and C.UTF-8 locales;
- this host's own ``/dev/kmsg`` (root only), read by both tools between
  two util-linux reads that agree, so that all three saw the same log.

Whether ``auto`` colours a terminal (terminfo, TERM, NO_COLOR) is compared
on a pseudo-terminal.
"""

from __future__ import annotations

import io
import os
import pty
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from lkm.cli import dmesg

Report = Callable[[str], None]
DMESG = shutil.which("dmesg")
LKM = str(Path(sys.executable).with_name("lkm"))
OPTIONS = (
    [],
    ["-x"],
    ["-t"],
    ["-x", "-t"],
    ["-l", "err,warn"],
    ["--level=emerg,alert,crit,notice,info,debug"],
    ["-x", "-t", "-l", "warn,info"],
)
COLOURS = (["--color=always"], ["-Lalways"], ["--color=never"], [])

needs_util_linux = pytest.mark.skipif(DMESG is None, reason="util-linux dmesg is not installed")

# (facility, level, message): every rule of print_record and safe_fwrite.
MESSAGES: list[tuple[int, int, bytes]] = [
    *[(0, level, b"subsys: at level %d" % level) for level in range(8)],
    *[(0, level, b"no prefix at level %d" % level) for level in range(8)],
    (1, 6, b"user facility: info"),
    (3, 3, b"daemon: an error"),
    (11, 4, b"ftp: a warning"),
    (12, 3, b"the facility after ftp"),  # util-linux 2.38 names no facility past ftp
    (13, 3, b"two after ftp"),
    (23, 4, b"local7: a warning"),
    (0, 6, b"a:b:c no blank after the colons"),
    (0, 3, b"x:y: the second colon is the one"),
    (0, 6, b"ends with a colon:"),
    (0, 6, b"ends with a colon and a blank: "),
    (0, 6, b"ends with a colon, a blank and one byte: x"),
    (0, 4, b"tab:\tafter the colon"),
    (0, 6, b": starts with the delimiter"),
    (0, 6, b"trap: prog[123]: segfault at 0 ip 00007f error 4 in libc.so.6"),
    (0, 3, b"prog[9]: segfault at 10 at level err"),
    (0, 0, b"segfault at emerg has no colour of its own"),
    (0, 6, b"segfault at: inside the prefix only"),
    (0, 6, b"first: line\ncontinued: line\nthird"),
    (0, 2, b"two\nlines without: a prefix on the first"),
    (0, 1, b"alert: with\ttab, \x01 control, \x7f and \\ backslash"),
    (0, 6, "unicode \u00fcber: caf\u00e9 \u2603".encode()),
    (0, 4, b"bad utf-8: \xff\xfe \xc3"),
    (0, 6, b"carriage\rreturn: x"),
    (0, 6, b"x"),
]


def _kmsg_escape(message: bytes) -> bytes:
    # The kernel's /dev/kmsg escaping (printk.c msg_add_ext_text).
    return b"".join(
        b"\\x%02x" % c if c < 0x20 or c >= 0x7F or c == 0x5C else bytes([c]) for c in message
    )


def _records() -> list[tuple[int, int, int, bytes]]:
    """(facility, level, microseconds, message), seconds of 1 to 6 digits
    (``%5ld`` pads the short ones)."""
    return [
        (facility, level, 1_000_003 * (7**i % 1_000_000) + i, message)
        for i, (facility, level, message) in enumerate(MESSAGES)
    ]


def _syslog_buffer(records: list[tuple[int, int, int, bytes]]) -> bytes:
    # util-linux's get_next_syslog_record: records end at "\n<".
    lines = [
        b"<%d>[%5d.%06d] %s" % (f << 3 | lv, us // 1_000_000, us % 1_000_000, m)
        for f, lv, us, m in records
    ]
    return b"\n".join(lines) + b"\n"


def _kmsg(records: list[tuple[int, int, int, bytes]]) -> list[bytes]:
    return [
        b"%d,%d,%d,-;%s\n" % (f << 3 | lv, seq, us, _kmsg_escape(m))
        for seq, (f, lv, us, m) in enumerate(records)
    ]


def _lkm_dmesg(args: list[str], records: list[bytes]) -> tuple[int, bytes]:
    out, err = io.BytesIO(), io.BytesIO()
    status = dmesg.run(args, out, err, records=records)
    assert err.getvalue() == b""
    return status, out.getvalue()


@needs_util_linux
@pytest.mark.parametrize("locale", ["C", "C.UTF-8"])
def test_crafted_records_as_util_linux_prints_them(
    tmp_path: Path, locale: str, monkeypatch: pytest.MonkeyPatch, report: Report
) -> None:
    assert DMESG is not None
    records = _records()
    buffer = tmp_path / "syslog"
    buffer.write_bytes(_syslog_buffer(records))
    for name in ("LC_ALL", "LC_CTYPE", "LANG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LC_ALL", locale)
    lines = coloured = 0
    for options in OPTIONS:
        for colour in COLOURS:
            args = [*options, *colour]
            util = subprocess.run(
                [DMESG, "-F", str(buffer), *args], capture_output=True, check=True
            ).stdout
            status, mine = _lkm_dmesg(args, _kmsg(records))
            assert status == 0
            assert mine == util, f"dmesg {' '.join(args)} (LC_ALL={locale})"
            lines += util.count(b"\n")
            coloured += util.count(b"\n") if b"\033[" in util else 0
    assert coloured
    report(
        f"lkm dmesg vs util-linux dmesg -F, {len(MESSAGES)} crafted records, LC_ALL={locale}: "
        f"{len(OPTIONS) * len(COLOURS)} option sets, {lines} lines ({coloured} in colour)"
    )


def _util_linux(args: list[str]) -> bytes:
    assert DMESG is not None
    return subprocess.run([DMESG, *args], capture_output=True, check=True).stdout


def _same_log(args: list[str]) -> tuple[bytes, bytes]:
    """util-linux's and lkm's output for the live log, read while it did
    not change (util-linux before and after agree: the ring buffer only
    grows or wraps, so lkm in between saw the same records)."""
    for _ in range(20):
        before = _util_linux(args)
        mine = subprocess.run([LKM, "dmesg", *args], capture_output=True, check=True).stdout
        if _util_linux(args) == before:
            return before, mine
    pytest.skip("the kernel log kept changing")


@needs_util_linux
@pytest.mark.skipif(not os.access("/dev/kmsg", os.R_OK), reason="/dev/kmsg is not readable")
def test_this_hosts_log_as_util_linux_prints_it(report: Report) -> None:
    lines = 0
    for options in OPTIONS:
        for colour in (["--color=always"], ["--color=never"]):
            util, mine = _same_log([*options, *colour])
            assert mine == util, f"dmesg {' '.join([*options, *colour])}"
            lines += util.count(b"\n")
    report(
        f"lkm dmesg vs util-linux dmesg on this host's /dev/kmsg: "
        f"{len(OPTIONS) * 2} option sets, {lines} lines"
    )


def _coloured_on_a_terminal(command: list[str], env: dict[str, str]) -> bool:
    """Whether ``command``, its stdout a pseudo-terminal, writes colours."""
    leader, follower = pty.openpty()
    out = b""
    try:
        process = subprocess.Popen(command, stdout=follower, stderr=subprocess.DEVNULL, env=env)
        os.close(follower)  # read until the command's end closes the terminal
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: nobody holds the terminal's other end
                break
            if not chunk:
                break
            out += chunk
        assert process.wait(timeout=60) == 0
    finally:
        os.close(leader)
    return b"\033[" in out


@needs_util_linux
@pytest.mark.skipif(not os.access("/dev/kmsg", os.R_OK), reason="/dev/kmsg is not readable")
@pytest.mark.parametrize(
    ("term", "no_color", "when"),
    [
        ("xterm", "", ""),
        ("xterm", "1", ""),  # util-linux 2.38 does not read NO_COLOR
        ("xterm", "", "--color=never"),
        ("dumb", "", ""),
        ("dumb", "", "--color=auto"),
        ("dumb", "", "--color=always"),
        ("vt100", "", "-L"),  # terminfo: no colours
        ("no-such-terminal", "", ""),
        (None, "", ""),
    ],
)
def test_auto_on_a_terminal_as_util_linux(term: str | None, no_color: str, when: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TERM", "NO_COLOR")}
    if term is not None:
        env["TERM"] = term
    if no_color:
        env["NO_COLOR"] = no_color
    args = ["-t", *([when] if when else [])]
    assert DMESG is not None
    util = _coloured_on_a_terminal([DMESG, *args], env)
    assert _coloured_on_a_terminal([LKM, "dmesg", *args], env) == util
    assert util == (when == "--color=always" or (term in ("xterm",) and when != "--color=never"))


def test_auto_is_plain_when_not_a_terminal() -> None:
    records = _kmsg(_records())
    for colour in ([], ["--color"], ["--color=auto"], ["-L"], ["--color=never"]):
        status, mine = _lkm_dmesg(colour, records)
        assert status == 0 and b"\033" not in mine
    assert b"\033[32m[" in _lkm_dmesg(["--color=ALWAYS"], records)[1]  # any case, as util-linux


@pytest.mark.parametrize("value", ["bogus", "", "=", "alway"])
def test_unsupported_colour_modes(value: str) -> None:
    out, err = io.BytesIO(), io.BytesIO()
    assert dmesg.run([f"--color={value}"], out, err, records=[]) == 1
    word = value[1:] if value.startswith("=") else value
    assert err.getvalue() == f"lkm dmesg: unsupported color mode: '{word}'\n".encode()
    if DMESG is not None:
        util = subprocess.run([DMESG, f"--color={value}"], capture_output=True, check=False)
        assert util.returncode == 1
        assert util.stderr == f"dmesg: unsupported color mode: '{word}'\n".encode()
