"""modinfo's command line, errors, multi-call names and --json."""

from __future__ import annotations

import lzma
import os
import shutil
import sys
from pathlib import Path

import pytest
from conftest import command, json_of, kmod, lkm

from lkm.testing.debian_kernels import KernelFixture

LKM_SCRIPT = str(Path(sys.executable).with_name("lkm"))


def _module(kernel: KernelFixture, name: str) -> Path:
    return next(p for p in kernel.modules() if p.name.split(".ko")[0] == name)


@pytest.mark.parametrize(
    "args",
    [["--foo"], ["-z", "x"], ["-F"], ["--field"], ["--f", "x"], ["--author=x", "x"], [], ["-k"]],
    ids=repr,
)
def test_bad_command_lines_like_kmod(args: list[str]) -> None:
    assert lkm("modinfo", args) == kmod("modinfo", args)


def test_sample_with_short_field_options(kernel_61: KernelFixture, report) -> None:  # type: ignore[no-untyped-def]
    files = [str(p) for p in kernel_61.modules()[::10]]
    for option in ("-p", "-a", "-d", "-l", "-n", "-F name", "-F parmtype", "-0p", "-F nosuchfield"):
        args = [*option.split(), *files]
        assert lkm("modinfo", args) == kmod("modinfo", args), option
    report(f"modinfo -p -a -d -l -n -F … on 6.1: {len(files)} modules × 9 options")


