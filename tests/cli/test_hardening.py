"""Regression tests for the holes a bad-input probe found (issue 14) in what
lkm writes and in its command line: device nodes replaced by regular files,
caches made where nobody asked, tracebacks from option values, half-made
trees, and output to a full or closed stdout.

Each test is the probe's reproduction, then the one line and exit status
expected — and for writers, that the thing at the path is what it was.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import command

from lkm.system.atomic import replace_file
from lkm.testing.debian_kernels import KernelFixture

LKM = str(Path(sys.executable).with_name("lkm"))
TIMEOUT = 60


def lkm_process(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    stdout: int | None = subprocess.PIPE,
) -> subprocess.CompletedProcess[bytes]:
    """The console script, as a user runs it (the top-level guard is there)."""
    return subprocess.run(
        [LKM, *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        timeout=TIMEOUT,
        check=False,
    )


def one_line(done: subprocess.CompletedProcess[bytes]) -> str:
    lines = done.stderr.decode("utf-8", "surrogateescape").splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in lines[0]
    return lines[0]


def _null_node(path: Path) -> Path:
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # what /dev/null is
    return path


def _still_null(path: Path) -> bool:
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)


# -- 1. the one atomic writer: only regular files are replaced -------------------


def test_replace_file_renames_over_a_regular_file_and_creates_an_absent_one(
    tmp_path: Path,
) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    inode = target.stat().st_ino
    assert replace_file(str(target), b"new", ".tmp") == str(target)
    assert target.read_bytes() == b"new" and target.stat().st_ino != inode
    assert replace_file(str(tmp_path / "g"), b"fresh", ".tmp") == str(tmp_path / "g")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "g"]  # no temporary left


def test_replace_file_writes_into_a_device_node_and_leaves_it_a_node(tmp_path: Path) -> None:
    node = _null_node(tmp_path / "x")
    replace_file(str(node), b"signed module", ".tmp")
    assert _still_null(node)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


def test_replace_file_keeps_a_symbolic_link_and_replaces_what_it_points_to(
    tmp_path: Path,
) -> None:
    (tmp_path / "real").write_bytes(b"old")
    (tmp_path / "link").symlink_to("real")
    assert replace_file(str(tmp_path / "link"), b"new", ".tmp") == str(tmp_path / "real")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real").read_bytes() == b"new"
    (tmp_path / "to-null").symlink_to(_null_node(tmp_path / "node"))
    replace_file(str(tmp_path / "to-null"), b"data", ".tmp")
    assert (tmp_path / "to-null").is_symlink() and _still_null(tmp_path / "node")


def test_replace_file_refuses_a_directory_and_a_fifo_nobody_reads(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        replace_file(str(tmp_path / "d"), b"data", ".tmp")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError) as raised:  # at once: no reader, no waiting for one
        replace_file(str(tmp_path / "fifo"), b"data", ".tmp")
    assert raised.value.errno == 6  # ENXIO
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "fifo"]


@pytest.fixture
def signing_key(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    assert lkm_process(["keygen", "--key", str(key), "--cert", str(cert)]).returncode == 0
    yield key, cert


def test_sign_output_to_a_device_node_writes_into_it(
    tmp_path: Path, signing_key: tuple[Path, Path], kernel_61: KernelFixture
) -> None:
    module = next(p for p in kernel_61.modules() if p.name == "dummy.ko")
    node = _null_node(tmp_path / "x")
    key, cert = signing_key
    done = lkm_process(
        ["sign", str(module), "--key", str(key), "--cert", str(cert), "-o", str(node)]
    )
    assert done.returncode == 0, done.stderr
    assert _still_null(node)


def test_keygen_force_over_a_device_node_writes_into_it(tmp_path: Path) -> None:
    node = _null_node(tmp_path / "x")
    done = lkm_process(["keygen", "--key", str(node), "--cert", str(tmp_path / "y"), "--force"])
    assert done.returncode == 0, done.stderr
    assert _still_null(node) and (tmp_path / "y").read_bytes().startswith(b"-----BEGIN")


# -- 6. no cache where nobody asked -------------------------------------------------


def _module_tree(kernel: KernelFixture, root: Path) -> tuple[str, str]:
    """A one-module tree under ``root`` for depmod: (basedir, version)."""
    module = next(p for p in kernel.modules() if p.name == "dummy.ko")
    moddir = root / "lib" / "modules" / kernel.version
    moddir.mkdir(parents=True)
    (moddir / "dummy.ko").write_bytes(module.read_bytes())
    (moddir / "modules.order").write_text("dummy.ko\n")
    for name in ("modules.builtin", "modules.builtin.modinfo"):
        (moddir / name).write_bytes(b"")
    return str(root), kernel.version


def _without_cache_settings(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LKM_CACHE", "XDG_CACHE_HOME")}
    return {**env, **extra}


# A user's depmod caches in their home (root's into another root caches
# nowhere): these run as Debian's nobody, in a directory nobody owns.
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def nobodys(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody owns (pytest's own are root's, mode 0700)."""
    place = Path(tempfile.mkdtemp(prefix="lkm-nobody-"))
    place.chmod(0o755)
    try:
        yield place
    finally:
        shutil.rmtree(place, ignore_errors=True)


