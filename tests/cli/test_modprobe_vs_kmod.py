"""``modprobe --show-depends`` and ``-R`` against kmod's, case by case, on
both Debian trees indexed by kmod's depmod.

Cases: every module name of modules.dep and modules.builtin, and a few
thousand concrete device aliases made from modules.alias patterns (each
``*`` filled in, a ``[...]`` class replaced by one of its characters), so
kmod's wildcard matching and priority order decide which modules answer.
Then a configuration that uses every directive that changes a plan
(alias, options, install, softdep, blacklist) on a handful of modules.
kmod runs once per case (that is the reference); lkm runs in-process.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import Result, command, kmod, lkm

from lkm.testing.debian_kernels import KernelFixture

ALIASES_PER_TREE = 2500


def _tree_args(kernel: KernelFixture) -> list[str]:
    return ["-d", str(kernel.indexed_root), "-S", kernel.version]


def _module_names(kernel: KernelFixture) -> list[str]:
    moddir = kernel.indexed_moddir
    names = []
    for line in (moddir / "modules.dep").read_text().splitlines():
        path = line.split(":", 1)[0]
        names.append(Path(path).name.split(".", 1)[0])
    builtin = (moddir / "modules.builtin").read_text().splitlines()
    names += [Path(p).name.split(".", 1)[0] for p in builtin]
    return sorted(set(names))


def concrete_alias(pattern: str, rng: random.Random) -> str | None:
    """A string the fnmatch pattern matches, or None for a negated class."""
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append("".join(rng.choice("0123456789ABCDEF") for _ in range(rng.randrange(5))))
        elif char == "?":
            out.append(rng.choice("0123456789"))
        elif char == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                return None
            members = pattern[i + 1 : end]
            if members.startswith(("!", "^")):
                return None
            out.append(members[0])
            i = end
        else:
            out.append(char)
        i += 1
    return "".join(out)


def _aliases(kernel: KernelFixture, count: int) -> list[str]:
    rng = random.Random(f"aliases-{kernel.label}")  # the same cases every run
    patterns = []
    for line in (kernel.indexed_moddir / "modules.alias").read_text().splitlines():
        if line.startswith("alias "):
            patterns.append(line.split(" ", 2)[1])
    rng.shuffle(patterns)
    found: dict[str, None] = {}
    for pattern in patterns:
        alias = concrete_alias(pattern, rng)
        if alias is not None and " " not in alias:
            found[alias] = None
        if len(found) >= count:
            break
    return list(found)


def _both(cases: Sequence[list[str]]) -> list[tuple[list[str], Result, Result]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        kmod_results = list(pool.map(lambda args: kmod("modprobe", args), cases))
    return [(args, k, lkm("modprobe", args)) for args, k in zip(cases, kmod_results, strict=True)]


# Debian builds kmod 30 with debug logging: a libkmod message carries its
# source file, line and function ("../libkmod/libkmod-module.c:1998
# kmod_module_get_holders() could not open …"). lkm prints the message as
# kmod built without it does; the location is dropped before comparing.
LIBKMOD_LOCATION = re.compile(rb"(?m)^(modprobe: [A-Z]+: )\.\./libkmod/\S+:\d+ \S+\(\) ")


def without_source_locations(stderr: bytes) -> bytes:
    return LIBKMOD_LOCATION.sub(rb"\1", stderr)


def _differences(results: list[tuple[list[str], Result, Result]]) -> list[str]:
    return [
        f"modprobe {' '.join(args)}\n  kmod: {k}\n  lkm:  {m}"
        for args, k, m in results
        if (k.stdout, without_source_locations(k.stderr), k.status)
        != (m.stdout, m.stderr, m.status)
    ]


@pytest.mark.parametrize("label", ["6.1", "6.12"])
def test_show_depends_for_every_module_name(kernels, label: str, report) -> None:  # type: ignore[no-untyped-def]
    kernel = next(k for k in kernels if k.label == label)
    names = _module_names(kernel)
    assert len(names) > 3000
    results = _both([[*_tree_args(kernel), "--show-depends", name] for name in names])
    assert _differences(results)[:5] == []
    shown = sum(1 for _, k, _ in results if k.stdout)
    softdeps = sum(1 for _, k, _ in results if k.stdout.count(b"\n") > 1)
    assert shown == len(names)  # every name printed something
    report(f"modprobe -D on {label}: {len(names)} module names ({softdeps} with dependencies)")


@pytest.mark.parametrize("label", ["6.1", "6.12"])
def test_show_depends_and_resolve_for_aliases(kernels, label: str, report) -> None:  # type: ignore[no-untyped-def]
    kernel = next(k for k in kernels if k.label == label)
    aliases = _aliases(kernel, ALIASES_PER_TREE)
    assert len(aliases) >= 2000
    cases = [[*_tree_args(kernel), flag, alias] for alias in aliases for flag in ("-D", "-R")]
    results = _both(cases)
    assert _differences(results)[:5] == []
    several = sum(1 for args, k, _ in results if args[-2] == "-R" and k.stdout.count(b"\n") > 1)
    found = sum(1 for args, k, _ in results if args[-2] == "-R" and k.status == 0)
    assert found > len(aliases) * 0.9
    report(
        f"modprobe -D and -R on {label}: {len(aliases)} concrete aliases each "
        f"({several} resolve to several modules)"
    )


CONFIG = """\
alias my-net dummy
alias my-fs 9p
alias snd-card-* snd-dummy
options dummy numdummies=3
options my-net numdummies=5
options 9p debug=1
install loop /bin/echo installing loop $CMDLINE_OPTS
softdep 9p pre: crc32c_generic post: dummy
softdep ext4 pre: crc32c_generic loop
blacklist dummy
blacklist nbd
"""

CONFIG_CASES = [
    ["-D", "my-net"],
    ["-D", "my-fs"],
    ["-D", "9p", "version=9p2000.L"],
    ["-D", "ext4"],
    ["-D", "loop", "max_loop=2"],
    ["-D", "-i", "loop"],
    ["-D", "snd-card-7"],
    ["-D", "dummy"],
    ["-D", "-b", "dummy"],
    ["-D", "-b", "my-net"],
    ["-D", "-a", "my-net", "9p", "nonexistent", "loop"],
    ["-R", "my-net"],
    ["-R", "snd-card-1"],
    ["-D", "nonexistent"],
    ["-q", "-D", "nonexistent"],
    ["-D", "symbol:nfs_probe_server"],
    ["-D", "fs-9p"],
    ["-D", "bad]alias"],
    ["-D", "-r", "9p"],
]


@pytest.mark.parametrize("label", ["6.1", "6.12"])
def test_show_depends_with_configuration(kernels, label: str, tmp_path: Path, report) -> None:  # type: ignore[no-untyped-def]
    kernel = next(k for k in kernels if k.label == label)
    conf = tmp_path / "lkm.conf"
    conf.write_text(CONFIG)
    cases = [[*_tree_args(kernel), "-C", str(conf), *case] for case in CONFIG_CASES]
    results = _both(cases)
    assert _differences(results) == []
    report(f"modprobe -D with modprobe.d on {label}: {len(cases)} cases")


@pytest.mark.parametrize(
    "template",
    [
        "--show-depends -d '{root}' -S {version}",  # a quoted word
        "-D  -d {root} -S {version}",  # two spaces: an empty word, a module named ""
        "-D -d {root} -S{version} -q",
    ],
)
def test_modprobe_options_from_the_environment(kernel_61: KernelFixture, template: str) -> None:
    value = template.format(root=kernel_61.indexed_root, version=kernel_61.version)
    env = {"MODPROBE_OPTIONS": value, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    reference = command(["modprobe", "9p"], env=env)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODPROBE_OPTIONS", value)
        mine = lkm("modprobe", ["9p"])
    assert (mine.stdout, mine.stderr, mine.status) == (
        reference.stdout,
        reference.stderr,
        reference.returncode,
    )


@pytest.mark.parametrize("label", ["6.1", "6.12"])
def test_dump_modversions_and_show_exports(kernels, label: str, tmp_path: Path, report) -> None:  # type: ignore[no-untyped-def]
    kernel = next(k for k in kernels if k.label == label)
    files = [str(p) for p in kernel.modules()[::25]]
    first = Path(files[0]).read_bytes()
    truncated = tmp_path / "truncated.ko"
    truncated.write_bytes(first[: len(first) // 3])
    files += [str(truncated), "/etc/hostname", str(tmp_path / "missing.ko")]
    cases = [[flag, path] for path in files for flag in ("--dump-modversions", "--show-exports")]
    results = _both(cases)
    assert _differences(results)[:5] == []
    listed = sum(1 for _, k, _ in results if k.status == 0)
    report(
        f"modprobe --dump-modversions/--show-exports on {label}: "
        f"{len(cases)} cases, {listed} listed"
    )


# Command lines that change nothing in the kernel (-n, -D, -R, errors),
# run against the host's own (module-less) kernel state.
CLI_CASES = [
    [], ["-w", "abc", "-r", "loop"], ["--bogus"], ["-n", "-v", "9p"], ["-n", "-r", "-v", "loop"],
    ["-R", "nonexist"], ["-q", "-R", "nonexist"], ["-D", "-d"], ["-S"],
    ["-n", "-v", "--first-time", "9p"], ["-r", "-n", "-v", "nonexist"],
    ["-r", "-n", "-v", "--first-time", "loop"], ["-r", "-n", "zz"], ["-r", "-n", "-v", "zbud"],
    ["-n", "-v", "zbud"], ["-r", "-a", "-n", "-v", "loop", "nonexist", "dummy"],
    ["-n", "-v", "-f", "--force-vermagic", "--force-modversion", "-i", "-b", "loop", "a=1"],
    ["--show-depends", "--remove-dependencies", "-w", "0x10", "-r", "loop"],
]  # fmt: skip
# Deliberate differences (not compared): -vv, where kmod prints libkmod's
# pointer addresses; a path argument (/x.ko, ./x.ko), which kmod 34 loads
# as a file and Debian's kmod 30 looks up as an alias (lkm follows kmod 34).


@pytest.mark.parametrize("args", CLI_CASES, ids=lambda a: " ".join(a) or "no-args")
def test_command_line_behaviour(kernel_61: KernelFixture, args: list[str]) -> None:
    full = [*_tree_args(kernel_61), *args]
    assert _differences(_both([full])) == []


def test_tree_indexed_without_modules_builtin(kernel_61: KernelFixture, tmp_path: Path) -> None:
    """kmod's depmod writes an empty modules.builtin.bin when the tree has no
    modules.builtin (a directory of out-of-tree modules); kmod reads that as
    no index, and so must lkm. A broken non-empty index is one error line."""
    version = kernel_61.version
    extra = tmp_path / "lib" / "modules" / version / "extra"
    extra.mkdir(parents=True)
    for name in ("llc", "stp"):
        source = next(p for p in kernel_61.modules() if p.name == f"{name}.ko")
        (extra / source.name).write_bytes(source.read_bytes())
    assert kmod("depmod", ["-b", str(tmp_path), version]).status == 0
    assert (extra.parent / "modules.builtin.bin").stat().st_size == 0
    args = ["-n", "-v", "-d", str(tmp_path), "-S", version, "stp"]
    expected, mine = kmod("modprobe", args), lkm("modprobe", args)
    assert mine == expected and b"extra/llc.ko" in mine.stdout
    (extra.parent / "modules.builtin.bin").write_bytes(b"\xb0\x07\xf4\x57\x00\x02\x00\x01\x00\x00")
    broken = lkm("modprobe", args)
    assert broken.status == 1 and broken.stderr.count(b"\n") == 1
    assert broken.stderr.startswith(b"modprobe: ERROR: ")
    assert b"modules.builtin.bin: " in broken.stderr
