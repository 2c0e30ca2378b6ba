"""Kernels on demand: Debian's kernel packages fetched into lkm's cache.

``lkm kernel fetch SPEC`` asks apt which packages make up the kernel SPEC
names (a series such as ``6.1``: the newest Debian build of it; an exact
release; or a package name), downloads exactly those — the image package
(the bootable image and the module tree), the headers package and the
``-common`` and ``linux-kbuild`` packages it needs — unpacks them into
``CACHE/kernels/RELEASE/`` the way they would lie on an installed system,
repairs what only works at the installed place (the headers' absolute
include of their ``-common`` half, the ``build`` and ``source`` links) and
indexes the module tree with lkm's depmod. Everything happens in a
temporary directory renamed into place at the end: a kernel in the cache
is complete or absent.

:func:`resolve_kernel` is what a ``--kernel`` option resolves through: the
kernel when it is here (:func:`lkm.model.kernels.find_kernel`), else,
when the spec names a Debian kernel, fetched first with a one-line notice.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence

from lkm.errors import LkmError
from lkm.model.kernels import (
    Kernel,
    KernelNotFound,
    architecture,
    cached_kernels,
    find_kernel,
    flavour_of,
    host_arch,
    host_kernels,
    kernel_in_root,
    known_architectures,
    version_key,
)
from lkm.records import Record
from lkm.system.apt import Apt, AptError, DebFile
from lkm.system.paths import DEPMOD, INDEXED, KERNELS, cache_dir
from lkm.system.run import start

APT_STATE = "apt"  # the cache's own apt lists, for other architectures
VM_TREES = "vm-trees"  # indexed views of module trees that came without indexes
_SERIES = re.compile(r"^\d+\.\d+$")
# A Debian kernel release: upstream version, then the ABI ("-57") or the
# Debian revision ("+deb12"), then the flavour.
_RELEASE = r"\d+\.\d+(?:\.\d+)?(?:-\d+|\+deb\d+(?:u\d+)?)"


class FetchError(LkmError):
    """A kernel could not be fetched; the message says why and what to do."""


class Offer(Record):
    """A Debian kernel the archive has: its release and the packages."""

    release: str
    arch: str
    packages: tuple[DebFile, ...]

    @property
    def size(self) -> int:
        return sum(deb.size for deb in self.packages)


class Progress:
    """Where a fetch reports: one line per step (``step``) and, while a
    package downloads, its bytes (``download``). This one prints lines to
    a stream; on a terminal the bytes count up in place."""

    def __init__(self, write: Callable[[str], None], terminal: bool = False) -> None:
        self.write = write
        self.terminal = terminal
        self._shown = ""

    def step(self, text: str) -> None:
        self.write(f"{text}\n")

    def download(self, package: str, done: int, total: int) -> None:
        if self.terminal:
            self.write(f"\r  {package}  {megabytes(done)} / {megabytes(total)}")
            if done >= total:
                self.write("\n")
        elif done >= total and self._shown != package:
            self._shown = package
            self.write(f"  {package}  {megabytes(total)}\n")


def _packages_text(count: int) -> str:
    return f"{count} package" if count == 1 else f"{count} packages"


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _apt(arch: str, cache: str) -> Apt:
    return Apt.for_arch(arch, host_arch() or "amd64", os.path.join(cache, APT_STATE))


def _ready(apt: Apt) -> None:
    """Package lists apt can answer from: refreshed once when it knows no
    kernel at all (a fresh machine, or another architecture's first use)."""
    if not any(name.startswith("linux-image-") for name in apt.linux_packages()):
        apt.update()


def _release_pattern(arch: str) -> re.Pattern[str]:
    return re.compile(rf"^linux-image-({_RELEASE}-{re.escape(flavour_of(arch))})$")


def archive_releases(apt: Apt) -> list[str]:
    """Releases of the architecture's standard flavour the archive offers,
    oldest first."""
    pattern = _release_pattern(apt.arch)
    found = {m.group(1) for name in apt.linux_packages() if (m := pattern.match(name))}
    return sorted(found, key=version_key)


def newest_per_series(releases: Sequence[str]) -> dict[str, str]:
    """Series (``6.1``) -> its newest release, in version order."""
    newest: dict[str, str] = {}
    for release in sorted(releases, key=version_key):
        series = ".".join(release.split(".")[:2])
        newest[series] = release
    return newest


def _release_of_package(apt: Apt, package: str) -> str:
    """The release a package name stands for; a meta-package
    (``linux-image-amd64``, ``linux-headers-6.12-amd64``) through its
    dependency on a versioned one."""
    for prefix in ("linux-image-", "linux-headers-"):
        if not package.startswith(prefix):
            continue
        name = package.removesuffix("-unsigned")
        versioned = [d for d in apt.depends(name) if d.startswith(prefix) and d != name]
        release = name.removeprefix(prefix)
        if re.match(rf"^{_RELEASE}-", release) and not release.endswith("-common"):
            return release
        if versioned and apt.known(name):
            return _release_of_package(apt, versioned[0])
    raise FetchError(f"{package}: not a Debian kernel image or headers package apt knows")


def release_for(spec: str | None, arch: str, apt: Apt) -> str:
    """The release ``spec`` names: a series (its newest build), a release,
    a package name; None: the distribution's default kernel (what the
    meta-package ``linux-image-FLAVOUR`` depends on)."""
    if spec is None:
        return _release_of_package(apt, f"linux-image-{flavour_of(arch)}")
    if spec.startswith("linux-"):
        return _release_of_package(apt, spec)
    if _SERIES.match(spec):
        newest = newest_per_series(archive_releases(apt)).get(spec)
        if newest is None:
            offered = ", ".join(newest_per_series(archive_releases(apt))) or "none"
            raise FetchError(
                f"Debian offers no {arch} kernel of series {spec} (series offered: {offered})"
            )
        return newest
    if not apt.known(f"linux-image-{spec}"):
        raise FetchError(
            f"Debian offers no kernel {spec} for {arch}: see 'lkm kernel list' for what it has"
        )
    return spec


def offer(
    spec: str | None, arch: str | None = None, cache: str | None = None, headers: bool = True
) -> Offer:
    """What fetching ``spec`` would download (asks apt; downloads nothing);
    without ``headers``, the image package alone."""
    base = cache if cache is not None else cache_dir()
    arch = arch or _arch_of_spec(spec)
    if arch not in known_architectures():
        raise FetchError(
            f"unknown Debian architecture '{arch}' (known: {', '.join(known_architectures())})"
        )
    apt = _apt(arch, base)
    try:
        _ready(apt)
        release = release_for(spec, arch, apt)
        packages = _packages(apt, release) if headers else [f"linux-image-{release}"]
        return Offer(release, arch, tuple(apt.deb_files(packages)))
    except AptError as exc:
        raise FetchError(str(exc)) from None


def _arch_of_spec(spec: str | None) -> str:
    name = (spec or "").removeprefix("linux-image-").removeprefix("linux-headers-")
    return architecture(name.removesuffix("-unsigned"), host_arch() or "amd64")


def _packages(apt: Apt, release: str) -> list[str]:
    """The image, headers, and the headers' ``-common`` and kbuild halves."""
    headers = f"linux-headers-{release}"
    extra = [d for d in apt.depends(headers) if d.startswith(("linux-headers-", "linux-kbuild-"))]
    wanted = [f"linux-image-{release}"]
    if apt.known(headers):
        wanted += [headers, *extra]
    return wanted


def fetch_kernel(
    spec: str | None,
    arch: str | None = None,
    *,
    cache: str | None = None,
    progress: Progress | None = None,
    headers: bool = True,
) -> Kernel:
    """Fetch the kernel ``spec`` names into the cache (see the module
    docstring) unless it is there with all its parts; the kernel.
    Without ``headers``, the image package alone (enough to index and
    inspect a kernel of another architecture)."""
    base = cache if cache is not None else cache_dir()
    report = progress or Progress(lambda _text: None)
    wanted = offer(spec, arch, base, headers)
    root = os.path.join(base, KERNELS, wanted.release)
    if os.path.isdir(root) and _complete(root, wanted):
        repair_headers(root, wanted.release)
        index_module_tree(root, wanted.release, report)
        return kernel_in_root(root, wanted.release, cached=True)
    report.step(
        f"fetching {wanted.release} ({wanted.arch}): {_packages_text(len(wanted.packages))}, "
        f"{megabytes(wanted.size)}"
    )
    os.makedirs(os.path.dirname(root), exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".fetch-{wanted.release}-", dir=os.path.dirname(root))
    try:
        apt = _apt(wanted.arch, base)
        try:
            debs = _download_all(wanted, apt, work, report)
        except FetchError:
            # Package lists older than the archive name files that are
            # gone (every security update replaces the kernel packages):
            # refresh them and resolve the spec again, once.
            try:
                apt.update()
            except AptError as exc:
                raise FetchError(str(exc)) from None
            wanted = offer(spec, wanted.arch, base, headers)
            root = os.path.join(base, KERNELS, wanted.release)
            debs = _download_all(wanted, apt, work, report)
        tree = os.path.join(work, "root")
        _unpack(debs, tree, report)
        repair_headers(tree, wanted.release, root)
        index_module_tree(tree, wanted.release, report)
        _replace_tree(tree, root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    kernel = kernel_in_root(root, wanted.release, cached=True)
    report.step(f"ready: {wanted.release} in {root}")
    return kernel


def _complete(root: str, wanted: Offer) -> bool:
    """Whether an unpacked kernel has every part the offer would bring."""
    kernel = kernel_in_root(root, wanted.release, cached=True)
    has_headers = any(d.package.startswith("linux-headers-") for d in wanted.packages)
    return kernel.image is not None and (kernel.headers is not None or not has_headers)


def _download_all(wanted: Offer, apt: Apt, work: str, report: Progress) -> list[str]:
    directory = os.path.join(work, "debs")
    os.makedirs(directory, exist_ok=True)
    try:
        return apt.download(wanted.packages, directory, report.download)
    except AptError as exc:
        raise FetchError(str(exc)) from None


def _unpack(debs: Sequence[str], tree: str, report: Progress) -> None:
    """``dpkg-deb -x`` of every package into ``tree``, all at once: the
    packages hold disjoint files (dpkg refuses packages that overlap), and
    each extraction is a decompressor and tar that wait on each other."""
    report.step(f"unpacking {_packages_text(len(debs))}")
    os.makedirs(tree)
    from contextlib import ExitStack

    with ExitStack() as running:
        processes = [running.enter_context(start(["dpkg-deb", "-x", deb, tree])) for deb in debs]
        for deb, process in zip(debs, processes, strict=True):
            if process.wait() != 0:
                raise FetchError(f"{deb}: cannot unpack: {process.failure()}")


def repair_headers(tree: str, release: str, final: str | None = None) -> None:
    """Make the headers work where they were unpacked (``tree``, to be
    renamed to ``final``): Debian's headers include their ``-common`` half
    by an absolute ``/usr/src/…`` path, and ``lib/modules/RELEASE/{build,
    source}`` link to absolute paths; both would name the machine's own
    ``/usr/src``. The include names ``final``'s copy; the links become
    relative (idempotent)."""
    src = os.path.join(tree, "usr", "src")
    final_src = os.path.join(final or tree, "usr", "src")
    for name in _listdir(src):
        makefile = os.path.join(src, name, "Makefile")
        if not os.path.isfile(makefile) or os.path.islink(makefile):
            continue
        with open(makefile, encoding="utf-8", errors="surrogateescape") as file:
            text = file.read()
        fixed = re.sub(r"^include /usr/src/", f"include {final_src}/", text, flags=re.M)
        if fixed != text:
            with open(makefile, "w", encoding="utf-8", errors="surrogateescape") as file:
                file.write(fixed)
    moddir = os.path.join(tree, "lib", "modules", release)
    for link in ("build", "source"):
        path = os.path.join(moddir, link)
        target = os.readlink(path) if os.path.islink(path) else ""
        if target.startswith("/"):
            os.unlink(path)
            os.symlink(os.path.relpath(tree + target, moddir), path)


def index_module_tree(root: str, release: str, report: Progress) -> None:
    """Index ``root``'s module tree with lkm's depmod unless it is indexed."""
    moddir = os.path.join(root, "lib", "modules", release)
    if not os.path.isdir(moddir) or os.path.exists(os.path.join(moddir, "modules.dep.bin")):
        return
    report.step("indexing the module tree (lkm depmod)")
    _depmod(moddir, release, basedir=root)


def _depmod(
    moddir: str,
    release: str,
    basedir: str = "",
    moduledir: str = "/lib/modules",
    outdir: str | None = None,
) -> None:
    """lkm's depmod over ``moddir`` (``BASEDIR/MODULEDIR/RELEASE``), its
    files written under ``outdir`` when given, uncached; its errors as one
    FetchError."""
    from lkm.workflows.depmod import DepmodSettings, run_depmod

    problems: list[str] = []

    def note(level: str, message: str) -> None:
        if level in ("ERROR", "FATAL"):
            problems.append(message)

    settings = DepmodSettings(
        version=release, basedir=basedir, moduledir=moduledir, outdir=outdir, use_cache=False
    )
    result = run_depmod(settings, note)
    if result.status != 0 or problems:
        raise FetchError(f"{moddir}: depmod failed: {'; '.join(problems) or result.status}")


# Indexed views of module trees that came without indexes, kept at most this many.
INDEXED_VIEWS = 4


def indexed_module_tree(moddir: str, release: str) -> str:
    """A module tree with kmod's index files for a guest to modprobe in:
    ``moddir`` itself when it has them; else (a tree unpacked by hand
    with ``dpkg-deb -x``) an indexed view of it in lkm's cache — the index
    files lkm's depmod made, beside links to every entry of ``moddir`` —
    made once, left untouched: lkm does not write into a tree it did not
    make. The view is made again when ``moddir`` changed after it."""
    moddir = os.path.abspath(moddir)
    if os.path.exists(os.path.join(moddir, "modules.dep.bin")):
        return moddir
    if os.path.basename(moddir) != release:
        return moddir  # not a lib/modules/RELEASE tree depmod could index
    from lkm.workflows.depmod.cache import cache_path

    views = os.path.join(cache_dir(), VM_TREES)
    view_root = cache_path(views, moddir).removesuffix(".cache")
    view = view_root + moddir
    if _newer_than(view, moddir):
        return view
    os.makedirs(views, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".view-", dir=views)
    try:
        _depmod(moddir, release, moduledir=os.path.dirname(moddir), outdir=work)
        for name in _listdir(moddir):
            if not os.path.lexists(os.path.join(work + moddir, name)):
                os.symlink(os.path.join(moddir, name), os.path.join(work + moddir, name))
        _replace_tree(work, view_root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _keep_newest(views, INDEXED_VIEWS)
    return view


def _newer_than(view: str, moddir: str) -> bool:
    try:
        return os.stat(f"{view}/modules.dep.bin").st_mtime >= os.stat(moddir).st_mtime
    except OSError:
        return False


def _keep_newest(directory: str, count: int) -> None:
    entries = [os.path.join(directory, n) for n in _listdir(directory) if not n.startswith(".")]
    entries.sort(key=lambda path: os.stat(path).st_mtime, reverse=True)
    for stale in entries[count:]:
        shutil.rmtree(stale, ignore_errors=True)


def _replace_tree(tree: str, root: str) -> None:
    """Rename ``tree`` to ``root``; an incomplete ``root`` is set aside first."""
    old = None
    if os.path.lexists(root):
        old = tempfile.mkdtemp(prefix=".old-", dir=os.path.dirname(root))
        os.rename(root, os.path.join(old, "tree"))
    os.rename(tree, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def cached_matching(spec: str, cache: str | None = None) -> list[Kernel]:
    """The cached kernels ``spec`` names: a release, a label, a package."""
    name = spec.removeprefix("linux-image-").removeprefix("linux-headers-")
    return [k for k in cached_kernels(cache) if name in (k.release, k.label)]


def remove_kernel(
    spec: str, cache: str | None = None, removed: Callable[[str], None] | None = None
) -> list[str]:
    """Remove the cached kernels ``spec`` names and what lkm derived from
    them; the releases removed (``removed`` is told each directory).
    Kernels installed on the machine are not lkm's to remove."""
    base = cache if cache is not None else cache_dir()
    found = cached_matching(spec, base)
    if not found:
        raise KernelNotFound(
            f"no kernel {spec} in lkm's cache ({os.path.join(base, KERNELS)}): "
            "see 'lkm kernel list'"
        )
    for kernel in found:
        for sub in (KERNELS, INDEXED, "recompressed"):
            path = os.path.join(base, sub, kernel.release)
            if os.path.lexists(path):
                trash = tempfile.mkdtemp(prefix=".rm-", dir=os.path.join(base, sub))
                os.rename(path, os.path.join(trash, "tree"))
                shutil.rmtree(trash)
                if removed is not None:
                    removed(path)
        _forget_depmod_cache(base, kernel.release)
    return [k.release for k in found]


def _forget_depmod_cache(base: str, release: str) -> None:
    """Drop depmod's cached facts for the removed tree (the index file and
    what sits next to it under the same name)."""
    from lkm.workflows.depmod.cache import cache_path

    moddir = os.path.join(base, KERNELS, release, "lib", "modules", release)
    index = cache_path(os.path.join(base, DEPMOD), moddir)
    for name in _listdir(os.path.dirname(index)):
        if name.startswith(os.path.basename(index)):
            os.unlink(os.path.join(os.path.dirname(index), name))


class Listed(Record):
    """One row of ``lkm kernel list``."""

    release: str
    arch: str
    source: str  # "host", "cache" or "archive"
    image: str | None
    modules: str | None
    headers: str | None
    download: int = 0  # bytes, for what the archive offers

    def as_json(self) -> dict[str, object]:
        return {
            "kernel": self.release,
            "arch": self.arch,
            "series": ".".join(self.release.split(".")[:2]),
            "source": self.source,
            "image": self.image,
            "modules": self.modules,
            "headers": self.headers,
            "download_bytes": self.download if self.source == "archive" else None,
        }


def list_kernels(
    arch: str | None = None, *, archive: bool = True, root: str = "", cache: str | None = None
) -> list[Listed]:
    """The machine's kernels, the cached ones, then (``archive``) the
    newest Debian build of each series apt offers that is not here."""
    rows = [_listed(k, "host") for k in host_kernels(root)]
    rows += [_listed(k, "cache") for k in sorted(cached_kernels(cache), key=_kernel_key)]
    if arch is not None:
        rows = [r for r in rows if r.arch in (arch, "")]
    if archive:
        here = {r.release for r in rows}
        rows += _offered(arch or host_arch() or "amd64", here, cache)
    return rows


def _kernel_key(kernel: Kernel) -> tuple[int, ...]:
    return version_key(kernel.release)


def _listed(kernel: Kernel, source: str) -> Listed:
    return Listed(kernel.release, kernel.arch, source, kernel.image, kernel.modules, kernel.headers)


def _offered(arch: str, here: set[str], cache: str | None) -> list[Listed]:
    base = cache if cache is not None else cache_dir()
    apt = _apt(arch, base)
    try:
        if not apt.linux_packages():
            return []
        rows = []
        for release in newest_per_series(archive_releases(apt)).values():
            if release in here:
                continue
            size = sum(deb.size for deb in apt.deb_files(_packages(apt, release)))
            rows.append(Listed(release, arch, "archive", None, None, None, size))
        return rows
    except AptError:
        return []  # what the archive offers is a hint; the list stands without it


def resolve_kernel(
    spec: str | None,
    need: str = "image",
    *,
    fetch: bool = True,
    root: str = "",
    notice: Callable[[str], None] | None = None,
) -> Kernel:
    """The kernel ``spec`` names (see :func:`lkm.model.kernels.find_kernel`),
    fetched into the cache first when it is a series, release or package
    that is not here yet and ``fetch`` is true; ``notice`` is told, in one
    line each, that a fetch starts and how it goes. Raises
    :class:`KernelNotFound`."""
    try:
        return find_kernel(spec, need=need, root=root)
    except KernelNotFound as missing:
        if not fetch or not spec or "/" in spec or os.path.exists(spec):
            raise
        try:
            wanted = offer(spec)
        except FetchError:
            raise missing from None
        say = notice or _to_stderr
        say(
            f"lkm: kernel {spec} is not here; fetching {wanted.release} from Debian "
            f"({megabytes(wanted.size)}; --no-fetch refuses)"
        )

        def step(text: str) -> None:
            say(text.rstrip("\n"))

        fetch_kernel(spec, progress=Progress(step))
        return find_kernel(spec, need=need, root=root)


def _to_stderr(line: str) -> None:
    sys.stderr.write(f"{line}\n")
    sys.stderr.flush()


__all__ = [
    "FetchError",
    "Listed",
    "Offer",
    "Progress",
    "archive_releases",
    "fetch_kernel",
    "indexed_module_tree",
    "list_kernels",
    "newest_per_series",
    "offer",
    "release_for",
    "remove_kernel",
    "repair_headers",
    "resolve_kernel",
]
