"""The gdb side of ``lkm try --gdb`` without a VM: the commands written, the
sections read from a sysfs tree, the debug vmlinux found, the wait for go.
(tests/vm/test_gdb.py runs the whole thing with gdb in the real kernels.)"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from lkm.testing.debian_kernels import KernelFixture
from lkm.workflows.gdb import (
    GdbStub,
    LoadedModule,
    add_symbol_file,
    gdb_commands,
    kernel_debug_file,
    module_sections,
    stub_arguments,
    symbol_file,
    vm_commands,
    wait_for_go,
)

RELEASE = "0.0.0-lkm-test"  # a release no host has a debug package for


def test_add_symbol_file_gives_text_bare_and_leaves_out_the_loaders_copies() -> None:
    module = LoadedModule(
        "demo",
        "/src/demo/demo.ko",
        ((".bss", 0xFFFFFFFFC0004000), (".data", 0xFFFFFFFFC0003000), (".strtab", 0x10),
         (".symtab", 0x20), (".text", 0xFFFFFFFFC0001000), ("__param", 0xFFFFFFFFC0005000)),
    )  # fmt: skip
    assert add_symbol_file(module) == (
        "add-symbol-file /src/demo/demo.ko 0xffffffffc0001000 -s .bss 0xffffffffc0004000"
        " -s .data 0xffffffffc0003000 -s __param 0xffffffffc0005000"
    )


def test_add_symbol_file_quotes_paths_as_gdb_splits_them() -> None:
    module = LoadedModule("demo", '/my dir/a"b.ko', ((".text", 0x1000),))
    assert add_symbol_file(module) == 'add-symbol-file "/my dir/a\\"b.ko" 0x1000'


def test_no_text_section_means_only_s_options() -> None:
    module = LoadedModule("data_only", "/m.ko", ((".data", 0x2000),))
    assert add_symbol_file(module) == "add-symbol-file /m.ko -s .data 0x2000"


def test_module_sections_reads_sysfs_and_skips_hidden_addresses(tmp_path: Path) -> None:
    sections = tmp_path / "sys" / "module" / "demo" / "sections"
    sections.mkdir(parents=True)
    (sections / ".text").write_text("0xffffffffc0001000\n")
    (sections / ".data").write_text("0xffffffffc0003000\n")
    (sections / ".bss").write_text("0x0000000000000000\n")  # kptr_restrict's answer
    (sections / "broken").write_text("not hex\n")
    assert module_sections(str(sections.parent)) == [
        (".data", 0xFFFFFFFFC0003000),
        (".text", 0xFFFFFFFFC0001000),
    ]
    assert module_sections(str(tmp_path / "missing")) == []


def test_commands_attach_before_adding_symbols_and_define_lkm_go(
    kernel_61: KernelFixture, tmp_path: Path
) -> None:
    # An in-tree module of the 6.1 tree: uncompressed, section addresses all
    # zero (read in place), and stripped of its DWARF by Debian's packaging.
    path = next(p for p in kernel_61.modules() if p.name == "virtio_console.ko")
    module = LoadedModule("virtio_console", str(path), ((".text", 0xFFFFFFFFC0001000),))
    go = tmp_path / "my dir" / ".lkm-gdb.go"
    lines = gdb_commands(
        "target remote /s/gdb.sock", [module], None, RELEASE, str(tmp_path), str(go)
    )
    assert lines[1].startswith(f"# no vmlinux with symbols for {RELEASE} ")
    assert lines[2] == "target remote /s/gdb.sock"
    assert f"# {path} has no debug info: functions by name, no source lines" in lines
    assert f"add-symbol-file {path} 0xffffffffc0001000" in lines
    assert lines.index("target remote /s/gdb.sock") < lines.index("set confirm off")
    assert lines[lines.index("define lkm-go") + 1] == f"  shell touch '{go}'"
    assert os.listdir(tmp_path) == []  # no copy needed


def test_a_612_module_is_read_from_a_zeroed_copy(kernel_612: KernelFixture, tmp_path: Path) -> None:
    path = kernel_612.modules()[0]
    module = LoadedModule(path.name.split(".")[0], str(path), ((".text", 0x1000),))
    readable, notes = symbol_file(module, str(tmp_path))
    assert readable.path == str(tmp_path / f"{module.name}.ko")
    assert readable.sections == module.sections
    assert any("link addresses zeroed" in note for note in notes)
    assert Path(readable.path).read_bytes()[:4] == b"\x7fELF"  # decompressed too


def test_vmlinux_with_symbols_is_loaded_first(tmp_path: Path) -> None:
    (tmp_path / "boot").mkdir()
    image = tmp_path / "boot" / f"vmlinuz-{RELEASE}"
    image.write_bytes(b"")
    assert kernel_debug_file(RELEASE, str(image)) is None
    debug = tmp_path / "usr" / "lib" / "debug" / "boot" / f"vmlinux-{RELEASE}"
    debug.parent.mkdir(parents=True)
    debug.write_bytes(b"")
    assert kernel_debug_file(RELEASE, str(image)) == str(debug)
    lines = vm_commands("target remote /s", RELEASE, str(image))
    assert lines[1:3] == [f"file {debug}", "target remote /s"]
    assert "set confirm off" not in lines  # no module, nothing to confirm


def test_stub_listens_on_a_socket_of_its_own() -> None:
    with GdbStub() as stub:
        assert stub.qemu_args() == ["-gdb", f"unix:{stub.socket},server=on,wait=off"]
        assert stub.target == f"target remote {stub.socket}"
        assert os.path.isdir(stub.directory)
    assert not os.path.exists(stub.directory)
    assert stub_arguments("/a,b") == ["-gdb", "unix:/a,,b,server=on,wait=off"]


def test_go_file_or_a_line_says_go(tmp_path: Path) -> None:
    go = tmp_path / ".lkm-gdb.go"
    timer = threading.Timer(0.3, go.touch)
    timer.start()
    assert wait_for_go(str(go), poll=0.05) == str(go)
    assert not go.exists()  # taken: the next run waits again
    timer.join()
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"\n")
        assert wait_for_go(str(go), read_end, poll=0.05) == "the terminal"
    finally:
        os.close(read_end)
        os.close(write_end)
