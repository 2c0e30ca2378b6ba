"""``lkm modinfo -b ROOT -k VERSION NAME|ALIAS`` against kmod's, through the
indexes kmod's own depmod wrote (a hard-linked copy of each Debian tree)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from conftest import chunks, kmod, lkm

from lkm.testing.debian_kernels import KernelFixture

BATCH = 100


def concrete_alias(pattern: str, rng: random.Random) -> str:
    """A modalias string that the fnmatch pattern matches."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append(rng.choice(["", "0", "00001234", "A"]))
        elif c == "?":
            out.append("0")
        elif c == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 2)
            members = pattern[i + 1 : end]
            if members[0] in "!^":
                out.append("_" if "_" not in members else "~")
            else:
                out.append(members[0])
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(pattern[i])
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _sample(items: list[str], count: int) -> list[str]:
    step = max(1, len(items) // count)
    return items[::step][:count]


def _alias_patterns(path: Path) -> list[str]:
    return [
        line.split(" ")[1] for line in path.read_text().splitlines() if line.startswith("alias ")
    ]


def _builtin_alias_patterns(moddir: Path) -> list[str]:
    """depmod writes only modules.builtin.alias.bin; its source is here."""
    raw = (moddir / "modules.builtin.modinfo").read_bytes().decode()
    return [s.split("=", 1)[1] for s in raw.split("\0") if s.split("=", 1)[0].endswith(".alias")]


def _queries(kernel: KernelFixture) -> dict[str, list[str]]:
    moddir = kernel.indexed_moddir
    rng = random.Random(kernel.version)
    names = [line.split(":", 1)[0] for line in (moddir / "modules.dep").read_text().splitlines()]
    names = [re.sub(r"\.ko(\..*)?$", "", n.rsplit("/", 1)[-1]) for n in names]
    builtin = [
        re.sub(r"\.ko$", "", n.rsplit("/", 1)[-1])
        for n in (moddir / "modules.builtin").read_text().splitlines()
    ]
    aliases = [
        concrete_alias(p, rng) for p in _sample(_alias_patterns(moddir / "modules.alias"), 600)
    ]
    builtin_aliases = [
        concrete_alias(p, rng) for p in _sample(_builtin_alias_patterns(moddir), 150)
    ]
    symbols = [
        line.split(" ")[1] for line in (moddir / "modules.symbols").read_text().splitlines()[::200]
    ]
    return {
        "names": _sample(names, 500) + _sample(builtin, 150) + ["no_such_module", "no-such-module"],
        "aliases": aliases
        + builtin_aliases
        + symbols[:50]
        + ["pci:v0000FFFFd0000FFFF", "a]b", "[x"],
    }


def _compare(kernel: KernelFixture, options: list[str], queries: list[str]) -> list[str]:
    base = ["-b", kernel.indexed_root, "-k", kernel.version, *options]
    problems = []
    for batch in chunks(queries, BATCH):
        want, got = kmod("modinfo", [*base, *batch]), lkm("modinfo", [*base, *batch])
        if want == got:
            continue
        for query in batch:
            w, g = kmod("modinfo", [*base, query]), lkm("modinfo", [*base, query])
            if w != g:
                problems.append(f"{query!r}:\n  kmod {w}\n  lkm  {g}")
    return problems


@pytest.mark.parametrize("label", ["6.1", "6.12"])
@pytest.mark.parametrize(
    "options", [[], ["-m"], ["-F", "filename"], ["-0"]], ids=["plain", "-m", "-F filename", "-0"]
)
def test_names_and_aliases(
    kernels: list[KernelFixture], label: str, options: list[str], report
) -> None:  # type: ignore[no-untyped-def]
    kernel = next(k for k in kernels if k.label == label)
    queries = _queries(kernel)
    assert len(queries["names"]) >= 500 and len(queries["aliases"]) >= 500
    problems = _compare(kernel, options, queries["names"]) + _compare(
        kernel, options, queries["aliases"]
    )
    report(
        f"modinfo -b -k {' '.join(options)} on {label}: "
        f"{len(queries['names'])} names, {len(queries['aliases'])} aliases"
    )
    assert not problems, "\n".join(problems[:20])


def test_relative_basedir(kernel_61: KernelFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(kernel_61.indexed_root)
    monkeypatch.chdir(root.parent)
    args = ["-b", root.name, "-k", kernel_61.version, "loop", "dummy"]
    assert lkm("modinfo", args) == kmod("modinfo", args, cwd=str(root.parent))
