"""Real Debian kernels as test fixtures.

Fetches (never installs) the current Debian kernels of two series and two
foreign architectures through ``lkm kernel fetch``'s code into lkm's cache
and derives what the tests need from them:

* ``kernels/VERSION/``    the unpacked packages (``lib/modules/VERSION``,
  indexed by lkm's depmod, ``boot/vmlinuz-VERSION``,
  ``usr/src/linux-headers-VERSION``);
* ``indexed/VERSION/``    a hard-linked copy of the module tree indexed by
  kmod's own ``depmod -b`` (the reference indexes);
* ``recompressed/VERSION/{gz,zst}/``  a few hundred modules recompressed.

Package names are resolved at run time: the ABI number in them changes with
every security update, so nothing here names more than a series.

Run ``python -m lkm.testing.debian_kernels`` (``./dev fixtures`` does) to fill the
cache; tests call :func:`load_manifest` to find what is there.
"""

from __future__ import annotations

import argparse
import gzip
import json
import lzma
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from lkm.records import Record
from lkm.system.paths import INDEXED, KERNELS, cache_dir
from lkm.system.run import CommandError, run

MANIFEST_NAME = "manifest.json"
# Bumped whenever the cache layout changes, so stale caches are rebuilt.
LAYOUT_VERSION = 1
RECOMPRESSED_PER_KERNEL = 150


class FixtureError(Exception):
    """Fetching or unpacking the Debian kernels failed."""


class KernelFixture(Record):
    """One unpacked Debian kernel."""

    version: str  # uname -r of the kernel, e.g. the ABI-suffixed release
    label: str  # "6.1" or "6.12": which series it stands for
    root: str  # unpacked packages; modules under root/lib/modules/version
    indexed_root: str  # copy of the module tree indexed by kmod's depmod
    recompressed: str  # directory holding gz/ and zst/ copies ("" for foreign)
    packages: tuple[str, ...]
    arch: str = "amd64"  # Debian architecture the kernel was built for

    @property
    def moddir(self) -> Path:
        return Path(self.root) / "lib" / "modules" / self.version

    @property
    def indexed_moddir(self) -> Path:
        return Path(self.indexed_root) / "lib" / "modules" / self.version

    @property
    def headers(self) -> Path:
        return Path(self.root) / "usr" / "src" / f"linux-headers-{self.version}"

    @property
    def vmlinuz(self) -> Path:
        return Path(self.root) / "boot" / f"vmlinuz-{self.version}"

    def modules(self) -> list[Path]:
        """Every module file of the tree, sorted."""
        return sorted(_module_files(self.moddir))


def default_cache_dir() -> Path:
    """lkm's cache directory (:func:`lkm.system.paths.cache_dir`)."""
    return Path(cache_dir())


def _run(cmd: Sequence[str], cwd: Path | None = None, check: bool = True) -> str:
    try:
        done = run(cmd, cwd=str(cwd) if cwd is not None else None, check=check)
    except CommandError as exc:
        raise FixtureError(str(exc)) from None
    return done.text


def _module_files(moddir: Path) -> Iterator[Path]:
    for dirpath, _dirs, files in os.walk(moddir):
        for name in files:
            if re.search(r"\.ko(\.(xz|gz|zst))?$", name):
                yield Path(dirpath) / name


def _index_with_kmod(fixture_root: Path, version: str, dest: Path) -> None:
    """Hard-link the module tree into ``dest`` and run kmod's depmod on it."""
    if dest.exists():
        return
    tmp = Path(tempfile.mkdtemp(prefix=".index-", dir=dest.parent))
    try:
        src = fixture_root / "lib" / "modules" / version
        target = tmp / "lib" / "modules" / version
        target.parent.mkdir(parents=True)
        _run(["cp", "-al", str(src), str(target)])
        _run(["depmod", "-b", str(tmp), version])
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _raw_module_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    return data