def _one_error_line(result_stderr: bytes, path: str) -> None:
    lines = result_stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("modinfo: ERROR: ") and path in lines[0], lines


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("empty.ko", b"", "empty file"),
        ("short.ko", b"\x7fELF", "too short"),
        ("text.ko", b"hello world, not a module\n", "not an ELF file"),
        ("corrupt.ko.xz", b"\xfd7zXZ\x00" + b"\x00" * 64, "corrupt xz stream"),
        ("truncated.ko.zst", b"\x28\xb5\x2f\xfd" + b"\x00" * 8, "zstd stream"),
        ("truncated.ko.gz", b"\x1f\x8b\x08\x00" + b"\x00" * 8, "gzip stream"),
    ],
)
def test_bad_files_give_one_line(tmp_path: Path, name: str, content: bytes, problem: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    got = lkm("modinfo", [str(path)])
    assert got.status == 1 and got.stdout == b""
    _one_error_line(got.stderr, str(path))
    assert problem in got.stderr.decode()
    if not name.endswith(".gz"):  # Debian's kmod 30 has no zlib
        assert kmod("modinfo", [str(path)]).status == got.status


def test_truncated_and_damaged_elf(kernel_61: KernelFixture, tmp_path: Path) -> None:
    data = _module(kernel_61, "loop").read_bytes()
    cases = {
        "cut.ko": data[: len(data) // 2],
        "header.ko": data[:40],
        "shnum.ko": data[:60] + b"\xff\xff" + data[62:],
        "shstrndx.ko": data[:62] + b"\xff\x7f" + data[64:],
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        got, want = lkm("modinfo", [str(path)]), kmod("modinfo", [str(path)])
        assert got.status == 1, name
        # kmod 30 fails too, but on a section name index past the table it
        # dies on an assertion (libkmod-elf.c elf_get_section_header).
        assert want.status == (-6 if name == "shstrndx.ko" else 1), (name, want)
        _one_error_line(got.stderr, str(path))


def test_truncated_xz_module(kernel_612: KernelFixture, tmp_path: Path) -> None:
    data = _module(kernel_612, "loop").read_bytes()
    path = tmp_path / "loop.ko.xz"
    path.write_bytes(data[: len(data) - 100])
    got = lkm("modinfo", [str(path)])
    assert got.status == 1 and got.stdout == b""
    _one_error_line(got.stderr, str(path))


def test_compression_found_by_magic_not_extension(
    kernel_612: KernelFixture, tmp_path: Path
) -> None:
    src = _module(kernel_612, "loop")
    plain = tmp_path / "loop.ko"
    plain.write_bytes(src.read_bytes())  # xz bytes under a .ko name
    assert lkm("modinfo", [str(plain)]) == kmod("modinfo", [str(plain)])
    unpacked = tmp_path / "x" / "loop.ko.xz"
    unpacked.parent.mkdir()
    unpacked.write_bytes(lzma.decompress(src.read_bytes()))  # raw ELF under .xz
    assert lkm("modinfo", [str(unpacked)]) == kmod("modinfo", [str(unpacked)])


def test_missing_file_and_unknown_name(kernel_61: KernelFixture) -> None:
    base = ["-b", kernel_61.indexed_root, "-k", kernel_61.version]
    for args in (["/nonexistent/x.ko"], [*base, "no_such_module"], [*base, "-m", "nope"]):
        got, want = lkm("modinfo", args), kmod("modinfo", args)
        assert got == want, args
        assert got.status == 1 and len(got.stderr.splitlines()) == 1


def test_bad_index_names_the_file(kernel_61: KernelFixture, tmp_path: Path) -> None:
    moddir = tmp_path / "lib" / "modules" / kernel_61.version
    moddir.mkdir(parents=True)
    index = moddir / "modules.dep.bin"
    good = (kernel_61.indexed_moddir / "modules.dep.bin").read_bytes()
    for damaged in (b"garbage!" * 4, good[:5000]):
        index.write_bytes(damaged)
        got = lkm("modinfo", ["-b", str(tmp_path), "-k", kernel_61.version, "-m", "loop", "zram"])
        assert got.status == 1 and got.stdout == b""
        for line in got.stderr.decode().splitlines():
            assert line.startswith("modinfo: ERROR: ") and str(index) in line


def test_multicall_link_and_lkm_subcommand(kernel_61: KernelFixture, tmp_path: Path) -> None:
    module = str(_module(kernel_61, "loop"))
    want = kmod("modinfo", [module])
    link = tmp_path / "modinfo"
    link.symlink_to(LKM_SCRIPT)
    for cmd in (
        [str(link), module],
        [LKM_SCRIPT, "modinfo", module],
        [sys.executable, "-m", "lkm", "modinfo", module],
    ):
        proc = command(cmd)
        assert (proc.stdout, proc.stderr, proc.returncode) == (
            want.stdout,
            want.stderr,
            want.status,
        ), cmd


def test_modprobe_link_behaves_as_modprobe(tmp_path: Path) -> None:
    link = tmp_path / "modprobe"
    link.symlink_to(LKM_SCRIPT)
    proc = command([str(link), "-d", str(tmp_path), "loop"], text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("modprobe: FATAL: Module loop not found in directory ")


def test_help_and_version() -> None:
    assert lkm("modinfo", ["-h"]).stdout.startswith(b"Usage:\n\tmodinfo [options]")
    version = lkm("modinfo", ["-V"])
    assert version.status == 0 and version.stdout.startswith(b"lkm version ")
    assert lkm("lkm", ["--help"]).status == 0
    assert lkm("lkm", ["nosuchcommand"]).status == 1


def test_json(kernel_61: KernelFixture) -> None:
    module = str(_module(kernel_61, "loop"))
    data = json_of("modinfo", lkm("modinfo", ["--json", module]).stdout)
    (item,) = data
    assert item["module"] == "loop" and item["path"] == module and not item["builtin"]
    keys = [entry["key"] for entry in item["fields"]]
    assert keys[:3] == ["alias", "alias", "alias"] and "vermagic" in keys
    params = {p["name"]: p for p in item["parameters"]}
    assert params["max_part"]["type"] == "int" and params["max_part"]["description"]
    assert params["max_loop"]["type"] is None  # loop declares max_loop without parmtype
    assert item["signature"]["signer"] == "Build time autogenerated kernel key"
    assert item["signature"]["hash_algorithm"] == "sha256"
    vermagic = lkm("modinfo", ["-F", "vermagic", module]).stdout.decode().removesuffix("\n")
    assert [e["value"] for e in item["fields"] if e["key"] == "vermagic"] == [vermagic]
    builtin = json_of(
        "modinfo",
        lkm(
            "modinfo",
            ["--json", "-b", kernel_61.indexed_root, "-k", kernel_61.version, "-m", "zbud"],
        ).stdout,
    )
    assert builtin[0]["builtin"] and builtin[0]["path"] is None


def test_workers_keep_output_order(
    kernel_61: KernelFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [str(p) for p in kernel_61.modules()[:600]] + ["/nonexistent.ko"]
    split = lkm("modinfo", files)
    monkeypatch.setenv("LKM_JOBS", "1")
    assert lkm("modinfo", files) == split
    assert split.status == 1 and split.stderr.count(b"\n") == 1


def _modules_after(imports: str) -> list[str]:
    code = f"import sys, {imports}; print(' '.join(sorted(sys.modules)))"
    return command([sys.executable, "-c", code], text=True, check=True).stdout.split()


def test_cli_start_does_not_import_unneeded_modules() -> None:
    loaded = _modules_after("lkm.cli, lkm.cli.modinfo")
    for heavy in (
        "typing",
        "json",
        "lkm.testing.debian_kernels",
        "zstandard",
        "getopt",
        "platform",
        # issue 20: pickle (and re through it) only for split_map callers
        # without a codec; contextlib and importlib not at all.
        "pickle",
        "re",
        "contextlib",
        "importlib",
    ):
        assert heavy not in loaded, heavy


def test_modprobe_start_imports_only_what_it_needs() -> None:
    # modprobe -D's start-up (issue 20): no ELF reader, enum or re to look
    # a name up in the indexes and print its load list.
    loaded = _modules_after("lkm.cli, lkm.cli.modprobe, lkm.workflows.modprobe, lkm.system.kernel")
    heavies = ("typing", "re", "enum", "collections", "functools", "pickle", "contextlib",
               "importlib", "lkm.formats.elf", "lkm.formats.module_file")  # fmt: skip
    for heavy in heavies:
        assert heavy not in loaded, heavy
    assert shutil.which("true") and os.path.exists(LKM_SCRIPT)
    # ... nor does the installed lkm command itself (pip's console scripts
    # import re): what one whole call imports, as Python reports it
    timed = command([sys.executable, "-X", "importtime", LKM_SCRIPT, "modprobe", "-V"], text=True)
    assert timed.returncode == 0 and timed.stdout.startswith("lkm version"), timed.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in timed.stderr.splitlines() if "|" in line}
    assert "lkm.cli.modprobe" in imported
    assert not imported & set(heavies), imported & set(heavies)
