"""Regression tests for what a bad-input probe found (issue 14, items 3 and
7) in lkm's readers of files it did not create: configuration or index
files linked to ``/dev/zero`` that grew lkm to gigabytes, FIFOs that hung
it, keys and modules read without end, System.map split at the wrong
bytes, compressed modules with bytes after the stream.

Each test is the reproduction, run through the console script in a
process with a time-out and an address-space limit (so a hang or a
balloon fails the test instead of the machine), then the one line and the
exit status expected. Where kmod defines the behaviour (and ends), kmod
runs under the same limits and is compared; where kmod hangs or loops for
ever (a FIFO, ``depmod -F /dev/zero``), it is not run.
"""

from __future__ import annotations

import os
import resource
import stat
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import _kmod_tool

from lkm.formats.compression import Compression, compress
from lkm.testing.debian_kernels import KernelFixture

LKM = str(Path(sys.executable).with_name("lkm"))
TIMEOUT = 60
# Generous for lkm and kmod reading a whole module tree; far below what
# reading /dev/zero to its "end" would take.
ADDRESS_SPACE = 2 << 30
NO_WRITER = "a FIFO nobody writes to"
TOO_LARGE_CONFIG = "File too large (over 8 MiB)"


def _bounded() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run(
    argv: Sequence[str], *, pass_fds: Sequence[int] = (), cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """A command under the time and address-space limits."""
    return subprocess.run(
        list(argv),
        capture_output=True,
        env=dict(os.environ, LC_ALL="C"),
        cwd=cwd,
        timeout=TIMEOUT,
        check=False,
        preexec_fn=_bounded,
        pass_fds=tuple(pass_fds),
    )


def lkm(*args: str, pass_fds: Sequence[int] = ()) -> subprocess.CompletedProcess[bytes]:
    return run([LKM, *args], pass_fds=pass_fds)


def kmod(tool: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return run([_kmod_tool(tool), *args])


def one_line(done: subprocess.CompletedProcess[bytes]) -> str:
    lines = done.stderr.decode("utf-8", "surrogateescape").splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    assert "Traceback" not in lines[0] and "internal error" not in lines[0]
    return lines[0]


def _link(path: Path, target: str) -> Path:
    path.symlink_to(target)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _moddir_of_links(kernel: KernelFixture, root: Path, replaced: str, target: str) -> Path:
    """A module directory under ``root`` whose entries link to the indexed
    fixture's, except ``replaced``, which links to ``target``."""
    moddir = root / "lib" / "modules" / kernel.version
    moddir.mkdir(parents=True)
    for entry in kernel.indexed_moddir.iterdir():
        if entry.name != replaced:
            (moddir / entry.name).symlink_to(entry)
    _link(moddir / replaced, target)
    return moddir


def _small_tree(kernel: KernelFixture, root: Path, names: Sequence[str]) -> Path:
    """A module tree under ``root`` with copies of a few of the kernel's modules."""
    moddir = root / "lib" / "modules" / kernel.version
    (moddir / "kernel").mkdir(parents=True)
    for module in kernel.modules():
        if module.name.split(".")[0] in names:
            (moddir / "kernel" / module.name).write_bytes(module.read_bytes())
    return moddir


def _modprobe_args(kernel: KernelFixture, root: str, *extra: str) -> list[str]:
    return ["-n", "-v", "-d", root, "-S", kernel.version, *extra, "dummy"]


# -- configuration: modprobe.d, modules.softdep, depmod.d --------------------------


def test_modprobe_config_linked_to_dev_zero_is_one_line_and_ignored(
    tmp_path: Path, kernel_61: KernelFixture
) -> None:
    """kmod reads the line until its buffer cannot double past 1 GiB, then
    drops the file and goes on (exit 0, nothing said); lkm stops at its
    limit, says so naming the file, and goes on the same."""
    conf = tmp_path / "conf"
    conf.mkdir()
    zero = _link(conf / "zero.conf", "/dev/zero")
    args = _modprobe_args(kernel_61, kernel_61.indexed_root, "-C", str(conf))
    want, got = kmod("modprobe", *args), lkm("modprobe", *args)
    assert (got.returncode, got.stdout) == (want.returncode, want.stdout) == (0, want.stdout)
    assert b"insmod " in got.stdout
    assert one_line(got) == f"modprobe: ERROR: {zero}: {TOO_LARGE_CONFIG}: ignoring the file"


def test_modprobe_config_fifo_is_one_line_not_a_hang(
    tmp_path: Path, kernel_61: KernelFixture
) -> None:
    """kmod's open of a FIFO nobody writes to waits for ever; lkm refuses
    the file and does what kmod does without it."""
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "a.conf").write_text("options dummy numdummies=3\n")
    fifo = _fifo(conf / "fifo.conf")
    args = _modprobe_args(kernel_61, kernel_61.indexed_root, "-C", str(conf))
    got = lkm("modprobe", *args)
    assert one_line(got) == f"modprobe: ERROR: {fifo}: a FIFO nobody writes to: ignoring the file"
    fifo.unlink()
    want = kmod("modprobe", *args)
    assert (got.returncode, got.stdout) == (want.returncode, want.stdout)
    assert b"numdummies=3" in got.stdout


def test_modprobe_config_from_a_pipe_is_read(tmp_path: Path, kernel_61: KernelFixture) -> None:
    """``-C <(…)`` names a pipe with a writer: read, as kmod reads it."""
    read_end, write_end = os.pipe()
    os.write(write_end, b"options dummy numdummies=5\n")
    os.close(write_end)
    try:
        args = _modprobe_args(kernel_61, kernel_61.indexed_root, "-C", f"/dev/fd/{read_end}")
        got = lkm("modprobe", *args, pass_fds=[read_end])
    finally:
        os.close(read_end)
    assert got.returncode == 0 and got.stderr == b""
    assert b"numdummies=5" in got.stdout


@pytest.mark.parametrize("target", ["/dev/zero", "FIFO"])
def test_modules_softdep_linked_to_dev_zero_or_a_fifo(
    tmp_path: Path, kernel_61: KernelFixture, target: str
) -> None:
    fifo = str(tmp_path / "fifo")
    if target == "FIFO":
        os.mkfifo(fifo)
    moddir = _moddir_of_links(
        kernel_61, tmp_path / "root", "modules.softdep", fifo if target == "FIFO" else target
    )
    args = _modprobe_args(kernel_61, str(tmp_path / "root"))
    got = lkm("modprobe", *args)
    problem = NO_WRITER if target == "FIFO" else TOO_LARGE_CONFIG
    softdep = moddir / "modules.softdep"
    assert one_line(got) == f"modprobe: ERROR: {softdep}: {problem}: ignoring the file"
    if target != "FIFO":  # kmod ends here (it hangs on the FIFO)
        want = kmod("modprobe", *args)
        assert (got.returncode, got.stdout) == (want.returncode, want.stdout)
    assert got.returncode == 0 and b"dummy.ko" in got.stdout


def test_depmod_config_linked_to_dev_zero(tmp_path: Path, kernel_61: KernelFixture) -> None:
    """depmod.d: kmod's cfg_file_parse drops the file as libkmod does (exit 0);
    lkm says so in kmod's words for a file it cannot parse."""
    moddir = _small_tree(kernel_61, tmp_path, ["dummy", "loop"])
    conf = tmp_path / "depmod.d"
    conf.mkdir()
    zero = _link(conf / "zero.conf", "/dev/zero")
    args = ["-n", "-C", str(conf), "-b", str(tmp_path), kernel_61.version]
    got = lkm("depmod", *args, "--no-cache")
    want = kmod("depmod", *args)
    assert got.returncode == want.returncode == 0
    assert f"depmod: ERROR: file parse {zero}: File too large (over 8 MiB)" in got.stderr.decode()
    assert b"kernel/dummy.ko:" in got.stdout
    assert moddir.is_dir()


# -- index text files ----------------------------------------------------------------


def test_depmod_modules_order_linked_to_dev_zero(tmp_path: Path, kernel_61: KernelFixture) -> None:
    """kmod's fgets loop over /dev/zero never ends; lkm warns as for an
    unreadable modules.order and sorts without it."""
    moddir = _small_tree(kernel_61, tmp_path, ["dummy", "loop"])
    _link(moddir / "modules.order", "/dev/zero")
    got = lkm("depmod", "-n", "-b", str(tmp_path), kernel_61.version, "--no-cache")
    assert got.returncode == 0
    assert got.stderr.decode().splitlines() == [
        f"depmod: ERROR: unsupported file type {moddir}/modules.order: 20000",
        f"depmod: WARNING: could not open modules.order at {moddir}: File too large (over 64 MiB)",
    ]


def test_depmod_modules_order_directory_reads_as_empty_like_kmod(
    tmp_path: Path, kernel_61: KernelFixture
) -> None:
    """kmod fopens a directory and its first fgets fails: no order, no message."""
    _small_tree(kernel_61, tmp_path, ["dummy", "loop"])
    (tmp_path / "lib" / "modules" / kernel_61.version / "modules.order").mkdir()
    args = ["-n", "-b", str(tmp_path), kernel_61.version]
    want, got = kmod("depmod", *args), lkm("depmod", *args, "--no-cache")
    weakdep = b"# Weak dependencies extracted from modules themselves.\n"  # kmod 34's
    assert (got.returncode, got.stderr) == (want.returncode, want.stderr)
    assert got.stdout.replace(weakdep, b"") == want.stdout


# -- depmod -F System.map / -E Module.symvers ------------------------------------------


@pytest.mark.parametrize("option", ["-F", "-E"])
@pytest.mark.parametrize("source", ["/dev/zero", "/dev/urandom", "FIFO"])
def test_depmod_symbols_from_an_endless_file_or_a_fifo(
    tmp_path: Path, kernel_61: KernelFixture, option: str, source: str
) -> None:
    """kmod prints an invalid line for ever (-F /dev/zero), loops silently
    (-E /dev/zero) or hangs (a FIFO); lkm stops with one FATAL line."""
    path = str(_fifo(tmp_path / "fifo")) if source == "FIFO" else source
    root = kernel_61.indexed_root
    got = lkm("depmod", "-n", option, path, "-b", root, kernel_61.version, "--no-cache")
    problem = NO_WRITER if source == "FIFO" else "File too large (over 64 MiB)"
    line = f"depmod: FATAL: could not load {path}: {problem}"
    assert (got.returncode, one_line(got)) == (1, line)
    assert got.stdout == b""
    if source == "FIFO":
        assert stat.S_ISFIFO(os.lstat(path).st_mode)  # refused, left as it was


def test_depmod_system_map_from_proc_kallsyms_like_kmod(kernel_61: KernelFixture) -> None:
    """A /proc file says its size is 0 and is not empty: read to its end."""
    args = ["-n", "-F", "/proc/kallsyms", "-b", kernel_61.indexed_root, kernel_61.version]
    want, got = kmod("depmod", *args), lkm("depmod", *args, "--no-cache")
    weakdep = b"# Weak dependencies extracted from modules themselves.\n"
    assert (got.returncode, got.stderr) == (want.returncode, want.stderr) == (0, b"")
    assert got.stdout.replace(weakdep, b"") == want.stdout


def test_depmod_system_map_lines_end_at_newline_only(
    tmp_path: Path, kernel_61: KernelFixture
) -> None:
    """kmod reads System.map with fgets: \\f, \\x1c and \\r do not end a line
    (str.splitlines made three bogus errors and numbered the real bad line
    wrong), a line longer than its 10240-byte buffer is read as several,
    and a NUL ends what the string functions see."""
    system_map = tmp_path / "System.map"
    system_map.write_bytes(
        b"ffffffff81000000 T _text\n"
        b"ffffffff81000001 T a\x0cb\n"
        b"ffffffff81000002 T c\x1cd\rq\n"
        b"ffffffff81000003 r __ksymtab_dummy_like\x0c\n"
        b"badline\n"
        b"ffffffff81000004 T x\x00 y z\n" + b"a" * 12000 + b"\n"
    )
    args = ["-n", "-e", "-F", str(system_map), "-b", kernel_61.indexed_root, kernel_61.version]
    want, got = kmod("depmod", *args), lkm("depmod", *args, "--no-cache")
    assert got.returncode == want.returncode
    assert got.stderr == want.stderr
    assert b"sm:5: invalid line: badline" in want.stderr.replace(str(system_map).encode(), b"sm")


# -- modules -------------------------------------------------------------------------


def test_insmod_of_a_fifo_or_a_device_is_refused_at_once(tmp_path: Path) -> None:
    """The kernel loads regular files only (finit_module: EINVAL); kmod says
    so for a device ("Invalid parameters") and hangs on a FIFO."""
    zero = _link(tmp_path / "zero.ko", "/dev/zero")
    want, got = kmod("insmod", str(zero)), lkm("insmod", str(zero))
    assert (got.returncode, got.stderr) == (want.returncode, want.stderr)
    assert one_line(got) == f"insmod: ERROR: could not insert module {zero}: Invalid parameters"
    fifo = _fifo(tmp_path / "fifo.ko")
    got = lkm("insmod", str(fifo))
    assert (got.returncode, one_line(got)) == (
        1,
        f"insmod: ERROR: could not insert module {fifo}: Invalid parameters",
    )


@pytest.mark.parametrize("kind", ["FIFO", "/dev/zero", "directory"])
def test_modinfo_and_depmod_of_a_module_that_is_not_a_file(
    tmp_path: Path, kernel_61: KernelFixture, kind: str
) -> None:
    """modinfo takes a path only when it is a regular file (else a name:
    not found); depmod lists such an entry as an unsupported file type."""
    moddir = _small_tree(kernel_61, tmp_path, ["dummy"])
    odd = moddir / "kernel" / "odd.ko"
    if kind == "FIFO":
        os.mkfifo(odd)
    elif kind == "directory":
        odd.mkdir()
    else:
        odd.symlink_to(kind)
    want, got = kmod("modinfo", str(odd)), lkm("modinfo", str(odd))
    assert (got.returncode, got.stdout, got.stderr) == (want.returncode, want.stdout, want.stderr)
    args = ["-n", "-b", str(tmp_path), kernel_61.version]
    want, got = kmod("depmod", *args), lkm("depmod", *args, "--no-cache")
    weakdep = b"# Weak dependencies extracted from modules themselves.\n"
    assert (got.returncode, got.stderr) == (want.returncode, want.stderr)
    assert got.stdout.replace(weakdep, b"") == want.stdout


def test_modinfo_of_a_proc_file_says_it_is_not_empty(tmp_path: Path) -> None:
    """kmod maps a module by its size: 0 for a /proc file, so EINVAL (exit 1).
    lkm's line names the file and does not call it empty."""
    module = _link(tmp_path / "kallsyms.ko", "/proc/kallsyms")
    want, got = kmod("modinfo", str(module)), lkm("modinfo", str(module))
    assert got.returncode == want.returncode == 1
    assert one_line(got) == (
        f"modinfo: ERROR: {module}: its size is 0 but it is not empty (a /proc or /sys file?)"
    )


def _xz_module(kernel: KernelFixture) -> bytes:
    return next(p for p in kernel.modules() if p.name == "dummy.ko.xz").read_bytes()


@pytest.mark.parametrize(
    "name,tail,accepted",
    [
        ("garbage", b"GARBAGE!trailing", False),
        ("padding", b"\0" * 16, True),  # xz stream padding: a multiple of 4 zeros
        ("odd-padding", b"\0" * 3, False),
        ("padding-then-garbage", b"\0" * 4 + b"GARB", False),
        ("second-stream", None, True),  # liblzma's LZMA_CONCATENATED
    ],
)
def test_xz_module_with_bytes_after_the_stream_like_kmod(
    tmp_path: Path, kernel_612: KernelFixture, name: str, tail: bytes | None, accepted: bool
) -> None:
    data = _xz_module(kernel_612)
    module = tmp_path / f"dummy-{name}.ko.xz"
    module.write_bytes(data + (data if tail is None else tail))
    want, got = _names_by_modinfo(module)
    assert (got.returncode, got.stdout) == (want.returncode, want.stdout)
    assert (got.returncode == 0) == accepted
    if not accepted:
        assert one_line(got).startswith(f"modinfo: ERROR: {module}: ")


@pytest.mark.parametrize(
    "name,accepted",
    [("garbage", False), ("zeros", False), ("skippable-frame", True), ("second-frame", True)],
)
def test_zstd_module_with_bytes_after_the_frame_like_kmod(
    tmp_path: Path, kernel_612: KernelFixture, name: str, accepted: bool
) -> None:
    frame = compress(_decompressed_dummy(kernel_612), Compression.ZSTD)
    tails = {
        "garbage": b"GARBAGE!trailing",
        "zeros": b"\0" * 16,
        "skippable-frame": b"\x50\x2a\x4d\x18\x03\x00\x00\x00abc",
        "second-frame": frame,
    }
    module = tmp_path / f"dummy-{name}.ko.zst"
    module.write_bytes(frame + tails[name])
    want, got = _names_by_modinfo(module)
    assert (got.returncode, got.stdout) == (want.returncode, want.stdout)
    assert (got.returncode == 0) == accepted


def _names_by_modinfo(
    module: Path,
) -> tuple[subprocess.CompletedProcess[bytes], subprocess.CompletedProcess[bytes]]:
    """``modinfo -F name MODULE`` by kmod, then by lkm."""
    return kmod("modinfo", "-F", "name", str(module)), lkm("modinfo", "-F", "name", str(module))


def _decompressed_dummy(kernel: KernelFixture) -> bytes:
    import lzma

    return lzma.decompress(_xz_module(kernel))


def test_gzip_module_reads_as_zlib_gzread_does(tmp_path: Path, kernel_612: KernelFixture) -> None:
    """Debian's kmod 30 has no zlib; upstream kmod reads gzip with gzread,
    which decodes members one after another and ignores trailing garbage."""
    member = compress(_decompressed_dummy(kernel_612), Compression.GZIP)
    for name, tail in (("garbage", b"GARBAGE!trailing"), ("second-member", member)):
        module = tmp_path / f"dummy-{name}.ko.gz"
        module.write_bytes(member + tail)
        got = lkm("modinfo", "-F", "name", str(module))
        assert (got.returncode, got.stdout, got.stderr) == (0, b"dummy\n", b"")
    truncated = tmp_path / "dummy-truncated.ko.gz"
    truncated.write_bytes(member[:-100])
    got = lkm("modinfo", str(truncated))
    assert got.returncode == 1
    assert one_line(got) == f"modinfo: ERROR: {truncated}: truncated gzip stream"


# -- lkm sign: key, certificate, module -------------------------------------------------


@pytest.fixture
def signing(tmp_path: Path, kernel_61: KernelFixture) -> tuple[Path, Path, Path]:
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    done = lkm("keygen", "--key", str(key), "--cert", str(cert))
    assert done.returncode == 0, done.stderr
    module = next(p for p in kernel_61.modules() if p.name == "dummy.ko")
    return key, cert, module


@pytest.mark.parametrize("which", ["key", "cert", "module"])
@pytest.mark.parametrize("source", ["/dev/zero", "FIFO"])
def test_sign_refuses_endless_or_blocking_inputs_in_one_line(
    tmp_path: Path, signing: tuple[Path, Path, Path], which: str, source: str
) -> None:
    """sign-file fails at once for a /dev/zero key or certificate, but reads
    a /dev/zero module for ever and hangs on a FIFO; lkm refuses each at
    once, naming the file."""
    key, cert, module = signing
    bad = str(_fifo(tmp_path / "fifo")) if source == "FIFO" else source
    files = {"key": str(key), "cert": str(cert), "module": str(module), which: bad}
    out = tmp_path / "out.ko"
    got = lkm(
        "sign", files["module"], "--key", files["key"], "--cert", files["cert"], "-o", str(out)
    )
    if which == "module":
        kind = "a FIFO" if source == "FIFO" else "a character device"
        problem = f"not a regular file ({kind})"
    else:
        problem = NO_WRITER if source == "FIFO" else "File too large (over 1 MiB)"
    assert (got.returncode, one_line(got)) == (1, f"lkm sign: {bad}: {problem}")
    assert not out.exists()


def test_sign_reads_key_and_certificate_from_pipes(
    tmp_path: Path, signing: tuple[Path, Path, Path]
) -> None:
    """``--key <(…)``: a pipe whose writer is slow to write is waited for."""
    key, cert, module = signing
    pipes = [os.pipe(), os.pipe()]
    writers = [
        threading.Thread(target=_write_and_close, args=(pipes[0][1], key.read_bytes())),
        threading.Thread(target=_write_and_close, args=(pipes[1][1], cert.read_bytes())),
    ]
    for writer in writers:
        writer.start()
    out = tmp_path / "out.ko"
    try:
        got = lkm(
            "sign",
            str(module),
            "--key",
            f"/dev/fd/{pipes[0][0]}",
            "--cert",
            f"/dev/fd/{pipes[1][0]}",
            "-o",
            str(out),
            pass_fds=[pipes[0][0], pipes[1][0]],
        )
    finally:
        for writer in writers:
            writer.join()
        for read_end, _ in pipes:
            os.close(read_end)
    assert (got.returncode, got.stderr) == (0, b"")
    assert out.read_bytes().endswith(b"~Module signature appended~\n")


def _write_and_close(fd: int, data: bytes) -> None:
    import time

    time.sleep(0.2)
    os.write(fd, data)
    os.close(fd)
