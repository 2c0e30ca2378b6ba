"""``lkm install`` / ``lkm uninstall`` on real Debian 6.1 and 6.12 module trees.

Modules are built with ``lkm new`` + ``lkm build`` against each fixture's
headers: ``lkmhello`` (the hello template), ``dummy`` (named like an
in-tree module, for shadowing) and ``kernel-module-example`` (a file name
with dashes; module name ``kernel_module_example``). Installs go into
``--root`` copies of the fixture trees: hard-linked copies of the whole
tree where the result is compared with kmod's ``depmod -b`` byte for byte,
small copies (a few real modules, indexed by kmod) elsewhere.

What kbuild would do is read from the fixture's own kbuild files here too
(INSTALL_MOD_DIR's default) and from its tree (the compression), never
written down per kernel.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import INDEX_BINARY_FILES, INDEX_TEXT_FILES, Result, command, kmod

from lkm.cli import main as lkm_main
from lkm.formats.compression import Compression
from lkm.testing.debian_kernels import KernelFixture
from lkm.workflows.install import default_install_dir
from lkm.workflows.scaffold import create

LKM = str(Path(sys.executable).with_name("lkm"))
Report = Callable[[str], None]
TEXT, BINARY = INDEX_TEXT_FILES, INDEX_BINARY_FILES
EXTRA_SOURCES = {
    "dummy": "dummy_lkm",
    "kernel-module-example": "kernel_module_example",
}
SOURCE = """\
// SPDX-License-Identifier: GPL-2.0
#include <linux/init.h>
#include <linux/module.h>
#include <linux/printk.h>

static int __init @FN@_init(void)
{
	pr_info("@NAME@ loaded\\n");
	return 0;
}

static void __exit @FN@_exit(void)
{
	pr_info("@NAME@ unloaded\\n");
}

