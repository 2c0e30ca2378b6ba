"""Regression tests for wildcard patterns that made lkm hang (issue 14,
items 2 and 7): a module alias with many stars, matched by translating it
into a backtracking regex, took 10 s for a 30-character name and over a
minute for 36 where kmod answers in milliseconds; and ``lkm ksyms`` tried
each of 1,000 patterns on each of /proc/kallsyms' ~122,000 symbols.

The alias is planted in a real module (the 6.1 fixture's dummy.ko, one
.modinfo string swapped for one of the same length), the tree indexed by
``lkm depmod`` and a copy by kmod's depmod, and each command run through
the console script with a time limit on both, next to kmod's own tool on
kmod's tree: same stdout, stderr and exit status.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import command, kmod

from lkm.cli.ksyms import select, symbol
from lkm.formats.fnmatch import fnmatch
from lkm.system.kernel import KernelModules
from lkm.testing.debian_kernels import KernelFixture

LKM = str(Path(sys.executable).with_name("lkm"))
HOSTILE_ALIAS = "*a" * 19 + "ab"  # 19 stars: the probe's alias
FAST = 3.0  # seconds: kmod takes milliseconds, lkm's start-up ~0.1 s


def _plant_alias(module: bytes, alias: bytes) -> bytes:
    """``module`` with its parameter description (a .modinfo string as
    long as the alias) replaced by ``alias=ALIAS``, padded with NULs, which
    kmod skips: the section keeps its size and every offset stays."""
    start = module.index(b"\0parm=numdummies:") + 1
    end = module.index(b"\0", start)
    entry = b"alias=" + alias
    assert len(entry) <= end - start, "the planted alias must fit"
    return module[:start] + entry.ljust(end - start, b"\0") + module[end:]


def _tree(root: Path, kernel: KernelFixture) -> Path:
    """A module tree under ``root`` holding dummy.ko with the hostile alias."""
    moddir = root / "lib" / "modules" / kernel.version
    (moddir / "kernel").mkdir(parents=True)
    dummy = next(p for p in kernel.modules() if p.name == "dummy.ko")
    planted = moddir / "kernel" / "dummy.ko"
    planted.write_bytes(_plant_alias(dummy.read_bytes(), HOSTILE_ALIAS.encode()))
    (moddir / "modules.order").write_text("kernel/dummy.ko\n")
    for name in ("modules.builtin", "modules.builtin.modinfo"):
        shutil.copy(kernel.moddir / name, moddir)
    return root


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory, kernel_61: KernelFixture) -> dict[str, Path]:
    """The tree indexed by lkm's depmod, and a copy indexed by kmod's (for
    kmod, the reference; the index layouts differ, their answers may not)."""
    ours = _tree(tmp_path_factory.mktemp("lkm-indexed"), kernel_61)
    planted = ours / "lib" / "modules" / kernel_61.version / "kernel" / "dummy.ko"
    # kmod reads the file as a module with both aliases.
    info = kmod("modinfo", ["-F", "alias", str(planted)])
    assert (info.status, info.stdout) == (0, f"rtnl-link-dummy\n{HOSTILE_ALIAS}\n".encode())
    done = _lkm(["depmod", "-b", str(ours), kernel_61.version])
    assert done.returncode == 0, done.stderr
    assert HOSTILE_ALIAS in (planted.parent.parent / "modules.alias").read_text()
    theirs = _tree(tmp_path_factory.mktemp("kmod-indexed"), kernel_61)
    command(["depmod", "-b", str(theirs), kernel_61.version], check=True)
    return {"lkm": ours, "kmod": theirs}


def _lkm(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    """The console script, as a user runs it; a hang fails, it does not wait."""
    return subprocess.run([LKM, *args], capture_output=True, timeout=30, check=False)


NAMES = [
    "a" * 36,  # no match: every placement of 19 stars tried by a backtracking regex
    "a" * 36 + "b",  # a match
]
COMMANDS = [
    ("modprobe", ["-n", "-v"]),
    ("modprobe", ["-R"]),
    ("modinfo", []),
    ("modinfo", ["-F", "alias"]),
]


def _tree_args(tool: str, root: Path, version: str) -> list[str]:
    if tool == "modprobe":
        return ["-d", str(root), "-S", version]
    return ["-b", str(root), "-k", version]


@pytest.mark.parametrize("indexed_by", ["lkm", "kmod"])
@pytest.mark.parametrize("name", NAMES, ids=["no-match", "match"])
@pytest.mark.parametrize(
    ("tool", "options"), COMMANDS, ids=[" ".join([t, *o]) for t, o in COMMANDS]
)
def test_many_star_alias_answers_fast_and_like_kmod(
    trees: dict[str, Path],
    kernel_61: KernelFixture,
    tool: str,
    options: list[str],
    name: str,
    indexed_by: str,
) -> None:
    root = trees[indexed_by]
    start = time.perf_counter()
    ours = _lkm([tool, *options, *_tree_args(tool, root, kernel_61.version), name])
    elapsed = time.perf_counter() - start
    assert elapsed < FAST, f"lkm {tool} took {elapsed:.1f} s"
    reference = trees["kmod"]
    theirs = kmod(tool, [*options, *_tree_args(tool, reference, kernel_61.version), name])
    # Paths name the tree: kmod's answer as it would read in ours.
    expected = [
        out.replace(str(reference).encode(), str(root).encode())
        for out in (theirs.stdout, theirs.stderr)
    ]
    assert [ours.stdout, ours.stderr, ours.returncode] == [*expected, theirs.status]


# -- ksyms: 1,000 patterns over a /proc/kallsyms-sized input ---------------------

WORDS = [
    "init", "exit", "probe", "remove", "open", "release", "read", "write", "ioctl", "poll",
    "mmap", "get", "put", "alloc", "free", "lock", "unlock", "irq", "dma", "pci", "usb", "net",
    "dev", "skb", "page", "cache", "inode", "file", "super", "block", "queue", "work", "timer",
    "event", "trace", "sys", "x64", "ext4", "tcp", "udp", "ip", "sched", "task", "cpu", "mem",
    "slab", "vm", "fault", "handler", "state", "ops",
]  # fmt: skip
OWNERS = ["", "", "", "", "\t[ext4]", "\t[loop]", "\t[snd_hda_intel]", "\t[nf_tables]"]


def _kallsyms(rng: random.Random, count: int) -> list[str]:
    lines = []
    for i in range(count):
        name = "_".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
        name = rng.choice(["", "", "__", "_"]) + name + rng.choice(["", "", ".cold", "_7"])
        lines.append(f"ffffffff{i:08x} {rng.choice('TtDdBbRr')} {name}{rng.choice(OWNERS)}")
    return lines


def _patterns(rng: random.Random, names: list[str]) -> list[str]:
    """1,000 patterns of every kind: names, prefixes, substrings, '?',
    brackets, escapes, and brackets that need glibc's algorithm."""
    words = [f"{rng.choice(WORDS)}_{rng.choice(WORDS)}" for _ in range(200)]
    patterns = rng.sample(names, 450) + [f"absent_{i}" for i in range(50)]
    patterns += [rng.choice(names)[: rng.randint(6, 12)] + "*" for _ in range(250)]
    patterns += [f"*{word}*" for word in words[:100]]
    patterns += [f"*{word}*x{i}" for i, word in enumerate(words[100:150])]
    patterns += [f"{rng.choice(WORDS)}_???_*" for _ in range(40)]
    patterns += [f"[a-{rng.choice('cdefg')}]{rng.choice(WORDS)}*" for _ in range(40)]
    patterns += [f"{rng.choice(WORDS)}\\_*" for _ in range(10)]
    patterns += ["*" + "a*" * 19 + "b", "[xA-[:alpha:]]]*", "[!_]*[[:digit:]]", "*[.7.]"]
    patterns += [f"*{rng.choice(WORDS)}_[[:digit:]]" for _ in range(6)]
    assert len(patterns) == 1000
    return patterns


def test_ksyms_with_a_thousand_patterns_is_fast_and_matches_each(tmp_path: Path) -> None:
    rng = random.Random(14)
    lines = _kallsyms(rng, 122_000)
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "kallsyms").write_text("".join(f"{line}\n" for line in lines))
    patterns = _patterns(rng, [symbol(line) for line in lines])
    start = time.perf_counter()
    selected = select(KernelModules(proc=str(proc)).kallsyms(), patterns)
    elapsed = time.perf_counter() - start
    assert elapsed < FAST, f"{elapsed:.1f} s"  # one by one: ~40 s
    assert 0 < len(selected) < len(lines)
    # The naive way (each pattern in turn) on a sample of the lines.
    sample = lines[::97]
    naive = [f"{line}\n" for line in sample if any(fnmatch(p, symbol(line)) for p in patterns)]
    assert select(sample, patterns) == naive
    chosen = set(selected)
    assert [f"{line}\n" for line in sample if f"{line}\n" in chosen] == naive
