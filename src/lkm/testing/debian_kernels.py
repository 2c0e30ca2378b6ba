"""Real Debian kernels as test fixtures.

Fetches (never installs) the current Debian bookworm kernel images and
headers with ``apt-get download``, unpacks them with ``dpkg-deb -x`` into a
cache outside the repository, and derives what the tests need from them:

* ``kernels/VERSION/``    the unpacked packages (``lib/modules/VERSION``,
  ``boot/vmlinuz-VERSION``, ``usr/src/linux-headers-VERSION``);
* ``indexed/VERSION/``    a hard-linked copy of the module tree indexed by
  kmod's own ``depmod -b`` (the reference indexes);
* ``recompressed/VERSION/{gz,zst}/``  a few hundred modules recompressed.

Package names are resolved at run time: the ABI number in them changes with
every security update, so nothing here names a version.

Run ``python -m lkm.testing.debian_kernels`` (the Makefile does) to fill the
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


def _depends(package: str, apt_options: Sequence[str] = ()) -> list[str]:
    """Direct ``Depends:`` of a package, as apt-cache prints them."""
    out = _run(["apt-cache", *apt_options, "depends", package])
    return re.findall(r"^\s+\|?Depends:\s+(\S+)$", out, re.M)


def _has_candidate(package: str) -> bool:
    out = _run(["apt-cache", "policy", package], check=False)
    match = re.search(r"Candidate:\s+(\S+)", out)
    return match is not None and match.group(1) != "(none)"


def _ensure_apt_lists() -> None:
    if not _has_candidate("linux-image-amd64"):
        _run(["apt-get", "update"])


def _image_of_meta(meta: str) -> str:
    images = [d for d in _depends(meta) if d.startswith("linux-image-")]
    if not images:
        raise FixtureError(f"{meta} depends on no linux-image package")
    return images[0]


def _newest_612_image() -> str:
    """The 6.12 LTS image the bookworm meta-package points at.

    Falls back to the highest-versioned signed image ``apt-cache search``
    knows when the meta-package is missing.
    """
    if _has_candidate("linux-image-6.12-amd64"):
        return _image_of_meta("linux-image-6.12-amd64")
    out = _run(["apt-cache", "search", "--names-only", r"^linux-image-6\.12\."])
    names = re.findall(r"^(linux-image-6\.12\.(\d+)\+\S+-amd64) ", out, re.M)
    if not names:
        raise FixtureError("apt-cache knows no linux-image-6.12.*-amd64 package")
    newest: str = max(names, key=lambda n: int(n[1]))[0]
    return newest


def resolve_packages() -> dict[str, list[str]]:
    """Series label -> packages to download (image, headers and what they need)."""
    _ensure_apt_lists()
    result: dict[str, list[str]] = {}
    for label, image in (
        ("6.1", _image_of_meta("linux-image-amd64")),
        ("6.12", _newest_612_image()),
    ):
        version = image.removeprefix("linux-image-")
        headers = f"linux-headers-{version}"
        extra = [
            dep for dep in _depends(headers) if dep.startswith(("linux-headers-", "linux-kbuild-"))
        ]
        result[label] = [image, headers, *extra]
    return result


def _download(packages: Sequence[str], debs: Path, apt_options: Sequence[str] = ()) -> list[Path]:
    debs.mkdir(parents=True, exist_ok=True)
    wanted: list[Path] = []
    missing: list[str] = []
    for pkg in packages:
        found = sorted(debs.glob(f"{_deb_glob_name(pkg)}_*.deb"))
        if found:
            wanted.append(found[-1])
        else:
            missing.append(pkg)
    if missing:
        _run(["apt-get", *apt_options, "download", *missing], cwd=debs)
        for pkg in missing:
            found = sorted(debs.glob(f"{_deb_glob_name(pkg)}_*.deb"))
            if not found:
                raise FixtureError(f"apt-get download {pkg} left no .deb in {debs}")
            wanted.append(found[-1])
    return wanted


def _deb_glob_name(pkg: str) -> str:
    # apt-get names files NAME_VERSION_ARCH.deb; '+' stays literal.
    return pkg.replace("[", "[[]")


def _unpack(debs: Sequence[Path], dest: Path) -> None:
    """Unpack into a temporary directory, then rename: never half a tree."""
    if dest.exists():
        return
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest.parent))
    try:
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(tmp)])
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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


def fetch(cache: Path) -> list[KernelFixture]:
    """Fill the cache (reusing what is there) and write its manifest."""
    for tool in ("apt-get", "dpkg-deb", "depmod", "zstd"):
        if shutil.which(tool) is None:
            raise FixtureError(f"{tool} not found; run ./dev setup first")
    cache.mkdir(parents=True, exist_ok=True)
    for sub in (KERNELS, INDEXED, "recompressed"):
        (cache / sub).mkdir(exist_ok=True)
    fixtures: list[KernelFixture] = []
    try:
        resolved = resolve_packages()
        downloads = {label: _download(pkgs, cache / "debs") for label, pkgs in resolved.items()}
    except FixtureError:
        # Package lists older than the archive name files that are gone
        # (every security update replaces the kernel packages): refresh
        # the lists and resolve the names again, once.
        _run(["apt-get", "update"], check=False)
        resolved = resolve_packages()
        downloads = {label: _download(pkgs, cache / "debs") for label, pkgs in resolved.items()}
    for label, packages in resolved.items():
        version = packages[0].removeprefix("linux-image-")
        debs = downloads[label]
        root = cache / KERNELS / version
        _unpack(debs, root)
        _relink_headers_makefile(root)
        indexed = cache / INDEXED / version
        _index_with_kmod(root, version, indexed)
        recompressed = cache / "recompressed" / version
        fixture = KernelFixture(
            version=version,
            label=label,
            root=str(root),
            indexed_root=str(indexed),
            recompressed=str(recompressed),
            packages=tuple(packages),
        )
        _recompress(fixture.modules(), recompressed)
        fixtures.append(fixture)
    fixtures.extend(_fetch_foreign(cache))
    manifest = {
        "layout": LAYOUT_VERSION,
        "kernels": [
            {name: getattr(f, name) for name in KernelFixture.__fields__} for f in fixtures
        ],
    }
    tmp = cache / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.rename(cache / MANIFEST_NAME)
    return fixtures


# Kernels built for other architectures: modules whose ELF class or byte
# order differs from the host's (s390x: ELF64 big-endian; armhf: ELF32
# little-endian). Meta-package per Debian architecture.
FOREIGN = (("s390x", "linux-image-s390x"), ("armhf", "linux-image-armmp"))


def _foreign_apt_options(cache: Path, arch: str) -> list[str]:
    """apt options for a private package list of another architecture.

    Keeps the machine's own dpkg and apt configuration untouched (no
    ``dpkg --add-architecture``): lists live under the cache.
    """
    lists = cache / "apt" / arch / "lists"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    (cache / "apt" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    return [
        "-o",
        f"Dir::State::Lists={lists}",
        "-o",
        f"Dir::Cache={cache / 'apt'}",
        "-o",
        f"APT::Architecture={arch}",
        "-o",
        f"APT::Architectures::={arch}",
        "-o",
        "Dir::State::status=/dev/null",
    ]


def _fetch_foreign(cache: Path) -> list[KernelFixture]:
    fixtures = []
    for arch, meta in FOREIGN:
        options = _foreign_apt_options(cache, arch)
        images = []
        if (cache / "apt" / arch / "lists").exists():
            images = [d for d in _depends_or_none(meta, options) if d.startswith("linux-image-")]
        if not images:
            # A mirror in mid-sync can fail one index; what did arrive is
            # enough when it names the image.
            _run(["apt-get", *options, "update"], check=False)
            images = [d for d in _depends_or_none(meta, options) if d.startswith("linux-image-")]
        if not images:
            raise FixtureError(f"no {arch} kernel image found through {meta}")
        image = images[0]
        version = image.removeprefix("linux-image-")
        root = cache / KERNELS / version
        _unpack(_download([image], cache / "debs", options), root)
        indexed = cache / INDEXED / version
        _index_with_kmod(root, version, indexed)
        fixtures.append(
            KernelFixture(
                version=version,
                label=f"{version.split('-')[0].rsplit('.', 1)[0]}-{arch}",
                root=str(root),
                indexed_root=str(indexed),
                recompressed="",
                packages=(image,),
                arch=arch,
            )
        )
    return fixtures


def _depends_or_none(package: str, options: Sequence[str]) -> list[str]:
    try:
        return _depends(package, options)
    except FixtureError:
        return []


def _relink_headers_makefile(root: Path) -> None:
    """Point the headers' top Makefile at the unpacked ``-common`` tree.

    Debian's arch headers package includes the common headers through an
    absolute ``/usr/src/...-common`` path; outside an installed system that
    path does not exist, so prefix it with the unpacked root (idempotent).
    """
    for makefile in (root / "usr" / "src").glob("linux-headers-*/Makefile"):
        text = makefile.read_text()
        fixed = re.sub(r"^include /usr/src/", f"include {root}/usr/src/", text, flags=re.M)
        if fixed != text:
            makefile.write_text(fixed)


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
