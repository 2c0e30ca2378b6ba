"""``lkm install`` and ``lkm uninstall``: what ``make modules_install`` and
``depmod`` do for out-of-tree modules, as one transaction.

kbuild's ``modules_install`` for an external module (``M=DIR``, see the
kernel's ``scripts/Makefile.modinst``) copies each built ``.ko`` to
``MODLIB/INSTALL_MOD_DIR``, where ``MODLIB`` is
``INSTALL_MOD_PATH/lib/modules/KERNELRELEASE``; signs it when the kernel
signs every module; compresses it when the kernel's modules are compressed;
then runs depmod. lkm does the same, as an installer rather than a build
step:

* the kernel is the one each module was built for (the release its
  vermagic names), unless one is asked for; modules for another kernel
  are refused;
* ``INSTALL_MOD_DIR``'s default is read from that kernel's own kbuild
  files, since kernels differ (Debian's 6.1 says ``extra``, later kernels
  ``updates``, which depmod's default search ranks above the kernel's own
  modules);
* the compression is the one the tree's own modules (``kernel/``) have,
  made with kbuild's settings (``xz --check=crc32 --lzma2=dict=1MiB``,
  ``gzip -n``, ``zstd``);
* a module is signed when a key is given, before it is compressed (the
  kernel checks the signature of the decompressed module);
* the tree is indexed by lkm's depmod (:func:`run_depmod`, with its cache,
  so only what changed is read again).

Nothing is left half-done. Every module is read, checked, signed and
compressed before the tree is touched. Files land through a temporary name
and a rename; a file replaced or removed is first kept under a backup name
beside it (a hard link, or the file itself renamed), and so are the index
files before depmod rewrites them. When any step fails, each change is
undone in reverse order, which puts back the very same inodes; on success
the backups are deleted. Backup and temporary names end in ``~``, which no
module name does, so a depmod run in between never mistakes them for
modules. A process killed in between can leave such a file behind, as a
killed depmod leaves its temporary files.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from functools import partial

from lkm.errors import LkmError, one_line
from lkm.formats import compression
from lkm.formats.compression import Compression
from lkm.formats.kmod_index_writer import Layout
from lkm.formats.module_names import MODULE_EXTENSIONS, has_module_extension, module_name_from_path
from lkm.records import Record
from lkm.system.atomic import replace_file
from lkm.system.files import BINARY, HEADERS_TEXT, read_file

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (slow)
if TYPE_CHECKING:
    from lkm.workflows.depmod import DepmodSettings
    from lkm.workflows.sign import Signer

Report = Callable[[str, str], None]  # depmod's messages: (level, text)

# The kernel's own modules: never placed into, never removed from.
IN_TREE_DIR = "kernel"
# Names depmod skips at any depth (kmod's should_exclude_dir).
SKIPPED_DIRS = ("build", "source")
# Without the kernel's kbuild files: the directory current kbuild uses, and
# the one depmod's default search ranks above everything else.
FALLBACK_DIR = "updates"
DEFAULT_HASH = "sha256"  # the kernel's CONFIG_MODULE_SIG_HASH default
MODULE_MODE = 0o644  # what kbuild's cp leaves with the usual umask
# INSTALL_MOD_DIR's default for external modules: ``INSTALL_MOD_DIR ?= X``
# in scripts/Makefile.modinst, or, in older top Makefiles,
# ``$(if $(INSTALL_MOD_DIR),$(INSTALL_MOD_DIR),X)``.
_INSTALL_MOD_DIR = (
    re.compile(r"^[ \t]*INSTALL_MOD_DIR[ \t]*\?=[ \t]*([^\s$()]+)[ \t]*$", re.M),
    re.compile(r"\$\(if \$\(INSTALL_MOD_DIR\),\$\(INSTALL_MOD_DIR\),([^\s$()]+)\)"),
)
# Debian's headers tree is a Makefile including the source tree's.
_INCLUDE = re.compile(r"^include[ \t]+(\S+)/Makefile[ \t]*$", re.M)
_BACKUP = "~lkm-old~"
_TEMPORARY = "~lkm-new~"


class InstallError(LkmError):
    """A module that cannot be installed or removed, or a tree that cannot
    take the change; one line naming the file and the problem."""


class IndexOptions(Record):
    """How the tree is indexed (``lkm depmod``'s options of the same names)."""

    use_cache: bool = True
    cache_dir: str | None = None  # None: lkm's cache directory
    layout: Layout = Layout.PRE_ORDER


class InstallRequest(Record):
    """What ``lkm install`` was asked to do."""

    sources: tuple[str, ...] = (".",)  # module files, or directories of built *.ko
    kernel: str | None = None  # a release or label; None: the modules' vermagic
    root: str = ""  # kbuild's INSTALL_MOD_PATH ("": /)
    directory: str | None = None  # under the module tree; None: kbuild's default
    key: str | None = None  # sign with this key and certificate
    cert: str | None = None
    hash_name: str = DEFAULT_HASH
    index: IndexOptions = IndexOptions()


class UninstallRequest(Record):
    """What ``lkm uninstall`` was asked to do."""

    names: tuple[str, ...]  # module names, either spelling, or file names
    kernel: str | None = None  # None: the running kernel
    root: str = ""
    index: IndexOptions = IndexOptions()


class BuiltModule(Record):
    """A module to install, read and checked."""

    source: str  # the file given, or found in a directory given
    name: str  # the module name ('-' -> '_')
    filename: str  # the installed file's name before its compression suffix
    release: str  # the kernel release its vermagic names
    image: bytes  # the uncompressed module


class InstallDir(Record):
    """Where modules go, under the module tree, and who said so."""

    path: str  # "updates", "extra", …
    source: str  # the kbuild file that says so, "--dir", or "" (nothing did)


class Placed(Record):
    """One installed module, and what the new index makes of its name."""

    source: str
    name: str
    path: str
    signed: bool
    replaced: tuple[str, ...] = ()  # copies of it the install replaced
    shadows: tuple[str, ...] = ()  # other files of the name the index now passes over
    shadowed_by: str | None = None  # the file the index picks instead of this one


class InstallResult(Record):
    release: str
    moddir: str
    directory: InstallDir
    compression: Compression
    placed: tuple[Placed, ...]


class Removed(Record):
    """One uninstalled module: its files, and what its name loads now."""

    name: str
    paths: tuple[str, ...]
    now: str | None = None  # the file the index resolves the name to afterwards


class UninstallResult(Record):
    release: str
    moddir: str
    removed: tuple[Removed, ...]


# -- the modules ---------------------------------------------------------------


def built_modules(sources: Sequence[str]) -> list[BuiltModule]:
    """Every module named (a directory stands for the ``*.ko`` files that
    ``lkm build`` left in it), read and checked."""
    return [read_built_module(path) for source in sources for path in _expand(source)]


def check_distinct(modules: Sequence[BuiltModule]) -> None:
    """Refuse two files of one module name: one would replace the other."""
    seen: dict[str, str] = {}
    for module in modules:
        if module.name in seen:
            raise InstallError(
                f"{module.source}: module {module.name} is given twice "
                f"(also as {seen[module.name]})"
            )
        seen[module.name] = module.source


def _expand(source: str) -> list[str]:
    if not os.path.isdir(source):
        return [source]
    found = sorted(glob.glob(os.path.join(glob.escape(source), "*.ko")))
    if not found:
        raise InstallError(
            f"{source}: no built modules (*.ko) in the directory: build them first "
            f"(lkm build {source})"
        )
    return found


def read_built_module(path: str) -> BuiltModule:
    """A module file (compressed or not) and the release it was built for."""
    from lkm.formats.module_file import ModuleImage
    from lkm.workflows.sign import check_module

    try:
        data = read_file(path, BINARY)
    except OSError as exc:
        raise InstallError(f"{path}: {exc.strerror or exc}") from None
    try:
        kind = compression.detect(data[: compression.MAGIC_PROBE_SIZE])
        image = compression.decompress(data, kind)
        check_module(image)
        info = dict(ModuleImage(image).modinfo() or [])
    except LkmError as exc:  # a format error, or zstandard missing
        raise InstallError(f"{path}: {exc}") from None
    release = info.get("vermagic", "").split(" ", 1)[0]
    if not release:
        raise InstallError(f"{path}: no vermagic in .modinfo: not a module kbuild built")
    if not is_release(release):
        raise InstallError(f"{path}: its vermagic names no kernel release ({one_line(release)})")
    filename = os.path.basename(path)
    for extension in MODULE_EXTENSIONS[1:]:
        filename = filename.removesuffix(extension.removeprefix(".ko"))
    if not filename.endswith(".ko"):
        filename += ".ko"
    return BuiltModule(path, module_name_from_path(path), filename, release, image)


def target_release(modules: Sequence[BuiltModule], release: str | None) -> str:
    """The release to install for: ``release`` (every module must be built
    for it) or the one every module's vermagic names."""
    if release is not None:
        for module in modules:
            if module.release != release:
                raise InstallError(
                    f"{module.source}: built for kernel {module.release}, not {release} "
                    f"(rebuild it: lkm build --kernel {release})"
                )
        return release
    releases = {module.release for module in modules}
    if len(releases) > 1:
        built = ", ".join(f"{m.source} for {m.release}" for m in modules)
        raise InstallError(
            f"the modules were built for different kernels ({built}): "
            "install each kernel's modules with its own lkm install"
        )
    return modules[0].release


# -- the tree ------------------------------------------------------------------


def root_directory(root: str) -> str:
    """``root`` as a prefix of absolute paths: "" for the machine's own."""
    absolute = os.path.abspath(root) if root else ""
    return "" if absolute == "/" else absolute


def is_release(name: str) -> bool:
    """Whether ``name`` can be a directory name under ``/lib/modules``
    (a path in a crafted vermagic must not lead out of it)."""
    return bool(name) and "/" not in name and name not in (".", "..")


def module_tree(root: str, kernel: str) -> tuple[str, str]:
    """(release, module tree) for a release or a label (``6.12``) of a
    kernel whose tree is under ``root``."""
    if not is_release(kernel):
        raise InstallError(f"{one_line(kernel)}: not a kernel release")
    moddir = f"{root}/lib/modules/{kernel}"
    if os.path.isdir(moddir):
        return kernel, moddir
    from lkm.model.kernels import host_kernels

    labelled = [k.release for k in host_kernels(root) if k.label == kernel and k.modules]
    if len(labelled) == 1:
        return labelled[0], f"{root}/lib/modules/{labelled[0]}"
    where = f" under {root}" if root else ""
    raise InstallError(f"{moddir}: no module tree for kernel {kernel}{where}")


def check_install_dir(directory: str) -> str:
    """``--dir``, normalised: a directory below the module tree that depmod
    searches and that is not the kernel's own."""
    path = os.path.normpath(directory) if directory else ""
    parts = path.split("/")
    problem = None
    if not path or path == "." or os.path.isabs(path) or ".." in parts:
        problem = "must be a directory below the module tree (updates, extra, …)"
    elif parts[0] == IN_TREE_DIR:
        problem = "kernel/ holds the kernel's own modules, which lkm never changes"
    elif any(part in SKIPPED_DIRS for part in parts):
        problem = "depmod skips directories named build and source"
    elif ":" in path or "%" in path:
        problem = "kbuild refuses ':' and '%' in an installation path"
    if problem is not None:
        raise InstallError(f"--dir {one_line(directory)}: {problem}")
    return path


def default_install_dir(root: str, release: str) -> InstallDir:
    """``INSTALL_MOD_DIR``'s default for external modules, as the kernel's
    own kbuild files set it; :data:`FALLBACK_DIR` when none are found."""
    for tree in _kbuild_trees(root, release):
        for name in ("scripts/Makefile.modinst", "Makefile"):
            path = f"{tree}/{name}"
            try:
                text = read_file(path, HEADERS_TEXT).decode("utf-8", "replace")
            except OSError:
                continue
            for pattern in _INSTALL_MOD_DIR:
                match = pattern.search(text)
                if match:
                    return InstallDir(match.group(1), path)
    return InstallDir(FALLBACK_DIR, "")


def _kbuild_trees(root: str, release: str) -> Iterator[str]:
    """Trees that may hold the kernel's kbuild files: its ``source`` and
    ``build`` links and Debian's headers under ``root``, then the headers
    lkm finds for the release elsewhere (the host's, or its cache's: the
    same release has the same kbuild files), each followed by the source
    tree its Makefile includes."""
    moddir = f"{root}/lib/modules/{release}"
    candidates = [
        link_in_root(root, f"{moddir}/source"),
        link_in_root(root, f"{moddir}/build"),
        f"{root}/usr/src/linux-headers-{release}",
    ]
    for tree in candidates:
        if os.path.isdir(tree):
            yield from _with_source_tree(root, tree)
    from lkm.model.kernels import available_kernels

    for kernel in available_kernels():
        if kernel.release == release and kernel.headers is not None:
            yield from _with_source_tree("", kernel.headers)


def _with_source_tree(root: str, headers: str) -> Iterator[str]:
    yield headers
    try:
        text = read_file(f"{headers}/Makefile", HEADERS_TEXT).decode("utf-8", "replace")
    except OSError:
        return
    match = _INCLUDE.search(text)
    if match:
        source = match.group(1)
        inside = f"{root}{source}" if root and source.startswith("/") else source
        yield inside if os.path.isdir(inside) else source


def link_in_root(root: str, link: str) -> str:
    """A symbolic link's target read as the image builder means it: an
    absolute target inside ``root``."""
    if root and os.path.islink(link):
        target = os.readlink(link)
        if target.startswith("/"):
            return f"{root}{target}"
    return link


def tree_compression(moddir: str) -> Compression:
    """How the kernel's own modules (``kernel/``) are compressed: the
    suffix most of them have."""
    counts: Counter[Compression] = Counter()
    for _, _, files in os.walk(f"{moddir}/{IN_TREE_DIR}"):
        for name in files:
            kind = compression_of_name(name)
            if kind is not None:
                counts[kind] += 1
    return counts.most_common(1)[0][0] if counts else Compression.NONE


def compression_of_name(name: str) -> Compression | None:
    """The compression a module file's suffix says; None: not a module."""
    if not has_module_extension(name):
        return None
    return next(kind for kind in reversed(Compression) if name.endswith(".ko" + kind.extension))


def compress_like_kbuild(image: bytes, kind: Compression) -> bytes:
    """What ``modules_install`` makes of a ``.ko`` (scripts/Makefile.modinst):
    ``xz --check=crc32 --lzma2=dict=1MiB`` (liblzma with the same filter
    chain: the same bytes), ``gzip -n`` (level 6, no name, time 0) and
    ``zstd`` (level 3, with the checksum and content size the zstd
    command writes by default)."""
    if kind is Compression.NONE:
        return image
    if kind is Compression.XZ:
        import lzma

        filters = [{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": 1 << 20}]
        return lzma.compress(image, lzma.FORMAT_XZ, lzma.CHECK_CRC32, filters=filters)
    if kind is Compression.GZIP:
        import gzip

        return gzip.compress(image, compresslevel=6, mtime=0)
    try:
        import zstandard
    except ImportError:
        from lkm.errors import MissingDependencyError

        raise MissingDependencyError("zstandard", "zstd-compressed module trees") from None
    compressor = zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=True)
    return compressor.compress(image)


def module_files(moddir: str) -> Iterator[tuple[str, str]]:
    """(module name, path) of every module file in the tree, skipping the
    directories depmod skips."""
    for directory, subdirs, files in os.walk(moddir):
        subdirs[:] = [d for d in subdirs if d not in SKIPPED_DIRS]
        for name in files:
            if has_module_extension(name):
                yield module_name_from_path(name), f"{directory}/{name}"


def is_in_tree(moddir: str, path: str) -> bool:
    return path.startswith(f"{moddir}/{IN_TREE_DIR}/")


# -- changing the tree ---------------------------------------------------------


class TreeChange:
    """Changes to a module tree, undone together when a step fails (see
    the module's documentation)."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], object]] = []
        self._backups: list[str] = []
        self._emptied: list[str] = []
        self._suffix = f".{os.getpid()}.{_BACKUP}"

    def make_dirs(self, path: str) -> None:
        """``path`` and its missing parents; undone by removing them."""
        missing = []
        while not os.path.isdir(path):
            missing.append(path)
            path = os.path.dirname(path)
        for directory in reversed(missing):
            os.mkdir(directory, 0o755)
            self._undo.append(partial(os.rmdir, directory))

    def write(self, target: str, data: bytes) -> bool:
        """Put ``data`` at ``target`` through a temporary file and a rename;
        True when it replaced a file. A symbolic link there is replaced, not
        written through (it may point into another tree)."""
        replaced = os.path.lexists(target)
        if os.path.islink(target):
            self.remove(target)
        elif os.path.isdir(target):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), target)
        elif replaced:
            self._keep(target)
        else:
            self._undo.append(partial(_unlink_new, target))
        try:
            replace_file(target, data, f".{os.getpid()}.{_TEMPORARY}", MODULE_MODE)
        except OSError as exc:  # named after the target, not the temporary file
            raise OSError(exc.errno, exc.strerror, target) from None
        return replaced

    def remove(self, path: str) -> None:
        """Remove ``path`` (renamed to its backup name until commit); its
        directory, when that leaves it empty, goes at commit."""
        backup = path + self._suffix
        os.rename(path, backup)
        self._undo.append(partial(_restore, backup, path))
        self._backups.append(backup)
        self._emptied.append(os.path.dirname(path))

    def keep_indexes(self, moddir: str, names: Sequence[str]) -> None:
        """Keep the index files as they are, to restore them if depmod
        fails half-way; an index that is not there yet is removed again."""
        for name in names:
            path = os.path.realpath(f"{moddir}/{name}")
            if not os.path.lexists(path):
                self._undo.append(partial(_unlink_new, path))
            elif os.path.isfile(path):
                self._keep(path)

    def _keep(self, path: str) -> None:
        backup = path + self._suffix
        try:
            os.link(path, backup)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EMLINK):
                raise
            shutil.copy2(path, backup)  # a filesystem without hard links
        self._undo.append(partial(_restore, backup, path))
        self._backups.append(backup)

    def rollback(self) -> list[str]:
        """Undo every change, newest first; what could not be undone."""
        problems = []
        for undo in reversed(self._undo):
            try:
                undo()
            except OSError as exc:
                problems.append(f"{exc.filename}: {exc.strerror}")
        self._undo.clear()
        return problems

    def commit(self, moddir: str) -> None:
        """Drop the backups, and directories below ``moddir`` that the
        change left empty."""
        for backup in self._backups:
            _unlink_new(backup)
        for directory in self._emptied:
            while directory.startswith(moddir + "/") and not is_in_tree(moddir, directory + "/"):
                try:
                    os.rmdir(directory)
                except OSError:
                    break
                directory = os.path.dirname(directory)
        self._undo.clear()


def _restore(backup: str, path: str) -> None:
    """Put ``backup`` back at ``path``. When nothing replaced the file
    there, both names are links to one inode, which rename(2) leaves
    alone ("does nothing"): the backup name is then just dropped."""
    try:
        if os.path.samestat(os.lstat(backup), os.lstat(path)):
            os.unlink(backup)
            return
    except FileNotFoundError:
        pass
    os.replace(backup, path)


def _unlink_new(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _reindex(release: str, root: str, index: IndexOptions, report: Report) -> None:
    """lkm's depmod over the tree, as ``lkm depmod -b ROOT RELEASE`` runs it."""
    from lkm.workflows.depmod import run_depmod

    settings = _depmod_settings(release, root, index)
    try:
        result = run_depmod(settings, report)
    except (LkmError, OSError) as exc:
        raise InstallError(f"depmod: {exc}") from None
    if result.status != 0:
        raise InstallError(f"depmod could not index {settings.input_dir} (see its messages)")


def _depmod_settings(release: str, root: str, index: IndexOptions) -> DepmodSettings:
    from lkm.workflows.depmod import DepmodSettings

    return DepmodSettings(
        version=release,
        basedir=root,
        use_cache=index.use_cache,
        cache_dir=index.cache_dir,
        layout=index.layout,
    )


def _apply(change: TreeChange, steps: Callable[[], None], moddir: str) -> None:
    """Run ``steps`` against the tree; on any failure undo them all and
    raise one InstallError saying so."""
    try:
        steps()
    except BaseException as exc:
        problems = change.rollback()
        undone = (
            f"; could not undo: {'; '.join(problems)}" if problems else "; the tree is as it was"
        )
        if isinstance(exc, InstallError):
            raise InstallError(f"{exc}{undone}") from None
        if isinstance(exc, OSError):
            where = exc.filename or moddir
            raise InstallError(f"{where}: {exc.strerror or exc}{undone}") from None
        raise
    change.commit(moddir)


# -- install -------------------------------------------------------------------


def install(request: InstallRequest, report: Report) -> InstallResult:
    """Install the modules, index the tree, and say what each name now
    loads. Raises InstallError with the tree unchanged."""
    root = root_directory(request.root)
    modules = built_modules(request.sources or (".",))
    if request.kernel is not None:
        release, moddir = module_tree(root, request.kernel)
        target_release(modules, release)
    else:
        release, moddir = module_tree(root, target_release(modules, None))
    check_distinct(modules)
    if request.directory is not None:
        directory = InstallDir(check_install_dir(request.directory), "--dir")
    else:
        directory = default_install_dir(root, release)
    kind = tree_compression(moddir)
    files = _final_files(modules, request, kind)
    target_dir = f"{moddir}/{directory.path}"
    change = TreeChange()
    placed: list[Placed] = []

    def steps() -> None:
        change.make_dirs(target_dir)
        for module, data in zip(modules, files, strict=True):
            placed.append(_place(change, module, data, target_dir, kind, request.key is not None))
        from lkm.workflows.depmod import OUTPUT_FILES

        change.keep_indexes(moddir, OUTPUT_FILES)
        _reindex(release, root, request.index, report)

    _apply(change, steps, moddir)
    return InstallResult(release, moddir, directory, kind, _shadowing(moddir, placed))


def _final_files(
    modules: Sequence[BuiltModule], request: InstallRequest, kind: Compression
) -> list[bytes]:
    """Each module as it will be installed: signed (when a key is given),
    then compressed, as kbuild orders the two."""
    signer = _signer(request)
    files = []
    for module in modules:
        image = module.image
        if signer is not None:
            from lkm.workflows.sign import sign_module

            try:
                image = sign_module(image, signer, request.hash_name)
            except LkmError as exc:
                raise InstallError(f"{module.source}: {exc}") from None
        try:
            files.append(compress_like_kbuild(image, kind))
        except LkmError as exc:
            raise InstallError(f"{module.source}: {exc}") from None
    return files


def _signer(request: InstallRequest) -> Signer | None:
    if request.key is None and request.cert is None:
        return None
    if request.key is None or request.cert is None:
        raise InstallError("signing needs both a key (--key) and its certificate (--cert)")
    from lkm.workflows.sign import SignError, hash_algorithm, load_signer

    try:
        hash_algorithm(request.hash_name)
        return load_signer(request.key, request.cert)
    except SignError as exc:
        raise InstallError(str(exc)) from None


def _place(
    change: TreeChange,
    module: BuiltModule,
    data: bytes,
    target_dir: str,
    kind: Compression,
    signed: bool,
) -> Placed:
    """Write one module; other files of its name in the same directory (a
    copy installed before with another compression or spelling) go, since
    depmod would pick one of the two by directory order."""
    target = f"{target_dir}/{module.filename}{kind.extension}"
    replaced = []
    for name in sorted(os.listdir(target_dir)):
        path = f"{target_dir}/{name}"
        same_module = has_module_extension(name) and module_name_from_path(name) == module.name
        if same_module and path != target and not os.path.isdir(path):
            change.remove(path)
            replaced.append(path)
    if change.write(target, data):
        replaced.append(target)
    return Placed(module.source, module.name, target, signed, tuple(replaced))


def _shadowing(moddir: str, placed: Sequence[Placed]) -> tuple[Placed, ...]:
    """Each placed module with the files of its name that the new index
    passes over (``shadows``), or the one it resolves the name to instead
    (``shadowed_by``), relative to the tree."""
    names = {p.name for p in placed}
    others: dict[str, list[str]] = {name: [] for name in names}
    for name, path in module_files(moddir):
        if name in others:
            others[name].append(path)
    resolved = resolved_paths(moddir, names)
    result = []
    for p in placed:
        chosen = resolved.get(p.name)
        rest = sorted(_relative(moddir, f) for f in others[p.name] if not _same(f, p.path))
        if chosen is not None and not _same(chosen, p.path):
            result.append(p.replace(shadowed_by=_relative(moddir, chosen)))
        else:
            result.append(p.replace(shadows=tuple(rest)))
    return tuple(result)


def resolved_paths(moddir: str, names: set[str]) -> dict[str, str | None]:
    """What the tree's index resolves each module name to (modules.dep);
    None for every name when the index cannot be read (the change is done
    by then: only what it means goes unsaid)."""
    from lkm.model.database import ModuleDatabase

    try:
        with ModuleDatabase(moddir) as db:
            return {name: db.path_of(name) for name in names}
    except (LkmError, OSError):
        return dict.fromkeys(names)


def _same(a: str, b: str) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _relative(moddir: str, path: str) -> str:
    return path.removeprefix(moddir + "/")


# -- uninstall -----------------------------------------------------------------


def uninstall(request: UninstallRequest, report: Report) -> UninstallResult:
    """Remove every out-of-tree copy of each named module (any directory
    but ``kernel/``, any compression) and index the tree again. Raises
    InstallError, with the tree unchanged, when a name has no such copy."""
    root = root_directory(request.root)
    release, moddir = module_tree(root, request.kernel or os.uname().release)
    names = [module_name_from_path(name) for name in request.names]
    installed: dict[str, list[str]] = {name: [] for name in names}
    in_tree: dict[str, list[str]] = {name: [] for name in names}
    for name, path in module_files(moddir):
        if name in installed:
            (in_tree if is_in_tree(moddir, path) else installed)[name].append(path)
    for given, name in zip(request.names, names, strict=True):
        if not installed[name]:
            raise InstallError(_not_installed(given, moddir, in_tree[name]))
    change = TreeChange()

    def steps() -> None:
        for name in dict.fromkeys(names):
            for path in sorted(installed[name]):
                change.remove(path)
        from lkm.workflows.depmod import OUTPUT_FILES

        change.keep_indexes(moddir, OUTPUT_FILES)
        _reindex(release, root, request.index, report)

    _apply(change, steps, moddir)
    resolved = resolved_paths(moddir, set(names))
    removed = tuple(
        Removed(name, tuple(sorted(installed[name])), _relative_or_none(moddir, resolved[name]))
        for name in dict.fromkeys(names)
    )
    return UninstallResult(release, moddir, removed)


def _not_installed(given: str, moddir: str, in_tree: Sequence[str]) -> str:
    if in_tree:
        found = ", ".join(_relative(moddir, path) for path in sorted(in_tree))
        return (
            f"{one_line(given)}: not installed in {moddir}: only the kernel's own {found}, "
            "which lkm uninstall never removes"
        )
    return f"{one_line(given)}: not installed in {moddir}"


def _relative_or_none(moddir: str, path: str | None) -> str | None:
    return None if path is None else _relative(moddir, path)


__all__ = [
    "BuiltModule",
    "IndexOptions",
    "InstallDir",
    "InstallError",
    "InstallRequest",
    "InstallResult",
    "Placed",
    "Removed",
    "TreeChange",
    "UninstallRequest",
    "UninstallResult",
    "built_modules",
    "check_distinct",
    "check_install_dir",
    "compress_like_kbuild",
    "compression_of_name",
    "default_install_dir",
    "install",
    "is_release",
    "link_in_root",
    "module_files",
    "module_tree",
    "read_built_module",
    "target_release",
    "tree_compression",
    "uninstall",
]
