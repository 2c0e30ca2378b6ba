"""``modprobe -c`` against kmod's on both Debian trees, and the kernel
command line parsed as kmod parses it.

Deliberate differences, each applied to kmod's output before comparing:
- kmod loses the space between a softdep's pre and post lists
  (``pre: looppost: dummy``); lkm prints ``pre: loop post: dummy``;
- Debian's kmod 30 does not know ``weakdep`` (kmod 34 does; lkm follows
  kmod 34), so kmod 30 reports the line as bad where lkm prints it;
- kmod 30 reports bad lines through libkmod's default logger, whose prefix
  names its source file and line; lkm prints ``modprobe: ERROR:``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import command, lkm

from lkm.model.modprobe_config import ModprobeConfig, logical_lines, parse_cmdline

CONFIG = """\
# every directive, good and bad
alias my-alias snd-hda_intel
alias pci:v00008086d*sv*[0-9]* e1000e
blacklist floppy-x
options loop max_loop=8 \\
   max_part=2
install dummy /bin/true --ignore-install dummy
remove dummy /bin/echo removing
softdep 9p pre: loop post: dummy
softdep ext4 pre: crc32c
softdep mod_x post: a b
weakdep btrfs xor raid6_pq
bogus line here
alias only-one
options nothing
include /etc/foo
alias bad]x y
\tblacklist   tabbed-name
"""
LATER = "options snd-hda-intel model=auto\n"
SHADOWED = "blacklist never-seen\n"


@pytest.mark.parametrize("label", ["6.1", "6.12"])
def test_showconfig_matches_kmod(kernels, label: str, tmp_path: Path, report) -> None:  # type: ignore[no-untyped-def]
    kernel = next(k for k in kernels if k.label == label)
    first, second = tmp_path / "etc", tmp_path / "lib"
    first.mkdir()
    second.mkdir()
    (first / "a.conf").write_text(CONFIG)
    (first / "b.conf").write_text(LATER)
    (first / "ignored.txt").write_text(SHADOWED)
    (second / "a.conf").write_text(SHADOWED)  # hidden by etc/a.conf
    (second / "c.conf").write_text("blacklist from-second-dir\n")
    args = ["-c", "-C", str(first), "-C", str(second), "-d", str(kernel.indexed_root), "-S",
            kernel.version]  # fmt: skip
    kmod = command(["modprobe", *args])
    mine = lkm("modprobe", args)
    assert kmod.returncode == mine.status == 0
    expected = kmod.stdout.replace(b"pre: looppost: dummy", b"pre: loop post: dummy")
    expected = expected.replace(b"softdep mod_x post: a b\n", b"softdep mod_x post: a b\n", 1)
    lines = expected.split(b"\n")
    last_softdep = max(i for i, line in enumerate(lines) if line.startswith(b"softdep "))
    lines.insert(last_softdep + 1, b"weakdep btrfs xor raid6_pq")
    assert mine.stdout == b"\n".join(lines)
    assert b"blacklist from_second_dir\n" in mine.stdout and b"never" not in mine.stdout
    kmod_errors = [
        re.sub(rb"^libkmod: ERROR \S+ kmod_config_parse: ", b"modprobe: ERROR: ", line)
        for line in kmod.stderr.splitlines()
        if b"starting with 'weakdep'" not in line
    ]
    assert mine.stderr.splitlines() == kmod_errors
    report(f"modprobe -c on {label}: {len(lines)} lines, {len(kmod_errors)} error lines")


def test_logical_lines_join_and_drop_backslashes() -> None:
    text = "a \\\n  b\nc\\d\n\ne\\"
    assert logical_lines(text) == [(2, "a   b"), (3, "cd"), (4, ""), (5, "e")]


def _cmdline(text: str) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    config = ModprobeConfig()
    warnings: list[str] = []
    parse_cmdline(text, config, warnings.append)
    return config.options, config.blacklists, warnings


def test_kernel_command_line_like_kmod() -> None:
    options, blacklists, warnings = _cmdline(
        "BOOT_IMAGE=/vmlinuz quiet modprobe.blacklist=floppy,pcspkr snd-hda-intel.model=auto"
        ' "parport.dyndbg=file drivers/parport/ieee1284_ops.c +mpf" foo.bar="a b"'
        " noeq.flag x.y.z=1 a=b.c bad]x.p=1 ok.=1\n"
    )
    assert blacklists == ["floppy", "pcspkr"]
    assert options == [
        ("snd_hda_intel", "model=auto"),
        ("parport", 'dyndbg="file drivers/parport/ieee1284_ops.c +mpf"'),
        ("foo", 'bar="a b"'),
        ("noeq", "flag"),
        ("ok", "=1"),
    ]
    assert warnings == [
        "Ignoring bad option on kernel command line while parsing module name: 'bad]x'"
    ]


def test_host_command_line_options_shown(tmp_path: Path) -> None:
    """The machine's own /proc/cmdline reaches -c as kmod's does."""
    kmod = command(["modprobe", "-c", "-C", str(tmp_path)])
    mine = lkm("modprobe", ["-c", "-C", str(tmp_path)])
    kmod_options = [line for line in kmod.stdout.splitlines() if line.startswith(b"options ")]
    mine_options = [line for line in mine.stdout.splitlines() if line.startswith(b"options ")]
    assert mine_options == kmod_options


# Kernel command lines in the spirit of kmod's testsuite
# (module-param-kcmdline*, blacklist): each is bind-mounted over
# /proc/cmdline in a private mount namespace, where kmod's modprobe and
# lkm's both read it.
KERNEL_COMMAND_LINES = [
    "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet\n",
    "psmouse.foo=1 psmouse.bar psmouse.baz=\n",
    'loop.max_loop=4 "dummy.x=a b" dummy.y="c d" dummy.z=e"f g"\n',
    "modprobe.blacklist=floppy,pcspkr modprobe.blacklist=snd-pcsp\n",
    "modprobe.blacklist= modprobe.other=1\n",
    "snd-hda-intel.model=auto snd_hda_intel.probe_mask=1\n",
    "a.b.c=1 .x=1 x.=1 =y.z a=b.c mod.p=v=w\n",
    "tab\tsep.a=1\t\tother.b=2  \n",
    'unterminated."quote=1 next.p=2\n',
    'parport.dyndbg="file drivers/parport/ieee1284_ops.c +mpf" bad]x.p=1\n',
    "loop.max_loop=8",  # no final newline
]


@pytest.mark.parametrize("cmdline", KERNEL_COMMAND_LINES)
def test_kernel_command_line_through_proc(kernel_61, cmdline: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """-c and a plan (-D) with the kernel command line, kmod against lkm.
    Options merge as configuration, then command line, then arguments."""
    import sys

    (tmp_path / "cmdline").write_text(cmdline)
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "a.conf").write_text("options loop max_part=3\nblacklist nbd\n")
    lkm_script = str(Path(sys.executable).with_name("lkm"))
    tree = ["-C", str(conf), "-d", str(kernel_61.indexed_root), "-S", kernel_61.version]
    results = []
    for tool in (["modprobe"], [lkm_script, "modprobe"]):
        commands = [
            [*tool, "-c", *tree],
            [*tool, *tree, "-D", "loop", "max_loop=1"],
            [*tool, *tree, "-D", "dummy"],
        ]
        script = f"mount --bind {tmp_path / 'cmdline'} /proc/cmdline || exit 99\n" + "".join(
            " ".join(_quote(word) for word in command) + " 2>&1; echo status=$?\n"
            for command in commands
        )
        proc = command(["unshare", "--mount", "sh", "-c", script])
        assert proc.returncode == 0, proc.stderr
        results.append(re.sub(rb"libkmod: ERROR \S+ \S+: ", b"modprobe: ERROR: ", proc.stdout))
    kmod_out, mine = results
    assert b"status=" in kmod_out
    assert mine == kmod_out


def _quote(word: str) -> str:
    import shlex

    return shlex.quote(word)


GLOB_CONFIG = """\
alias x[^a]y dummy
alias q[!b]z dummy
alias w\\*v dummy
alias [0-9]n dummy
softdep dumm[^x] pre: loop
install l[!a]op /bin/true
"""


def test_config_patterns_match_as_glibcs_fnmatch(kernel_61, tmp_path: Path, report) -> None:  # type: ignore[no-untyped-def]
    """kmod matches modprobe.d's alias, softdep and install patterns with
    glibc's fnmatch (``[^…]`` negates, ``\\`` escapes), not Python's rules."""
    (tmp_path / "a.conf").write_text(GLOB_CONFIG)
    base = ["-C", str(tmp_path), "-d", str(kernel_61.indexed_root), "-S", kernel_61.version]
    cases = [["-R", n] for n in ("xby", "xay", "qcz", "qbz", "w*v", "wxv", "7n", "xn")]
    cases += [["-D", "dummy"], ["-D", "loop"], ["-n", "-v", "dummy"]]
    for args in cases:
        kmod = command(["modprobe", *base, *args])
        mine = lkm("modprobe", [*base, *args])
        assert (mine.status, mine.stdout, mine.stderr) == (
            kmod.returncode,
            kmod.stdout,
            kmod.stderr,
        ), args
    report(f"modprobe.d glob patterns: {len(cases)} commands as kmod's")