def _recompress(modules: Sequence[Path], dest: Path) -> None:
    """gzip and zstd copies of a deterministic sample of modules."""
    if dest.exists():
        return
    tmp = Path(tempfile.mkdtemp(prefix=".recompress-", dir=dest.parent))
    try:
        step = max(1, len(modules) // RECOMPRESSED_PER_KERNEL)
        sample = modules[::step][:RECOMPRESSED_PER_KERNEL]
        (tmp / "gz").mkdir()
        (tmp / "zst").mkdir()
        for mod in sample:
            raw = _raw_module_bytes(mod)
            base = re.sub(r"\.ko(\..*)?$", ".ko", mod.name)
            (tmp / "gz" / (base + ".gz")).write_bytes(gzip.compress(raw, mtime=0))
            raw_path = tmp / base
            raw_path.write_bytes(raw)
            _run(
                [
                    "zstd",
                    "-q",
                    "-19",
                    "--rm",
                    str(raw_path),
                    "-o",
                    str(tmp / "zst" / (base + ".zst")),
                ]
            )
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# The kernels the tests use: the two amd64 series (6.1 with plain
# modules, 6.12 with .ko.xz), and kernels built for other architectures,
# whose modules differ from the host's in ELF class or byte order (s390x:
# ELF64 big-endian; armhf: ELF32 little-endian), image packages only.
SERIES = ("6.1", "6.12")
FOREIGN = ("s390x", "armhf")


def fetch(cache: Path) -> list[KernelFixture]:
    """Fill the cache (reusing what is there) and write its manifest.

    The kernels come through ``lkm kernel fetch``'s own code
    (:func:`lkm.workflows.kernel_store.fetch_kernel`); the tests add a
    copy of each module tree indexed by kmod's depmod (the reference) and
    recompressed samples."""
    from lkm.workflows.kernel_store import FetchError, Progress, fetch_kernel

    for tool in ("apt-get", "dpkg-deb", "depmod", "zstd"):
        if shutil.which(tool) is None:
            raise FixtureError(f"{tool} not found; run ./dev setup first")
    for sub in (KERNELS, INDEXED, "recompressed"):
        (cache / sub).mkdir(parents=True, exist_ok=True)
    progress = Progress(_print_progress)
    wanted: list[tuple[str | None, str | None, bool]] = [(s, None, True) for s in SERIES]
    wanted += [(None, arch, False) for arch in FOREIGN]
    fixtures: list[KernelFixture] = []
    for spec, arch, headers in wanted:
        try:
            kernel = fetch_kernel(spec, arch, cache=str(cache), progress=progress, headers=headers)
        except FetchError as exc:
            raise FixtureError(str(exc)) from None
        root = cache / KERNELS / kernel.release
        indexed = cache / INDEXED / kernel.release
        _index_with_kmod(root, kernel.release, indexed)
        fixture = KernelFixture(
            version=kernel.release,
            label=kernel.label,
            root=str(root),
            indexed_root=str(indexed),
            recompressed=str(cache / "recompressed" / kernel.release) if headers else "",
            packages=_package_names(root),
            arch=kernel.arch,
        )
        if fixture.recompressed:
            _recompress(fixture.modules(), Path(fixture.recompressed))
        fixtures.append(fixture)
    manifest = {"layout": LAYOUT_VERSION, "kernels": [_as_json(f) for f in fixtures]}
    tmp = cache / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.rename(cache / MANIFEST_NAME)
    return fixtures


def _print_progress(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def _package_names(root: Path) -> tuple[str, ...]:
    """The Debian packages unpacked into ``root``, read off what they left."""
    names = [
        f"linux-image-{p.name.removeprefix('vmlinuz-')}" for p in (root / "boot").glob("vmlinuz-*")
    ]
    src = root / "usr" / "src"
    names += sorted(p.name for p in src.glob("linux-headers-*")) if src.is_dir() else []
    lib = root / "usr" / "lib"
    names += sorted(p.name for p in lib.glob("linux-kbuild-*")) if lib.is_dir() else []
    return tuple(names)


def _as_json(fixture: KernelFixture) -> dict[str, object]:
    return {name: getattr(fixture, name) for name in KernelFixture.__fields__}


def load_manifest(cache: Path | None = None) -> list[KernelFixture]:
    """The fixtures a previous :func:`fetch` left, or [] when there are none."""
    path = (cache or default_cache_dir()) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if data.get("layout") != LAYOUT_VERSION:
        return []
    fixtures = []
    for entry in data["kernels"]:
        entry["packages"] = tuple(entry["packages"])
        fixtures.append(KernelFixture(**entry))
    return fixtures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lkm.testing.debian_kernels",
        description="Fetch and unpack Debian kernels for lkm's tests.",
    )
    parser.add_argument("--cache", type=Path, default=default_cache_dir())
    args = parser.parse_args(argv)
    try:
        fixtures = fetch(args.cache)
    except FixtureError as exc:
        print(f"debian_kernels: {exc}", file=sys.stderr)
        return 1
    for f in fixtures:
        print(f"{f.label:10} {f.version:28} {len(f.modules()):5} modules  {f.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
