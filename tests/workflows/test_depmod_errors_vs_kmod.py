"""depmod's diagnostics against kmod's: -e with -E/-F, dependency cycles
between modules built from source with the Debian 6.1 headers, bad
command lines and configuration."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
from conftest import command, kmod, lkm
from test_depmod_vs_kmod import tree_copy

from lkm.testing.debian_kernels import KernelFixture

LKM = str(Path(sys.executable).with_name("lkm"))


def _norm(data: bytes, root: Path) -> bytes:
    # kmod prints errno with %m after a parse error that set no errno: the
    # text is whatever an earlier call left ("Success" when nothing failed).
    data = re.sub(rb"(Invalid symbol version \S+): [^\n]*", rb"\1: ERRNO", data)
    return data.replace(str(root).encode(), b"ROOT")


def _same(args_kmod: list[str], args_lkm: list[str], kmod_root: Path, lkm_root: Path) -> None:
    want = kmod("depmod", args_kmod)
    got = lkm("depmod", [*args_lkm, "--no-cache"])
    norm = _norm
    assert got.status == want.status
    assert norm(got.stderr, lkm_root) == norm(want.stderr, kmod_root)
    # kmod 34's -n also prints modules.weakdep (Debian's kmod 30 has none).
    weakdep = b"# Weak dependencies extracted from modules themselves.\n"
    assert norm(got.stdout, lkm_root).replace(weakdep, b"") == norm(want.stdout, kmod_root)


@pytest.fixture(scope="module")
def trees(kernel_61: KernelFixture, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("errs")
    roots = (base / "kmod", base / "lkmx")
    for root in roots:
        tree_copy(kernel_61, root)
    return roots


def _symvers(kernel: KernelFixture) -> list[str]:
    return (kernel.headers / "Module.symvers").read_text().splitlines(keepends=True)


def test_errsyms_with_system_map(
    kernel_61: KernelFixture, trees: tuple[Path, Path], tmp_path: Path, report
) -> None:  # type: ignore[no-untyped-def]
    """A System.map made from the headers' Module.symvers, with symbols left
    out (unknown-symbol warnings) and a malformed line."""
    lines = [line.split("\t") for line in _symvers(kernel_61)]
    kept = [
        f"ffffffff81000000 r __ksymtab_{f[1]}\n"
        for i, f in enumerate(lines)
        if f[2] == "vmlinux" and i % 97
    ]
    system_map = tmp_path / "System.map"
    system_map.write_text("ffffffff81000000 T _text\nbadline\n" + "".join(kept))
    kr, lr = trees
    args = ["-n", "-e", "-F", str(system_map)]
    _same(
        [*args, "-b", str(kr), kernel_61.version], [*args, "-b", str(lr), kernel_61.version], kr, lr
    )
    in_process = lkm("depmod", [*args, "-b", str(lr), kernel_61.version, "--no-cache"])
    warnings = in_process.stderr.count(b"WARNING")
    assert warnings > 50
    # The console script ends the process at once after a run (os._exit,
    # see lkm.cli.keep_until_exit): every line must still be out by then.
    script = command(
        [LKM, "depmod", *args, "-b", str(lr), kernel_61.version, "--no-cache"],
    )
    assert (script.returncode, script.stdout, script.stderr) == (
        in_process.status,
        in_process.stdout,
        in_process.stderr,
    )
    report(f"depmod -e -F System.map on 6.1: {warnings} warnings identical to kmod's")


def test_errsyms_with_symvers(
    kernel_61: KernelFixture, trees: tuple[Path, Path], tmp_path: Path
) -> None:
    lines = _symvers(kernel_61)
    changed = []
    for i, line in enumerate(lines):
        fields = line.split("\t")
        if i % 211 == 0 and fields[2] == "vmlinux":
            fields[0] = "0xdeadbeef"  # CRC disagreements
        if i % 307 == 5:
            continue  # unknown symbols
        changed.append("\t".join(fields))
    changed.insert(3, "zz\tbroken\tvmlinux\tEXPORT_SYMBOL\t\n")
    symvers = tmp_path / "Module.symvers"
    symvers.write_text("".join(changed))
    kr, lr = trees
    args = ["-n", "-e", "-E", str(symvers)]
    _same(
        [*args, "-b", str(kr), kernel_61.version], [*args, "-b", str(lr), kernel_61.version], kr, lr
    )


def test_errsyms_needs_a_source_and_missing_files(
    kernel_61: KernelFixture, trees: tuple[Path, Path], tmp_path: Path
) -> None:
    kr, lr = trees
    v = kernel_61.version
    _same(["-n", "-e", "-b", str(kr), v], ["-n", "-e", "-b", str(lr), v], kr, lr)
    # A path under tmp_path: no test may depend on what the host has (a
    # CI machine had a directory at /nonexistent).
    missing = str(tmp_path / "nonexistent")
    for option in ("-E", "-F"):
        _same(
            ["-n", option, missing, "-b", str(kr), v],
            ["-n", option, missing, "-b", str(lr), v],
            kr,
            lr,
        )


@pytest.mark.parametrize("option", ["-E", "-F"])
def test_a_directory_as_symbol_source_reads_as_empty(
    kernel_61: KernelFixture, trees: tuple[Path, Path], tmp_path: Path, option: str
) -> None:
    """kmod opens -E/-F with fopen, which takes a directory; the first
    fgets fails (EISDIR) and ends the loop, so the kernel exports nothing
    and depmod goes on (status 0), -e warning about every kernel symbol."""
    kr, lr = trees
    v = kernel_61.version
    directory = tmp_path / "symbols"
    directory.mkdir()
    _same(
        ["-n", "-e", option, str(directory), "-b", str(kr), v],
        ["-n", "-e", option, str(directory), "-b", str(lr), v],
        kr,
        lr,
    )


@pytest.mark.parametrize(
    "args",
    [["notaversion"], ["-P", "ab"], ["--bogus"], ["-b"], ["-C", "/nonexistent", "-n", "1.0-x"]],
    ids=repr,
)
def test_bad_command_lines(args: list[str], tmp_path: Path) -> None:
    want, got = kmod("depmod", args), lkm("depmod", args)
    assert (got.status, got.stderr) == (want.status, want.stderr)


def _build(kernel: KernelFixture, directory: Path, sources: dict[str, str]) -> list[Path]:
    directory.mkdir(parents=True)
    for name, text in sources.items():
        (directory / f"{name}.c").write_text(
            "#include <linux/module.h>\n" + text + '\nMODULE_LICENSE("GPL");\n'
        )
    (directory / "Kbuild").write_text("obj-m := " + " ".join(f"{n}.o" for n in sources) + "\n")
    proc = command(
        ["make", "-C", str(kernel.headers), f"M={directory}", "modules"],
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return [directory / f"{name}.ko" for name in sources]


CYCLE_SOURCES = {
    "cyc_a": "int cyc_b(void); int cyc_a(void) { return cyc_b() + 1; } EXPORT_SYMBOL(cyc_a);",
    "cyc_b": "int cyc_c(void); int cyc_b(void) { return cyc_c() + 1; } EXPORT_SYMBOL(cyc_b);",
    "cyc_c": "int cyc_a(void); int cyc_c(void) { return cyc_a() + 1; } EXPORT_SYMBOL(cyc_c);",
    "pair_x": "int pair_y(void); int pair_x(void) { return pair_y(); } EXPORT_SYMBOL(pair_x);",
    "pair_y": "int pair_x(void); int pair_y(void) { return pair_x(); } EXPORT_SYMBOL(pair_y);",
    "user": "int cyc_a(void); static int __init u(void) { return cyc_a(); } module_init(u);",
}


def test_dependency_cycles(kernel_61: KernelFixture, tmp_path: Path, report) -> None:  # type: ignore[no-untyped-def]
    built = _build(kernel_61, tmp_path / "src", CYCLE_SOURCES)
    roots = []
    for name in ("kmod", "lkmx"):
        moddir = tmp_path / name / "lib" / "modules" / kernel_61.version
        (moddir / "extra").mkdir(parents=True)
        for module in built:
            shutil.copy(module, moddir / "extra")
        (moddir / "modules.order").write_text("".join(f"extra/{m.name}\n" for m in built))
        roots.append(tmp_path / name)
    kr, lr = roots
    _same(["-b", str(kr), kernel_61.version], ["-b", str(lr), kernel_61.version], kr, lr)
    result = lkm("depmod", ["-b", str(lr), kernel_61.version, "--no-cache"])
    assert result.status == 1 and b"Cycle detected" in result.stderr
    assert not (lr / "lib" / "modules" / kernel_61.version / "modules.dep").exists()
    cycles = result.stderr.count(b"Cycle detected")
    report(f"depmod cycle messages: {cycles} cycles identical to kmod's")
