"""Kernels on demand, as a new user meets them: a fresh lkm cache,
``lkm kernel fetch`` of a Debian series, ``lkm kernel list --json``,
``lkm try`` of the hello template with no other set-up step, ``lkm kernel
rm``; and a ``--kernel`` naming a series that is not here, fetched on
demand with a one-line notice (``--no-fetch`` refuses, naming the command
that fixes it).

These download the real Debian packages with apt (about 85 MB for 6.1)
into a temporary cache: the same code the test suite's own fixtures come
through (:mod:`lkm.testing.debian_kernels`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from conftest import Ran, command, json_of

from lkm.testing.debian_kernels import KernelFixture

LKM = str(Path(sys.executable).with_name("lkm"))


def _lkm(args: list[str], cache: Path, cwd: Path | None = None, timeout: float = 900) -> Ran:
    env = dict(os.environ, LKM_CACHE=str(cache))
    return command([LKM, *args], text=True, env=env, cwd=cwd, timeout=timeout)


def _listed(cache: Path) -> list[dict[str, object]]:
    proc = _lkm(["kernel", "list", "--json"], cache)
    assert proc.returncode == 0, proc.stderr
    kernels: list[dict[str, object]] = json_of("kernel-list", proc.stdout)
    return kernels


def test_fetch_then_try_then_list_then_rm_in_a_fresh_cache(
    tmp_path: Path, kernel_61: KernelFixture, report: object
) -> None:
    cache = tmp_path / "cache"
    fetched = _lkm(["kernel", "fetch", "6.1"], cache)
    assert fetched.returncode == 0, fetched.stderr
    release = kernel_61.version  # the fixture is the newest 6.1 too
    lines = fetched.stdout.splitlines()
    assert lines[0].startswith(f"fetching {release} (amd64): 4 packages, ")
    assert any(line.strip().startswith(f"linux-image-{release} ") for line in lines)
    assert "unpacking 4 packages" in lines and "indexing the module tree (lkm depmod)" in lines
    assert lines[-1] == f"{release} (amd64): image, modules, headers in {cache}/kernels/{release}"

    # lkm's indexes of the fetched tree say what kmod 30's of the same tree
    # say: the text files byte for byte (the .bin files are kmod 34's
    # layout, compared key by key in tests/workflows).
    moddir = cache / "kernels" / release / "lib" / "modules" / release
    reference = kernel_61.indexed_moddir
    names = sorted(p.name for p in reference.glob("modules.*") if p.suffix != ".bin")
    assert len(names) >= 8 and {p.name for p in moddir.glob("modules.*.bin")} == {
        p.name for p in reference.glob("modules.*.bin")
    }
    for name in names:
        assert (moddir / name).read_bytes() == (reference / name).read_bytes(), name
    report(f"lkm kernel fetch 6.1: {len(names)} index text files identical to kmod's depmod")

    rows = [row for row in _listed(cache) if row["source"] == "cache"]
    assert [row["kernel"] for row in rows] == [release]
    assert rows[0]["image"] == f"{cache}/kernels/{release}/boot/vmlinuz-{release}"
    assert rows[0]["modules"] == str(moddir)
    assert rows[0]["headers"] and os.path.isfile(f"{rows[0]['headers']}/Makefile")

    again = _lkm(["kernel", "fetch", "6.1"], cache)
    assert again.returncode == 0 and "fetching" not in again.stdout
    told = _lkm(["kernel", "fetch", "-v", "6.1"], cache).stdout.splitlines()
    assert told[1:] == [f"  {part}: {rows[0][part]}" for part in ("image", "modules", "headers")]

    hello = tmp_path / "hello"
    assert _lkm(["new", str(hello)], cache).returncode == 0
    tried = _lkm(["try", "-j2"], cache, cwd=hello)
    assert tried.returncode == 0, tried.stdout + tried.stderr
    assert f"== boot {release} and try hello" in tried.stdout
    assert "insmod hello: ok" in tried.stdout and "rmmod hello: ok" in tried.stdout

    removed = _lkm(["kernel", "rm", "-v", "6.1"], cache)
    assert removed.returncode == 0
    *directories, last = removed.stdout.splitlines()
    assert last == f"removed {release}" and f"  {cache}/kernels/{release}" in directories
    assert all(d.startswith(f"  {cache}/") and not os.path.lexists(d[2:]) for d in directories)
    assert not (cache / "kernels" / release).exists()
    assert [row for row in _listed(cache) if row["source"] == "cache"] == []
    gone = _lkm(["kernel", "rm", "6.1"], cache)
    assert gone.returncode == 1
    assert gone.stderr == (
        f"lkm kernel rm: no kernel 6.1 in lkm's cache ({cache}/kernels): see 'lkm kernel list'\n"
    )


def test_a_series_not_here_is_fetched_on_demand_unless_refused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    refused = _lkm(["vm", "run", "--no-fetch", "--kernel", "6.12", "--", "true"], cache)
    assert refused.returncode == 1
    assert refused.stderr == (
        "lkm vm: no kernel 6.12 to boot: run 'lkm kernel fetch 6.12' (a Debian kernel into "
        "lkm's cache), or pass --kernel IMAGE\n"
    )
    assert not (cache / "kernels").exists()

    ran = _lkm(["vm", "run", "--kernel", "6.12", "--", "cat", "/proc/sys/kernel/osrelease"], cache)
    assert ran.returncode == 0, ran.stderr
    notice, *progress = ran.stderr.splitlines()
    assert notice.startswith("lkm: kernel 6.12 is not here; fetching 6.12.")
    assert notice.endswith("MB; --no-fetch refuses)")
    release = ran.stdout.strip()
    assert progress[-1] == f"ready: {release} in {cache}/kernels/{release}"
    assert (cache / "kernels" / release / "boot" / f"vmlinuz-{release}").is_file()


def test_a_tree_unpacked_by_hand_boots_with_modprobe_working(
    kernel_61: KernelFixture, tmp_path: Path
) -> None:
    """A kernel laid out as ``dpkg-deb -x`` leaves it (no index files):
    ``lkm vm run --kernel ROOT/boot/vmlinuz-R`` boots it and modprobe works
    in the guest, through an indexed view lkm keeps in its cache; the tree
    itself is not written to."""
    release = kernel_61.version
    root = tmp_path / "unpacked"
    moddir = root / "lib" / "modules" / release
    moddir.mkdir(parents=True)
    (root / "boot").mkdir()
    (root / "boot" / f"vmlinuz-{release}").symlink_to(kernel_61.vmlinuz)
    for entry in kernel_61.moddir.iterdir():
        if not entry.name.startswith("modules.") or entry.name in (
            "modules.order",
            "modules.builtin",
            "modules.builtin.modinfo",
        ):
            (moddir / entry.name).symlink_to(entry)
    before = sorted(p.name for p in moddir.iterdir())
    cache = tmp_path / "cache"
    script = "modprobe dummy && grep -c '^dummy ' /proc/modules"
    image = str(root / "boot" / f"vmlinuz-{release}")
    ran = _lkm(["vm", "run", "--kernel", image, "--", "sh", "-c", script], cache)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "1\n"
    assert sorted(p.name for p in moddir.iterdir()) == before
    views = list((cache / "vm-trees").iterdir())
    assert len(views) == 1
