"""``lkm prepare`` on this machine, for real: a dry run with a PATH that
really lacks the compiler, make and pahole (against the Debian 6.12 headers
in lkm's cache, and against a kernel whose headers are really absent); a
full run for the Debian 6.1 kernel, where everything is there: the hello
module builds and apt is never asked; a kbuild program whose library is
really missing; and the program -> package table checked against dpkg and
apt on the kbuild programs of both Debian kernels."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from conftest import Ran, command

from lkm.model.kernels import available_kernels
from lkm.testing.debian_kernels import KernelFixture
from lkm.workflows.build import debian_package, find_headers, kbuild_programs
from lkm.workflows.prepare import HELLO, prepare

LKM = str(Path(sys.executable).with_name("lkm"))


def _prepare(args: list[str], env: dict[str, str] | None = None) -> Ran:
    environment = dict(env or os.environ, LKM_TRACE="1")  # each command lkm runs, on stderr
    return command([LKM, "prepare", *args], text=True, env=environment)


def _table(stdout: str) -> dict[str, tuple[str, str]]:
    """check -> (status, detail) from the table prepare ends with."""
    lines = stdout[stdout.index("\n  check ") + 1 :].splitlines()[1:]
    rows = [re.match(r"^  (\S+(?: build)?) +(\S+) +(.*)$", line) for line in lines]
    assert all(rows), stdout
    return {row.group(1): (row.group(2), row.group(3)) for row in rows if row}


def _ran(trace: str) -> list[str]:
    return re.findall(r"^lkm: \+ (.*)$", trace, re.M)


def _bare_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH holds only apt-cache and dpkg (apt runs
    dpkg): no compiler, no make, no pahole."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("apt-cache", "dpkg"):
        found = shutil.which(program)
        assert found, f"{program} is not installed"
        (bin_dir / program).symlink_to(found)
    return dict(os.environ, PATH=str(bin_dir))


def _compiler_package(kernel: KernelFixture) -> str:
    """gcc-N for the compiler the kernel's config names."""
    config = (kernel.headers / ".config").read_text()
    match = re.search(r'^CONFIG_CC_VERSION_TEXT=".*?\bgcc-(\d+) ', config, re.M)
    assert match, "the Debian kernels are built with gcc-N"
    return f"gcc-{match.group(1)}"


