"""``--color[=WHEN]``: getopt's optional values, util-linux's words, when
lkm's own commands colour (a terminal, NO_COLOR, TERM=dumb), and the
colours of ``lkm check``'s verdicts and ``lkm try``'s result."""

from __future__ import annotations

import io
import os
import pty
from collections.abc import Iterator
from typing import BinaryIO

import pytest
from conftest import lkm

from lkm.cli.check import as_text
from lkm.cli.colour import ColourModeError, wanted, when_of
from lkm.cli.options import UsageError, parse
from lkm.cli.try_module import _call_line, _result_line
from lkm.model.load_check import Finding, Verdict
from lkm.testing.debian_kernels import KernelFixture

LONGOPTS = ("color==", "level=")


@pytest.mark.parametrize(
    ("args", "option", "operands"),
    [
        (["--color"], ("--color", ""), []),
        (["--color=always"], ("--color", "=always"), []),
        (["--col=never"], ("--color", "=never"), []),  # abbreviated, as getopt_long allows
        (["--color="], ("--color", "="), []),
        (["--color", "always"], ("--color", ""), ["always"]),  # a separate word: an operand
        (["-L"], ("-L", ""), []),
        (["-Lalways"], ("-L", "=always"), []),
        (["-L=always"], ("-L", "==always"), []),
        (["-xL", "never"], ("-L", ""), ["never"]),
    ],
)
def test_optional_values(args: list[str], option: tuple[str, str], operands: list[str]) -> None:
    opts, rest = parse("dmesg", args, "xL::", LONGOPTS)
    assert opts[-1] == option and rest == operands


def test_required_values_unchanged() -> None:
    assert parse("p", ["--level", "err"], "", LONGOPTS) == ([("--level", "err")], [])
    with pytest.raises(UsageError, match="requires an argument"):
        parse("p", ["--level"], "", LONGOPTS)


@pytest.mark.parametrize(
    ("value", "when"),
    [("", "auto"), ("=always", "always"), ("=NEVER", "never"), ("==Auto", "auto")],
)
def test_words_as_util_linux_reads_them(value: str, when: str) -> None:
    assert when_of(value) == when


@pytest.mark.parametrize(("value", "word"), [("=", ""), ("=yes", "yes"), ("===always", "=always")])
def test_unsupported_words(value: str, word: str) -> None:
    with pytest.raises(ColourModeError) as caught:
        when_of(value)
    assert str(caught.value) == f"unsupported color mode: '{word}'"


@pytest.fixture
def terminal() -> Iterator[BinaryIO]:
    leader, follower = pty.openpty()
    with open(follower, "wb", buffering=0) as stream:
        yield stream
    os.close(leader)


@pytest.mark.parametrize(
    ("env", "coloured"),
    [
        ({"TERM": "xterm"}, True),
        ({"TERM": "vt100"}, True),  # lkm's own rule asks no terminfo
        ({"TERM": "xterm", "NO_COLOR": "1"}, False),
        ({"TERM": "xterm", "NO_COLOR": ""}, True),  # set but empty: no-color.org ignores it
        ({"TERM": "dumb"}, False),
        ({}, False),
    ],
)
def test_auto_on_a_terminal(
    terminal: BinaryIO, env: dict[str, str], coloured: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TERM", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert wanted("auto", terminal) is coloured
    assert wanted("always", terminal) and not wanted("never", terminal)


def test_auto_is_plain_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert not wanted("auto", io.BytesIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert wanted("always", io.BytesIO())  # an explicit option wins over NO_COLOR


def _verdict(*findings: Finding) -> Verdict:
    return Verdict("/m/x.ko", "x", "6.1.0-1-amd64", findings)


def test_check_verdict_words() -> None:
    loads = _verdict()
    taints = _verdict(Finding("staging", "x: module is from the staging directory", taint="C"))
    refused = _verdict(Finding("vermagic", "x: disagrees about version", errno="ENOEXEC"))
    assert as_text(loads, True) == "/m/x.ko: \033[32mloads\033[0m (6.1.0-1-amd64)\n"
    assert as_text(taints, True).startswith("/m/x.ko: \033[33mloads with taint C\033[0m (")
    assert as_text(refused, True).startswith("/m/x.ko: \033[31mrefused\033[0m (")
    assert "\033" not in as_text(refused) + as_text(taints) + as_text(loads)


def test_check_cli(kernel_61: KernelFixture) -> None:
    good = str(kernel_61.indexed_moddir / "kernel/drivers/net/dummy.ko")
    headers = str(kernel_61.headers)
    shown = lkm("lkm", ["check", "--kernel", headers, "--color=always", good])
    assert shown.status == 0 and shown.stdout.startswith(f"{good}: \033[32mloads\033[0m (".encode())
    for when in ([], ["--color"], ["--color=auto"], ["--color=never"]):
        plain = lkm("lkm", ["check", "--kernel", headers, *when, good])  # not a terminal
        assert plain.status == 0 and b"\033" not in plain.stdout
    bad = lkm("lkm", ["check", "--color=maybe", good])
    assert bad.status == 2
    assert bad.stderr == b"lkm check: unsupported color mode: 'maybe' (see --help)\n"


def test_try_result_line() -> None:
    assert _result_line("ok (build 1.0 s)", True, True) == "\033[32mok\033[0m (build 1.0 s)"
    assert _result_line("FAILED (vm 2.0 s)", False, True) == "\033[31mFAILED\033[0m (vm 2.0 s)"
    assert _result_line("ok (build 1.0 s)", True, False) == "ok (build 1.0 s)"


def test_try_call_lines() -> None:
    assert _call_line("insmod hello: ok", True) == "insmod hello: \033[32mok\033[0m"
    assert _call_line("rmmod duo_user: FAILED", True) == "rmmod duo_user: \033[31mFAILED\033[0m"
    assert _call_line("insmod hello: ok", False) == "insmod hello: ok"
    # other lines of the report stay as they are, even when they end alike
    for line in ("  | ok", "test: exit status 0", "note: FAILED", "rmmod x: already unloaded"):
        assert _call_line(line, True) == line
