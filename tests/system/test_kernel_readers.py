"""The kernel backend's readers and lsmod/rmmod logic on a /proc and /sys
tree built under tmp_path (the system calls are proven in tests/vm)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from lkm.system.kernel import KernelModules, insert_error_text
from lkm.workflows.live import RemovalRefused, check_removable, loaded_modules, tree_lines
from lkm.workflows.live import lsmod_table as table

PROC_MODULES = """\
8021q 45056 0 - Live 0xffffffffc0500000
garp 16384 1 8021q, Live 0xffffffffc04f0000
mrp 20480 1 8021q, Live 0xffffffffc04e0000
stp 16384 1 garp, Live 0xffffffffc04d0000
llc 16384 2 garp,stp, Live 0xffffffffc04c0000 (OE)
loop 32768 0 - Live 0xffffffffc04b0000
"""
HOLDERS = {"garp": ["8021q"], "mrp": ["8021q"], "stp": ["garp"], "llc": ["stp", "garp"]}


def kernel_tree(root: Path) -> KernelModules:
    proc, sys = root / "proc", root / "sys"
    proc.mkdir()
    (proc / "modules").write_text(PROC_MODULES)
    (proc / "kallsyms").write_text(
        "ffffffff81000000 T _stext\nffffffffc04b0010 t lo_open\t[loop]\n"
    )
    for line in PROC_MODULES.splitlines():
        name, size, refcnt = line.split()[:3]
        module = sys / "module" / name
        (module / "holders").mkdir(parents=True)
        (module / "parameters").mkdir()
        (module / "initstate").write_text("live\n")
        (module / "refcnt").write_text(f"{refcnt}\n")
        (module / "coresize").write_text(f"{int(size) + 1}\n")
        for holder in HOLDERS.get(name, []):
            (module / "holders" / holder).symlink_to(f"../../{holder}")
    (sys / "module" / "loop" / "parameters" / "max_loop").write_text("4\n")
    (sys / "module" / "loop" / "taint").write_text("\n")
    builtin = sys / "module" / "printk" / "parameters"  # built in: no initstate
    builtin.mkdir(parents=True)
    return KernelModules(str(proc), str(sys))


def test_proc_modules_fields(tmp_path: Path) -> None:
    kernel = kernel_tree(tmp_path)
    entries = kernel.proc_modules()
    assert [e.name for e in entries] == ["8021q", "garp", "mrp", "stp", "llc", "loop"]
    llc = entries[4]
    assert (llc.size, llc.refcount, llc.used_by, llc.state, llc.taints) == (
        16384, 2, ("garp", "stp"), "Live", "(OE)",
    )  # fmt: skip
    assert kernel.parameters("loop") == {"max_loop": "4"}
    assert kernel.initstate("loop") == "live" and kernel.initstate("printk") == "coming"
    assert kernel.initstate("absent") is None and kernel.refcnt("absent") is None
    assert sorted(kernel.holders("llc") or []) == ["garp", "stp"]
    assert kernel.holders("absent") is None
    assert kernel.compression() is None
    assert list(kernel.kallsyms())[1] == "ffffffffc04b0010 t lo_open\t[loop]"


def test_lsmod_table_uses_sysfs_sizes_and_holders(tmp_path: Path) -> None:
    modules = loaded_modules(kernel_tree(tmp_path))
    lines = table(modules).splitlines()
    assert lines[0] == "Module                  Size  Used by"
    assert lines[1] == f"{'8021q':<19} {45057:>8}  0"
    llc = next(line for line in lines if line.startswith("llc"))
    assert llc.split()[:3] == ["llc", "16385", "2"] and llc.split()[3] in ("stp,garp", "garp,stp")


def test_tree_puts_unheld_modules_on_top(tmp_path: Path) -> None:
    lines = tree_lines(loaded_modules(kernel_tree(tmp_path)))
    assert lines[0] == "8021q" and "loop" in lines
    assert any(line.endswith("── garp") for line in lines)
    assert any(line.endswith("── llc") for line in lines)
    top = [line for line in lines if not line.startswith((" ", "│", "├", "└"))]
    assert top == ["8021q", "loop"]


@pytest.mark.parametrize(
    ("name", "builtin", "message"),
    [
        ("llc", False, "Module llc is in use by: "),
        ("printk", True, "Module printk is builtin."),
        ("absent", False, "Module absent is not currently loaded"),
        ("garp", False, "Module garp is in use by: 8021q"),
    ],
)
def test_rmmod_refusals(tmp_path: Path, name: str, builtin: bool, message: str) -> None:
    with pytest.raises(RemovalRefused) as refused:
        check_removable(kernel_tree(tmp_path), name, builtin)
    assert refused.value.lines[0].startswith(message)


def test_rmmod_refcount_and_missing_files(tmp_path: Path) -> None:
    kernel = kernel_tree(tmp_path)
    assert check_removable(kernel, "loop", False) == []
    (Path(kernel.sys) / "module" / "loop" / "refcnt").write_text("1\n")
    with pytest.raises(RemovalRefused, match=r"Module loop is in use$"):
        check_removable(kernel, "loop", False)
    (Path(kernel.sys) / "module" / "loop" / "refcnt").unlink()
    with pytest.raises(RemovalRefused, match="Module unloading is not supported"):
        check_removable(kernel, "loop", False)
    (Path(kernel.sys) / "module" / "8021q" / "holders").rmdir()
    assert check_removable(kernel, "8021q", False) == [
        f"could not open '{kernel.sys}/module/8021q/holders': No such file or directory"
    ]


def test_error_wording_is_kmods() -> None:
    assert insert_error_text(errno.ENOEXEC) == "Invalid module format"
    assert insert_error_text(errno.ENOENT) == "Unknown symbol in module"
    assert insert_error_text(errno.EEXIST) == "File exists"
    assert insert_error_text(errno.EKEYREJECTED) == "Key was rejected by service"
    assert insert_error_text(errno.EEXIST, "modprobe") == "Module already in kernel"
    assert insert_error_text(errno.ENOENT, "modprobe").endswith("(see dmesg)")