def test_dry_run_with_a_bare_path_names_compiler_make_and_dwarves(
    kernel_612: KernelFixture, tmp_path: Path
) -> None:
    config = (kernel_612.headers / ".config").read_text()
    assert "CONFIG_DEBUG_INFO_BTF_MODULES=y" in config and (kernel_612.headers / "vmlinux").exists()
    proc = _prepare(["--dry-run", "--kernel", kernel_612.version], _bare_path(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    wanted = f"{_compiler_package(kernel_612)} make dwarves"
    assert (
        f"dry run, nothing installed; to install what is missing: apt-get install {wanted}\n"
        in (proc.stdout)
    )
    table = _table(proc.stdout)
    assert table["headers"] == ("ok", str(kernel_612.headers))
    assert [table[c][0] for c in ("compiler", "make", "pahole", "libraries", "hello build")] == [
        "missing",
        "missing",
        "missing",
        "ok",
        "skipped",
    ], proc.stdout
    assert not [c for c in _ran(proc.stderr) if c.startswith(("apt-get", "make"))], proc.stderr


def _absent_headers_release() -> str:
    """A release apt has headers for that is neither installed nor in lkm's
    cache: the current cloud (else rt) flavour, resolved through apt."""
    present = {kernel.release for kernel in available_kernels() if kernel.headers}
    for flavour in ("cloud-amd64", "rt-amd64"):
        depends = command(["apt-cache", "depends", f"linux-headers-{flavour}"], text=True).stdout
        for package in re.findall(r"^\s+Depends: (linux-headers-\S+)$", depends, re.M):
            release = package.removeprefix("linux-headers-")
            policy = command(["apt-cache", "policy", package], text=True).stdout
            if (
                not release.endswith("-common")
                and release not in present
                and "Installed: (none)" in policy
                and "Candidate: (none)" not in policy
            ):
                return release
    pytest.fail("apt knows no headers package that is not installed: run apt-get update")


def test_dry_run_for_headers_that_are_absent(tmp_path: Path) -> None:
    release = _absent_headers_release()
    proc = _prepare(["--dry-run", "--kernel", release], _bare_path(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (
        f"dry run, nothing installed; to install what is missing: "
        f"apt-get install linux-headers-{release} make\n"
    ) in proc.stdout
    table = _table(proc.stdout)
    assert table["headers"][0] == "missing"
    assert f"lkm kernel fetch {release}" in table["headers"][1]  # the other way: lkm's cache
    assert table["make"][0] == "missing" and table["hello build"][0] == "skipped"
    # Debian's headers package brings the compiler and kbuild: apt decides.
    assert table["compiler"][0] == "unknown" and table["libraries"][0] == "unknown"
    assert not [c for c in _ran(proc.stderr) if c.startswith("apt-get")], proc.stderr


def test_nothing_missing_builds_hello_and_leaves_apt_alone(kernel_61: KernelFixture) -> None:
    proc = _prepare(["--kernel", kernel_61.label])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = _table(proc.stdout)
    assert list(table) == ["headers", "compiler", "make", "pahole", "libraries", "hello build"]
    assert all(status == "ok" for status, _ in table.values()), proc.stdout
    assert table["headers"][1] == str(kernel_61.headers)
    assert table["compiler"][1].startswith(_compiler_package(kernel_61) + " (")
    assert table["hello build"][1].startswith(f"hello.ko, vermagic {kernel_61.version} ")
    ran = _ran(proc.stderr)
    assert not [c for c in ran if c.startswith(("apt-get", "apt-cache"))], proc.stderr
    assert [c for c in ran if c.startswith(f"make -C {kernel_61.headers} M=")], proc.stderr


def test_a_library_objtool_cannot_find_is_named(kernel_61: KernelFixture, tmp_path: Path) -> None:
    """A headers tree whose objtool needs a library the loader cannot find
    (the real objtool with the name of its libelf changed in its dynamic
    section): the check runs the loader, it does not guess."""
    tree = tmp_path / f"linux-headers-{kernel_61.version}"
    tree.mkdir()
    for entry in os.listdir(kernel_61.headers):
        if entry != "tools":
            (tree / entry).symlink_to(os.path.realpath(kernel_61.headers / entry))
    (tree / "tools" / "objtool").mkdir(parents=True)
    objtool = (kernel_61.headers / "tools" / "objtool" / "objtool").read_bytes()
    assert b"libelf.so.1\0" in objtool
    (tree / "tools" / "objtool" / "objtool").write_bytes(
        objtool.replace(b"libelf.so.1\0", b"libelf.so.0\0")
    )
    (tree / "tools" / "objtool" / "objtool").chmod(0o755)
    proc = _prepare(["--dry-run", "--kernel", str(tree)])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    status, detail = _table(proc.stdout)["libraries"]
    assert (status, detail) == ("missing", "objtool needs libelf.so.0 (not found)"), proc.stdout
    # lkm build stops before make, with the same finding in one line.
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "Kbuild").write_text("obj-m := m.o\n")
    built = command([LKM, "build", str(tmp_path / "m"), "--kernel", str(tree)], text=True)
    assert built.returncode == 1 and built.stdout == ""
    assert built.stderr == (
        "lkm build: kbuild's objtool needs libelf.so.0, which is not installed: "
        "no Debian package known for it\n"
    )


def _owner(path: str) -> str:
    """The installed package that owns ``path`` (dpkg -S), without its
    architecture. dpkg knows a file by the path its package ships it at,
    which on a merged /usr may differ from the loader's by /usr or a link."""
    real = os.path.realpath(path)
    candidates = [path, real, *(p.removeprefix("/usr") for p in (path, real))]
    candidates += [f"/usr{p}" for p in (path, real) if not p.startswith("/usr/")]
    for candidate in dict.fromkeys(candidates):
        out = command(["dpkg", "-S", candidate], text=True)
        if out.returncode == 0:
            return str(out.stdout.split(":", 1)[0])
    pytest.fail(f"dpkg knows no package owning {path}")


def test_package_table_agrees_with_dpkg(kernels: list[KernelFixture]) -> None:
    """Every library kbuild's programs link and every program kbuild runs
    maps to the package dpkg says owns it (pahole: dwarves, which depends
    on the package that holds it since bookworm)."""
    checked = []
    for kernel in kernels:
        if kernel.arch != "amd64":
            continue
        headers = find_headers(str(kernel.headers))
        for program in kbuild_programs(headers):
            env = dict(os.environ, LD_TRACE_LOADED_OBJECTS="1")
            listing = command([program], env=env, text=True).stdout
            for library, path in re.findall(r"^\s*(\S+) => (/\S+)", listing, re.M):
                assert debian_package(library) == _owner(path), (program, library)
                checked.append(library)
        compiler = shutil.which(headers.compiler)
        assert compiler and debian_package(headers.compiler) == _owner(compiler)
    make, pahole = shutil.which("make"), shutil.which("pahole")
    assert make and debian_package("make") == _owner(make)
    assert pahole and debian_package("pahole") == "dwarves"
    owner = _owner(pahole)
    depends = command(["apt-cache", "depends", "dwarves"], text=True).stdout
    assert owner == "dwarves" or f"Depends: {owner}" in depends
    assert {"libelf.so.1", "libc.so.6"} <= set(checked)


def test_library_call_not_as_root_says_the_command(
    kernel_612: KernelFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the library: someone who is not root is told the command,
    and nothing is installed (``as_root`` says what euid would)."""
    monkeypatch.setenv("PATH", _bare_path(tmp_path)["PATH"])
    lines: list[str] = []
    report = prepare(kernel_612.version, as_root=False, output=lines.append)
    wanted = (_compiler_package(kernel_612), "make", "dwarves")
    command_line = "apt-get install " + " ".join(wanted)
    assert lines == [f"not root, nothing installed; to install what is missing: {command_line}"]
    assert (report.release, report.install, report.installed, report.ok) == (
        kernel_612.version,
        wanted,
        False,
        False,
    )
    assert [f.check for f in report.findings if not f.ok] == [
        "compiler",
        "make",
        "pahole",
        HELLO,
    ]