module_init(@FN@_init);
module_exit(@FN@_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("lkm install test module @NAME@");
"""
# Real modules of each tree copied into the small trees: dummy (shadowed
# by ours) and a few others (loop and a module with dependencies).
SMALL_TREE = ("dummy", "loop", "ifb", "llc", "stp")


def lkm(*args: str) -> Result:
    """``lkm COMMAND ARGS…`` in-process."""
    out, err = io.BytesIO(), io.BytesIO()
    status = lkm_main(["lkm", *args], out, err)
    return Result(out.getvalue(), err.getvalue(), status)


def text(result: Result) -> tuple[int, str, str]:
    return result.status, result.stdout.decode(), result.stderr.decode()


# -- fixtures --------------------------------------------------------------------


def build_modules(kernel: KernelFixture, directory: Path) -> dict[str, Path]:
    """lkmhello (``lkm new``), dummy and kernel-module-example, built by
    ``lkm build`` in one kbuild run; module name -> .ko file."""
    create(str(directory), "hello")
    kbuild = (directory / "Kbuild").read_text().rstrip("\n")
    for name, function in EXTRA_SOURCES.items():
        source = SOURCE.replace("@FN@", function).replace("@NAME@", name)
        (directory / f"{name}.c").write_text(source)
        kbuild += f" {name}.o"
    (directory / "Kbuild").write_text(kbuild + "\n")
    built = command([LKM, "build", str(directory), "--kernel", kernel.version, "-j2"], text=True)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr
    files = {
        "lkmhello": directory / "lkmhello.ko",
        "dummy": directory / "dummy.ko",
        "kernel_module_example": directory / "kernel-module-example.ko",
    }
    assert all(path.is_file() for path in files.values()), sorted(directory.iterdir())
    return files


@pytest.fixture(scope="module")
def built(
    kernels: list[KernelFixture], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Path]]:
    """Each kernel's label -> its built modules."""
    return {
        kernel.label: build_modules(
            kernel, tmp_path_factory.mktemp(f"src-{kernel.label}") / "lkmhello"
        )
        for kernel in kernels
        if kernel.label in ("6.1", "6.12")
    }


@pytest.fixture(params=["6.1", "6.12"])
def kernel(request: pytest.FixtureRequest, kernels: list[KernelFixture]) -> KernelFixture:
    return next(k for k in kernels if k.label == request.param)


def small_tree(kernel: KernelFixture, root: Path, names: tuple[str, ...] = SMALL_TREE) -> Path:
    """``root/lib/modules/V`` holding a few of the kernel's modules (copies,
    not links: the fixture's inodes stay untouched), its built-in lists and
    modules.order, indexed by kmod's depmod."""
    moddir = root / "lib" / "modules" / kernel.version
    wanted = set(names)
    for path in kernel.modules():
        if path.name.split(".", 1)[0] in wanted:
            target = moddir / path.relative_to(kernel.moddir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        shutil.copyfile(kernel.moddir / name, moddir / name)
    indexed = kmod("depmod", ["-b", str(root), kernel.version])
    assert indexed.status == 0, indexed.stderr
    return moddir


def full_tree(kernel: KernelFixture, root: Path) -> Path:
    """A hard-linked copy of the kernel's tree as kmod's depmod indexed it."""
    moddir = root / "lib" / "modules" / kernel.version
    moddir.parent.mkdir(parents=True)
    command(["cp", "-al", str(kernel.indexed_moddir), str(moddir)], check=True)
    return moddir


def snapshot(moddir: Path) -> dict[str, tuple[object, ...]]:
    """Every entry of the tree: kind, inode, size, mtime, and the bytes of
    each file at the top (the indexes). A directory's size and times
    follow the names made and removed in it, so only its inode counts."""
    entries: dict[str, tuple[object, ...]] = {}
    for directory, subdirs, files in os.walk(moddir):
        for name in sorted(subdirs + files):
            path = Path(directory) / name
            st = path.lstat()
            relative = str(path.relative_to(moddir))
            content = path.read_bytes() if Path(directory) == moddir and path.is_file() else b""
            entries[relative] = (stat.S_IFMT(st.st_mode), st.st_ino)
            if not path.is_dir():
                entries[relative] += (st.st_size, st.st_mtime_ns, content)
    return entries


def kbuild_install_dir(kernel: KernelFixture) -> str:
    """INSTALL_MOD_DIR's default for external modules, read here on its
    own from the kernel's scripts/Makefile.modinst."""
    common = next(Path(kernel.root, "usr", "src").glob("linux-headers-*-common"))
    found = re.findall(
        r"^INSTALL_MOD_DIR \?= (\S+)$", (common / "scripts/Makefile.modinst").read_text(), re.M
    )
    assert len(found) == 1, found
    return str(found[0])


def tree_suffix(kernel: KernelFixture) -> str:
    """The suffix the kernel's own modules have (".ko" or ".ko.xz")."""
    suffixes = {
        re.sub(r"^[^.]*", "", path.name) for path in (kernel.moddir / "kernel").rglob("*.ko*")
    }
    assert len(suffixes) == 1, suffixes
    return suffixes.pop()


def modinfo_path(root: Path, kernel: KernelFixture, name: str) -> str:
    found = kmod("modinfo", ["-b", str(root), "-k", kernel.version, "-n", name])
    return found.stdout.decode().strip() if found.status == 0 else ""


# -- installing into the whole tree, against kmod's depmod ----------------------


def test_install_and_uninstall_index_as_kmods_depmod(
    kernel: KernelFixture, built: dict[str, dict[str, Path]], tmp_path: Path, report: Report
) -> None:
    # Both copies first: a hard link made later changes the shared inodes'
    # ctime, which depmod's cache (rightly) takes for a change.
    ours, theirs = full_tree(kernel, tmp_path / "ours"), full_tree(kernel, tmp_path / "theirs")
    module = built[kernel.label]["lkmhello"]
    directory, suffix = kbuild_install_dir(kernel), tree_suffix(kernel)
    target = ours / directory / f"lkmhello{suffix}"
    cache = str(tmp_path / "cache")
    layout = ["--index-layout", "post-order", "--cache-dir", cache]  # kmod 30's layout

    status, out, err = text(lkm("install", str(module), "--root", str(tmp_path / "ours"), *layout))
    assert (status, err) == (0, ""), err
    assert out == f"{module} -> {target}\nindexed {ours}\n"
    installed = target.read_bytes()
    if suffix == ".ko":
        assert installed == module.read_bytes()
    else:  # the bytes kbuild's own command makes, which the kernel's decompressor takes
        assert command(["xz", "--test", str(target)]).returncode == 0
        kbuild_xz = command(["xz", "--check=crc32", "--lzma2=dict=1MiB", "-c", str(module)])
        assert installed == kbuild_xz.stdout
        assert command(["xz", "-dc", str(target)]).stdout == module.read_bytes()

    (theirs / directory).mkdir()
    (theirs / directory / target.name).write_bytes(installed)
    assert kmod("depmod", ["-b", str(tmp_path / "theirs"), kernel.version]).status == 0
    for name in TEXT + BINARY:
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name
    modules = len((ours / "modules.dep").read_text().splitlines())
    assert f"{directory}/lkmhello{suffix}:" in (ours / "modules.dep").read_text()
    # modinfo through lkm's index, by both tools: the installed file.
    args = ["-b", str(tmp_path / "ours"), "-k", kernel.version, "lkmhello"]
    theirs_modinfo = kmod("modinfo", args)
    assert theirs_modinfo.stdout.startswith(f"filename:       {target}\n".encode())
    assert lkm("modinfo", *args).stdout == theirs_modinfo.stdout

    status, out, err = text(
        lkm(
            "uninstall", "lkmhello", "--root", str(tmp_path / "ours"), "-k", kernel.version, *layout
        )
    )
    assert (status, out, err) == (0, f"removed {target}\nindexed {ours}\n", "")
    assert not (ours / directory).exists()  # the directory the install made
    for name in TEXT + BINARY:  # back to kmod's indexes of the fixture tree
        assert (ours / name).read_bytes() == (kernel.indexed_moddir / name).read_bytes(), name
    files = len(TEXT + BINARY)
    report(
        f"install on {kernel.label}: {files} index files byte-identical to kmod's depmod "
        f"({modules} modules) after install, {files} after uninstall; {target.name} in {directory}/"
    )


# -- signing, compression -------------------------------------------------------


def test_signed_module_shows_its_signer(
    kernel: KernelFixture, built: dict[str, dict[str, Path]], tmp_path: Path, report: Report
) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    made = lkm("keygen", "--key", str(key), "--cert", str(cert), "--cn", "lkm install test")
    assert made.status == 0, made.stderr
    moddir = small_tree(kernel, tmp_path / "root")
    module = built[kernel.label]["lkmhello"]
    args = ["--root", str(tmp_path / "root"), "--key", str(key), "--cert", str(cert)]
    status, out, err = text(lkm("install", str(module), *args, "--cache-dir", str(tmp_path / "c")))
    target = moddir / kbuild_install_dir(kernel) / f"lkmhello{tree_suffix(kernel)}"
    assert (status, out, err) == (0, f"{module} -> {target} (signed)\nindexed {moddir}\n", "")
    # Signed before compressing, as kbuild does: the module inside is what
    # lkm sign (sign-file's bytes) makes of the built file.
    signed = tmp_path / "signed.ko"
    assert (
        lkm("sign", str(module), "--key", str(key), "--cert", str(cert), "-o", str(signed)).status
        == 0
    )
    inside = target.read_bytes()
    if target.name.endswith(".xz"):
        inside = command(["xz", "-dc", str(target)], check=True).stdout
    assert inside == signed.read_bytes()
    args = ["-b", str(tmp_path / "root"), "-k", kernel.version, "lkmhello"]
    theirs = kmod("modinfo", args)
    assert b"\nsigner:         lkm install test\n" in theirs.stdout
    assert b"\nsig_hashalgo:   sha256\n" in theirs.stdout
    assert lkm("modinfo", *args).stdout == theirs.stdout
    report(f"install --key on {kernel.label}: kmod's modinfo names the signer of {target.name}")


@pytest.mark.parametrize(("kind", "tester"), [("zst", "zstd"), ("gz", "gzip")])
def test_tree_compressed_otherwise_gets_the_same_compression(
    kernel_61: KernelFixture,
    built: dict[str, dict[str, Path]],
    tmp_path: Path,
    kind: str,
    tester: str,
) -> None:
    """A tree whose modules are .ko.zst or .ko.gz (the fixture's recompressed
    copies) gets its new module compressed alike."""
    moddir = tmp_path / "root" / "lib" / "modules" / kernel_61.version
    (moddir / "kernel").mkdir(parents=True)
    copies = sorted(Path(kernel_61.recompressed, kind).iterdir())[:20]
    for path in copies:
        shutil.copyfile(path, moddir / "kernel" / path.name)
    module = built["6.1"]["lkmhello"]
    result = lkm("install", str(module), "--root", str(tmp_path / "root"), "--no-cache")
    assert result.status == 0, result.stderr
    target = moddir / kbuild_install_dir(kernel_61) / f"lkmhello.ko.{kind}"
    assert result.stdout.decode().startswith(f"{module} -> {target}\n")
    assert command([tester, "--test", str(target)]).returncode == 0
    assert command([tester, "-dc", str(target)]).stdout == module.read_bytes()
    args = ["-b", str(tmp_path / "root"), "-k", kernel_61.version, "-n", "lkmhello"]
    assert lkm("modinfo", *args).stdout == f"{target}\n".encode()


# -- failures leave the tree as it was ------------------------------------------


def test_a_depmod_failure_rolls_the_install_back(
    kernel: KernelFixture, built: dict[str, dict[str, Path]], tmp_path: Path
) -> None:
    moddir = small_tree(kernel, tmp_path / "root")
    # An index depmod cannot replace, written after modules.dep: by then
    # the module is in place and modules.dep rewritten, and both go back.
    (moddir / "modules.dep.bin").unlink()
    (moddir / "modules.dep.bin").mkdir()
    before = snapshot(moddir)
    module = built[kernel.label]["lkmhello"]
    status, out, err = text(
        lkm("install", str(module), "--root", str(tmp_path / "root"), "--no-cache")
    )
    assert (status, out) == (1, "")
    assert err == (
        f"lkm install: depmod: could not write {moddir}/modules.dep.bin: Is a directory; "
        "the tree is as it was\n"
    )
    assert snapshot(moddir) == before


def test_a_failing_second_module_rolls_back_the_first(
    kernel: KernelFixture, built: dict[str, dict[str, Path]], tmp_path: Path
) -> None:
    moddir = small_tree(kernel, tmp_path / "root")
    modules = built[kernel.label]
    root = ["--root", str(tmp_path / "root"), "--cache-dir", str(tmp_path / "cache")]
    assert lkm("install", str(modules["lkmhello"]), *root).status == 0
    # The second module's place is taken by a directory; the first module
    # replaces its installed copy, which must come back as it was (its inode).
    blocked = moddir / kbuild_install_dir(kernel) / f"kernel-module-example{tree_suffix(kernel)}"
    blocked.mkdir()
    before = snapshot(moddir)
    pair = [str(modules["lkmhello"]), str(modules["kernel_module_example"])]
    status, out, err = text(lkm("install", *pair, *root))
    assert (status, out) == (1, "")
    assert err == f"lkm install: {blocked}: Is a directory; the tree is as it was\n"
    assert snapshot(moddir) == before


def _as_nobody(argv: list[str]) -> list[str]:
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv]


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A temporary directory others can read (pytest's are the owner's
    only), so that a step can run as nobody."""
    base = Path(tempfile.mkdtemp(prefix="lkm-install-test-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base)


def test_errors_are_one_line_and_change_nothing(
    kernel_61: KernelFixture,
    kernel_612: KernelFixture,
    built: dict[str, dict[str, Path]],
    public_tmp: Path,
    report: Report,
) -> None:
    base = public_tmp
    moddir = small_tree(kernel_61, base / "root")
    ours, other = built["6.1"]["lkmhello"], built["6.12"]["lkmhello"]
    broken = base / "broken.ko"
    broken.write_bytes(ours.read_bytes()[:2000])
    not_elf = base / "notes.ko"
    not_elf.write_text("not a module\n")
    bad_key = base / "bad.pem"
    bad_key.write_text("nothing here\n")
    crafted = base / "crafted.ko"  # its vermagic's release made a path
    v = kernel_61.version.encode()
    crafted.write_bytes(ours.read_bytes().replace(b"vermagic=" + v, b"vermagic=" + b"/" * len(v)))
    readable = base / "lkmhello.ko"
    shutil.copyfile(ours, readable)
    readable.chmod(0o644)
    empty = base / "empty"
    empty.mkdir()
    root = ["--root", str(base / "root"), "--no-cache"]
    v61, v612 = kernel_61.version, kernel_612.version
    cases: list[tuple[list[str], str]] = [
        (
            [str(other), *root, "--kernel", v61],
            f"{other}: built for kernel {v612}, not {v61} (rebuild it: lkm build --kernel {v61})",
        ),
        (
            [str(ours), str(other), *root],
            f"the modules were built for different kernels ({ours} for {v61}, {other} for "
            f"{v612}): install each kernel's modules with its own lkm install",
        ),
        ([str(broken), *root], f"{broken}: "),
        ([str(not_elf), *root], f"{not_elf}: "),
        (
            [str(ours), "--root", str(empty)],
            f"{empty}/lib/modules/{v61}: no module tree for kernel {v61} under {empty}",
        ),
        (
            [str(ours), *root, "--key", str(bad_key), "--cert", str(bad_key)],
            f"{bad_key}: no PEM private key in the file",
        ),
        ([str(empty), *root], f"{empty}: no built modules (*.ko) in the directory"),
        ([str(ours), *root, "--dir", "kernel/extra"], "--dir kernel/extra: kernel/ holds"),
        ([str(base / "absent.ko"), *root], f"{base}/absent.ko: No such file or directory"),
        ([str(ours), str(readable), *root], f"{readable}: module lkmhello is given twice"),
        ([str(crafted), *root], f"{crafted}: its vermagic names no kernel release"),
        ([str(ours), *root, "--kernel", "../.."], "../..: not a kernel release"),
    ]
    before = snapshot(moddir)
    for args, expected in cases:
        status, out, err = text(lkm("install", *args))
        assert (status, out) == (1, ""), (args, err)
        assert err.startswith(f"lkm install: {expected}") and err.count("\n") == 1, (args, err)
        assert snapshot(moddir) == before, args
    # A tree its user cannot write.
    as_nobody = _as_nobody([LKM, "install", str(readable), *root, "--dir", "updates"])
    unwritable = command(as_nobody, text=True)
    target_dir = moddir / "updates"
    assert (unwritable.returncode, unwritable.stdout) == (1, "")
    assert unwritable.stderr == (
        f"lkm install: {target_dir}: Permission denied; the tree is as it was\n"
    )
    assert snapshot(moddir) == before
    # --key without --cert is a usage error.
    assert lkm("install", str(ours), *root, "--key", str(bad_key)).status == 2
    # Uninstall: a name nobody installed, and one only the kernel has.
    for name, expected in (
        ("nosuch", f"nosuch: not installed in {moddir}\n"),
        (
            "dummy",
            f"dummy: not installed in {moddir}: only the kernel's own "
            "kernel/drivers/net/dummy.ko, which lkm uninstall never removes\n",
        ),
    ):
        result = text(lkm("uninstall", name, *root, "--kernel", v61))
        assert result == (1, "", f"lkm uninstall: {expected}")
    assert snapshot(moddir) == before
    report(f"install/uninstall errors: {len(cases) + 4} cases, one line each, tree unchanged")


# -- what the index makes of the names -------------------------------------------


def test_shadowing_is_what_the_index_says(
    kernel: KernelFixture, built: dict[str, dict[str, Path]], tmp_path: Path
) -> None:
    moddir = small_tree(kernel, tmp_path / "root")
    root = tmp_path / "root"
    in_tree = f"kernel/drivers/net/dummy{tree_suffix(kernel)}"
    args = ["--root", str(root), "--cache-dir", str(tmp_path / "cache")]
    module = built[kernel.label]["dummy"]
    directory = kbuild_install_dir(kernel)
    status, out, _ = text(lkm("install", str(module), *args))
    assert status == 0
    installed = f"{moddir}/{directory}/dummy{tree_suffix(kernel)}"
    # kmod's modinfo reads the index lkm wrote: the message says what it finds.
    if modinfo_path(root, kernel, "dummy") == installed:
        assert f"  dummy shadows {in_tree}: modprobe dummy loads the installed module\n" in out
    else:
        assert modinfo_path(root, kernel, "dummy") == f"{moddir}/{in_tree}"
        assert f"  dummy is shadowed by {in_tree}: modprobe dummy loads that one" in out
    # updates/ is searched first: there the module shadows the kernel's.
    status, out, _ = text(lkm("install", str(module), *args, "--dir", "updates"))
    installed_updates = f"{moddir}/updates/dummy{tree_suffix(kernel)}"
    assert status == 0 and modinfo_path(root, kernel, "dummy") == installed_updates
    shadowed = sorted(
        {in_tree, f"{directory}/dummy{tree_suffix(kernel)}"}
        - {f"updates/dummy{tree_suffix(kernel)}"}
    )
    assert f"  dummy shadows {', '.join(shadowed)}: " in out
    # Anywhere else, the copy in updates/ shadows the new one.
    status, out, _ = text(lkm("install", str(module), *args, "--dir", "misc"))
    assert status == 0 and modinfo_path(root, kernel, "dummy") == installed_updates
    assert out.endswith(
        f"  dummy is shadowed by updates/dummy{tree_suffix(kernel)}: modprobe dummy loads "
        f"that one, not the installed module\nindexed {moddir}\n"
    )
    # Uninstall removes every installed copy; the kernel's own is found again.
    status, out, _ = text(lkm("uninstall", "dummy", *args, "-k", kernel.version))
    installed_misc = f"{moddir}/misc/dummy{tree_suffix(kernel)}"
    copies = {installed, installed_updates, installed_misc}
    removed = "".join(f"removed {path}\n" for path in sorted(copies))
    assert (status, out) == (0, f"{removed}  dummy now loads {in_tree}\nindexed {moddir}\n")
    assert modinfo_path(root, kernel, "dummy") == f"{moddir}/{in_tree}"
    assert (moddir / in_tree).is_file()


def test_a_dashed_name_works_through_the_whole_story(
    kernel: KernelFixture, built: dict[str, dict[str, Path]], tmp_path: Path
) -> None:
    moddir = small_tree(kernel, tmp_path / "root")
    root = tmp_path / "root"
    module = built[kernel.label]["kernel_module_example"]
    args = ["--root", str(root), "--cache-dir", str(tmp_path / "cache")]
    target = moddir / kbuild_install_dir(kernel) / f"kernel-module-example{tree_suffix(kernel)}"
    for spelling in ("kernel-module-example", "kernel_module_example"):
        assert text(lkm("install", str(module), *args)) == (
            0,
            f"{module} -> {target}\nindexed {moddir}\n",
            "",
        )
        relative = str(target.relative_to(moddir))
        assert f"{relative}:\n" in (moddir / "modules.dep").read_text()
        for name in ("kernel-module-example", "kernel_module_example"):
            assert modinfo_path(root, kernel, name) == str(target)
        shown = kmod(
            "modprobe",
            ["-d", str(root), "-S", kernel.version, "--show-depends", "kernel-module-example"],
        )
        assert shown.stdout == f"insmod {target} \n".encode()
        result = text(lkm("uninstall", spelling, *args, "-k", kernel.version))
        assert result == (0, f"removed {target}\nindexed {moddir}\n", "")
        assert "kernel-module-example" not in (moddir / "modules.dep").read_text()
        assert modinfo_path(root, kernel, "kernel-module-example") == ""


def test_reinstalling_replaces_every_copy_in_the_directory(
    kernel: KernelFixture, built: dict[str, dict[str, Path]], tmp_path: Path
) -> None:
    moddir = small_tree(kernel, tmp_path / "root")
    module = built[kernel.label]["kernel_module_example"]
    args = [str(module), "--root", str(tmp_path / "root"), "--cache-dir", str(tmp_path / "c")]
    target = moddir / kbuild_install_dir(kernel) / f"kernel-module-example{tree_suffix(kernel)}"
    assert lkm("install", *args).status == 0
    first = target.stat().st_ino
    status, out, _ = text(lkm("install", *args))
    assert (status, out) == (
        0,
        f"{module} -> {target} (replacing the copy there)\nindexed {moddir}\n",
    )
    assert target.stat().st_ino != first
    # The other spelling, uncompressed, in the same directory: depmod would
    # pick one of the two by directory order, so it goes.
    other = target.parent / "kernel_module_example.ko"
    shutil.copyfile(module, other)
    status, out, _ = text(lkm("install", *args))
    assert status == 0
    assert f"  removed {other}, another copy of kernel_module_example in that directory\n" in out
    assert sorted(target.parent.iterdir()) == [target]
    assert modinfo_path(tmp_path / "root", kernel, "kernel_module_example") == str(target)


def test_a_directory_stands_for_the_modules_built_in_it(
    kernel_612: KernelFixture,
    built: dict[str, dict[str, Path]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    moddir = small_tree(kernel_612, tmp_path / "root")
    monkeypatch.chdir(built["6.12"]["lkmhello"].parent)
    status, out, err = text(lkm("install", "--root", str(tmp_path / "root"), "--no-cache"))
    assert (status, err) == (0, "")
    directory, suffix = kbuild_install_dir(kernel_612), tree_suffix(kernel_612)
    names = ("dummy", "kernel-module-example", "lkmhello")
    for name in names:
        assert f"./{name}.ko -> {moddir}/{directory}/{name}{suffix}\n" in out
    assert sorted(p.name for p in (moddir / directory).iterdir()) == [n + suffix for n in names]
    result = lkm("uninstall", *names, "--root", str(tmp_path / "root"), "-k", "6.12", "--no-cache")
    assert result.status == 0 and not (moddir / directory).exists()


def test_install_dir_comes_from_each_kernels_kbuild_files(
    kernels: list[KernelFixture], tmp_path: Path
) -> None:
    found = {}
    for kernel in kernels:
        if kernel.label not in ("6.1", "6.12"):
            continue
        chosen = default_install_dir("", kernel.version)
        assert chosen.path == kbuild_install_dir(kernel)
        assert chosen.source.endswith("/scripts/Makefile.modinst")
        found[kernel.label] = chosen.path
    assert len(set(found.values())) == 2, found  # the two kernels differ
    # An older kbuild said it in the top Makefile, and a root's own headers win.
    headers = tmp_path / "usr" / "src" / "linux-headers-9.9.9-test"
    headers.mkdir(parents=True)
    (headers / "Makefile").write_text(
        "install-dir := $(if $(INSTALL_MOD_DIR),$(INSTALL_MOD_DIR),extra)\n"
    )
    chosen = default_install_dir(str(tmp_path), "9.9.9-test")
    assert (chosen.path, chosen.source) == ("extra", f"{headers}/Makefile")
    # Without any kbuild files: updates/, and nothing claims to have said so.
    chosen = default_install_dir(str(tmp_path), "9.9.9-other")
    assert (chosen.path, chosen.source) == ("updates", "")


def test_compression_is_read_from_the_tree(kernel: KernelFixture) -> None:
    from lkm.workflows.install import tree_compression

    expected = Compression.XZ if tree_suffix(kernel) == ".ko.xz" else Compression.NONE
    assert tree_compression(str(kernel.moddir)) is expected


@pytest.fixture(autouse=True)
def _no_stray_files(tmp_path: Path) -> Iterator[None]:
    """No temporary or backup file of lkm's is left in any tree."""
    yield
    stray = [p for p in tmp_path.rglob("*~lkm-*~")]
    assert stray == []