def _as_nobody(place: Path) -> None:
    command(["chown", "-R", "nobody:nogroup", str(place)], check=True)


def test_depmod_with_a_home_that_does_not_exist_writes_no_cache(
    nobodys: Path, kernel_61: KernelFixture
) -> None:
    basedir, version = _module_tree(kernel_61, nobodys / "tree")
    _as_nobody(nobodys)
    home = nobodys / "nonexistent"
    env = _without_cache_settings(HOME=str(home))
    done = subprocess.run(
        [*AS_NOBODY, LKM, "depmod", "-b", basedir, version], env=env, capture_output=True
    )
    assert (done.returncode, done.stderr) == (0, b"")
    assert not home.exists()
    assert (Path(basedir) / "lib/modules" / version / "modules.dep").read_bytes() == b"dummy.ko:\n"


def test_depmod_ignores_a_relative_xdg_cache_home(nobodys: Path, kernel_61: KernelFixture) -> None:
    basedir, version = _module_tree(kernel_61, nobodys / "tree")
    home = nobodys / "home"
    home.mkdir()
    work = nobodys / "work"
    work.mkdir()
    _as_nobody(nobodys)
    env = _without_cache_settings(HOME=str(home), XDG_CACHE_HOME="relative")
    done = subprocess.run(
        [*AS_NOBODY, LKM, "depmod", "-b", basedir, version], env=env, cwd=work, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    assert list(work.iterdir()) == []
    assert (home / ".cache" / "lkm" / "depmod").is_dir()  # the spec's default instead


# -- 4, 5, 7. option values: one line, never a traceback ------------------------------


BAD_OPTIONS = [
    (["keygen", "--cn", "x" * 65], "lkm keygen: --cn: a common name has at most 64 characters"),
    (["keygen", "--days", "3000000"], "lkm keygen: --days must be from 1 to "),
    (["keygen", "--days", "99999999999"], "lkm keygen: --days must be from 1 to "),
    (["keygen", "--cn", "\udcff"], "lkm keygen: --cn: the common name must be UTF-8 text"),
    (["vm", "run", "--timeout", "abc", "--", "true"], "lkm vm: --timeout: not a positive number"),
    (["vm", "run", "--kernel", "/etc/passwd", "--", "true"], "lkm vm: /etc/passwd: not a kernel"),
    (["vm", "run", "--share", "bogus", "--", "true"], "lkm vm: unknown share 'bogus'"),
    (["vm", "run", "--kernel", "\udcff", "--", "true"], "lkm vm: no kernel \udcff to boot"),
    (["try", "--kernel", "\udcff"], "lkm try: no kernel \udcff to boot"),
    (["dmesg", "-l", "\udcff"], "lkm dmesg: unknown level '\udcff'"),
    (["\udcff"], "lkm: unknown command '\udcff'"),
    (["new", "d\udcff"], "lkm new: d\udcff: a module name is lower-case letters"),
]


@pytest.mark.parametrize(("args", "line"), BAD_OPTIONS, ids=lambda v: repr(v)[:40])
def test_bad_option_values_give_one_line(tmp_path: Path, args: list[str], line: str) -> None:
    done = lkm_process(args, cwd=tmp_path)
    assert done.returncode == 1
    assert one_line(done).startswith(line)
    assert list(tmp_path.iterdir()) == []  # keygen wrote no key


def test_dmesg_of_a_module_name_that_is_not_utf8_exits_normally(tmp_path: Path) -> None:
    done = lkm_process(["dmesg", "--module", "\udcff"], cwd=tmp_path)
    assert "Traceback" not in done.stderr.decode("utf-8", "replace")
    assert b"internal error" not in done.stderr


def test_build_refuses_bad_jobs_and_white_space_in_one_line(tmp_path: Path) -> None:
    assert lkm_process(["new", str(tmp_path / "hello")]).returncode == 0
    done = lkm_process(["build", "-j", "-3", str(tmp_path / "hello")])
    assert (done.returncode, one_line(done)) == (1, "lkm build: --jobs must be at least 1, not -3")
    spaced = tmp_path / "a b" / "hello"
    assert lkm_process(["new", str(spaced)]).returncode == 0
    done = lkm_process(["build", str(spaced)])
    assert done.returncode == 1
    assert one_line(done).startswith(
        f"lkm build: {spaced}: kbuild cannot build in a path with white"
    )


# -- 5. lkm new on a filesystem that refuses: nothing half-made ------------------------


@pytest.fixture
def small_mounts(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A read-only tmpfs and a full one."""
    ro, full = tmp_path / "ro", tmp_path / "full"
    ro.mkdir()
    full.mkdir()
    command(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "none", ro], check=True)
    try:
        command(["mount", "-t", "tmpfs", "-o", "size=4k", "none", full], check=True)
        try:
            (full / "fill").write_bytes(b"\0" * 4096)
            yield ro, full
        finally:
            command(["umount", full], check=True)
    finally:
        command(["umount", ro], check=True)


def test_new_on_a_read_only_or_full_filesystem_leaves_nothing(
    small_mounts: tuple[Path, Path],
) -> None:
    ro, full = small_mounts
    done = lkm_process(["new", str(ro / "hello")])
    assert (done.returncode, one_line(done)) == (1, f"lkm new: {ro}/hello: Read-only file system")
    done = lkm_process(["new", str(full / "hello")])
    assert done.returncode == 1
    assert one_line(done).startswith(f"lkm new: {full}/hello")
    assert one_line(done).endswith("No space left on device")
    assert sorted(p.name for p in full.iterdir()) == ["fill"]  # no empty Makefile, no staging


def test_new_on_a_dangling_symlink_says_so(tmp_path: Path) -> None:
    (tmp_path / "hello").symlink_to(tmp_path / "nowhere")
    done = lkm_process(["new", str(tmp_path / "hello")])
    assert done.returncode == 1
    assert one_line(done) == (
        f"lkm new: {tmp_path}/hello: is a symbolic link to nothing; remove it or choose another"
    )


def test_new_fills_an_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "hello").mkdir()
    assert lkm_process(["new", str(tmp_path / "hello")]).returncode == 0
    assert sorted(p.name for p in (tmp_path / "hello").iterdir()) == [
        "Kbuild",
        "Makefile",
        "hello.c",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["hello"]


def test_modinfo_of_an_absolute_path_works_in_a_deleted_directory(
    tmp_path: Path, kernel_61: KernelFixture
) -> None:
    module = next(p for p in kernel_61.modules() if p.name == "dummy.ko")
    gone = tmp_path / "gone"
    gone.mkdir()
    script = f"import os, sys; os.chdir({str(gone)!r}); os.rmdir({str(gone)!r}); "
    script += f"os.execv({LKM!r}, ['lkm', 'modinfo', '-F', 'name', {str(module)!r}])"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=TIMEOUT, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"dummy\n", b"")


# -- 5. the top-level guard -----------------------------------------------------------


def test_an_unexpected_exception_is_one_line_asking_for_a_report() -> None:
    script = (
        "import sys, lkm.cli as cli; cli.TOOLS['boom'] = 'lkm.no_such_module'; "
        "sys.argv = ['lkm', 'boom']; cli.entry()"
    )
    env = {k: v for k, v in os.environ.items() if k != "LKM_DEBUG"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, env=env, timeout=TIMEOUT, check=False
    )
    assert done.returncode == 1
    line = one_line(done)  # type: ignore[arg-type]
    assert line.startswith("lkm ") and "internal error: ModuleNotFoundError" in line
    assert "please report it" in line and "LKM_DEBUG=1" in line
    debug = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        env={**env, "LKM_DEBUG": "1"},
        timeout=TIMEOUT,
        check=False,
    )
    assert debug.returncode == 1 and b"Traceback (most recent call last)" in debug.stderr


# -- 7. depmod's messages name the file and stay one line -------------------------------


def test_an_index_that_cannot_be_written_is_named(tmp_path: Path, kernel_61: KernelFixture) -> None:
    basedir, version = _module_tree(kernel_61, tmp_path / "tree")
    blocker = Path(basedir) / "lib/modules" / version / "modules.dep.bin"
    blocker.mkdir()
    done = lkm_process(["depmod", "-b", basedir, version])
    assert (done.returncode, one_line(done)) == (
        1,
        f"depmod: FATAL: could not write {blocker}: Is a directory",
    )
    assert blocker.is_dir()


def test_a_line_break_in_a_module_path_is_shown_escaped(
    tmp_path: Path, kernel_61: KernelFixture
) -> None:
    basedir, version = _module_tree(kernel_61, tmp_path / "tree")
    moddir = Path(basedir) / "lib/modules" / version
    (moddir / "dummy.ko").rename(moddir / "dum\nmy.ko")
    symvers = tmp_path / "Module.symvers"
    symvers.write_bytes(b"")  # no symbol known: every import is a warning
    done = lkm_process(["depmod", "-e", "-E", str(symvers), "-b", basedir, version])
    assert done.returncode == 0
    lines = done.stderr.decode().splitlines()
    assert lines and all(line.startswith("depmod: WARNING: ") for line in lines), lines
    assert f"{moddir}/dum\\nmy.ko needs unknown symbol" in lines[0]
    missing = lkm_process(["depmod", "-b", basedir, version, f"{tmp_path}/x\ny.ko"])
    assert one_line(missing) == (
        f"depmod: FATAL: could not create module {tmp_path}/x\\ny.ko: No such file or directory"
    )
