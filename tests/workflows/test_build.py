"""``lkm new`` + ``lkm build`` against the Debian 6.1 and 6.12 headers, and
the one-line explanations for the failures people hit."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import Ran, command

from lkm.formats.module_file import open_module
from lkm.testing.debian_kernels import KernelFixture
from lkm.workflows.scaffold import TEMPLATES, create, module_names

LKM = str(Path(sys.executable).with_name("lkm"))


def _lkm(args: list[str], env: dict[str, str] | None = None) -> Ran:
    return command([LKM, *args], text=True, env=env)


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("label", ["6.1", "6.12"])
def test_every_template_builds_against_both_kernels(
    kernels: list[KernelFixture], label: str, template: str, tmp_path: Path
) -> None:
    kernel = next(k for k in kernels if k.label == label)
    directory = tmp_path / f"my_{template}"
    made = _lkm(["new", str(directory), "--template", template])
    assert made.returncode == 0, made.stderr
    built = _lkm(["build", str(directory), "--kernel", kernel.version, "-j2"])
    assert built.returncode == 0, built.stdout + built.stderr
    names = module_names(template, directory.name)
    for name in names:
        ko = directory / f"{name}.ko"
        assert f"built {ko} for {kernel.version}" in built.stdout
        with open_module(str(ko)) as module:
            info = dict(module.modinfo() or [])
            assert info["license"] == "GPL" and info["vermagic"].startswith(kernel.version + " ")
    if template == "pair":
        with open_module(str(directory / f"{directory.name}_user.ko")) as user:
            assert dict(user.modinfo() or [])["depends"] == f"{directory.name}_core"


def test_make_variables_quiet_and_verbose(kernel_61: KernelFixture, tmp_path: Path) -> None:
    """VAR=VALUE words reach kbuild's make (first word or after DIR), -v is
    V=1 (make's commands shown), -q leaves only the results; a word that is
    not a make variable is one line and nothing built."""
    directory = tmp_path / "vars"
    create(str(directory))
    kernel = ["--kernel", kernel_61.version, "-j2"]
    shown = _lkm(["build", str(directory), "KCFLAGS=-DLKM_MAKE_VAR_SEEN", "-v", *kernel])
    assert shown.returncode == 0, shown.stdout + shown.stderr
    compile_line = next(x for x in shown.stdout.splitlines() if "vars.o" in x and "gcc" in x)
    assert "-DLKM_MAKE_VAR_SEEN" in compile_line
    (directory / "vars.ko").unlink()
    quiet = command([LKM, "build", "W=1", "-q", *kernel], text=True, cwd=str(directory))
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    # (a note on the running kernel, where it is another with a module tree here)
    results = [x for x in quiet.stdout.splitlines() if not x.startswith("note: ")]
    assert results == [f"built {directory}/vars.ko for {kernel_61.version}"]
    bad = _lkm(["build", str(directory), "1X=2", *kernel])
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "1X=2" in bad.stderr


def test_plain_make_works_too(kernel_61: KernelFixture, tmp_path: Path) -> None:
    directory = tmp_path / "plain"
    create(str(directory))
    headers = kernel_61.root + f"/usr/src/linux-headers-{kernel_61.version}"
    proc = command(["make", "-C", str(directory), f"KDIR={headers}"])
    assert proc.returncode == 0 and (directory / "plain.ko").exists()


def test_missing_headers_names_the_commands_that_fix_it(tmp_path: Path) -> None:
    create(str(tmp_path / "m"))
    proc = _lkm(["build", str(tmp_path / "m"), "--kernel", "9.9.9-nothing"])
    assert proc.returncode == 1
    assert proc.stderr == (
        "lkm build: no kernel headers for 9.9.9-nothing: run 'lkm kernel fetch 9.9.9-nothing' "
        "(a Debian kernel into lkm's cache) or 'lkm prepare --kernel 9.9.9-nothing' (installs "
        "linux-headers-9.9.9-nothing), or pass --kernel HEADERS_DIR\n"
    )
    proc = _lkm(["build", str(tmp_path / "m"), "--kernel", str(tmp_path)])
    assert proc.returncode == 1 and "not a kernel headers tree" in proc.stderr


def _path_without(tmp_path: Path, *missing: str) -> dict[str, str]:
    """A PATH holding the usual tools except ``missing``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin"):
        for name in os.listdir(directory):
            target = bin_dir / name
            if name not in missing and not target.exists():
                target.symlink_to(os.path.join(directory, name))
    return dict(os.environ, PATH=str(bin_dir))


def test_missing_compiler_names_the_package(kernel_612: KernelFixture, tmp_path: Path) -> None:
    create(str(tmp_path / "m"))
    env = _path_without(tmp_path, "x86_64-linux-gnu-gcc-12", "gcc-12")
    proc = _lkm(["build", str(tmp_path / "m"), "--kernel", kernel_612.version], env)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"lkm build: kernel {kernel_612.version} was built with ")
    assert proc.stderr.endswith(
        "'x86_64-linux-gnu-gcc-12' is not installed: install the Debian package gcc-12\n"
    )


def test_missing_pahole_names_dwarves(kernel_612: KernelFixture, tmp_path: Path) -> None:
    create(str(tmp_path / "m"))
    env = _path_without(tmp_path, "pahole")
    proc = _lkm(["build", str(tmp_path / "m"), "--kernel", kernel_612.version], env)
    assert proc.returncode == 1
    assert proc.stderr == (
        f"lkm build: kernel {kernel_612.version} generates BTF for modules and 'pahole' is "
        "not installed: install the Debian package dwarves\n"
    )


def test_unexported_symbol_is_named(kernel_61: KernelFixture, tmp_path: Path) -> None:
    directory = tmp_path / "uses_secret"
    create(str(directory))
    source = directory / "uses_secret.c"
    text = source.read_text().replace(
        'pr_info("Hello, world\\n");', 'pr_info("Hello, world\\n");\n\tlkm_no_such_function();'
    )
    source.write_text("void lkm_no_such_function(void);\n" + text)
    proc = _lkm(["build", str(directory), "--kernel", kernel_61.version])
    assert proc.returncode == 1
    assert 'ERROR: modpost: "lkm_no_such_function"' in proc.stdout  # kbuild's output streams
    assert proc.stderr == (
        f"lkm build: uses_secret.ko uses lkm_no_such_function, which kernel "
        f"{kernel_61.version} does not export to modules (a typo, a missing dependency "
        "module, or a GPL-only symbol in a non-GPL module)\n"
    )


def test_new_refuses_bad_names_and_existing_trees(tmp_path: Path) -> None:
    assert "module name is lower-case" in _lkm(["new", str(tmp_path / "Bad.Name")]).stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    proc = _lkm(["new", str(tmp_path / "full")])
    assert proc.returncode == 1 and "already exists" in proc.stderr
    assert _lkm(["new", str(tmp_path / "t"), "--template", "nope"]).returncode == 2
