"""One release per kernel, however ``--kernel`` names it: a headers
directory, an image, a release or a series all find the same image,
module tree and headers when they lie side by side (Debian's layout, as
``dpkg-deb -x`` leaves it, or lkm's cache) — and the release is what the
modules' vermagic says, not what a headers Makefile's VERSION fields or
Debian 6.1's ``include/config/kernel.release`` say.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import command

from lkm.formats.module_file import open_module
from lkm.model.kernels import find_kernel, headers_release
from lkm.testing.debian_kernels import KernelFixture
from lkm.workflows.kernel_store import newest_per_series, offer

LKM = str(Path(sys.executable).with_name("lkm"))


def _vermagic_release(path: Path) -> str:
    with open_module(str(path)) as module:
        fields = dict(module.modinfo() or [])
    return fields["vermagic"].split()[0]


@pytest.mark.parametrize("label", ["6.1", "6.12"])
def test_every_spelling_finds_the_same_kernel(kernels: list[KernelFixture], label: str) -> None:
    kernel = next(k for k in kernels if k.label == label)
    in_tree = next(iter(kernel.modules()))
    assert headers_release(str(kernel.headers)) == _vermagic_release(in_tree) == kernel.version
    found = {
        spelling: find_kernel(spelling, need="headers")
        for spelling in (
            str(kernel.headers),
            str(kernel.vmlinuz),
            kernel.version,
            label,
            f"linux-image-{kernel.version}",
        )
    }
    parts = {
        (k.release, k.image, os.path.realpath(k.headers or ""), k.modules) for k in found.values()
    }
    assert len(parts) == 1, found
    release, image, headers, modules = parts.pop()
    assert (release, image, headers) == (kernel.version, str(kernel.vmlinuz), str(kernel.headers))
    assert modules and modules.endswith(f"/lib/modules/{kernel.version}")


def test_a_tree_unpacked_by_hand_finds_its_parts_beside_each_other(
    kernel_61: KernelFixture, tmp_path: Path
) -> None:
    """``dpkg-deb -x`` of image and headers into one directory: the image
    finds the headers, the headers find the image and modules."""
    release = kernel_61.version
    root = tmp_path / "unpacked"
    (root / "boot").mkdir(parents=True)
    (root / "lib" / "modules").mkdir(parents=True)
    (root / "usr" / "src").mkdir(parents=True)
    (root / "boot" / f"vmlinuz-{release}").symlink_to(kernel_61.vmlinuz)
    (root / "lib" / "modules" / release).symlink_to(kernel_61.moddir)
    (root / "usr" / "src" / f"linux-headers-{release}").symlink_to(kernel_61.headers)
    from_image = find_kernel(str(root / "boot" / f"vmlinuz-{release}"), need="headers")
    from_headers = find_kernel(str(root / "usr" / "src" / f"linux-headers-{release}"))
    assert from_image.release == from_headers.release == release
    assert from_image.headers == str(root / "usr" / "src" / f"linux-headers-{release}")
    assert from_headers.image == str(root / "boot" / f"vmlinuz-{release}")
    assert from_headers.modules == str(root / "lib" / "modules" / release)


def test_lkm_build_names_the_release_the_module_carries(
    kernel_61: KernelFixture, tmp_path: Path
) -> None:
    directory = tmp_path / "hello"
    assert command([LKM, "new", str(directory)]).returncode == 0
    built = command(
        [LKM, "build", str(directory), "--kernel", str(kernel_61.headers), "-j2"], text=True
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert built.stdout.splitlines()[-1] == f"built {directory}/hello.ko for {kernel_61.version}"
    assert _vermagic_release(directory / "hello.ko") == kernel_61.version


def test_newest_per_series_orders_releases_by_version() -> None:
    releases = ["6.1.0-9-amd64", "6.1.0-57-amd64", "6.1.0-10-amd64", "6.12.9+deb12-amd64"]
    releases.append("6.12.10+deb12-amd64")
    assert newest_per_series(releases) == {
        "6.1": "6.1.0-57-amd64",
        "6.12": "6.12.10+deb12-amd64",
    }


def test_specs_debian_does_not_offer_are_one_line_errors(tmp_path: Path) -> None:
    env = dict(os.environ, LKM_CACHE=str(tmp_path / "cache"))
    cases = {
        ("fetch", "1.2"): "lkm kernel fetch: Debian offers no amd64 kernel of series 1.2 "
        "(series offered: ",
        ("fetch", "1.2.3-4-amd64"): "lkm kernel fetch: Debian offers no kernel 1.2.3-4-amd64 "
        "for amd64: see 'lkm kernel list' for what it has",
        ("fetch", "--arch", "vax", "6.1"): "lkm kernel fetch: unknown Debian architecture 'vax'",
        ("fetch", "linux-foo"): "lkm kernel fetch: linux-foo: not a Debian kernel image or "
        "headers package apt knows",
        ("rm", "6.1"): "lkm kernel rm: no kernel 6.1 in lkm's cache",
    }
    for args, start in cases.items():
        proc = command([LKM, "kernel", *args], text=True, env=env)
        assert proc.returncode == 1, args
        assert proc.stderr.startswith(start) and proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stdout == ""
    assert not (tmp_path / "cache" / "kernels").exists()


def test_offer_resolves_series_releases_and_packages_alike(kernel_612: KernelFixture) -> None:
    by_series = offer("6.12")
    assert by_series.release == kernel_612.version
    assert offer(kernel_612.version) == by_series
    assert offer(f"linux-headers-{kernel_612.version}") == by_series
    assert [d.package for d in by_series.packages][:2] == [
        f"linux-image-{kernel_612.version}",
        f"linux-headers-{kernel_612.version}",
    ]
    assert all(d.size > 0 and d.filename.endswith(".deb") for d in by_series.packages)


def test_headers_unpacked_by_hand_say_what_their_makefile_lacks(
    kernel_61: KernelFixture, tmp_path: Path
) -> None:
    """Debian's headers include their -common half from /usr/src: unpacked
    anywhere else, the build names the line and the command that fixes it."""
    release = kernel_61.version
    headers = tmp_path / "usr" / "src" / f"linux-headers-{release}"
    headers.mkdir(parents=True)
    for entry in kernel_61.headers.iterdir():
        if entry.name != "Makefile":
            (headers / entry.name).symlink_to(entry)
    common = f"/usr/src/linux-headers-{release.removesuffix('-amd64')}-common/Makefile"
    assert not os.path.exists(common)
    text = (kernel_61.headers / "Makefile").read_text()
    (headers / "Makefile").write_text(
        "\n".join(
            f"include {common}" if line.startswith("include ") else line
            for line in text.splitlines()
        )
        + "\n"
    )
    directory = tmp_path / "hello"
    assert command([LKM, "new", str(directory)]).returncode == 0
    built = command([LKM, "build", str(directory), "--kernel", str(headers)], text=True)
    assert built.returncode == 1
    assert built.stderr == (
        f"lkm build: {headers}/Makefile includes {common}, which is not there (Debian's "
        "headers expect to be installed under /usr/src): unpack the -common package beside "
        f"them and change that line, or run 'lkm kernel fetch {release}', which does both\n"
    )
