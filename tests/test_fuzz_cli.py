"""Fuzzing the command line: every fast command with any mix of its own
options and hostile values — text that is not UTF-8, line breaks, special
files (``/dev/zero``, a FIFO, a directory), paths with a 0xff byte,
modules whose names and symbols are not UTF-8 — and its stdout working,
full (``/dev/full``) or closed.

Whatever the arguments, a command returns an exit status and prints
lines; it never raises (which the console script would turn into a
traceback), never hangs (hypothesis' deadline) and never balloons. The
commands that boot a VM or run make (``vm``, ``try``, ``build``) are left
out: their option checks are tested one by one in tests/cli.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import fuzz_example
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lkm.cli import _output_stream, main
from lkm.testing.debian_kernels import load_manifest

EXAMPLES = int(os.environ.get("LKM_FUZZ_EXAMPLES", "2200"))
FAST_TOOLS = (
    "modinfo",
    "modprobe",
    "depmod",
    "insmod",
    "rmmod",
    "lsmod",
    "dmesg",
    "ksyms",
    "new",
    "keygen",
    "sign",
)
# Values that broke a tool once, or could: not UTF-8, a line break, empty,
# numbers out of range, a glob that is expensive to match.
HOSTILE = ["", "0", "-1", "99999999999", "abc", "\udcff", "x\udcffy", "a\nb", "*a" * 19 + "ab",
           "ü", "--", "-", "=", "6.1", "pci:v*"]  # fmt: skip


class Sandbox:
    """A work directory with the paths the values point at: copies of real
    modules (one named with a 0xff byte, one whose names and symbols hold
    bytes that are not UTF-8), a module tree, a FIFO, a directory, a
    symbolic link to /dev/zero, an empty modprobe.d."""

    def __init__(self, root: Path) -> None:
        kernel = next(k for k in load_manifest() if k.label == "6.1")
        dummy = next(p for p in kernel.modules() if p.name == "dummy.ko")
        self.root = root
        self.version = kernel.version
        moddir = root / "tree" / "lib" / "modules" / kernel.version
        moddir.mkdir(parents=True)
        for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
            (moddir / name).write_bytes(b"")
        self.module = root / "dummy.ko"
        shutil.copy(dummy, self.module)
        shutil.copy(dummy, moddir / "dummy.ko")
        odd = os.fsencode(root) + b"/bad\xff.ko"
        shutil.copy(dummy, os.fsdecode(odd))
        (moddir / "odd.ko").write_bytes(_not_utf8(dummy.read_bytes()))
        shutil.copy(moddir / "odd.ko", root / "odd.ko")
        os.mkfifo(root / "fifo")
        (root / "dir").mkdir()
        (root / "zero").symlink_to("/dev/zero")
        (root / "empty.d").mkdir()
        self.work = root / "work"
        self.work.mkdir()
        self.values = [
            *HOSTILE,
            str(self.module),
            os.fsdecode(odd),
            str(root / "odd.ko"),
            str(root / "fifo"),
            str(root / "dir"),
            str(root / "zero"),
            str(root / "tree"),
            str(root / "empty.d"),
            "/dev/null",
            "/dev/full",
            str(root / "missing"),
            kernel.version,
            "dummy",
            "odd",
        ]

    def safe_prefix(self, tool: str) -> list[str]:
        """Options that keep a tool inside the sandbox: depmod writes into
        the sandbox's tree, modprobe reads no host configuration and only
        plans (kmod's -n), keygen writes into the work directory."""
        tree = str(self.root / "tree")
        if tool == "depmod":
            return ["-b", tree]
        if tool == "modprobe":
            return ["-n", "-C", str(self.root / "empty.d"), "-d", tree, "-S", self.version]
        if tool == "modinfo":
            return ["-b", tree, "-k", self.version]
        return []


def _not_utf8(data: bytes) -> bytes:
    """The module with a 0xff byte in its name, an alias and an exported
    symbol's name (the same length, so every offset still holds)."""
    for old, new in (
        (b"name=dummy\0", b"name=dumm\xff\0"),
        (b"alias=rtnl-link-dummy\0", b"alias=rtnl-link-d\xf2mmy\0"),
    ):
        data = data.replace(old, new)
    return data.replace(b"\0dummy_", b"\0d\xf2mmy_")


# dmesg --follow waits for new kernel messages for ever, by design. The
# options that say where depmod writes and where modprobe looks are pinned
# by Sandbox.safe_prefix: drawn again, ``-b ''`` would send depmod to the
# host's /lib/modules.
LEFT_OUT = {
    "dmesg": {"-w", "--follow"},
    "depmod": {"-b", "--basedir", "-o", "--outdir"},
    "modprobe": {"-d", "--dirname", "-S", "--set-version"},
}


@functools.cache
def _options(tool: str) -> list[str]:
    """The tool's option names, read from its own --help (getopt tables and
    argparse parsers alike)."""
    import re

    out, err = io.BytesIO(), io.BytesIO()
    main(["lkm", tool, "--help"], out, err)
    text = out.getvalue().decode("utf-8", "replace")
    found = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", text))
    return sorted((found | {"--help", "--json"}) - LEFT_OUT.get(tool, set()))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield Sandbox(tmp_path_factory.mktemp("cli-fuzz"))


@contextlib.contextmanager
def _in(directory: Path) -> Iterator[None]:
    """In ``directory``, with /dev/null as standard input: ``insmod -``
    reads a module from it, and a test must not wait on whatever stdin
    pytest was given."""
    before = os.getcwd()
    saved = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(before)
        os.dup2(saved, 0)
        os.close(saved)


@pytest.mark.fixtures
@settings(
    max_examples=max(400, EXAMPLES // 2),
    deadline=timedelta(seconds=20),
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), tool=st.sampled_from(FAST_TOOLS), stdout=st.sampled_from(["bytes", "full"]))
def test_any_arguments_give_a_status_never_an_exception(
    sandbox: Sandbox, data: st.DataObject, tool: str, stdout: str
) -> None:
    words = st.sampled_from(_options(tool)) | st.sampled_from(sandbox.values)
    args = [*sandbox.safe_prefix(tool), *data.draw(st.lists(words, max_size=6))]
    if tool == "modprobe" and "-n" not in args:
        args.insert(0, "-n")
    err = io.BytesIO()
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        out = io.BytesIO() if stdout == "bytes" else _output_stream(full)
        with _in(sandbox.work):
            status = main(["lkm", tool, *args], out, err)
        out.flush()
    finally:
        os.close(full)
        for leftover in sandbox.work.iterdir():  # lkm new's trees, keygen's keys
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
    assert isinstance(status, int) and 0 <= status < 256
    assert b"Traceback" not in err.getvalue()
    fuzz_example("command lines (11 commands, any options and values, stdout full or not)")
